"""Upstream sources: each runs in the producer thread and emits normalized candles."""

from __future__ import annotations

from ..settings import Derived, Settings
from .source import Emit, Normalizer, Source, Upstream


def build(settings: Settings, derived: Derived) -> Source:
    """The source that ``settings`` select, not yet running (``derived``: what they imply)."""
    if settings.source == "sim":
        from .sim import SimSource

        return SimSource(
            settings.symbols,
            rate=settings.rate,
            bar_seconds=settings.bar_seconds,
            seed=settings.seed,
            backfill=min(settings.backfill, settings.history),
            higher=[(i.ms, i.name) for i in derived.intervals.higher],
        )
    normalizer = Normalizer(derived.format)
    if settings.source == "ws":
        from .websocket import WebSocketSource

        assert settings.upstream is not None  # checked by Settings
        return WebSocketSource(
            settings.upstream,
            normalizer,
            subscribe=settings.subscribe,
            reconnect_min=settings.reconnect_min,
            reconnect_max=settings.reconnect_max,
        )
    from .replay import ReplaySource

    assert settings.replay_file is not None  # checked by Settings
    return ReplaySource(settings.replay_file, normalizer, speed=settings.speed)


__all__ = ["Emit", "Normalizer", "Source", "Upstream", "build"]
