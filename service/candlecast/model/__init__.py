"""The pure core: the candle and its checks, stream names, intervals and aggregation, the
shared rules, and pacing (token bucket, throttle, backoff) with time passed in. Any thread; no I/O.
"""
