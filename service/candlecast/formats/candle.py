"""The ``candle`` format: frames already normalized (``{"s", "t", "ot", "o", "h", "l", "c"[, "v"]}``),
for replay files, chaining one candlecast to another, and the backplane's entries. Pure.
"""

from __future__ import annotations

from ..model.candle import Candle, MalformedMessage, make_candle
from .shapes import json_object

__all__ = ["parse_candle"]


def parse_candle(msg: object) -> list[Candle]:
    """Already-normalized frames: ``{"s", "t", "ot", "o", "h", "l", "c"[, "v"]}``."""
    m = json_object(msg, "message")
    try:
        return [make_candle(m["s"], m["t"], m["ot"], m["o"], m["h"], m["l"], m["c"], m.get("v"))]
    except KeyError as exc:
        raise MalformedMessage("shape", f"candle lacks {exc.args[0]!r}") from None
