"""The ``seed`` format: ``{"symbol": S, "time": T, "candles": [OT, O, C, H, L]}`` (note C before H
and L). Stream half only. Pure.
"""

from __future__ import annotations

from ..model.candle import Candle, MalformedMessage, make_candle
from .shapes import json_object

__all__ = ["parse_seed"]


def parse_seed(msg: object) -> list[Candle]:
    """``{"symbol": S, "time": T, "candles": [OT, O, C, H, L]}``. Note C before H and L."""
    m = json_object(msg, "message")
    if "candles" not in m:
        return []  # heartbeats, acks: not candles
    bar = m["candles"]
    if not isinstance(bar, list) or len(bar) != 5:
        raise MalformedMessage("shape", "candles must be a list [ot, o, c, h, l]")
    if "symbol" not in m or "time" not in m:
        raise MalformedMessage("shape", "symbol and time are required")
    ot, o, c, h, l = bar  # noqa: E741
    return [make_candle(m["symbol"], m["time"], ot, o, h, l, c)]
