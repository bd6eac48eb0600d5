"""Property-based tests of every pure parser: for any input, a value or the module's own typed
error, never anything else (no TypeError, KeyError, IndexError, OverflowError...)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candlecast import formats
from candlecast import settings as settings_mod
from candlecast.access.tokens import Grant, TokenError, Verifier
from candlecast.model.candle import Candle, MalformedMessage, parse
from candlecast.model.rules import parse_bool
from candlecast.server.logs import redact
from candlecast.settings import Settings, SettingsError, interval_set
from candlecast.wire.protocol import Command, Options, ProtocolError, parse_command, parse_query

SECRET = "k" * 40
NOW = 1_700_000_000.0
INTERVALS = interval_set(Settings())
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values, with the awkward ones: huge and non-finite numbers, nesting, unicode.
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
keys = st.sampled_from(["op", "symbols", "id", "token", "symbol", "time", "candles", "stream", "data", "k", "e"])
objects = st.dictionaries(keys | st.text(max_size=8), json_values, max_size=8)


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits: orjson refuses them, so send their text
        return str(value).encode()


# -- upstream formats -----------------------------------------------------------------------------


@FAST
@given(name=st.sampled_from(sorted(formats.BUILTIN)), raw=st.binary(max_size=200) | st.text(max_size=200))
def test_every_format_parses_any_bytes_or_raises_malformed(name: str, raw: bytes | str) -> None:
    try:
        out = parse(formats.BUILTIN[name], raw)
    except MalformedMessage:
        return
    assert all(isinstance(c, Candle) for c in out)


@FAST
@given(name=st.sampled_from(sorted(formats.BUILTIN)), msg=objects | json_values)
def test_every_format_parses_any_json_or_raises_malformed(name: str, msg: Any) -> None:
    try:
        out = parse(formats.BUILTIN[name], dumps(msg))
    except MalformedMessage:
        return
    for c in out:
        assert isinstance(c, Candle) and math.isfinite(c.o) and c.l <= min(c.o, c.c) <= max(c.o, c.c) <= c.h


# -- client protocol -------------------------------------------------------------------------------


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


# -- tokens ------------------------------------------------------------------------------------------


def signed(header: dict[str, Any], payload: bytes) -> str:
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(dumps(header)) + b"." + b64(payload)
    return (signing_input + b"." + b64(hmac.new(SECRET.encode(), signing_input, hashlib.sha256).digest())).decode()


VERIFIER = Verifier(tokens=("static-token",), secret=SECRET, audience="cc", leeway=5)


@FAST
@given(token=st.none() | st.text(max_size=400) | st.text(alphabet="abcXYZ019-_.=", max_size=400))
def test_verify_any_string_returns_a_grant_or_raises_token_error(token: str | None) -> None:
    try:
        grant = VERIFIER.verify(token, NOW)
    except TokenError as exc:
        assert exc.code
        if token:  # the detail never echoes the token (a short one may be a word of the text)
            assert token not in exc.detail or len(token) < 8
        return
    assert isinstance(grant, Grant)


@FAST
@given(claims=objects, header=st.dictionaries(st.sampled_from(["kid", "typ", "cty", "x"]), json_scalars, max_size=3))
def test_verify_any_signed_claims_returns_a_grant_or_raises_token_error(
    claims: dict[str, Any], header: dict[str, Any]
) -> None:
    token = signed({**header, "alg": "HS256"}, dumps(claims))  # by hand: any header, any payload
    try:
        grant = VERIFIER.verify(token, NOW)
    except TokenError:
        return
    assert isinstance(grant, Grant) and grant.expires is not None


@FAST
@given(
    symbols=st.one_of(st.none(), st.frozensets(st.text(min_size=1, max_size=6), max_size=5)),
    wanted=st.one_of(st.none(), st.frozensets(st.text(min_size=1, max_size=6), max_size=5)),
)
def test_grant_limit_never_lets_a_refused_symbol_through(
    symbols: frozenset[str] | None, wanted: frozenset[str] | None
) -> None:
    grant = Grant(symbols)
    allowed, refused = grant.limit(wanted)
    if allowed is not None:
        assert all(grant.allows(s) for s in allowed)
    assert not any(grant.allows(s) for s in refused)
    if wanted is not None:
        assert allowed is not None and allowed | frozenset(refused) == wanted


# -- settings and value rules --------------------------------------------------------------------------


@FAST
@given(name=st.sampled_from(sorted(settings_mod._OPTIONS)), text=st.text(max_size=40))
def test_every_settings_converter_returns_a_value_or_raises_value_error(name: str, text: str) -> None:
    convert = settings_mod._OPTIONS[name][0]
    try:
        convert(text)
    except ValueError:
        pass


#: Options whose value names something to open or import; the others are loaded whole below.
_TOUCHES_FILES = {"format", "jwt_public_key", "replay_file", "chart_js", "upstream", "source"}


@FAST
@given(
    values=st.dictionaries(
        st.sampled_from(sorted(set(settings_mod._OPTIONS) - _TOUCHES_FILES)), st.text(max_size=40), max_size=4
    )
)
def test_settings_load_returns_settings_or_raises_settings_error(values: dict[str, str]) -> None:
    try:
        loaded = settings_mod.load(values, {})
    except SettingsError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(loaded, Settings)


@FAST
@given(text=st.text(max_size=20))
def test_parse_bool_returns_a_bool_or_raises_value_error(text: str) -> None:
    try:
        assert isinstance(parse_bool(text), bool)
    except ValueError:
        pass


@FAST
@given(secret=st.text(alphabet="QZXJKVqzxjkv0123456789", min_size=8, max_size=60), head=st.text(max_size=30))
def test_redact_removes_any_query_token(secret: str, head: str) -> None:
    line = f'{head} "GET /ws?a=1&token={secret}&b=2 HTTP/1.1" 200'
    out = redact(line)
    assert "token=***&b=2" in out
    if secret not in head:
        assert secret not in out
    assert redact(out) == out
