"""Remote upstreams: the shared upstream HTTP client, the backends over it, the /process allowlist.

Never imports fastapi, starlette or server.api.
"""
