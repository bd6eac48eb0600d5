"""WebSocket frames the server sends, built once and shared. Pure.

A server's frames are not masked (RFC 6455, section 5.1), so the frame of one update is the same
bytes for every client: :func:`text_frame` builds it once, in the hub, for the direct path.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["text_frame"]

_FIN_TEXT: Final = 0x81  # FIN + opcode 1 (text)


def text_frame(payload: bytes) -> bytes:
    """One complete, unfragmented, unmasked text frame carrying ``payload`` (UTF-8)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 65_536:
        return struct.pack("!BBH", _FIN_TEXT, 126, n) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, n) + payload
