"""Stream names: ``SYMBOL`` for a symbol's base-interval bars, ``SYMBOL@interval`` for a higher
interval's (``BTCUSD@5m``). Built and split here, and nowhere else. Pure."""

from __future__ import annotations

from typing import Final

from .candle import Candle

__all__ = ["SEPARATOR", "split_stream", "stream_name", "stream_of"]

#: Between a symbol and its interval's name; never part of a symbol (:func:`~candlecast.model.rules.is_symbol`).
SEPARATOR: Final = "@"


def stream_name(symbol: str, interval: str | None) -> str:
    """The stream of ``symbol``'s bars of ``interval`` (``None``: the base interval)."""
    return symbol if interval is None else f"{symbol}{SEPARATOR}{interval}"


def split_stream(name: str) -> tuple[str, str | None]:
    """``"BTCUSD@5m"`` -> ``("BTCUSD", "5m")``; ``"BTCUSD"`` -> ``("BTCUSD", None)``."""
    symbol, sep, interval = name.partition(SEPARATOR)
    return (symbol, interval) if sep else (symbol, None)


def stream_of(candle: Candle) -> str:
    """The stream a candle belongs to (``s``, or ``s@i`` for a bar of a higher interval)."""
    return candle.s if candle.i is None else f"{candle.s}{SEPARATOR}{candle.i}"
