"""The hub's side of history: bars merged behind the newest are inserted in order, and every
client is re-snapshotted (``resync``) after a merge or after live batches that inserted bars."""

from __future__ import annotations

from typing import Any

import anyio
import orjson

from candlecast.fanout.hub import Hub
from candlecast.fanout.stats import Stats
from candlecast.feed.base import Batch, BatchKind, pump
from candlecast.model.candle import Candle
from candlecast.model.intervals import IntervalSet, parse_interval
from candlecast.wire.encoder import ENCODER
from tests.conftest import DEADLINE
from tests.unit.test_hub import drain

M = 60_000
T = 1_704_067_200_000  # 2024-01-01 00:00 UTC: epoch ms, as brokers send


def bar(s: str, k: int, c: float = 1.0, i: str | None = None) -> Candle:
    return Candle(s=s, t=T + k * M, ot=T + k * M, o=1.0, h=2.0, l=0.5, c=c, i=i)


def ots(hub: Hub, stream: str) -> list[int | float]:
    return [u.key[1] for u in hub.bars(stream, 100)]


def test_hub_inserts_an_older_bar_in_order_and_replaces_a_held_one() -> None:
    """A missing older bar is inserted between its neighbours; a held one replaced in place."""
    hub = Hub(stats=Stats(), encoder=ENCODER, history=10)
    for k in (1, 2, 6):
        hub.publish(bar("A", k), 0.0)
    hub.merge([(bar("A", k, c=1.5), 0.0) for k in (2, 3, 4, 5)])
    assert ots(hub, "A") == [T + k * M for k in (1, 2, 3, 4, 5, 6)]
    assert orjson.loads(hub.bars("A", 10)[1].text)["c"] == 1.5
    assert not hub.behind


def test_hub_full_ring_drops_a_bar_older_than_all_and_evicts_the_oldest_for_an_insert() -> None:
    hub = Hub(stats=Stats(), encoder=ENCODER, history=3)
    for k in (2, 4, 6):
        hub.publish(bar("A", k), 0.0)
    hub.publish(bar("A", 1), 0.0)  # older than everything kept: dropped
    assert ots(hub, "A") == [T + 2 * M, T + 4 * M, T + 6 * M] and not hub.behind
    hub.publish(bar("A", 5), 0.0)  # inserted; the oldest goes
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
    hub.publish(bar("A", 7, c=1.7), 0.0)
    hub.merge(
        [(bar("A", k, c=1.0 + k / 10), 0.0) for k in (3, 4, 5, 6)] + [(Candle("A", T, T, 9, 9, 9, 9, i="5m"), 0.0)]
    )
    five = [orjson.loads(u.text) for u in hub.bars("A@5m", 10)]
    assert [(f["ot"], f["o"], f["c"]) for f in five] == [(T, 9.0, 9.0), (T + 5 * M, 1.0, 1.7)]


async def test_hub_merge_resyncs_every_client_with_its_snapshot() -> None:
    """A client gets {"op":"resync"} and then its whole history, in order, after a merge."""
    hub = Hub(stats=Stats(), encoder=ENCODER, history=10)
    hub.publish(bar("A", 5), 0.0)
    async with hub.subscribe(frozenset({"A"}), history=10) as sub:
        await drain(sub)
        hub.merge([(bar("A", k), 0.0) for k in (1, 2, 3, 4)])
        got: list[Any] = await drain(sub)
    assert got[0] == {"op": "resync"}
    assert [f["ot"] for f in got[1:]] == [T + k * M for k in (1, 2, 3, 4, 5)]


class _Feed:
    """A feed of fixed batches: a live one that inserts an older bar, then a history one."""

    def __init__(self, batches: list[Batch]) -> None:
        self._batches = batches

    async def batches(self, limit: int) -> Any:
        for batch in self._batches:
            yield batch


async def test_pump_resyncs_clients_after_a_plain_batch_that_inserted_bars() -> None:
    """An edge reads an ingest's gap fill as plain candles: the pump re-snapshots after it."""
    hub = Hub(stats=Stats(), encoder=ENCODER, history=10)
    hub.publish(bar("A", 5), 0.0)
    async with hub.subscribe(frozenset({"A"}), history=10) as sub:
        await drain(sub)
        feed = _Feed([Batch(BatchKind.LIVE, [(bar("A", 3), 0.0)]), Batch(BatchKind.HISTORY, [(bar("A", 4), 0.0)])])
        with anyio.fail_after(DEADLINE):
            await pump(feed, hub)  # type: ignore[arg-type]
        got: list[Any] = await drain(sub)
    resyncs = [k for k, f in enumerate(got) if f == {"op": "resync"}]
    assert len(resyncs) == 2
    assert [f["ot"] for f in got[resyncs[-1] + 1 :]] == [T + k * M for k in (3, 4, 5)]
