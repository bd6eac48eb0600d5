"""History over the broker's REST API: the client (paging, concurrency, Retry-After), the
backfill and gap fill beside the live stream, the gap watch the producer thread feeds, and what of
an answer to trust. Event loop, but the gap watch (producer thread).
"""
