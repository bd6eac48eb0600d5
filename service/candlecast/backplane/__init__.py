"""The Redis backplane: one ingest process publishes candles to a Redis Stream, edge processes
read them into their own hub (``--role ingest`` / ``--role edge``; ``--role all`` never imports
this package).

- :mod:`.codec`: keys, entry ids and fields, the ingest's sequence and the edge's position (pure).
- :mod:`.pace`: how often a refused entry is logged, every client re-snapshotted, and Redis retried (pure).
- :mod:`.scripts`: the Lua scripts that make each write atomic and fenced.
- :mod:`.link`: the redis-py client as the backplane uses it (no silent retries, cancellable calls,
  the one wait after a failed call).
- :mod:`.lease`: which ingest leads (lease + fencing token).
- :mod:`.ingest`: :class:`~.ingest.IngestPublisher`, the source -> Redis publisher (not a feed: no hub reads it).
- :mod:`.edge`: :class:`~.edge.EdgeFeed`, the Redis -> hub feed.
"""
