"""The /ws session's own rules: the close code for every way the hub ends a session, the writer
(subscriber -> ASGI send: one frame per update, or ``batch=1`` arrays split by replies and by
MAX_BATCH), and the listing of refused symbols. Real hub subscribers, one event loop, no sockets."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest

from candlecast.fanout.hub import Hub
from candlecast.fanout.items import Reply
from candlecast.fanout.stats import Stats
from candlecast.fanout.subscriber import Ending, Subscriber
from candlecast.model.candle import Candle
from candlecast.web import session
from candlecast.web.session import CLOSE_CODES, _forbidden, _writer
from candlecast.wire.encoder import ENCODER
from tests.conftest import DEADLINE


def bar(symbol: str, ot: int = 1) -> Candle:
    return Candle(symbol, ot, ot, 1.0, 2.0, 0.5, 1.5)


class Sent:
    """An ASGI ``send`` that keeps every message; fails with ``error`` once set."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.error: BaseException | None = None

    async def __call__(self, message: Any) -> None:
        if self.error is not None:
            raise self.error
        self.messages.append(message)

    def frames(self) -> list[Any]:
        """Each frame's text, decoded."""
        return [orjson.loads(m["text"]) for m in self.messages]


async def write(sub: Subscriber, *, batch: bool, stats: Stats, send: Sent | None = None) -> Sent:
    """Run the writer on what ``sub`` holds now, until it waits for more; then end the
    subscriber (as the hub would) and let the writer return."""
    send = send or Sent()
    gone: list[int] = []
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_writer, send, sub, batch, stats, lambda: gone.append(1))
            await anyio.wait_all_tasks_blocked()
            sub.end(Ending.SHUTDOWN, "test over")
    assert gone == []
    return send


# -- close codes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ending", "code"),
    [(Ending.SLOW, 1013), (Ending.SHUTDOWN, 1001), (Ending.ABUSE, 1008), (Ending.EXPIRED, 4001)],
)
def test_close_code_of_each_ending_is_the_documented_one(ending: Ending, code: int) -> None:
    """1013 try again later, 1001 going away, 1008 policy, 4001 token expired."""
    assert CLOSE_CODES[ending] == code


def test_close_codes_name_every_ending() -> None:
    """A new way to end a session cannot be added without its close code."""
    assert set(CLOSE_CODES) == set(Ending)


# -- the writer -----------------------------------------------------------------------------------------


async def test_writer_sends_one_frame_per_update_and_builds_each_message_once() -> None:
    """Unbatched: a frame per update, the ASGI message kept on the update for the next session."""
    hub, stats = Hub(stats=Stats(), encoder=ENCODER), Stats()
    async with hub.subscribe(None) as one, hub.subscribe(None) as two:
        updates = [hub.publish(bar(s), 0.0) for s in ("A", "B")]
        first = await write(one, batch=False, stats=stats)
        second = await write(two, batch=False, stats=stats)
    assert [f["s"] for f in first.frames()] == ["A", "B"]
    assert all(a is b for a, b in zip(first.messages, second.messages, strict=True))
    assert [u.message if u else None for u in updates] == first.messages
    assert (stats.candles_out, stats.frames_out) == (4, 4)


async def test_writer_with_batch_sends_one_array_frame_and_a_lone_update_as_it_is() -> None:
    """``batch=1``: what one wait hands over goes as one JSON array; a single update alone, bare."""
    hub, stats = Hub(stats=Stats(), encoder=ENCODER), Stats()
    async with hub.subscribe(None) as sub:
        for s in ("A", "B", "C"):
            hub.publish(bar(s), 0.0)
        many = await write(sub, batch=True, stats=stats)
    async with hub.subscribe(frozenset({"A"})) as sub:  # its snapshot: the one A bar
        alone = await write(sub, batch=True, stats=stats)
    assert [[c["s"] for c in f] for f in many.frames()] == [["A", "B", "C"]]
    assert [f["s"] for f in alone.frames()] == ["A"]
    assert (stats.candles_out, stats.frames_out) == (4, 2)


async def test_writer_with_batch_sends_what_came_before_a_reply_first() -> None:
    """A reply ends the array being built: updates before it, the reply, the updates after."""
    hub, stats = Hub(stats=Stats(), encoder=ENCODER), Stats()
    async with hub.subscribe(None) as sub:
        hub.publish(bar("A"), 0.0)
        hub.publish(bar("B"), 0.0)
        sub.queue(Reply('{"op":"pong"}'))
        hub.publish(bar("C"), 0.0)
        sent = await write(sub, batch=True, stats=stats)
    frames = sent.frames()
    assert [[c["s"] for c in frames[0]], frames[1], frames[2]["s"]] == [["A", "B"], {"op": "pong"}, "C"]
    assert (stats.candles_out, stats.frames_out) == (3, 2)  # a reply is not a candle frame


async def test_writer_with_batch_splits_arrays_at_max_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """No array frame holds more than MAX_BATCH candles."""
    monkeypatch.setattr(session, "MAX_BATCH", 2)
    hub, stats = Hub(stats=Stats(), encoder=ENCODER), Stats()
    async with hub.subscribe(None) as sub:
        for s in ("A", "B", "C", "D", "E"):
            hub.publish(bar(s), 0.0)
        sent = await write(sub, batch=True, stats=stats)
    frames = sent.frames()
    assert [[c["s"] for c in f] for f in frames[:2]] == [["A", "B"], ["C", "D"]] and frames[2]["s"] == "E"
    assert stats.frames_out == 3


async def test_writer_tells_the_session_when_the_client_is_gone() -> None:
    """A send that fails (uvicorn's ClientDisconnected is an OSError) ends the writer and calls
    ``client_gone``, so the session stops reading too."""
    hub, stats = Hub(stats=Stats(), encoder=ENCODER), Stats()
    send = Sent()
    send.error = OSError("gone")
    gone = anyio.Event()
    async with hub.subscribe(None) as sub:
        hub.publish(bar("A"), 0.0)
        with anyio.fail_after(DEADLINE):
            await _writer(send, sub, False, stats, gone.set)
    assert gone.is_set() and send.messages == [] and stats.candles_out == 0


# -- refused symbols ----------------------------------------------------------------------------------


def test_forbidden_lists_every_refused_symbol_up_to_twenty() -> None:
    exc = _forbidden(("AAA", "BBB"))
    assert exc.code == "forbidden_symbols"
    assert exc.detail == "your token does not allow: AAA, BBB"


def test_forbidden_lists_twenty_and_counts_the_rest() -> None:
    """A long refusal stays one short line: the first twenty, then how many more."""
    symbols = tuple(f"S{i:02}" for i in range(25))
    detail = _forbidden(symbols).detail
    assert detail == "your token does not allow: " + ", ".join(symbols[:20]) + " and 5 more"
    assert _forbidden(symbols[:20]).detail.endswith("S19")
