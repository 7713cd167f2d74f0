"""Convoy: an HTTP inference server for local Hugging Face encoder models."""

__version__ = "0.1.0"
