"""ModelLoadError: a model cannot be served as asked (one line, meant for the operator)."""

from __future__ import annotations


class ModelLoadError(Exception):
    """A model cannot be served as asked; the message is one line meant for the operator."""
