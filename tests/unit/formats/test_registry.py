"""--format names: built-ins, import strings, entry points (real importlib.metadata over a
dist-info directory on sys.path), the one-line errors, and the normalizer's guard around plug-ins."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest

from candlecast import formats
from candlecast.formats.binance import parse_binance
from candlecast.formats.okx import parse_okx
from candlecast.formats.registry import ENTRY_POINT_GROUP, FormatError, resolve
from candlecast.model.candle import Candle
from candlecast.settings import Settings, SettingsError, check_format, load
from candlecast.upstream.source import Normalizer
from tests import example_format

ROOT = Path(__file__).resolve().parents[2]
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


def test_settings_resolve_the_format_once_and_name_the_flag() -> None:
    assert load({"format": "KRAKEN"}, {}).format == "kraken"
    assert load({}, {"CANDLECAST_FORMAT": "tests.example_format:parse"}).format == "tests.example_format:parse"
    Settings(format="nope.module:parse")  # building settings imports no plug-in; the start-up check does
    with pytest.raises(SettingsError) as exc:
        check_format(Settings(format="nope.module:parse"))
    assert str(exc.value).startswith("invalid setting --format (CANDLECAST_FORMAT): format 'nope.module:parse': ")


def test_normalizer_emits_every_candle_of_a_batch() -> None:
    assert [c.ot for c in Normalizer(resolve("tests.example_format:parse"))(ACME)] == [1, 2]


def test_normalizer_counts_a_plugin_that_breaks_the_contract(caplog: pytest.LogCaptureFixture) -> None:
    def raises(msg: object) -> list[Candle]:
        raise KeyError("oops")

    def returns_one(msg: object) -> list[Candle]:
        return Candle("A", 1, 1, 1.0, 1.0, 1.0, 1.0)  # type: ignore[return-value]  # the bug under test

    def returns_none(msg: object) -> list[Candle]:
        return None  # type: ignore[return-value]  # the bug under test

    with caplog.at_level(logging.WARNING, logger="candlecast.upstream"):
        for fmt in (raises, returns_one, returns_none):
            norm = Normalizer(fmt)
            assert norm(b"{}") == ()
            assert norm.malformed["format"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("raises raised KeyError: 'oops'" in m for m in messages)
    assert any("returns_one returned Candle, not a list of candles" in m for m in messages)
    assert any("returns_none returned NoneType" in m for m in messages)


def test_the_docs_show_the_example_plugin_verbatim() -> None:
    doc = (ROOT / "docs" / "formats.md").read_text()
    source = Path(example_format.__file__).read_text()
    assert source in doc
