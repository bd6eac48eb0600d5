"""The plug-in contract: the subscribe message, and the documented example plug-in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from candlecast.formats.binance import BinanceHistory
from candlecast.formats.contract import DEFAULT_RATE, Rate, Request, limited_of, rate_of, subscribe_message
from tests import example_format

ROOT = Path(__file__).resolve().parents[3]


def test_subscribe_message_decodes_or_gives_none() -> None:
    assert subscribe_message('{"op":"subscribe"}') == {"op": "subscribe"}
    assert subscribe_message(None) is None
    assert subscribe_message("{") is None


def test_the_docs_show_the_example_plugin_verbatim() -> None:
    doc = (ROOT / "docs" / "formats.md").read_text()
    source = Path(example_format.__file__).read_text()
    assert source in doc


class _Declares(BinanceHistory):
    def rate(self, request: Request) -> Rate:
        return Rate(2, 0.5, "x")

    def limited(self, status: int, headers: Mapping[str, str], body: object, now_ms: int) -> float | None:
        return -1.0 if status == 599 else 3 if status == 403 else None


class _Undeclared:  # an older plug-in's half: no rate, no limited
    pass


class _Bogus:
    rate = "fast"

    def limited(self, status: int, headers: Mapping[str, str], body: object, now_ms: int) -> object:
        return "soon"


def test_rate_of_reads_the_declared_rate_or_the_default() -> None:
    """A declared Rate is used; none, or something else, is DEFAULT_RATE (5 / s)."""
    request = Request("/x")
    assert rate_of(_Declares(), request) == Rate(2, 0.5, "x")
    assert rate_of(_Undeclared(), request) is DEFAULT_RATE == Rate(5, 1.0)  # type: ignore[arg-type]
    assert rate_of(_Bogus(), request) is DEFAULT_RATE  # type: ignore[arg-type]


def test_limited_of_reads_the_declared_hold_or_none() -> None:
    """Seconds as a float (never negative); None when undeclared or not a number."""
    assert limited_of(_Declares(), 403, {}, None, 0) == 3.0
    assert limited_of(_Declares(), 599, {}, None, 0) == 0.0
    assert limited_of(_Declares(), 200, {}, None, 0) is None
    assert limited_of(_Undeclared(), 429, {}, None, 0) is None  # type: ignore[arg-type]
    assert limited_of(_Bogus(), 429, {}, None, 0) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("requests", "window"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_a_rate_needs_a_request_and_a_window(requests: int, window: float) -> None:
    with pytest.raises(ValueError, match="a rate needs"):
        Rate(requests, window)
