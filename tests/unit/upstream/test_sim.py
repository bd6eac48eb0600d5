"""The simulator and its source: deterministic, valid bars, rolled over at the bar length."""

from __future__ import annotations

import threading

from candlecast.model.candle import Candle
from candlecast.upstream.sim import SimSource, Simulator


def test_simulator_is_deterministic_for_a_seed() -> None:
    a = Simulator(["A", "B"], seed=7)
    b = Simulator(["A", "B"], seed=7)
    assert [a.step(1000 * i) for i in range(50)] == [b.step(1000 * i) for i in range(50)]


def test_simulator_bars_are_valid_and_roll_over() -> None:
    sim = Simulator(["A", "B", "C"], bar_seconds=1.0, seed=3)
    candles = [sim.step(10_000 + 100 * i) for i in range(300)]
    assert {c.s for c in candles} == {"A", "B", "C"}
    for c in candles:
        assert c.l <= min(c.o, c.c) <= max(c.o, c.c) <= c.h
        assert c.ot % 1000 == 0 and c.ot <= c.t < c.ot + 1000
        assert c.v is not None and c.v > 0
    a = [c for c in candles if c.s == "A"]
    assert len({c.ot for c in a}) == 30  # one bar per simulated second
    same_bar = [c for c in a if c.ot == a[0].ot]
    assert len(same_bar) > 1 and len({c.c for c in same_bar}) > 1  # intra-bar updates move the close
    assert all(x.o == same_bar[0].o for x in same_bar)


def test_simulator_backfill_gives_finished_bars_before_now() -> None:
    sim = Simulator(["A", "B"], bar_seconds=60, seed=2)
    bars = sim.backfill(1_700_000_030_000, 5)
    assert len(bars) == 10
    a = [c for c in bars if c.s == "A"]
    assert [c.ot for c in a] == [1_699_999_680_000 + 60_000 * k for k in range(5)]
    assert all(c.l <= min(c.o, c.c) <= max(c.o, c.c) <= c.h for c in bars)
    live = sim.step(1_700_000_030_000)
    assert live.ot == 1_699_999_980_000 and live.o == a[-1].c


def test_sim_source_emits_at_its_rate_until_stopped() -> None:
    source = SimSource(["A"], rate=50_000, seed=1)
    stop = threading.Event()
    got: list[Candle] = []

    def emit(c: Candle) -> None:
        got.append(c)
        if len(got) == 20_000:
            stop.set()

    source.run(emit, stop)
    assert len(got) >= 20_000
    assert source.upstream.messages == len(got)
    assert not source.upstream.connected
