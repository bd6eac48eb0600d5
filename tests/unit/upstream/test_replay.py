"""The replay source: recorded lines and bare ones, bad ones skipped, paced by recorded time."""

from __future__ import annotations

import threading
from pathlib import Path

from candlecast.formats.registry import BUILTIN as FORMATS
from candlecast.model.candle import Candle, encode
from candlecast.upstream.record import record_line
from candlecast.upstream.replay import ReplaySource
from candlecast.upstream.source import Normalizer


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
