"""The normalizer: a format's candles, malformed messages counted and logged at a limited rate,
and a plug-in that breaks the contract counted, not raised."""

from __future__ import annotations

import logging

import pytest

from candlecast.formats.registry import BUILTIN as FORMATS
from candlecast.formats.registry import resolve
from candlecast.model.candle import Candle
from candlecast.upstream.source import Normalizer
from tests.unit.formats.test_registry import ACME


def test_normalizer_counts_and_rate_limits_its_log(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    norm = Normalizer(FORMATS["seed"], clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="candlecast.upstream"):
        for _ in range(5):
            assert norm("{bad") == ()
        now[0] = 1.5
        assert norm("{bad") == ()
    assert norm.malformed["json"] == 6
    records = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(records) == 2
    assert "4 more since the last report" in records[1].getMessage()
    good = norm(b'{"symbol":"A","time":1,"candles":[1,1,1,1,1]}')
    assert good == [Candle("A", 1, 1, 1.0, 1.0, 1.0, 1.0)]


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


def test_normalizer_takes_okx_pong_as_a_heartbeat_not_malformed_json() -> None:
    """OKX answers the text ``ping`` with the text ``pong`` (docs-v5, "WebSocket / Overview"): no
    candle and nothing counted, received or replayed; any other text is still ``json``."""
    norm = Normalizer(FORMATS["okx"])
    assert norm("pong") == () and norm(b"pong") == () and norm.feed("pong") == ()
    assert norm.is_heartbeat("pong") and not norm.is_heartbeat("ping")
    assert sum(norm.malformed.values()) == 0
    assert norm("pongs") == ()
    assert norm.malformed["json"] == 1


def test_normalizer_of_a_format_without_a_heartbeat_counts_pong_as_json() -> None:
    norm = Normalizer(FORMATS["binance"])
    assert norm.heartbeat is None and not norm.is_heartbeat("pong")
    assert norm("pong") == ()
    assert norm.malformed["json"] == 1
