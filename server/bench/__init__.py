"""`convoy bench`: an async load generator for Convoy's routes, and the raw-model limit to judge it by.

Nothing here imports torch except `offline.py`, and only when `--offline` is asked for.
"""
