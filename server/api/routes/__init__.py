"""HTTP routes: thin handlers that validate, call a backend and shape the response."""
