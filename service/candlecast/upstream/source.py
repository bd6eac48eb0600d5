"""What every upstream source shares: the :class:`Source` protocol, upstream state, the
normalizer that turns raw messages into candles, and the reconnect backoff.

Sources run in the producer thread. :class:`Upstream` and :class:`Normalizer` are written by
that thread only and read by the event loop (``/readyz``, ``/metrics``); each field is a single
attribute or dict-item store, atomic under the GIL, so readers see a consistent-enough value.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ..formats.contract import Heartbeat, heartbeat_of
from ..model.candle import REASONS, Candle, Format, MalformedMessage, decode
from ..model.pacing import Throttle

__all__ = ["Emit", "HasHistory", "Normalizer", "Source", "Upstream"]

log = logging.getLogger("candlecast.upstream")

Emit = Callable[[Candle], None]


class Source(Protocol):
    """An upstream feed, run as a thread target.

    ``run`` blocks until ``stop`` is set (or the feed ends by itself), calling ``emit`` for
    every candle; ``emit`` may block (a full bridge) and raises once the bridge is closed,
    which a source lets propagate. ``wake`` is called from another thread after ``stop`` is
    set, to interrupt blocking I/O; it must be safe to call at any time.

    ``upstream`` and ``malformed`` are what ``/readyz`` and ``/metrics`` read (from the loop).
    """

    @property
    def upstream(self) -> Upstream: ...

    @property
    def malformed(self) -> Mapping[str, int]:
        """Malformed upstream messages skipped so far, by reason."""
        ...

    def run(self, emit: Emit, stop: threading.Event) -> None: ...

    def wake(self) -> None: ...


class HasHistory(Protocol):
    """A source that makes up or knows its own past (the simulator): the feed takes it once,
    before the source runs, and delivers it as history."""

    def history(self) -> list[Candle]: ...


class Upstream:
    """Connection state of the upstream, for ``/readyz`` and ``/metrics``."""

    def __init__(self) -> None:
        self.connected = False
        self.connects = 0
        self.reconnects = 0
        self.messages = 0  # data messages: every message but the broker's heartbeat answers
        self.heartbeats = 0  # heartbeat answers (a format's Heartbeat.pong)
        self.last_message: float | None = None  # time.monotonic() of the last data message
        self.finished = False  # a finite source (replay) has no more data

    def message_age(self, now: float) -> float | None:
        return None if self.last_message is None else now - self.last_message


class Normalizer:
    """Raw upstream message -> the candles it carries (often one, none for an ack or a
    heartbeat, several where the broker batches them), never raising.

    Malformed messages are counted per reason, logged at most once per second per reason
    (with how many were suppressed), and skipped. The format may be a plug-in: one that raises
    anything but :class:`MalformedMessage`, or returns anything but a list or tuple of
    :class:`Candle`, has that message counted under ``format`` and skipped; the feed goes on.

    The answer of the format's :attr:`heartbeat` (OKX's text ``pong``) is a heartbeat: no
    candle, and not malformed (:meth:`is_heartbeat`).
    """

    def __init__(self, fmt: Format, *, clock: Callable[[], float] = time.monotonic, log_interval: float = 1.0) -> None:
        self._fmt = fmt
        #: The text keepalive the format declares (sent by the WebSocket source), if any.
        self.heartbeat: Heartbeat | None = heartbeat_of(fmt)
        self._clock = clock
        self._throttle = Throttle(log_interval)
        self.malformed: dict[str, int] = dict.fromkeys(REASONS, 0)

    def is_heartbeat(self, raw: object) -> bool:
        """Whether ``raw`` (as received, or as a replay file keeps it) is the heartbeat's answer."""
        beat = self.heartbeat
        if beat is None:
            return False
        return raw == beat.pong or (isinstance(raw, bytes) and raw == beat.pong.encode())

    def __call__(self, raw: bytes | str) -> Sequence[Candle]:
        if self.is_heartbeat(raw):
            return ()
        try:
            msg = decode(raw)
        except MalformedMessage as exc:
            self.reject(exc, raw)
            return ()
        return self.feed(msg, raw)

    def feed(self, msg: object, raw: object = None) -> Sequence[Candle]:
        """Like calling it, for a message already decoded from JSON (replay records)."""
        if self.is_heartbeat(msg):
            return ()
        try:
            candles = self._fmt(msg)
        except MalformedMessage as exc:
            self.reject(exc, msg if raw is None else raw)
            return ()
        except Exception as exc:  # a plug-in's bug must not end the feed: counted, logged, skipped
            failed = MalformedMessage("format", f"{_name(self._fmt)} raised {type(exc).__name__}: {exc}")
            self.reject(failed, msg if raw is None else raw)
            return ()
        if type(candles) is list or type(candles) is tuple:
            if all(type(c) is Candle for c in candles):
                return candles
        wrong = MalformedMessage(
            "format", f"{_name(self._fmt)} returned {type(candles).__name__}, not a list of candles"
        )
        self.reject(wrong, msg if raw is None else raw)
        return ()

    def reject(self, exc: MalformedMessage, raw: object) -> None:
        reason = exc.reason
        self.malformed[reason] = self.malformed.get(reason, 0) + 1
        suppressed = self._throttle.ready(reason, self._clock())
        if suppressed is None:
            return
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        log.warning("skipped malformed upstream message: %s%s; message starts %r", exc, more, str(raw)[:120])


def _name(fmt: Format) -> str:
    return f"{getattr(fmt, '__module__', '?')}.{getattr(fmt, '__qualname__', type(fmt).__name__)}"
