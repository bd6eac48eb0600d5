"""The pure client queue: bound, same-bar merge while behind, snapshot bytes (no loop, no I/O)."""

from __future__ import annotations

from candlecast.fanout.items import Reply, Snapshot, Update
from candlecast.fanout.queue import FULL, MERGED, QUEUED, ClientQueue


def update(stream: str, ot: int, text: str = "{}") -> Update:
    return Update((stream, ot), text, b"", 0.0)


def test_queue_keeps_every_update_in_order_while_the_client_keeps_up() -> None:
    q = ClientQueue(8)
    items = [update("A", 1), update("A", 1), update("B", 1)]
    assert [q.offer(u) for u in items] == [QUEUED, QUEUED, QUEUED]  # below half the bound: no merge
    assert q.drain() == items
    assert len(q) == 0


def test_queue_merges_a_bar_still_queued_once_behind_and_keeps_its_place() -> None:
    q = ClientQueue(4)
    first, other, newer, newest = update("A", 1), update("B", 1), update("A", 1), update("A", 1)
    assert [q.offer(first), q.offer(other)] == [QUEUED, QUEUED]
    assert q.offer(newer) == MERGED  # half the bound queued: the A bar's entry takes the newer state
    assert q.offer(newest) == MERGED
    assert q.drain() == [newest, other]
    assert q.offer(update("A", 1)) == QUEUED  # drained: the bar is not queued any more


def test_queue_is_full_at_its_bound_and_takes_nothing_more() -> None:
    q = ClientQueue(2)
    assert [q.offer(update("A", 1)), q.offer(update("A", 2))] == [QUEUED, QUEUED]
    assert q.offer(update("A", 3)) == FULL
    assert not q.put(Reply("{}"))
    assert len(q) == 2


def test_queue_counts_snapshot_bytes_until_drained_and_expands_snapshots() -> None:
    q = ClientQueue(8)
    bars = [update("A", 1, '{"x":1}'), update("A", 2, '{"x":22}')]
    reply = Reply('{"op":"subscribed"}')
    assert q.put(reply) and q.put(Snapshot(bars))
    assert q.snapshot_bytes == 7 + 8
    assert q.drain() == [reply, *bars]
    assert q.snapshot_bytes == 0
