"""The simulator and its source: deterministic, valid bars, rolled over at the bar length."""

from __future__ import annotations

import math
import threading
import time

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


def test_built_in_symbols_start_at_their_markets_level_with_their_tick() -> None:
    sim = Simulator(["BTCUSD", "EURUSD", "USDJPY", "ZZZ"], seed=1)
    first = {c.s: c for c in (sim.step(1_700_000_000_000 + k) for k in range(4))}
    assert 50_000 < first["BTCUSD"].c < 80_000 and round(first["BTCUSD"].c, 2) == first["BTCUSD"].c
    assert 1.0 < first["EURUSD"].c < 1.2 and round(first["EURUSD"].c, 5) == first["EURUSD"].c
    assert 120 < first["USDJPY"].c < 180 and round(first["USDJPY"].c, 3) == first["USDJPY"].c
    assert first["ZZZ"].c > 0


def _spread(rate: float, seeds: int = 200, seconds: float = 600.0) -> float:
    """Variance of the log move of one symbol over ``seconds`` of simulated time, updated at
    ``rate`` per second, across ``seeds`` runs."""
    moves = []
    for seed in range(seeds):
        sim = Simulator(["BTCUSD"], seed=seed)
        start = sim.step(0).c
        steps = int(seconds * rate)
        end = start
        for k in range(1, steps + 1):
            end = sim.step(int(k * 1000 / rate)).c
        moves.append(math.log(end / start))
    mean = sum(moves) / len(moves)
    return sum((m - mean) ** 2 for m in moves) / len(moves)


def test_volatility_follows_time_not_the_update_rate() -> None:
    """Ten minutes move the price as much at 1 update a second as at 20 (a random walk scaled by
    sqrt(dt)), about BTC's 60 % a year. Seeded: the same figures every run."""
    expected = 0.60**2 * 600 / (365.25 * 86_400)
    slow, fast = _spread(1.0), _spread(20.0, seeds=60)
    assert 0.7 * expected < slow < 1.4 * expected, (slow, expected)
    assert 0.6 * expected < fast < 1.6 * expected, (fast, expected)


def test_made_up_history_and_live_bars_share_a_scale() -> None:
    """The past's 1 m bars and live 1 m bars (at 50 updates a second) have ranges of the same order."""
    sim = Simulator(["BTCUSD"], bar_seconds=60, seed=5)
    now = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    past = sim.backfill(now, 300)
    live = [sim.step(now + 20 * k) for k in range(60 * 50 * 3)]
    bars = {c.ot: c for c in live}  # the last state of each live bar
    past_range = sorted((c.h - c.l) / c.c for c in past)[len(past) // 2]
    live_range = sorted((c.h - c.l) / c.c for c in bars.values())[len(bars) // 2]
    assert 0.33 < live_range / past_range < 3.0, (past_range, live_range)


def test_made_up_week_bars_open_on_monday_like_the_exchanges() -> None:
    sim = Simulator(["BTCUSD"], bar_seconds=60, seed=1)
    week = 7 * 86_400_000
    bars = [c for c in sim.backfill(1_700_000_000_000, 5, [(week, "1w")]) if c.i == "1w"]
    assert bars and all(time.gmtime(c.ot / 1000).tm_wday == 0 for c in bars)  # Monday
