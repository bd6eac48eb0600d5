"""The /ws client protocol: query options and control messages."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from candlecast.settings import Settings, interval_set
from candlecast.wire.protocol import (
    MAX_COMMAND_BYTES,
    Command,
    Options,
    ProtocolError,
    error_frame,
    parse_command,
    parse_query,
    pong_frame,
    reply_frame,
)
from tests.strategies import FAST, dumps, objects


def test_query_defaults_to_every_symbol_latest_only_unbatched() -> None:
    assert parse_query({}, max_history=10) == Options(symbols=None, history=0, batch=False)


def test_query_reads_symbols_history_and_batch() -> None:
    opts = parse_query({"symbols": "A, B,,A", "history": "5", "batch": "1"}, max_history=10)
    assert opts == Options(symbols=frozenset({"A", "B"}), history=5, batch=True)


def test_query_history_is_capped_at_what_the_server_keeps() -> None:
    assert parse_query({"history": "5000"}, max_history=10).history == 10


def test_query_star_means_every_symbol() -> None:
    assert parse_query({"symbols": "*"}, max_history=1).symbols is None


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"history": "x"}, "bad_query"),
        ({"history": "-1"}, "bad_query"),
        ({"batch": "maybe"}, "bad_query"),
        ({"symbols": ",".join(f"S{i}" for i in range(300))}, "too_many_symbols"),
        ({"symbols": "A" * 40}, "bad_symbol"),
    ],
)
def test_query_errors_name_the_problem(query: dict[str, str], code: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_query(query, max_history=10)
    assert exc.value.code == code


def test_command_parses_each_op_and_keeps_the_id() -> None:
    assert parse_command('{"op":"ping","id":3}') == Command("ping", (), 3)
    assert parse_command(b'{"op":"subscribe","symbols":["A","B","A"]}') == Command("subscribe", ("A", "B"))
    assert parse_command('{"op":"unsubscribe","symbols":["A"],"id":"x"}') == Command("unsubscribe", ("A",), "x")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("nope", "bad_json"),
        ("[]", "bad_message"),
        ('{"op":"ping","id":true}', "bad_message"),
        ('{"op":"ping","id":[1]}', "bad_message"),
        ('{"op":"subscribe"}', "bad_message"),
        ('{"op":"subscribe","symbols":[]}', "bad_message"),
        ('{"op":"subscribe","symbols":[""]}', "bad_symbol"),
        ('{"op":"fly"}', "unknown_op"),
        ("{}", "unknown_op"),
        ("x" * (MAX_COMMAND_BYTES + 1), "too_large"),
    ],
)
def test_command_errors_name_the_problem(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_command(text)
    assert exc.value.code == code
    assert exc.value.detail


def test_frames_are_json_with_the_op_first() -> None:
    reply = orjson.loads(reply_frame("subscribed", frozenset({"B", "A"}), 1))
    assert reply == {"op": "subscribed", "symbols": ["A", "B"], "id": 1}
    assert orjson.loads(reply_frame("subscribed", None)) == {"op": "subscribed", "symbols": "*"}
    assert orjson.loads(pong_frame(5, "p")) == {"op": "pong", "t": 5, "id": "p"}
    error = orjson.loads(error_frame(ProtocolError("bad_json", "d")))
    assert error == {"op": "error", "error": "bad_json", "detail": "d"}


# -- any input: a command (or options) or ProtocolError --------------------------------------------


INTERVALS = interval_set(Settings())


@FAST
@given(data=st.binary(max_size=300) | st.text(max_size=300) | objects.map(dumps), with_intervals=st.booleans())
def test_parse_command_returns_a_command_or_raises_protocol_error(data: bytes | str, with_intervals: bool) -> None:
    try:
        cmd = parse_command(data, INTERVALS if with_intervals else None)
    except ProtocolError as exc:
        assert exc.code and exc.detail
        return
    assert isinstance(cmd, Command) and cmd.op in ("subscribe", "unsubscribe", "ping", "auth")


@FAST
@given(
    query=st.dictionaries(st.sampled_from(["symbols", "history", "batch", "token", "x"]), st.text(max_size=60)),
    max_history=st.integers(1, 100_000),
    with_intervals=st.booleans(),
)
def test_parse_query_returns_options_or_raises_protocol_error(
    query: dict[str, str], max_history: int, with_intervals: bool
) -> None:
    try:
        options = parse_query(query, max_history=max_history, intervals=INTERVALS if with_intervals else None)
    except ProtocolError:
        return
    assert isinstance(options, Options) and 0 <= options.history <= max_history
