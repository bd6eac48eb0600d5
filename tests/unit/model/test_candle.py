"""The candle's wire encoding and parse's own checks (JSON, size): pure, table-like."""

from __future__ import annotations

import orjson
import pytest

from candlecast.formats.seed import parse_seed
from candlecast.model.candle import (
    MAX_MESSAGE_BYTES,
    Candle,
    MalformedMessage,
    encode,
    parse,
)


def test_encode_keeps_wire_key_order_and_omits_unknown_volume() -> None:
    assert encode(Candle("A", 2, 1, 1.0, 2.0, 0.5, 1.5)) == b'{"s":"A","t":2,"ot":1,"o":1.0,"h":2.0,"l":0.5,"c":1.5}'
    assert list(orjson.loads(encode(Candle("A", 2, 1, 1.0, 2.0, 0.5, 1.5, 7.0)))) == "s t ot o h l c v".split()


def test_parse_rejects_bad_json_and_oversize() -> None:
    with pytest.raises(MalformedMessage) as exc:
        parse(parse_seed, b"{nope")
    assert exc.value.reason == "json"
    with pytest.raises(MalformedMessage) as exc:
        parse(parse_seed, b" " * (MAX_MESSAGE_BYTES + 1))
    assert exc.value.reason == "oversize"
