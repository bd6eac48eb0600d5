"""Replay of a recorded JSONL file, in the producer thread.

Each line is either a record written by ``candlecast record`` -- ``{"at": <epoch seconds>,
"msg": <upstream message>}`` -- or a bare upstream message of the configured format. Records
are paced by ``at``; bare lines by their first candle's ``t`` (either epoch unit, see
:func:`candlecast.model.rules.epoch_seconds`).
``speed`` scales the pace (2: twice as fast); 0 replays as fast as the bridge takes it.
Malformed lines are counted and skipped like any upstream message. At the end of the file the
source stops and marks the upstream finished; the hub keeps serving the last state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from ..model.candle import Candle, MalformedMessage, decode
from ..model.rules import epoch_seconds
from .source import Emit, Normalizer, Upstream

__all__ = ["ReplaySource"]


class ReplaySource:
    def __init__(self, path: str, normalizer: Normalizer, *, speed: float = 1.0) -> None:
        self.path = path
        self.normalizer = normalizer
        self.speed = speed
        self.upstream = Upstream()
        self.malformed = normalizer.malformed

    def run(self, emit: Emit, stop: threading.Event) -> None:
        up = self.upstream
        origin: tuple[float, float] | None = None  # (recorded time, monotonic time) of line one
        with open(self.path, "rb") as lines:
            up.connected = True
            up.connects += 1
            try:
                for line in lines:
                    if stop.is_set():
                        return
                    line = line.strip()
                    if not line:
                        continue
                    up.messages += 1
                    up.last_message = time.monotonic()
                    at, candles = self._read(line)
                    if not candles:
                        continue
                    if self.speed > 0:
                        recorded = at if at is not None else epoch_seconds(candles[0].t)
                        if origin is None:
                            origin = (recorded, time.monotonic())
                        due = origin[1] + (recorded - origin[0]) / self.speed
                        delay = due - time.monotonic()
                        if delay > 0 and stop.wait(delay):
                            return
                    for candle in candles:
                        emit(candle)
            finally:
                up.connected = False
                up.finished = True

    def _read(self, line: bytes) -> tuple[float | None, Sequence[Candle]]:
        try:
            obj = decode(line)
        except MalformedMessage as exc:
            self.normalizer.reject(exc, line)
            return None, ()
        if isinstance(obj, dict) and "msg" in obj and isinstance(obj.get("at"), int | float):
            msg = obj["msg"]
            if isinstance(msg, str):  # a recorded message that was not JSON
                return float(obj["at"]), self.normalizer(msg)
            return float(obj["at"]), self.normalizer.feed(msg)
        return None, self.normalizer.feed(obj)

    def wake(self) -> None:
        """Nothing to interrupt: file reads do not block for long, and waits end on stop."""
