"""The hub with real anyio streams, in one event loop, no sockets."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest
from anyio.lowlevel import checkpoint

from service.candles import Candle
from service.hub import Hub, HubClosed, HubFull, Item, Reply, Snapshot, State, Subscriber, Update


def bar(s: str, ot: int, c: float = 1.0, t: int | None = None) -> Candle:
    return Candle(s, ot if t is None else t, ot, 1.0, max(2.0, c), 0.5, c)


def drain(sub: Subscriber) -> list[Any]:
    """Everything queued for ``sub``, as the writer would send it (decoded)."""
    out: list[Any] = []
    while sub.items:
        item: Item = sub.receive_nowait()
        if isinstance(item, Update):
            out.append(orjson.loads(sub.take(item).text))
        elif isinstance(item, Snapshot):
            out.append([orjson.loads(u.text) for u in item.updates])
        else:
            out.append(orjson.loads(item.text))
    with pytest.raises(anyio.WouldBlock):
        sub.receive.receive_nowait()  # the count and the stream agree
    return out


async def test_hub_encodes_once_and_shares_the_update() -> None:
    hub = Hub()
    async with hub.subscribe(None) as a, hub.subscribe(None) as b:
        assert drain(a) == [[]] and drain(b) == [[]]  # empty snapshots
        update = hub.publish(bar("A", 1), 0.0)
        got_a = a.receive_nowait()
        got_b = b.receive_nowait()
        assert got_a is update and got_b is update
        assert update.message == {"type": "websocket.send", "text": update.text}


async def test_hub_routes_by_symbol() -> None:
    hub = Hub()
    async with hub.subscribe(frozenset({"A"})) as a, hub.subscribe(None) as every:
        drain(a), drain(every)
        hub.publish(bar("A", 1), 0.0)
        hub.publish(bar("B", 2), 0.0)
        assert [m["s"] for m in drain(a)] == ["A"]
        assert [m["s"] for m in drain(every)] == ["A", "B"]


async def test_hub_snapshot_is_the_latest_bar_or_history() -> None:
    hub = Hub(history=3)
    for ot in range(5):
        hub.publish(bar("A", ot), 0.0)
    hub.publish(bar("A", 4, c=1.5), 0.0)  # same bar again: replaces the latest
    hub.publish(bar("B", 9), 0.0)
    async with hub.subscribe(None) as latest, hub.subscribe(frozenset({"A"}), history=10) as hist:
        assert [(m["s"], m["ot"], m["c"]) for m in drain(latest)[0]] == [("A", 4, 1.5), ("B", 9, 1.0)]
        assert [m["ot"] for m in drain(hist)[0]] == [2, 3, 4]  # the ring keeps 3 bars
    assert [u.key for u in hub.bars("A", 2)] == [("A", 3), ("A", 4)]
    assert hub.bars("nope", 5) == []


async def test_hub_late_update_of_an_older_bar_is_fixed_in_place() -> None:
    hub = Hub(history=5)
    for ot in (1, 2, 3):
        hub.publish(bar("A", ot), 0.0)
    hub.publish(bar("A", 2, c=1.9), 0.0)
    assert [orjson.loads(u.text)["c"] for u in hub.bars("A", 5)] == [1.0, 1.9, 1.0]


async def test_subscriber_that_keeps_up_gets_every_update() -> None:
    hub = Hub(client_queue=8)
    async with hub.subscribe(None) as sub:
        drain(sub)
        for i in range(4):  # under half the bound: nothing merges
            hub.publish(bar("A", 1, c=1.0 + i / 10), 0.0)
        assert [m["c"] for m in drain(sub)] == [1.0, 1.1, 1.2, 1.3]
        assert hub.stats.merged == 0


async def test_subscriber_behind_gets_same_bar_updates_merged_in_place() -> None:
    hub = Hub(client_queue=8)
    async with hub.subscribe(None) as sub:
        drain(sub)
        hub.publish(bar("A", 1), 0.0)
        for ot in range(2, 5):
            hub.publish(bar("B", ot), 0.0)  # 4 queued: half the bound, so now it is behind
        hub.publish(bar("A", 1, c=1.7), 0.0)  # A's bar 1 is queued: merged into it
        hub.publish(bar("B", 4, c=1.8), 0.0)  # B's bar 4 too
        hub.publish(bar("B", 5), 0.0)  # a new bar takes a new place
        got = [(m["s"], m["ot"], m["c"]) for m in drain(sub)]
        assert got == [("A", 1, 1.7), ("B", 2, 1.0), ("B", 3, 1.0), ("B", 4, 1.8), ("B", 5, 1.0)]
        assert hub.stats.merged == 2


async def test_merge_goes_into_the_last_queued_entry_of_the_bar() -> None:
    """With two queued entries of one bar, a merge replaces the later one, keeping order."""
    hub = Hub(client_queue=8)
    async with hub.subscribe(frozenset({"A"})) as sub:
        drain(sub)
        hub.publish(bar("A", 1, c=1.1), 0.0)
        hub.publish(bar("A", 1, c=1.2), 0.0)  # keeping up: queued again
        hub.publish(bar("A", 2), 0.0)
        hub.publish(bar("A", 3), 0.0)  # 4 queued: behind
        hub.publish(bar("A", 1, c=1.3), 0.0)  # merged into the second entry of bar 1
        assert [(m["ot"], m["c"]) for m in drain(sub)] == [(1, 1.1), (1, 1.3), (2, 1.0), (3, 1.0)]


async def test_subscriber_past_the_bound_is_ended_with_1013() -> None:
    ended: list[bool] = []
    hub = Hub(client_queue=4)
    async with hub.subscribe(None, on_end=lambda: ended.append(True)) as slow, hub.subscribe(None) as ok:
        for ot in range(6):
            hub.publish(bar("A", ot), 0.0)
            drain(ok)
        assert slow.state is State.ENDED
        assert (slow.close_code, ended) == (1013, [True])
        assert "slow" in slow.close_reason
        assert hub.stats.slow_disconnects == 1
        assert hub.clients == 2  # still registered until its session leaves
        hub.publish(bar("A", 9), 0.0)  # no longer routed to
        assert ok.state is State.OPEN
    assert hub.clients == 0


async def test_add_and_remove_symbols_queue_the_new_snapshot() -> None:
    hub = Hub()
    hub.publish(bar("B", 7), 0.0)
    async with hub.subscribe(frozenset({"A"})) as sub:
        drain(sub)
        hub.add_symbols(sub, ["B", "C"])
        assert drain(sub) == [[{"s": "B", "t": 7, "ot": 7, "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.0}]]
        hub.remove_symbols(sub, ["A"])
        assert sub.symbols == frozenset({"B", "C"})
        hub.publish(bar("A", 8), 0.0)
        hub.publish(bar("C", 8), 0.0)
        assert [m["s"] for m in drain(sub)] == ["C"]


async def test_unsubscribing_from_everything_keeps_the_known_symbols() -> None:
    hub = Hub()
    hub.publish(bar("A", 1), 0.0)
    hub.publish(bar("B", 1), 0.0)
    async with hub.subscribe(None) as sub:
        hub.remove_symbols(sub, ["A"])
        assert sub.symbols == frozenset({"B"})


async def test_max_clients_and_closed_hub_refuse_subscribers() -> None:
    hub = Hub(max_clients=1)
    async with hub.subscribe(None):
        with pytest.raises(HubFull):
            async with hub.subscribe(None):
                pass  # pragma: no cover
    hub.close()
    with pytest.raises(HubClosed):
        async with hub.subscribe(None):
            pass  # pragma: no cover


async def test_close_ends_everyone_with_1001_and_wait_idle_returns_when_they_leave() -> None:
    hub = Hub()
    with pytest.raises(RuntimeError, match="expects a closed hub"):
        await hub.wait_idle()
    left = anyio.Event()

    async def session(started: anyio.Event) -> None:
        async with hub.subscribe(None) as sub:
            started.set()
            with pytest.raises(anyio.EndOfStream):
                while True:
                    await sub.receive.receive()
            assert sub.close_code == 1001
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
    hub = Hub(client_queue=2)
    async with hub.subscribe(None) as sub:
        sub.queue(Reply("{}"))  # snapshot + 1 reply = the bound
        sub.queue(Reply("{}"))
        assert sub.close_code == 1013
        await checkpoint()
