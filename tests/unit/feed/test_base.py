"""The pump: batches by kind into the hub, and the resync after plain batches that inserted bars."""

from __future__ import annotations

from typing import Any

import anyio

from candlecast.fanout.hub import Hub
from candlecast.fanout.stats import Stats
from candlecast.feed.base import Batch, BatchKind, pump
from candlecast.model.candle import Candle
from candlecast.wire.encoder import ENCODER
from tests.conftest import DEADLINE
from tests.unit.fanout.test_hub import drain

M = 60_000


T = 1_704_067_200_000  # 2024-01-01 00:00 UTC: epoch ms, as brokers send


def bar(s: str, k: int, c: float = 1.0, i: str | None = None) -> Candle:
    return Candle(s=s, t=T + k * M, ot=T + k * M, o=1.0, h=2.0, l=0.5, c=c, i=i)


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
