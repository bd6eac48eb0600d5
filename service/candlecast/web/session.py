"""The ``/ws`` endpoint: one client session.

Runs in the event loop, one task per connection (uvicorn's), plus a writer task in the
session's task group while the client has anything queued. The session:

1. checks the Origin and a token offered in the query or an ``Authorization`` header *before*
   accepting (refused: HTTP 403); takes one of its address's slots (``--max-clients-per-ip``),
   then accepts (no slot: close 1013);
2. where auth is on and no token came with the request, waits (``--auth-timeout``) for a first
   message ``{"op":"auth","token":...}``: nothing is sent before it; a missing or refused token
   gets an error frame, then close 1008;
3. parses the query (bad: an error frame, then close 1008), and keeps only the symbols the
   token grants (the others are named in an error frame);
4. subscribes to the hub (full: close 1013; shutting down: close 1001);
5. runs the writer (subscriber -> socket) and, for a token that expires, a timer that ends the
   session then (close 4001, "token expired") in a task group while the host task reads control
   messages (rate-limited: :data:`~candlecast.wire.protocol.CONTROL_RATE`); either ending cancels the
   other. On the direct path the hub writes a caught-up client's frames itself, and the writer
   runs only while something is queued (the snapshot, replies, a client that fell behind);
   otherwise one writer runs for the whole session;
6. unsubscribes, then closes with the code for how the session ended (1013 slow, 1001 shutdown,
   1008 abuse, 4001 expired), unless the client is already gone. A client closed for abuse first
   gets what was queued before the decision (its error frames among it), bounded by
   :data:`CLOSE_TIMEOUT`. The close is shielded and bounded, so
   cancellation cannot skip it and a dead peer cannot hold the task; a 1013 waits longer
   (unshielded) for a stalled client's socket to take the close frame.

The ASGI message shapes live here, and only here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Final, cast

import anyio
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..access.credentials import offered_token, origin_ok
from ..access.guard import Guard
from ..access.tokens import Grant, TokenError
from ..fanout.hub import Hub, HubClosed, HubFull
from ..fanout.items import DirectWrite, Reply, Update
from ..fanout.stats import Stats
from ..fanout.subscriber import Ending, Subscriber
from ..model.pacing import TokenBucket
from ..runtime import Runtime
from ..server.protocols import DIRECT, DirectChannel
from ..wire.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TRY_AGAIN,
    CONTROL_BURST,
    CONTROL_RATE,
    MAX_ERRORS,
    MAX_RATE_LIMITED,
    ProtocolError,
    error_frame,
    parse_command,
    parse_query,
    pong_frame,
    reply_frame,
)

__all__ = ["CLOSE_CODES", "CLOSE_TIMEOUT", "MAX_BATCH", "SLOW_CLOSE_TIMEOUT", "StreamEndpoint", "session"]

log = logging.getLogger(__name__)

#: Most candles in one ``batch=1`` array frame.
MAX_BATCH = 1000
#: The close code for each way the server ends a session (RFC 6455 7.4 and candlecast's 4001).
CLOSE_CODES: Final = {
    Ending.SLOW: CLOSE_TRY_AGAIN,
    Ending.SHUTDOWN: CLOSE_GOING_AWAY,
    Ending.ABUSE: CLOSE_POLICY,
    Ending.EXPIRED: CLOSE_TOKEN_EXPIRED,
}
#: Longest a session waits to send its close frame.
CLOSE_TIMEOUT = 1.0
#: Longest a session waits for a stalled client's socket to take its 1013 close frame.
SLOW_CLOSE_TIMEOUT = 30.0


class StreamEndpoint:
    """The ``/ws`` route, as a plain ASGI app so the writer hands its messages straight to the
    server's ``send`` (no per-frame wrapper); Starlette's :class:`WebSocket` still handles
    accept, receive and close."""

    def __init__(self, runtime: Callable[[], Runtime], guard: Guard) -> None:
        self._runtime = runtime
        self._guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await session(self._runtime(), WebSocket(scope, receive, send), send, self._guard)


async def session(runtime: Runtime, websocket: WebSocket, send: Send, guard: Guard) -> None:
    """One client session, from the handshake to the close frame."""
    settings, stats = runtime.settings, runtime.stats
    headers = websocket.headers
    if not origin_ok(settings.origins, headers.get("origin")):
        stats.rejected_clients += 1
        await websocket.close(CLOSE_POLICY)  # before accept: an HTTP 403
        return
    grant: Grant | None = None
    offered = offered_token(websocket.query_params.get("token"), headers.get("authorization"))
    if offered or not guard.verifier.required:
        try:
            grant = guard.check(offered)
        except TokenError:
            stats.rejected_clients += 1
            await websocket.close(CLOSE_POLICY)  # before accept: an HTTP 403
            return
    address = websocket.client.host if websocket.client else ""
    with guard.per_address.admit(address) as admitted:
        await websocket.accept()
        if not admitted:
            guard.address_refused += 1
            stats.rejected_clients += 1
            await _close(websocket, CLOSE_TRY_AGAIN, "too many connections from your address")
            return
        if grant is None:
            grant = await _authenticate(websocket, guard, stats)
            if grant is None:
                return
        await _serve(runtime, websocket, send, guard, grant)


async def _authenticate(websocket: WebSocket, guard: Guard, stats: Stats) -> Grant | None:
    """Wait (bounded) for the first message, an ``auth`` op; its grant, or None once the client
    has been told why and closed."""
    message = None
    with anyio.move_on_after(guard.auth_timeout):
        message = await websocket.receive()
    if message is not None and message["type"] == "websocket.disconnect":
        return None
    try:
        if message is None:
            raise ProtocolError("auth_timeout", 'no {"op":"auth","token":...} message in time')
        data = message.get("text")
        cmd = parse_command(data if data is not None else message.get("bytes") or b"")
        if cmd.op != "auth":
            raise ProtocolError("auth_required", 'send {"op":"auth","token":...} first')
        return guard.check(cmd.token)
    except (ProtocolError, TokenError) as exc:
        if isinstance(exc, ProtocolError):  # a refused token is counted by guard.check
            guard.auth_failed(exc)
        stats.rejected_clients += 1
        await _say(websocket, error_frame(exc))
        await _close(websocket, CLOSE_POLICY, exc.code)
        return None


async def _serve(runtime: Runtime, websocket: WebSocket, send: Send, guard: Guard, grant: Grant) -> None:
    """An accepted, authorized client: query, subscription, writer and reader, close."""
    settings, hub, stats = runtime.settings, runtime.hub, runtime.stats
    try:
        options = parse_query(websocket.query_params, max_history=settings.history, intervals=hub.intervals)
    except ProtocolError as exc:
        stats.rejected_clients += 1
        await _say(websocket, error_frame(exc))
        await _close(websocket, CLOSE_POLICY, exc.code)
        return
    symbols, refused = grant.limit(options.symbols)
    if refused and not await _say(websocket, error_frame(_forbidden(refused))):
        return
    scope = anyio.CancelScope()
    try:
        async with hub.subscribe(symbols, history=options.history, on_end=scope.cancel) as sub:
            with scope:
                async with anyio.create_task_group() as tg:
                    gone = tg.cancel_scope.cancel
                    start_writer = partial(tg.start_soon, _writer, send, sub, options.batch, stats, gone)
                    direct = _direct_channel(websocket.scope)
                    if direct is not None:  # a writer only while something is queued
                        sub.go_direct(direct, start_writer)
                    else:  # one writer for the session, parked while nothing is queued
                        start_writer()
                    if grant.expires is not None:
                        tg.start_soon(_expire, sub, grant.expires, guard)
                    await _reader(websocket, hub, sub, stats, grant, guard)
                    if sub.flushing:  # closed for abuse: what was queued first (its writer ends the scope)
                        with anyio.move_on_after(CLOSE_TIMEOUT):
                            await anyio.sleep_forever()
                    tg.cancel_scope.cancel()
    except HubFull:
        stats.rejected_clients += 1
        await _close(websocket, CLOSE_TRY_AGAIN, "server full: too many clients")
        return
    except HubClosed:
        await _close(websocket, CLOSE_GOING_AWAY, "server shutting down")
        return
    # Unsubscribed by now: a client still being closed holds no queue, only its socket.
    if sub.ending is Ending.SLOW:
        await _close_slow(websocket, sub.close_reason)
    elif sub.ending is not None:
        await _close(websocket, CLOSE_CODES[sub.ending], sub.close_reason)


def _direct_channel(scope: Scope) -> DirectWrite | None:
    """The connection's direct path, when the server offers it (candlecast's own WebSocket
    protocol, without compression); otherwise every frame goes through ``send``."""
    offer = scope.get("extensions", {}).get(DIRECT)
    channel = offer.get("channel") if isinstance(offer, dict) else None
    return channel if isinstance(channel, DirectChannel) else None


def _open(websocket: WebSocket) -> bool:
    return (
        websocket.client_state is not WebSocketState.DISCONNECTED
        and websocket.application_state is WebSocketState.CONNECTED
    )


async def _say(websocket: WebSocket, text: str) -> bool:
    """Send one frame before the session's writer runs (an error before closing, or before
    subscribing); bounded like a close. False when the client is gone or stalled: the session
    then ends quietly, without a traceback."""
    if not _open(websocket):
        return False
    with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
        try:
            await websocket.send_text(text)
            return True
        except (WebSocketDisconnect, OSError, RuntimeError):  # uvicorn's ClientDisconnected is an OSError
            return False
    return False


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Send a close frame; shielded (it runs during cancellation too) and bounded."""
    if _open(websocket):
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await _send_close(websocket, code, reason)


