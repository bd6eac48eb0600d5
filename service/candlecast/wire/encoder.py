"""How the hub's updates look on the wire: a candle's compact JSON text and its complete
WebSocket text frame, built once per update (:class:`WireEncoder`, the hub's
:class:`~candlecast.fanout.items.Encoder`). Pure; nothing to close.
"""

from __future__ import annotations

from typing import Final

from ..model.candle import Candle, encode
from .frames import text_frame
from .protocol import resync_frame

__all__ = ["ENCODER", "WireEncoder"]


class WireEncoder:
    """``/ws``'s encoding: ``{"s":…,"t":…,"ot":…,"o":…,"h":…,"l":…,"c":…[,"v":…][,"i":…]}``."""

    __slots__ = ()

    def update(self, candle: Candle) -> tuple[str, bytes]:
        payload = encode(candle)
        return payload.decode(), text_frame(payload)

    def resync(self) -> str:
        return resync_frame()


#: The one encoder a hub needs (it holds no state).
ENCODER: Final = WireEncoder()
