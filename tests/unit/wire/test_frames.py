"""Unmasked WebSocket frames, read back by a real WebSocket parser."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from candlecast.wire.frames import text_frame


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65_535, 65_536])
def test_text_frame_is_what_a_websocket_parser_reads(n: int) -> None:
    """Every length class of the header (7-bit, 16-bit, 64-bit) parses back to the payload."""
    client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)  # the frame parser alone
    payload = ("é" * (n // 2) + "a" * (n % 2)).encode()
    client.receive_data(text_frame(payload))
    [event] = client.events_received()
    assert isinstance(event, Frame) and event.opcode is Opcode.TEXT and event.fin and event.data == payload
