"""The fan-out: the hub (bars per stream, aggregation, encode once), subscribers (routing, the
writer's lifecycle, the snapshot budget), the pure client queue (bound + same-bar merge), the
direct path's pump step, and the hot-path counters. Event loop only; never awaits a client.
"""
