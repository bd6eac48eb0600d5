"""The hub with real anyio streams, in one event loop, no sockets."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest
from anyio.lowlevel import checkpoint

from candlecast.fanout.hub import Hub, HubClosed, HubFull
from candlecast.fanout.items import Reply
from candlecast.fanout.stats import Stats
from candlecast.fanout.subscriber import Ending, Subscriber, SubscriptionState
from candlecast.model.candle import Candle, encode
from candlecast.model.intervals import IntervalSet, parse_interval
from candlecast.wire.encoder import ENCODER
from tests.conftest import DEADLINE


def bar(s: str, ot: int, c: float = 1.0, t: int | None = None) -> Candle:
    return Candle(s, ot if t is None else t, ot, 1.0, max(2.0, c), 0.5, c)


def make_hub(**kwargs: Any) -> Hub:
    return Hub(stats=Stats(), encoder=ENCODER, **kwargs)


async def drain(sub: Subscriber) -> list[Any]:
    """What the subscriber's one consumer call hands the writer now (decoded JSON)."""
    assert sub.pending, "nothing is queued: next_batch() would park"
    with anyio.fail_after(DEADLINE):
        items = await sub.next_batch()
    assert items is not None
    assert sub.pending == 0  # everything queued was taken
    return [orjson.loads(item.text) for item in items]


async def test_hub_encodes_once_and_shares_the_update() -> None:
    hub = make_hub()
    async with hub.subscribe(None) as a, hub.subscribe(None) as b:
        assert await drain(a) == [] and await drain(b) == []  # empty snapshots
        update = hub.publish(bar("A", 1), 0.0)
        got_a = await a.next_batch()
        got_b = await b.next_batch()
        assert got_a is not None and got_b is not None
        assert got_a[0] is update and got_b[0] is update


async def test_next_batch_parks_until_an_update_arrives() -> None:
    hub = make_hub()
    async with hub.subscribe(None) as sub, anyio.create_task_group() as tg:
        await drain(sub)
        got: list[Any] = []

        async def writer() -> None:
            got.append(await sub.next_batch())

        tg.start_soon(writer)
        await anyio.wait_all_tasks_blocked()
        assert got == []  # parked: nothing queued
        update = hub.publish(bar("A", 1), 0.0)
    assert got == [[update]]


async def test_next_batch_is_none_once_the_hub_ends_the_subscriber() -> None:
    hub = make_hub()
    async with hub.subscribe(None) as sub:
        hub.publish(bar("A", 1), 0.0)
        sub.end(Ending.ABUSE, "test")
        assert await sub.next_batch() is None


async def test_hub_routes_by_symbol() -> None:
    hub = make_hub()
    async with hub.subscribe(frozenset({"A"})) as a, hub.subscribe(None) as every:
        await drain(a), await drain(every)
        hub.publish(bar("A", 1), 0.0)
        hub.publish(bar("B", 2), 0.0)
        assert [m["s"] for m in await drain(a)] == ["A"]
        assert [m["s"] for m in await drain(every)] == ["A", "B"]


async def test_hub_snapshot_is_the_latest_bar_or_history() -> None:
    hub = make_hub(history=3)
    for ot in range(5):
        hub.publish(bar("A", ot), 0.0)
    hub.publish(bar("A", 4, c=1.5), 0.0)  # same bar again: replaces the latest
    hub.publish(bar("B", 9), 0.0)
    async with hub.subscribe(None) as latest, hub.subscribe(frozenset({"A"}), history=10) as hist:
        assert [(m["s"], m["ot"], m["c"]) for m in await drain(latest)] == [("A", 4, 1.5), ("B", 9, 1.0)]
        assert [m["ot"] for m in await drain(hist)] == [2, 3, 4]  # the ring keeps 3 bars
    assert [u.key for u in hub.bars("A", 2)] == [("A", 3), ("A", 4)]
    assert hub.bars("nope", 5) == []


async def test_hub_late_update_of_an_older_bar_is_fixed_in_place() -> None:
    hub = make_hub(history=5)
    for ot in (1, 2, 3):
        hub.publish(bar("A", ot), 0.0)
    hub.publish(bar("A", 2, c=1.9), 0.0)
    assert [orjson.loads(u.text)["c"] for u in hub.bars("A", 5)] == [1.0, 1.9, 1.0]


async def test_subscriber_that_keeps_up_gets_every_update() -> None:
    hub = make_hub(client_queue=8)
    async with hub.subscribe(None) as sub:
        await drain(sub)
        for i in range(4):  # under half the bound: nothing merges
            hub.publish(bar("A", 1, c=1.0 + i / 10), 0.0)
        assert [m["c"] for m in await drain(sub)] == [1.0, 1.1, 1.2, 1.3]
        assert hub.stats.merged == 0