async def _close_slow(websocket: WebSocket, reason: str) -> None:
    """Close a client that fell behind with 1013. uvicorn queues the close frame only once the
    client's socket drains below its high-water mark, so a client that reads nothing at all
    gets up to :data:`SLOW_CLOSE_TIMEOUT` to do so, then is dropped without one. Not shielded:
    a server shutdown cuts the wait short."""
    if _open(websocket):
        with anyio.move_on_after(SLOW_CLOSE_TIMEOUT):
            await _send_close(websocket, CLOSE_TRY_AGAIN, reason)


async def _send_close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code, reason[:120])
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the peer went away first


#: A subscribe refused for the client's snapshot budget (see :mod:`candlecast.fanout.hub`).
_SNAPSHOT_LIMIT = ProtocolError(
    "snapshot_limit", "too much history asked for too fast, or still unread: read what was sent, then retry"
)


def _forbidden(symbols: tuple[str, ...]) -> ProtocolError:
    listed = ", ".join(symbols[:20]) + (f" and {len(symbols) - 20} more" if len(symbols) > 20 else "")
    return ProtocolError("forbidden_symbols", f"your token does not allow: {listed}")


async def _expire(sub: Subscriber, expires: float, guard: Guard) -> None:
    """End the session when its token expires (close 4001)."""
    await anyio.sleep(max(0.0, expires - time.time()))
    guard.expired_sessions += 1
    sub.end(Ending.EXPIRED, "token expired")


