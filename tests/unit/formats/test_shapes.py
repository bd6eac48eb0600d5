"""The formats' shared shapes: RFC 3339 times as epoch milliseconds (pure)."""

from __future__ import annotations

import pytest

from candlecast.formats.shapes import rfc3339_ms
from candlecast.model.candle import MalformedMessage


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2023-10-04T15:25:00.000000000Z", 1696433100000),
        ("2023-10-04T15:25:00Z", 1696433100000),
        ("2023-10-04T15:25:00.1234Z", 1696433100123),
        ("2023-10-04T17:25:00.5+02:00", 1696433100500),
        ("2023-10-04T10:25:00-05:00", 1696433100000),
    ],
)
def test_rfc3339_times_become_epoch_ms(text: str, ms: int) -> None:
    assert rfc3339_ms(text, "t") == ms


@pytest.mark.parametrize("text", ["2023-10-04", "2023-13-04T15:25:00Z", "2023-10-04T15:25:00", 5])
def test_rfc3339_rejects_what_is_not_one(text: object) -> None:
    with pytest.raises(MalformedMessage):
        rfc3339_ms(text, "t")
