"""The ASGI application: the service (routes, the lifespan that owns the runtime, the drain),
the /ws session, and the security headers. Event loop.
"""