async def _reader(websocket: WebSocket, hub: Hub, sub: Subscriber, stats: Stats, grant: Grant, guard: Guard) -> None:
    """Control messages until the client disconnects or abuses the protocol (too many bad
    messages, or too many past the rate limit: 1008)."""
    errors = limited = 0
    bucket = TokenBucket(CONTROL_RATE, CONTROL_BURST, time.monotonic())
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if not bucket.take(time.monotonic()):
            guard.rate_limited += 1
            limited += 1
            if limited > MAX_RATE_LIMITED:
                sub.end(Ending.ABUSE, "too many messages", flush=True)
                return
            sub.queue(Reply(error_frame(ProtocolError("rate_limited", f"at most {CONTROL_RATE:g} messages/s"))))
            continue
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        try:
            cmd = parse_command(data, hub.intervals)
        except ProtocolError as exc:
            stats.client_errors += 1
            errors += 1
            if errors > MAX_ERRORS:
                sub.end(Ending.ABUSE, "too many bad messages", flush=True)
                return
            sub.queue(Reply(error_frame(exc)))
            continue
        if cmd.op == "ping":
            sub.queue(Reply(pong_frame(time.time_ns() // 1_000_000, cmd.id)))
        elif cmd.op == "subscribe":
            symbols = cmd.symbols
            refused = grant.refused(symbols)
            if refused:  # named in an error frame; the allowed ones are still subscribed
                stats.client_errors += 1
                sub.queue(Reply(error_frame(_forbidden(refused))))
                symbols = tuple(s for s in symbols if s not in refused)
            # the reply goes first; the new symbols' snapshot follows it in the same queue
            after = None if sub.symbols is None else sub.symbols | frozenset(symbols)
            first = Reply(reply_frame("subscribed", after, cmd.id))
            if not hub.add_symbols(sub, symbols, first=first, now=time.monotonic()):
                stats.client_errors += 1
                sub.queue(Reply(error_frame(_SNAPSHOT_LIMIT)))
        elif cmd.op == "auth":
            # Already authorized (by the request, or no auth is configured): a token that verifies
            # is acknowledged silently, the session keeps the grant and expiry it started with
            # (no renewal in place: a fresh token means a new connection).
            try:
                guard.check(cmd.token)
            except TokenError as exc:
                stats.client_errors += 1
                errors += 1  # a refused token is a bad message: no endless guessing on one socket
                if errors > MAX_ERRORS:
                    sub.end(Ending.ABUSE, "too many bad messages", flush=True)
                    return
                sub.queue(Reply(error_frame(exc)))
        else:
            hub.remove_symbols(sub, cmd.symbols)
            sub.queue(Reply(reply_frame("unsubscribed", sub.symbols, cmd.id)))


async def _writer(send: Send, sub: Subscriber, batch: bool, stats: Stats, client_gone: Callable[[], object]) -> None:
    """Subscriber -> socket: every batch the subscriber hands over is written before the next
    wait, with no await between items other than the sends themselves. Ends when the hub ends
    the subscriber, or (calling ``client_gone``) when the socket fails."""
    next_batch = sub.next_batch
    latency = stats.latency
    try:
        while (items := await next_batch()) is not None:
            delivered = frames = 0
            texts: list[str] = []
            last: Update | None = None
            for item in items:
                if type(item) is Update:
                    last = item
                    delivered += 1
                    if not batch:
                        message = item.message
                        if message is None:  # built once per update, shared by every session
                            message = item.message = {"type": "websocket.send", "text": item.text}
                        await send(cast(Message, message))
                        frames += 1
                    else:
                        texts.append(item.text)
                        if len(texts) >= MAX_BATCH:
                            frames += await _send_batch(send, texts)
                            texts = []
                else:  # a reply: what was batched before it goes first
                    if texts:
                        frames += await _send_batch(send, texts)
                        texts = []
                    await send({"type": "websocket.send", "text": item.text})
            if texts:
                frames += await _send_batch(send, texts)
            stats.candles_out += delivered
            stats.frames_out += frames
            if last is not None:
                latency.observe(time.monotonic() - last.received)
    except (WebSocketDisconnect, OSError):  # uvicorn raises ClientDisconnected, an OSError
        client_gone()  # stop reading too


async def _send_batch(send: Send, texts: list[str]) -> int:
    """Send ``texts`` as one JSON array frame (a single object alone, as is)."""
    text = texts[0] if len(texts) == 1 else "[" + ",".join(texts) + "]"
    await send({"type": "websocket.send", "text": text})
    return 1
