"""What of a REST answer can be trusted, and tagging bars with their interval. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..model.candle import Candle
from ..model.intervals import Interval

__all__ = ["check_page", "tagged"]


def check_page(candles: Sequence[Candle], symbol: str, interval: Interval) -> tuple[list[Candle], list[str]]:
    """The bars of one answer that can be trusted, and why each other one was not: ``order``
    (not strictly after the previous one: a duplicate or out of order), ``disagree`` (another
    symbol, or an open time off the interval's grid: :meth:`Interval.start`, weeks from Monday)."""
    kept: list[Candle] = []
    rejected: list[str] = []
    for candle in candles:
        if candle.s != symbol or interval.start(candle.ot) != candle.ot:
            rejected.append("disagree")
        elif kept and candle.ot <= kept[-1].ot:
            rejected.append("order")
        else:
            kept.append(candle)
    return kept, rejected


def tagged(candles: Sequence[Candle], name: str | None) -> list[Candle]:
    """``candles`` with ``i`` set to ``name`` (``None``: the base interval)."""
    return [c if c.i == name else replace(c, i=name) for c in candles]
