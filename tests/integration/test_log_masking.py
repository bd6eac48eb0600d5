"""What a real ``python -m candlecast`` writes to its stdout and stderr (uvicorn's own logging
config and formatters, candlecast's root handler) while clients do their worst: no access token
under any spelling of its key, every access line whole and well-formed, and client text (a
close reason, a header, a path) escaped and bounded, one record one line.

Secrets reach the process through its environment, never its command line."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import jwt
import pytest

from tests.integration.harness import candlecast_process as run
from tests.integration.harness import client, synced

SECRET = "jwt-secret-" + "fedcba9876543210" * 3
STATIC = "static-token-MQW7Z"


def mint(**claims: Any) -> str:
    body: dict[str, Any] = {"sub": "alice", "exp": time.time() + 300, "symbols": ["*"], **claims}
    return jwt.encode(body, SECRET, algorithm="HS256")


def access_lines(lines: list[str], target: str) -> list[str]:
    """uvicorn's access lines for ``target`` (``GET /path?query`` or ``WebSocket /path?query``)."""
    return [line for line in lines if f'- "{target}' in line]


#: Keys Starlette decodes to ``token`` (``parse_qsl``: percent escapes, ``+``), so each one
#: authenticates: the log must mask them all.
ACCEPTED_KEYS = ("token", "%74oken", "t%6Fken", "tok%65n", "%74%6F%6B%65%6E")
#: Keys no route reads (Starlette's are case-sensitive) whose values are masked all the same.
REFUSED_KEYS = ("TOKEN", "Token", "access_token", "%61ccess_token")


async def test_a_token_under_any_spelling_of_its_key_never_reaches_the_log() -> None:
    token = mint()
    async with run("--symbols", "AAA", "--log-level", "debug", jwt_secret=SECRET, tokens=STATIC) as (addr, lines):
        async with httpx.AsyncClient(base_url=f"http://{addr}") as http:
            for key in ACCEPTED_KEYS:
                for secret in (token, STATIC):
                    r = await http.get(f"/api/symbols?{key}={secret}")
                    assert r.status_code == 200, key  # it authenticates: masking it matters
            for key in REFUSED_KEYS:
                assert (await http.get(f"/api/symbols?{key}={token}")).status_code == 401, key
        for key in ACCEPTED_KEYS:
            async with client(f"ws://{addr}/ws?symbols=AAA&{key}={token}") as ws:
                await synced(ws)
        # the auth message with its key escaped in the JSON: it authenticates too
        async with client(f"ws://{addr}/ws?symbols=AAA") as ws:
            await ws.send('{"op":"auth","\\u0074oken":"' + token + '"}')
            await synced(ws)
    text = "\n".join(lines)
    # the requests were logged, each with its key and a masked value ...
    for key in (*ACCEPTED_KEYS, *REFUSED_KEYS):
        assert access_lines(lines, f"GET /api/symbols?{key}=*** HTTP/1.1"), key
    for key in ACCEPTED_KEYS:
        assert access_lines(lines, f"WebSocket /ws?symbols=AAA&{key}=***"), key
    assert '< TEXT \'{"op":"auth","\\\\u0074oken":"***"' in text  # the debug frame dump
    # ... and the token appears nowhere, whole or in part (a frame dump keeps a long text's
    # first 48 and last 24 characters)
    signature = token.rsplit(".", 1)[1]
    for secret in (token, signature, signature[-20:], STATIC, SECRET):
        assert secret not in text


async def test_masking_keeps_every_access_line_whole_and_well_formed() -> None:
    """With auth off nothing needs a token, yet ``token=`` in a query must not break the line."""
    async with run("--symbols", "AAA", "--log-level", "info") as (addr, lines):
        async with httpx.AsyncClient(base_url=f"http://{addr}") as http:
            for path in ("/healthz", "/api/symbols", "/nowhere"):
                await http.get(f"{path}?token=abc123&x=1")
        async with client(f"ws://{addr}/ws?symbols=AAA&token=abc123") as ws:
            await synced(ws)
    text = "\n".join(lines)
    assert "Logging error" not in text and "Traceback" not in text and "TypeError" not in text
    for target, status in (
        ("GET /healthz?token=***&x=1 HTTP/1.1", "200 OK"),
        ("GET /api/symbols?token=***&x=1 HTTP/1.1", "200 OK"),
        ("GET /nowhere?token=***&x=1 HTTP/1.1", "404 Not Found"),
    ):
        (found,) = access_lines(lines, target)
        assert re.fullmatch(rf'INFO: +127\.0\.0\.1:\d+ - "{re.escape(target)}" {status}', found), found
    (ws_line,) = access_lines(lines, "WebSocket /ws?symbols=AAA&token=***")
    assert re.fullmatch(r'INFO: +127\.0\.0\.1:\d+ - "WebSocket /ws\?symbols=AAA&token=\*\*\*" \[accepted\]', ws_line)
    assert "abc123" not in text


async def test_client_text_is_logged_escaped_and_bounded_one_record_one_line() -> None:
    """A close reason, a header and a path, each with control characters or far too long."""
    forged = 'INFO:     127.0.0.1:1 - "GET /admin HTTP/1.1" 200 OK'
    reason = "bye\r\n" + forged + "\x1b[2J"
    async with run("--symbols", "AAA", "--log-level", "debug") as (addr, lines):
        async with client(f"ws://{addr}/ws?symbols=AAA", additional_headers={"X-Probe": "a\tb"}) as ws:
            await synced(ws)
            await ws.close(1000, reason)
        async with httpx.AsyncClient(base_url=f"http://{addr}") as http:
            assert (await http.get("/api/" + "x" * 5000)).status_code == 404
    text = "\n".join(lines)
    assert forged not in lines and not any(line.startswith("INFO:     127.0.0.1:1 ") for line in lines)
    assert "\x1b" not in text and "\r" not in text and "\t" not in text
    # websockets' debug dump of the client's close frame (and of the server's echo), escaped
    closes = [line for line in lines if "< CLOSE 1000 (OK) bye" in line]
    assert closes and all("bye\\r\\nINFO:" in line and "\\x1b[2J" in line for line in closes), closes
    assert any("< x-probe: a\\tb" in line for line in lines)
    (long_line,) = access_lines(lines, "GET /api/xxxx")
    assert len(long_line) < 1000 and "chars]" in long_line  # the path was 5005 characters


@pytest.mark.parametrize("key", ["token", "%74oken"])
def test_key_spellings_are_what_starlette_reads(key: str) -> None:
    """The premise of the first test: Starlette reads ``%74oken=`` as ``token=``."""
    from starlette.datastructures import QueryParams

    assert QueryParams(f"{key}=v").get("token") == "v"
    assert QueryParams("TOKEN=v").get("token") is None