async def test_subscriber_behind_gets_same_bar_updates_merged_in_place() -> None:
    hub = make_hub(client_queue=8)
    async with hub.subscribe(None) as sub:
        await drain(sub)
        hub.publish(bar("A", 1), 0.0)
        for ot in range(2, 5):
            hub.publish(bar("B", ot), 0.0)  # 4 queued: half the bound, so now it is behind
        hub.publish(bar("A", 1, c=1.7), 0.0)  # A's bar 1 is queued: merged into it
        hub.publish(bar("B", 4, c=1.8), 0.0)  # B's bar 4 too
        hub.publish(bar("B", 5), 0.0)  # a new bar takes a new place
        got = [(m["s"], m["ot"], m["c"]) for m in await drain(sub)]
        assert got == [("A", 1, 1.7), ("B", 2, 1.0), ("B", 3, 1.0), ("B", 4, 1.8), ("B", 5, 1.0)]
        assert hub.stats.merged == 2


async def test_merge_goes_into_the_last_queued_entry_of_the_bar() -> None:
    """With two queued entries of one bar, a merge replaces the later one, keeping order."""
    hub = make_hub(client_queue=8)
    async with hub.subscribe(frozenset({"A"})) as sub:
        await drain(sub)
        hub.publish(bar("A", 1, c=1.1), 0.0)
        hub.publish(bar("A", 1, c=1.2), 0.0)  # keeping up: queued again
        hub.publish(bar("A", 2), 0.0)
        hub.publish(bar("A", 3), 0.0)  # 4 queued: behind
        hub.publish(bar("A", 1, c=1.3), 0.0)  # merged into the second entry of bar 1
        assert [(m["ot"], m["c"]) for m in await drain(sub)] == [(1, 1.1), (1, 1.3), (2, 1.0), (3, 1.0)]


async def test_subscriber_past_the_bound_is_ended_with_1013() -> None:
    ended: list[bool] = []
    hub = make_hub(client_queue=4)
    async with hub.subscribe(None, on_end=lambda: ended.append(True)) as slow, hub.subscribe(None) as ok:
        for ot in range(6):
            hub.publish(bar("A", ot), 0.0)
            await drain(ok)
        assert slow.state is SubscriptionState.ENDED
        assert (slow.ending, ended) == (Ending.SLOW, [True])
        assert "slow" in slow.close_reason
        assert hub.stats.slow_disconnects == 1
        assert hub.clients == 2  # still registered until its session leaves
        hub.publish(bar("A", 9), 0.0)  # no longer routed to
        assert ok.state is SubscriptionState.OPEN
    assert hub.clients == 0


