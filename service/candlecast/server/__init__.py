"""Running under uvicorn: its connection protocols with candlecast's limits (request timeout,
head cap, flow control both ways, quiet violations, the direct path), the runner (config, version
check, two-phase drain) and the log filter. Event loop.
"""
