"""The ``/ws`` client protocol: query options, control messages, replies, close codes. Pure.

Nothing here awaits or touches a socket: :func:`parse_query` and :func:`parse_command` turn
client input into typed values or raise :class:`ProtocolError` (``code`` for the error frame,
``detail`` for humans); the ``*_frame`` functions build the JSON text the server sends; the
``CLOSE_*`` codes are the ones a session ends with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from ..errors import ClientError
from ..model.intervals import IntervalError, IntervalSet
from ..model.rules import MAX_TOKEN_CHARS, is_symbol, parse_bool
from ..model.streams import SEPARATOR

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_TRY_AGAIN",
    "CONTROL_BURST",
    "CONTROL_RATE",
    "MAX_COMMAND_BYTES",
    "MAX_ERRORS",
    "MAX_RATE_LIMITED",
    "MAX_SYMBOLS",
    "Command",
    "Op",
    "Options",
    "ProtocolError",
    "error_frame",
    "parse_command",
    "parse_query",
    "pong_frame",
    "reply_frame",
    "resync_frame",
]

#: Largest control message accepted from a client, in bytes.
MAX_COMMAND_BYTES: Final = 4096
#: Most symbols one client may name at once (query or one subscribe).
MAX_SYMBOLS: Final = 256
#: Error frames a client may provoke before it is closed with 1008.
MAX_ERRORS: Final = 10
#: Control messages per client: a token bucket of CONTROL_BURST, refilled at CONTROL_RATE per
#: second. A message beyond it gets a ``rate_limited`` error frame and is not acted on; after
#: MAX_RATE_LIMITED such refusals the client is closed with 1008.
CONTROL_RATE: Final = 20.0
CONTROL_BURST: Final = 40
MAX_RATE_LIMITED: Final = 20

#: Close codes (RFC 6455 section 7.4.1) and what they mean here.
CLOSE_GOING_AWAY: Final = 1001  # the server is shutting down: reconnect elsewhere or later
CLOSE_POLICY: Final = 1008  # bad query, refused token or origin, or repeated bad messages
CLOSE_TRY_AGAIN: Final = 1013  # the client fell behind (queue full), the server or the address is full
CLOSE_TOKEN_EXPIRED: Final = 4001  # the access token expired: get a fresh one, then reconnect

Op = Literal["subscribe", "unsubscribe", "ping", "auth"]


class ProtocolError(ClientError):
    """Bad client input; the connection stays open and gets an error frame."""


@dataclass(frozen=True, slots=True)
class Options:
    """What a client asked for in the ``/ws`` query string."""

    symbols: frozenset[str] | None  # None: every symbol, present and future
    history: int = 0
    batch: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    """One control message. ``id`` is echoed back when the client sent one."""

    op: Op
    symbols: tuple[str, ...] = ()
    id: str | int | None = None
    token: str | None = field(default=None, repr=False)  # ``auth`` only


def _symbols(items: list[Any], intervals: IntervalSet | None) -> tuple[str, ...]:
    """Validated stream names: ``SYMBOL`` or ``SYMBOL@interval`` (the base interval named
    explicitly becomes the bare symbol), without duplicates, in the order given."""
    if len(items) > MAX_SYMBOLS:
        raise ProtocolError("too_many_symbols", f"at most {MAX_SYMBOLS} symbols, got {len(items)}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ProtocolError("bad_symbol", f"not a symbol: {str(item)[:40]!r}")
        if intervals is None or SEPARATOR not in item:
            if not is_symbol(item):
                raise ProtocolError("bad_symbol", f"not a symbol: {item[:40]!r}")
            stream = item
        else:
            try:
                stream = intervals.stream(item)
            except IntervalError as exc:
                raise ProtocolError("unknown_interval", str(exc)) from None
            except ValueError as exc:
                raise ProtocolError("bad_symbol", str(exc)) from None
        if stream not in out:
            out.append(stream)
    return tuple(out)


def _flag(text: str, name: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError:
        raise ProtocolError("bad_query", f"{name} must be 0 or 1, got {text[:20]!r}") from None


def parse_query(query: Mapping[str, str], *, max_history: int, intervals: IntervalSet | None = None) -> Options:
    """Options from ``symbols=A,B&history=N&batch=1``; unknown keys are ignored."""
    symbols: frozenset[str] | None = None
    raw = query.get("symbols")
    if raw is not None and raw.strip() not in ("", "*"):
        symbols = frozenset(_symbols([s.strip() for s in raw.split(",") if s.strip()], intervals))
    history = 0
    raw = query.get("history")
    if raw is not None and raw != "":
        try:
            history = int(raw)
        except ValueError:
            raise ProtocolError("bad_query", f"history must be a whole number, got {raw[:20]!r}") from None
        if history < 0:
            raise ProtocolError("bad_query", f"history must be 0 or more, got {history}")
        history = min(history, max_history)  # "up to N": the server keeps max_history bars
    batch = _flag(query.get("batch", "0"), "batch")
    return Options(symbols=symbols, history=history, batch=batch)


def parse_command(data: str | bytes, intervals: IntervalSet | None = None) -> Command:
    """One control message; raises :class:`ProtocolError` for anything but a valid command."""
    if len(data) > MAX_COMMAND_BYTES:
        raise ProtocolError("too_large", f"messages are limited to {MAX_COMMAND_BYTES} bytes")
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_json", "message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", "message must be a JSON object")
    op = msg.get("op")
    ident = msg.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, str | int)):
        raise ProtocolError("bad_message", "id must be a string or an integer")
    if op == "ping":
        return Command("ping", id=ident)
    if op == "auth":
        token = msg.get("token")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise ProtocolError("bad_message", f"auth needs a token: a non-empty string of at most {MAX_TOKEN_CHARS}")
        return Command("auth", id=ident, token=token)
    if op in ("subscribe", "unsubscribe"):
        items = msg.get("symbols")
        if not isinstance(items, list) or not items:
            raise ProtocolError("bad_message", f"{op} needs a non-empty list of symbols")
        return Command(op, _symbols(items, intervals), ident)
    raise ProtocolError("unknown_op", f"unknown op {str(op)[:40]!r}; expected subscribe, unsubscribe, ping or auth")


def _frame(payload: dict[str, Any], ident: str | int | None) -> str:
    if ident is not None:
        payload["id"] = ident
    return orjson.dumps(payload).decode()


def reply_frame(op: str, symbols: frozenset[str] | None, ident: str | int | None = None) -> str:
    """``subscribed`` / ``unsubscribed``: the client's whole subscription after the change."""
    listed: list[str] | str = "*" if symbols is None else sorted(symbols)
    return _frame({"op": op, "symbols": listed}, ident)


def pong_frame(server_time_ms: int, ident: str | int | None = None) -> str:
    return _frame({"op": "pong", "t": server_time_ms}, ident)


def error_frame(error: ClientError) -> str:
    return _frame({"op": "error", "error": error.code, "detail": error.detail}, None)


def resync_frame() -> str:
    """``resync``: the client's bars are replaced by the snapshot that follows (a backplane edge
    missed candles); a chart drops what it has and seeds itself again."""
    return _frame({"op": "resync"}, None)
