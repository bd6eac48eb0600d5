"""Sources and their pure helpers: simulator, normalizer, backoff, replay."""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path

import orjson
import pytest

from candlecast.formats.registry import BUILTIN as FORMATS
from candlecast.model.candle import Candle, encode
from candlecast.model.pacing import backoff
from candlecast.upstream.record import record_line
from candlecast.upstream.replay import ReplaySource
from candlecast.upstream.sim import SimSource, Simulator
from candlecast.upstream.source import Normalizer


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


def test_normalizer_counts_and_rate_limits_its_log(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    norm = Normalizer(FORMATS["seed"], clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="candlecast.upstream"):
        for _ in range(5):
            assert norm("{bad") == ()
        now[0] = 1.5
        assert norm("{bad") == ()
    assert norm.malformed["json"] == 6
    records = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(records) == 2
    assert "4 more since the last report" in records[1].getMessage()
    good = norm(b'{"symbol":"A","time":1,"candles":[1,1,1,1,1]}')
    assert good == [Candle("A", 1, 1, 1.0, 1.0, 1.0, 1.0)]


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff(n, initial=0.5, maximum=30.0, rng=rng) for n in range(12)]
    for n, d in enumerate(delays):
        cap = min(30.0, 0.5 * 2**n)
        assert cap / 2 <= d <= cap
    assert max(delays) <= 30.0
    assert backoff(10_000, initial=0.5, maximum=30.0, rng=rng) <= 30.0


def test_replay_reads_records_and_bare_lines_and_skips_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    seed1 = b'{"symbol":"A","time":1,"candles":[1,1,1,1,1]}'
    with path.open("wb") as f:
        f.write(record_line(100.0, seed1))
        f.write(b"not json\n\n")
        f.write(record_line(100.5, "also not json"))
        f.write(b'{"symbol":"A","time":2,"candles":[2,1,1,1,1]}\n')
    source = ReplaySource(str(path), Normalizer(FORMATS["seed"]), speed=0)
    got: list[Candle] = []
    source.run(got.append, threading.Event())
    assert [c.ot for c in got] == [1, 2]
    assert source.normalizer.malformed["json"] == 2
    assert source.upstream.finished and not source.upstream.connected


def test_replay_of_candle_frames_paced_by_recorded_time(tmp_path: Path) -> None:
    path = tmp_path / "frames.jsonl"
    frames = [Candle("A", 1_700_000_000_000 + 10 * i, 1_700_000_000_000, 1.0, 1.0, 1.0, 1.0) for i in range(5)]
    path.write_bytes(b"".join(encode(c) + b"\n" for c in frames))
    source = ReplaySource(str(path), Normalizer(FORMATS["candle"]), speed=1000.0)
    got: list[Candle] = []
    source.run(got.append, threading.Event())
    assert got == frames


def test_record_line_keeps_json_as_json() -> None:
    assert orjson.loads(record_line(1.5, '{"a":1}')) == {"at": 1.5, "msg": {"a": 1}}
    assert orjson.loads(record_line(2.0, b"raw")) == {"at": 2.0, "msg": "raw"}
