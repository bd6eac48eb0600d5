"""Log redaction: tokens masked in query strings, headers and auth messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from candlecast.server.logs import redact
from tests.strategies import FAST


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('1.2.3.4:5 - "GET /api/symbols?token=abc.def HTTP/1.1" 200', '"GET /api/symbols?token=*** HTTP/1.1" 200'),
        ('"WebSocket /ws?symbols=A&token=s3cret&batch=1" [accepted]', "/ws?symbols=A&token=***&batch=1"),
        ("< Authorization: Bearer eyJ.x.y", "< Authorization: ***"),
        ("access_token=zz&x=1", "access_token=***&x=1"),
        ("""< TEXT '{"op":"auth","token":"eyJ.x.y"}' [33 bytes]""", '{"op":"auth","token":"***"}'),
    ],
)
def test_redact_masks_tokens_in_query_strings_and_headers(line: str, expected: str) -> None:
    """The token's value is gone; the rest of the line stays."""
    out = redact(line)
    assert expected in out
    for secret in ("abc.def", "s3cret", "eyJ.x.y", "zz"):
        assert secret not in out


@FAST
@given(secret=st.text(alphabet="QZXJKVqzxjkv0123456789", min_size=8, max_size=60), head=st.text(max_size=30))
def test_redact_removes_any_query_token(secret: str, head: str) -> None:
    line = f'{head} "GET /ws?a=1&token={secret}&b=2 HTTP/1.1" 200'
    out = redact(line)
    assert "token=***&b=2" in out
    if secret not in head:
        assert secret not in out
    assert redact(out) == out
