"""The batching core: one queue of chunks from every request -> batches -> model threads -> futures.

Never imports fastapi, starlette or server.api: it knows the Model protocol and nothing of HTTP.
"""
