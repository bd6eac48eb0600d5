"""A subscriber's end: at once, or after what was queued is handed to its writer (no sockets)."""

from __future__ import annotations

from candlecast.fanout.items import Reply, Update
from candlecast.fanout.stats import Stats
from candlecast.fanout.subscriber import Ending, Subscriber


def subscriber(ended: list[str]) -> Subscriber:
    return Subscriber(None, 0, bound=8, stats=Stats(), on_end=(lambda: ended.append("ended"),))


async def test_an_end_with_flush_hands_over_what_was_queued_then_ends() -> None:
    ended: list[str] = []
    sub = subscriber(ended)
    sub.queue(Reply("a"))
    sub.queue(Reply("b"))
    sub.end(Ending.ABUSE, "too many messages", flush=True)
    assert sub.flushing and ended == []
    assert sub.offer(Update(("A", 1), "{}", b"", 0.0))  # taken as done, but not queued
    sub.queue(Reply("late"))  # nothing more after the decision
    batch = await sub.next_batch()
    assert [item.text for item in batch or []] == ["a", "b"]
    assert await sub.next_batch() is None
    assert ended == ["ended"] and not sub.flushing and sub.ending is Ending.ABUSE


async def test_an_end_without_flush_drops_the_queue_and_ends_at_once() -> None:
    ended: list[str] = []
    sub = subscriber(ended)
    sub.queue(Reply("a"))
    sub.end(Ending.SLOW, "client too slow")
    assert ended == ["ended"] and sub.pending == 0
    assert await sub.next_batch() is None


async def test_an_end_with_flush_and_nothing_queued_ends_at_once() -> None:
    ended: list[str] = []
    sub = subscriber(ended)
    sub.end(Ending.ABUSE, "too many bad messages", flush=True)
    assert ended == ["ended"] and not sub.flushing
