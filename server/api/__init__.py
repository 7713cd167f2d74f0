"""The HTTP edge: routes, schemas, middleware, dependencies. The only wing that imports FastAPI."""
