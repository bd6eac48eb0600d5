"""A candlecast format plug-in for a made-up broker, "Acme" (the complete example of docs/formats.md).

Acme sends ``{"type": "bars", "symbol": "BTC-EUR", "sent": <epoch ms>, "bars": [{"start":
<epoch ms>, "o": "…", "h": "…", "l": "…", "c": "…", "vol": "…"}, …]}`` -- several bars per
message, prices as strings -- plus ``{"type": "heartbeat"}`` and, for a refused subscription,
``{"type": "error", "message": "…"}``.
"""

from __future__ import annotations

from candlecast import Candle, MalformedMessage, make_candle


def parse(msg: object) -> list[Candle]:
    """One decoded Acme message -> every candle it carries (none for a heartbeat)."""
    if not isinstance(msg, dict):
        raise MalformedMessage("shape", f"message must be an object, got {type(msg).__name__}")
    kind = msg.get("type")
    if kind == "error":
        raise MalformedMessage("refused", f"acme error: {msg.get('message')!r}")
    if kind != "bars":
        return []  # heartbeats, acks: valid, but not candles
    bars = msg.get("bars")
    if not isinstance(bars, list):
        raise MalformedMessage("shape", "bars must be a list")
    try:
        return [
            make_candle(
                msg["symbol"],
                msg["sent"],
                bar["start"],
                bar["o"],
                bar["h"],
                bar["l"],
                bar["c"],
                bar.get("vol"),
                strings=True,  # Acme sends prices as strings
            )
            for bar in bars
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise MalformedMessage("shape", f"a bar lacks {exc}") from None
