"""The recorder's line format."""

from __future__ import annotations

import orjson

from candlecast.upstream.record import record_line


def test_record_line_keeps_json_as_json() -> None:
    assert orjson.loads(record_line(1.5, '{"a":1}')) == {"at": 1.5, "msg": {"a": 1}}
    assert orjson.loads(record_line(2.0, b"raw")) == {"at": 2.0, "msg": "raw"}
