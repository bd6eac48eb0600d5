"""One rule per concept: the symbol, boolean and epoch rules, and that every reader uses them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from candlecast.model.candle import MalformedMessage, make_candle
from candlecast.model.rules import EPOCH_MS_ABOVE, epoch_seconds, is_symbol, parse_bool
from candlecast.settings import Settings, SettingsError
from candlecast.wire.protocol import ProtocolError, parse_command, parse_query
from tests.strategies import FAST

SYMBOLS = [
    ("BTCUSD", True),
    ("EUR/USD", True),
    ("btcusdt@kline_1m", False),
    ("BTC-USDT", True),
    ("ÄÖÜ", True),
    ("S" * 32, True),
    ("S" * 33, False),
    ("", False),
    ("A B", False),
    (" A", False),
    ("A,B", False),
    ("A\tB", False),
    ("A\n", False),
]


@pytest.mark.parametrize(("text", "ok"), SYMBOLS)
def test_symbol_rule_is_the_same_for_settings_formats_and_clients(text: str, ok: bool) -> None:
    """A symbol valid in one place is valid in all three, and only then."""
    assert is_symbol(text) is ok
    try:
        Settings(symbols=(text,))
        settings_ok = True
    except SettingsError:
        settings_ok = False
    try:
        make_candle(text, 1, 1, 1.0, 1.0, 1.0, 1.0)
        format_ok = True
    except MalformedMessage:
        format_ok = False
    try:
        parse_command(orjson.dumps({"op": "subscribe", "symbols": [text]}))
        protocol_ok = True
    except ProtocolError:
        protocol_ok = False
    assert (settings_ok, format_ok, protocol_ok) == (ok, ok, ok)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", True), ("true", True), (" YES ", True), ("on", True), ("0", False), ("off", False), ("", False)],
)
def test_boolean_words_mean_the_same_in_settings_and_queries(text: str, value: bool) -> None:
    assert parse_bool(text) is value
    assert parse_query({"batch": text}, max_history=1).batch is value


def test_unknown_boolean_word_is_refused() -> None:
    with pytest.raises(ValueError, match="true or false"):
        parse_bool("perhaps")
    with pytest.raises(ProtocolError):
        parse_query({"batch": "perhaps"}, max_history=1)


def test_epoch_cut_off_tells_milliseconds_from_seconds() -> None:
    assert EPOCH_MS_ABOVE == 1e11
    assert epoch_seconds(1_700_000_000_000) == 1_700_000_000.0  # ms
    assert epoch_seconds(1_700_000_000) == 1_700_000_000.0  # s
    app_js = (Path(__file__).parents[3] / "service/candlecast/static/app.js").read_text()
    assert "EPOCH_MS_ABOVE = 1e11" in app_js, "the dashboard must use the same cut-off"


@FAST
@given(text=st.text(max_size=20))
def test_parse_bool_returns_a_bool_or_raises_value_error(text: str) -> None:
    try:
        assert isinstance(parse_bool(text), bool)
    except ValueError:
        pass
