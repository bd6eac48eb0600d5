"""What the fan-out queues for a client: an :class:`Update` (one encoded candle, shared by
every client), a :class:`Reply` (a control frame for one client) and a :class:`Snapshot` (the
bars a client is owed on (re)subscription), and the two things the hub is given from outside:
an :class:`Encoder` (the wire's: JSON text and WebSocket frame) and a connection's
:class:`DirectWrite`. Pure data; any thread may build them, the hub's loop uses them.
"""

from __future__ import annotations

from typing import Protocol

from ..model.candle import Candle

__all__ = ["DirectWrite", "Encoder", "Key", "Outgoing", "Queued", "Reply", "Snapshot", "Update"]

Key = tuple[str, int | float]  # (stream, bar open time): one bar of one symbol in one interval


class Encoder(Protocol):
    """How updates and the resync notice look on the wire (:class:`candlecast.wire.encoder.WireEncoder`)."""

    def update(self, candle: Candle) -> tuple[str, bytes]:
        """The candle's JSON text and its complete WebSocket frame."""
        ...

    def resync(self) -> str:
        """The notice that the client's bars are replaced by the snapshot that follows."""
        ...


class Update:
    """One encoded candle, shared by every subscriber: its JSON ``text`` and its complete
    WebSocket ``frame`` (for the direct path), each built once by the hub's encoder. Never
    mutated after creation, but for :attr:`message`."""

    __slots__ = ("frame", "key", "message", "received", "text")

    def __init__(self, key: Key, text: str, frame: bytes, received: float) -> None:
        self.key = key
        self.text = text
        self.frame = frame
        self.received = received
        #: Whatever the endpoint builds once to send this update, shared by its sessions (the
        #: hub never reads it: the message shape is the endpoint's business).
        self.message: object = None


class Reply:
    """A control frame for one client (``subscribed``, ``pong``, ``error``, ``resync``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class Snapshot:
    """Bars a client is owed on (re)subscription, oldest first per symbol (queued as one item),
    and their size in bytes (the texts are ASCII JSON)."""

    __slots__ = ("size", "updates")

    def __init__(self, updates: list[Update]) -> None:
        self.updates = updates
        self.size = sum(len(u.text) for u in updates)


Outgoing = Update | Reply
Queued = Update | Reply | Snapshot


class DirectWrite(Protocol):
    """What a connection offers for the direct path (see :mod:`candlecast.server.protocols`)."""

    def ready(self) -> bool:
        """Open and writable now (below the transport's high-water mark)."""
        ...

    def write(self, data: bytes) -> None:
        """Write whole frames now."""