async def test_add_and_remove_symbols_queue_the_new_snapshot() -> None:
    hub = make_hub()
    hub.publish(bar("B", 7), 0.0)
    async with hub.subscribe(frozenset({"A"})) as sub:
        await drain(sub)
        hub.add_symbols(sub, ["B", "C"])
        assert await drain(sub) == [{"s": "B", "t": 7, "ot": 7, "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.0}]
        hub.remove_symbols(sub, ["A"])
        assert sub.symbols == frozenset({"B", "C"})
        hub.publish(bar("A", 8), 0.0)
        hub.publish(bar("C", 8), 0.0)
        assert [m["s"] for m in await drain(sub)] == ["C"]


async def test_unsubscribing_from_everything_keeps_the_known_symbols() -> None:
    hub = make_hub()
    hub.publish(bar("A", 1), 0.0)
    hub.publish(bar("B", 1), 0.0)
    async with hub.subscribe(None) as sub:
        hub.remove_symbols(sub, ["A"])
        assert sub.symbols == frozenset({"B"})


async def test_max_clients_and_closed_hub_refuse_subscribers() -> None:
    hub = make_hub(max_clients=1)
    async with hub.subscribe(None):
        with pytest.raises(HubFull):
            async with hub.subscribe(None):
                pass  # pragma: no cover
    hub.close()
    with pytest.raises(HubClosed):
        async with hub.subscribe(None):
            pass  # pragma: no cover


async def test_close_ends_everyone_with_1001_and_wait_idle_returns_when_they_leave() -> None:
    hub = make_hub()
    with pytest.raises(RuntimeError, match="expects a closed hub"):
        await hub.wait_idle()
    left = anyio.Event()

    async def session(started: anyio.Event) -> None:
        async with hub.subscribe(None) as sub:
            started.set()
            while (await sub.next_batch()) is not None:
                pass
            assert sub.ending is Ending.SHUTDOWN
        left.set()

    async with anyio.create_task_group() as tg:
        started = anyio.Event()
        tg.start_soon(session, started)
        await started.wait()
        hub.close()
        hub.close()  # idempotent
        with anyio.fail_after(5):
            await hub.wait_idle()
        assert left.is_set()


async def test_reply_into_a_full_queue_ends_the_client() -> None:
    hub = make_hub(client_queue=2)
    async with hub.subscribe(None) as sub:
        sub.queue(Reply("{}"))  # snapshot + 1 reply = the bound
        sub.queue(Reply("{}"))
        assert sub.ending is Ending.SLOW
        await checkpoint()


class FakeDirect:
    """A connection's direct path, with a switch for writability (a transport above or below
    its high-water mark). What it was given is kept to be read back."""

    def __init__(self) -> None:
        self.writable = True
        self.written: list[bytes] = []

    def ready(self) -> bool:
        return self.writable

    def write(self, data: bytes) -> None:
        self.written.append(data)


async def test_a_direct_client_has_a_writer_only_while_something_is_queued() -> None:
    """The snapshot starts a writer; once it has taken everything, the writer's loop ends and
    updates go straight out at flush; a client that is not writable is queued and a writer is
    started again; queued items keep their order ahead of anything written directly after."""
    hub = make_hub()
    hub.publish(bar("A", 1), 0.0)
    direct = FakeDirect()
    starts: list[int] = []
    async with hub.subscribe(None) as sub:
        sub.go_direct(direct, lambda: starts.append(1))
        assert starts == [1]  # the snapshot is queued: a writer is wanted now
        assert await drain(sub) == [orjson.loads(encode(bar("A", 1)))]
        with anyio.fail_after(DEADLINE):
            assert await sub.next_batch() is None  # nothing queued: this writer is done
        assert sub.state is SubscriptionState.OPEN

        hub.publish(bar("A", 2), 0.0)
        hub.publish(bar("A", 3), 0.0)
        hub.flush()
        assert direct.written == [hub.bars("A", 2)[0].frame + hub.bars("A", 2)[1].frame]  # one write
        assert starts == [1] and sub.pending == 0

        direct.writable = False  # the socket's buffer is full: queue, and start a writer
        hub.publish(bar("A", 4), 0.0)
        direct.writable = True
        hub.publish(bar("A", 5), 0.0)  # a writer is busy: this one queues behind, not direct
        hub.flush()
        assert starts == [1, 1] and len(direct.written) == 1
        assert [c["ot"] for c in await drain(sub)] == [4, 5]
        with anyio.fail_after(DEADLINE):
            assert await sub.next_batch() is None
        hub.publish(bar("A", 6), 0.0)
        hub.flush()
        assert len(direct.written) == 2 and starts == [1, 1]


async def test_a_direct_client_falls_back_to_the_queue_for_replies() -> None:
    """A control reply is queued (and starts a writer) even while the client is caught up."""
    hub = make_hub()
    starts: list[int] = []
    async with hub.subscribe(None) as sub:
        sub.go_direct(FakeDirect(), lambda: starts.append(1))
        await drain(sub)
        with anyio.fail_after(DEADLINE):
            assert await sub.next_batch() is None
        sub.queue(Reply('{"op":"pong"}'))
        assert starts == [1, 1]
        items = await sub.next_batch()
        assert items is not None and [i.text for i in items] == ['{"op":"pong"}']


async def test_an_ended_direct_client_takes_nothing_more() -> None:
    """A caught-up direct client ended by the hub (shutdown) holds no stream; an update offered
    to it afterwards is dropped, not queued into a new one, and no writer is started."""
    hub = make_hub()
    direct = FakeDirect()
    starts: list[int] = []
    async with hub.subscribe(None) as sub:
        sub.go_direct(direct, lambda: starts.append(1))
        await drain(sub)
        with anyio.fail_after(DEADLINE):
            assert await sub.next_batch() is None
        sub.end(Ending.SHUTDOWN, "bye")
        update = hub.publish(bar("A", 1), 0.0)  # routed to nobody: the hub dropped it
        assert update is not None
        direct.writable = False  # so a late offer would have to queue
        assert sub.offer(update)
        assert sub.pending == 0 and starts == [1]
        with anyio.fail_after(DEADLINE):
            assert await sub.next_batch() is None


# -- history: bars merged behind the newest, and every client re-snapshotted (resync) --------------


M = 60_000


T = 1_704_067_200_000  # 2024-01-01 00:00 UTC: epoch ms, as brokers send


def minute_bar(s: str, k: int, c: float = 1.0, i: str | None = None) -> Candle:
    return Candle(s=s, t=T + k * M, ot=T + k * M, o=1.0, h=2.0, l=0.5, c=c, i=i)


def ots(hub: Hub, stream: str) -> list[int | float]:
    return [u.key[1] for u in hub.bars(stream, 100)]


def test_hub_inserts_an_older_bar_in_order_and_replaces_a_held_one() -> None:
    """A missing older bar is inserted between its neighbours; a held one replaced in place."""
    hub = Hub(stats=Stats(), encoder=ENCODER, history=10)
    for k in (1, 2, 6):
        hub.publish(minute_bar("A", k), 0.0)
    hub.merge([(minute_bar("A", k, c=1.5), 0.0) for k in (2, 3, 4, 5)])
    assert ots(hub, "A") == [T + k * M for k in (1, 2, 3, 4, 5, 6)]
    assert orjson.loads(hub.bars("A", 10)[1].text)["c"] == 1.5
    assert not hub.behind


def test_hub_full_ring_drops_a_bar_older_than_all_and_evicts_the_oldest_for_an_insert() -> None:
    hub = Hub(stats=Stats(), encoder=ENCODER, history=3)
    for k in (2, 4, 6):
        hub.publish(minute_bar("A", k), 0.0)
    hub.publish(minute_bar("A", 1), 0.0)  # older than everything kept: dropped
    assert ots(hub, "A") == [T + 2 * M, T + 4 * M, T + 6 * M] and not hub.behind
    hub.publish(minute_bar("A", 5), 0.0)  # inserted; the oldest goes
    assert ots(hub, "A") == [T + 4 * M, T + 5 * M, T + 6 * M] and hub.behind


def test_hub_merge_corrects_the_aggregates_and_lets_the_brokers_bars_win() -> None:
    """Base bars merged behind live ones complete the open 5m bar; a 5m bar from the broker
    (tagged i=5m, after the base bars) replaces the built one of a closed bucket."""
    hub = Hub(
        stats=Stats(),
        encoder=ENCODER,
        history=10,
        intervals=IntervalSet.build(parse_interval("1m"), (parse_interval("5m"),)),
    )
    hub.publish(minute_bar("A", 7, c=1.7), 0.0)
    base = [(minute_bar("A", k, c=1.0 + k / 10), 0.0) for k in (3, 4, 5, 6)]
    hub.merge([*base, (Candle("A", T, T, 9, 9, 9, 9, i="5m"), 0.0)])
    five = [orjson.loads(u.text) for u in hub.bars("A@5m", 10)]
    assert [(f["ot"], f["o"], f["c"]) for f in five] == [(T, 9.0, 9.0), (T + 5 * M, 1.0, 1.7)]


async def test_hub_merge_resyncs_every_client_with_its_snapshot() -> None:
    """A client gets {"op":"resync"} and then its whole history, in order, after a merge."""
    hub = Hub(stats=Stats(), encoder=ENCODER, history=10)
    hub.publish(minute_bar("A", 5), 0.0)
    async with hub.subscribe(frozenset({"A"}), history=10) as sub:
        await drain(sub)
        hub.merge([(minute_bar("A", k), 0.0) for k in (1, 2, 3, 4)])
        got: list[Any] = await drain(sub)
    assert got[0] == {"op": "resync"}
    assert [f["ot"] for f in got[1:]] == [T + k * M for k in (1, 2, 3, 4, 5)]


async def test_hub_resync_replaces_the_bars_and_re_snapshots_every_client() -> None:
    """A resync reply, then the new snapshot; nothing of the load goes out as live candles."""
    hub = Hub(stats=Stats(), encoder=ENCODER, history=10)
    c = [Candle("AAA", i, i, 1.0, 2.0, 0.5, 1.5) for i in range(3)]
    hub.publish(c[0], 0.0)
    async with hub.subscribe(None, history=10) as sub:
        with anyio.fail_after(DEADLINE):
            first = await sub.next_batch()
        assert first is not None and [orjson.loads(u.text)["ot"] for u in first] == [0]
        hub.resync([(c[1], 0.0), (c[2], 0.0)])
        with anyio.fail_after(DEADLINE):
            items = await sub.next_batch()
        assert items is not None
        got: list[Any] = [orjson.loads(i.text) for i in items]
        assert got[0] == {"op": "resync"}
        assert [m["ot"] for m in got[1:]] == [1, 2]
    assert [orjson.loads(u.text)["ot"] for u in hub.bars("AAA", 10)] == [1, 2]
    assert hub.stats.candles_in == 1  # the load is not counted as input
