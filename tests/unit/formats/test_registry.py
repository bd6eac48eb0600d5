"""--format names: built-ins, import strings, entry points (real importlib.metadata over a
dist-info directory on sys.path), the one-line errors, the history halves found by name, and
the property every built-in format keeps: for any input, candles or MalformedMessage."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from candlecast import formats
from candlecast.formats.binance import BinanceHistory, parse_binance
from candlecast.formats.contract import HistoryFormat
from candlecast.formats.okx import parse_okx
from candlecast.formats.registry import ENTRY_POINT_GROUP, EXAMPLES, HISTORY, FormatError, resolve
from candlecast.model.candle import Candle, MalformedMessage, parse
from candlecast.upstream.source import Normalizer
from tests import example_format
from tests.strategies import FAST, dumps, json_values, objects

# -- the stream half by name -----------------------------------------------------------------------


ACME = (
    b'{"type":"bars","symbol":"BTC-EUR","sent":9,"bars":[{"start":1,"o":"1","h":"2","l":"0.5","c":"1.5"},'
    b'{"start":2,"o":"1.5","h":"1.5","l":"1","c":"1"}]}'
)


def install_plugin(site: Path, name: str = "acme", target: str = "acme_candles:parse") -> None:
    """A distribution as an installer leaves it: the module plus its dist-info with the entry point."""
    shutil.copyfile(Path(example_format.__file__), site / "acme_candles.py")
    info = site / "acme_candles-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-candles\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {target}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtin_names_resolve_in_any_case() -> None:
    assert resolve("binance") is parse_binance
    assert resolve(" OKX ") is parse_okx
    assert set(formats.BUILTIN) == {"seed", "binance", "candle", "bybit", "okx", "kraken"}


def test_an_import_string_names_a_plugin() -> None:
    assert resolve("tests.example_format:parse") is example_format.parse


def test_an_entry_point_names_a_plugin(site: Path) -> None:
    install_plugin(site)
    parse = resolve("acme")
    assert parse.__module__ == "acme_candles"
    assert [c.ot for c in Normalizer(parse)(ACME)] == [1, 2]


def test_a_builtin_name_wins_over_an_entry_point(site: Path) -> None:
    install_plugin(site, name="okx")
    assert resolve("okx") is parse_okx


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("nosuchformat", "unknown format 'nosuchformat': not built in (seed, binance, candle, bybit, okx, kraken)"),
        ("no_such_module_xyz:parse", "cannot import no_such_module_xyz: ModuleNotFoundError: No module named"),
        ("tests.example_format:nope", "tests.example_format has no attribute 'nope'"),
        ("tests.example_format:annotations", "is a _Feature, not a function"),
        ("tests.example_format:", "an import string looks like package.module:function"),
        ("a b:c", "an import string looks like package.module:function"),
    ],
)
def test_a_bad_format_is_one_clear_line(name: str, says: str) -> None:
    with pytest.raises(FormatError) as exc:
        resolve(name)
    assert says in str(exc.value)
    assert "\n" not in str(exc.value)


def test_an_entry_point_that_fails_to_load_is_one_clear_line(site: Path) -> None:
    install_plugin(site, target="acme_candles:missing")
    with pytest.raises(
        FormatError, match=re.escape("format 'acme' (entry point acme_candles:missing from acme-candles)")
    ):
        resolve("acme")


# -- the history half by name ----------------------------------------------------------------------


def test_history_builtin_formats_have_a_history_half() -> None:
    """binance, bybit, okx and kraken have one; seed and candle do not."""
    for name in ("binance", "bybit", "okx", "kraken", "BINANCE"):
        half = formats.history(name)
        assert isinstance(half, HistoryFormat)
    assert formats.history("seed") is None
    assert formats.history("candle") is None


def test_history_plugin_without_a_history_attribute_has_none() -> None:
    """A plug-in format that is a plain function starts empty, as before."""
    assert formats.history("tests.example_format:parse") is None


def test_history_plugin_history_attribute_is_found_and_checked() -> None:
    """A plug-in provides its half as the ``history`` attribute of its callable."""
    assert isinstance(formats.history("tests.unit.formats.test_registry:with_history"), BinanceHistory)
    with pytest.raises(formats.FormatError, match="not a history half"):
        formats.history("tests.unit.formats.test_registry:with_bad_history")


class _WithHistory:
    history = BinanceHistory()

    def __call__(self, msg: object) -> list[Candle]:
        return []


class _WithBadHistory:
    history = "nope"

    def __call__(self, msg: object) -> list[Candle]:
        return []


with_history = _WithHistory()


with_bad_history = _WithBadHistory()


def test_every_builtin_half_is_registered() -> None:
    assert set(HISTORY) == {"binance", "bybit", "okx", "kraken"}


# -- the examples ----------------------------------------------------------------------------------


def test_every_example_subscribe_message_is_json_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    for name, (url, subscribe) in EXAMPLES.items():
        assert orjson.loads(subscribe)
        assert url in readme and subscribe in readme, name


# -- any input: candles or MalformedMessage --------------------------------------------------------


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
