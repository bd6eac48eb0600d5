"""Security and hardening against a real candlecast (uvicorn on a loopback port) and real
clients: signed tokens and their grants, secrets kept out of logs, prompt upstream reconnects,
and the limits on what a client can make the server do."""

from __future__ import annotations

import dataclasses
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from anyio.abc import ByteStream
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from candlecast.settings import Settings
from candlecast.wire.protocol import CLOSE_TOKEN_EXPIRED, CONTROL_BURST, MAX_ERRORS, MAX_RATE_LIMITED
from tests.conftest import DEADLINE
from tests.integration import harness
from tests.integration.harness import candlecast, candlecast_process, fake_broker, recv_json, seed, synced, ws_settings
from tests.integration.raw import PING, stalled_stream, upgrade

SECRET = "jwt-secret-" + "0123456789abcdef" * 3
SIM = Settings(rate=100, symbols=("AAA", "BBB", "CCC"), jwt_secret=SECRET, jwt_leeway=0)


def client(url: str, **kwargs: Any) -> AbstractAsyncContextManager[ClientConnection]:
    """The harness's client, but one that keeps reading: on a busy stream its close handshake is
    then prompt (a full receive queue would hide the server's close frame until a timeout)."""
    return harness.client(url, max_queue=None, **kwargs)


def mint(key: Any = SECRET, alg: str = "HS256", **claims: Any) -> str:
    body: dict[str, Any] = {"sub": "alice", "exp": time.time() + 300, "symbols": ["*"]}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg)


async def refused_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with client(url, **kwargs):
            pass
    return refused.value.response.status_code


async def closed_with(ws: ClientConnection) -> tuple[int, str, list[Any]]:
    """Read until the server closes: (code, reason, frames received before)."""
    frames: list[Any] = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frames.append(await recv_json(ws))
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason, frames


@contextmanager
def captured(*names: str, level: int = logging.DEBUG) -> Iterator[list[logging.LogRecord]]:
    """Every record the named loggers (and their children) handle, as emitted."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level)
    loggers = [logging.getLogger(n) for n in names]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


# -- signed tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (mint(exp=time.time() - 60, aud="candlecast"), "token_expired"),
        (mint(nbf=time.time() + 3600, aud="candlecast"), "token_not_yet_valid"),
        (mint(key="another-secret-" + "x" * 32, aud="candlecast"), "bad_signature"),
        (mint(aud="someone-else"), "bad_audience"),
        (mint(aud=None), "bad_audience"),
    ],
    ids=["expired", "not-yet-valid", "wrong-signature", "wrong-audience", "no-audience"],
)
async def test_bad_jwts_are_refused_in_every_way_they_can_be_offered(token: str, code: str) -> None:
    settings = dataclasses.replace(SIM, jwt_audience="candlecast")
    async with candlecast(settings) as cc:
        # in the query or a header: refused before the upgrade
        assert await refused_status(cc.ws_url(f"token={token}")) == 403
        assert await refused_status(cc.ws_url(), additional_headers={"Authorization": f"Bearer {token}"}) == 403
        # in the auth message: an error frame naming the reason, then 1008, and no data before
        async with client(cc.ws_url()) as ws:
            await ws.send(f'{{"op":"auth","token":"{token}"}}')
            close, _, frames = await closed_with(ws)
            assert close == 1008
            assert [f["error"] for f in frames] == [code]
        async with httpx.AsyncClient(base_url=cc.url) as http:
            r = await http.get("/api/symbols", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401 and r.json()["error"] == code
        assert await cc.metric(f'candlecast_auth_failures_total{{reason="{code}"}}') == 4
        good = mint(aud="candlecast")
        async with client(cc.ws_url(f"token={good}")) as ws:
            assert "s" in (await recv_json(ws))


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_public_key_tokens_are_verified_with_the_key_file(tmp_path: Path, alg: str) -> None:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    key = ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else rsa.generate_private_key(65537, 2048)
    pem = tmp_path / "issuer.pub.pem"
    pem.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    settings = Settings(rate=100, symbols=("AAA", "BBB"), jwt_public_key=str(pem), jwt_issuer="https://app.example")
    async with candlecast(settings) as cc:
        good = mint(key, alg, iss="https://app.example", symbols=["BBB"])
        async with client(cc.ws_url(), additional_headers={"Authorization": f"Bearer {good}"}) as ws:
            assert {(await recv_json(ws))["s"] for _ in range(5)} == {"BBB"}
        other = ec.generate_private_key(ec.SECP256R1())
        assert await refused_status(cc.ws_url(f"token={mint(other, 'ES256', iss='https://app.example')}")) == 403
        assert await refused_status(cc.ws_url(f"token={mint(key, alg, iss='https://evil.example')}")) == 403
        # the public key is no HMAC secret: an HS256 token is refused whatever it was signed with
        assert await refused_status(cc.ws_url(f"token={mint(iss='https://app.example')}")) == 403


async def test_a_restricted_token_receives_only_its_symbols_over_ws_and_api() -> None:
    token = mint(symbols=["AAA", "CCC"])
    async with candlecast(SIM) as cc:
        # query asks for AAA and BBB: BBB is named in an error frame, AAA streams
        async with client(cc.ws_url(f"symbols=AAA,BBB&batch=0&token={token}")) as ws:
            first = await recv_json(ws)
            assert first["op"] == "error" and first["error"] == "forbidden_symbols" and "BBB" in first["detail"]
            assert {m["s"] for m in await synced(ws)} <= {"AAA"}
            assert {(await recv_json(ws))["s"] for _ in range(10)} == {"AAA"}
            # subscribing beyond the claim: refused ones named, allowed ones added
            await ws.send('{"op":"subscribe","symbols":["BBB","CCC"],"id":7}')
            error = await recv_json(ws)
            while error.get("op") != "error":
                error = await recv_json(ws)
            assert error["error"] == "forbidden_symbols" and "BBB" in error["detail"] and "CCC" not in error["detail"]
            reply = await recv_json(ws)
            while reply.get("op") != "subscribed":
                reply = await recv_json(ws)
            assert reply == {"op": "subscribed", "symbols": ["AAA", "CCC"], "id": 7}
            seen = {(await recv_json(ws)).get("s") for _ in range(40)}
            assert seen <= {"AAA", "CCC", None} and "CCC" in seen
        # no symbols in the query ("everything"): everything the token allows, nothing more
        async with client(cc.ws_url(f"batch=0&token={token}")) as ws:
            assert {(await recv_json(ws))["s"] for _ in range(40)} == {"AAA", "CCC"}
        async with httpx.AsyncClient(base_url=cc.url, headers={"Authorization": f"Bearer {token}"}) as http:
            assert {s["symbol"] for s in (await http.get("/api/symbols")).json()} == {"AAA", "CCC"}
            assert (await http.get("/api/candles", params={"symbol": "AAA", "limit": 1})).status_code == 200
            refused = await http.get("/api/candles", params={"symbol": "BBB", "limit": 1})
            assert refused.status_code == 403 and refused.json()["error"] == "forbidden_symbol"


async def test_a_session_is_closed_with_4001_when_its_token_expires() -> None:
    async with candlecast(SIM) as cc:
        token = mint(exp=time.time() + 1.0)
        async with client(cc.ws_url(f"symbols=AAA&batch=0&token={token}")) as ws:
            await synced(ws)
            started = time.time()
            code, reason, frames = await closed_with(ws)
        assert (code, reason) == (CLOSE_TOKEN_EXPIRED, "token expired")
        assert frames and time.time() - started < 2.0  # the data flowed until the expiry, then stopped
        assert await cc.metric("candlecast_expired_sessions_total") == 1


async def test_the_auth_message_is_the_only_way_in_without_a_token_in_the_request() -> None:
    settings = dataclasses.replace(SIM, tokens=("static-t0ken",), auth_timeout=0.3)
    async with candlecast(settings) as cc:
        for token in ("static-t0ken", mint(symbols=["BBB"])):
            async with client(cc.ws_url("batch=0")) as ws:
                await ws.send(f'{{"op":"auth","token":"{token}"}}')
                assert "s" in await recv_json(ws)
        async with client(cc.ws_url("batch=0")) as ws:  # silent: refused after the auth timeout
            code, _, frames = await closed_with(ws)
            assert code == 1008 and [f["error"] for f in frames] == ["auth_timeout"]


# -- secrets out of logs -----------------------------------------------------------------------


async def test_no_token_appears_in_the_logs_of_a_real_run() -> None:
    static = "static-token-QZXJ9"
    restricted = mint(symbols=["AAA"])
    args = ("--symbols", "AAA,BBB", "--tokens", static, "--jwt-secret", SECRET, "--log-level", "debug")
    async with candlecast_process(*args) as (addr, lines):
        async with httpx.AsyncClient(base_url=f"http://{addr}") as http:
            assert (await http.get("/", params={"token": restricted})).status_code == 200
            assert (await http.get("/api/symbols", params={"token": static})).status_code == 200
            assert (
                await http.get("/api/symbols", headers={"Authorization": f"Bearer {restricted}"})
            ).status_code == 200
            assert (await http.get("/api/symbols", params={"token": "wrong-QZXJ9"})).status_code == 401
        async with client(f"ws://{addr}/ws?symbols=AAA&token={static}") as ws:
            await synced(ws)
        async with client(
            f"ws://{addr}/ws?symbols=AAA", additional_headers={"Authorization": f"Bearer {static}"}
        ) as ws:
            await synced(ws)
        async with client(f"ws://{addr}/ws?symbols=AAA") as ws:
            await ws.send(f'{{"op":"auth","token":"{restricted}"}}')
            await synced(ws)
        assert await refused_status(f"ws://{addr}/ws?token={restricted}x") == 403
    text = "\n".join(lines)
    # the run logged those requests (access and WebSocket lines, debug frame dumps) ...
    assert '"GET /api/symbols?token=*** HTTP/1.1" 200' in text
    assert '"WebSocket /ws?symbols=AAA&token=***" [accepted]' in text
    assert '"WebSocket /ws?token=***" 403' in text
    # ... and no secret, in any form
    for secret in (static, restricted, restricted.split(".")[2], SECRET, "wrong-QZXJ9"):
        assert secret not in text


# -- upstream reconnects -----------------------------------------------------------------------


async def test_reconnects_stay_prompt_after_sessions_dropped_without_a_close_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions = 6
    async with fake_broker() as broker:
        settings = ws_settings(broker, reconnect_min=0.05, reconnect_max=5.0)
        with caplog.at_level(logging.INFO, logger="candlecast.upstream"):
            async with candlecast(settings) as cc, client(cc.ws_url("symbols=AAA&batch=0")) as ws:
                await synced(ws)
                gaps: list[float] = []
                aborted = time.monotonic()
                for i in range(sessions):
                    await broker.wait_connections(i + 1)
                    if i:
                        gaps.append(time.monotonic() - aborted)
                    await broker.send(seed("AAA", i))
                    while (await recv_json(ws)).get("ot") != i:  # delivered: a healthy session
                        pass
                    aborted = time.monotonic()
                    broker.current.transport.abort()  # the TCP connection drops, no close frame
                await broker.wait_connections(sessions + 1)
                gaps.append(time.monotonic() - aborted)
    delays = [
        float(r.getMessage().rsplit(" ", 1)[1].rstrip("s"))
        for r in caplog.records
        if "reconnecting in" in r.getMessage()
    ]
    assert len(delays) >= sessions
    assert max(delays) <= 0.05  # every one at the minimum (backoff would reach 1.6-3.2 s by the 6th)
    assert max(gaps) < 1.0, gaps


# -- bounded: protocol violations, slow requests, control messages, addresses ---------------------


async def raw_connection(port: int) -> ByteStream:
    return await anyio.connect_tcp("127.0.0.1", port)


async def test_a_burst_of_protocol_violations_costs_a_few_log_lines_and_is_counted() -> None:
    bad_utf8, oversize, bad_handshakes = 30, 5, 5
    async with candlecast(Settings(rate=1000, symbols=("AAA",))) as cc:
        with captured("uvicorn", "uvicorn.error", "uvicorn.access", "candlecast", "websockets") as records:
            for _ in range(bad_utf8):
                async with client(cc.ws_url("symbols=AAA")) as ws:
                    await ws.send(b"\xff\xfe not utf-8", text=True)
                    code, _, _ = await closed_with(ws)
                    assert code == 1007
            for _ in range(oversize):
                async with client(cc.ws_url("symbols=AAA"), max_size=None) as ws:
                    await ws.send("x" * 70_000)
                    code, _, _ = await closed_with(ws)
                    assert code == 1009
            for _ in range(bad_handshakes):  # an upgrade request without Sec-WebSocket-Key
                async with await raw_connection(cc.port) as conn:
                    await conn.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    assert (await conn.receive()).startswith(b"HTTP/1.1 400")
            # the service still serves
            async with client(cc.ws_url("symbols=AAA")) as ws:
                assert (await recv_json(ws))["s"] == "AAA"
        kinds = {"invalid_utf8": bad_utf8, "oversize": oversize, "bad_handshake": bad_handshakes}
        for kind, n in kinds.items():
            assert await cc.metric(f'candlecast_protocol_violations_total{{kind="{kind}"}}') == n
    # what the event loop logged (a producer thread left over from an earlier test may log too)
    records = [r for r in records if r.thread == threading.get_ident()]
    loud = [r for r in records if r.levelno >= logging.WARNING]
    assert not any(r.exc_info or r.exc_text for r in records), [r.getMessage() for r in records if r.exc_info]
    assert all("protocol violation" in r.getMessage() for r in loud), [r.getMessage() for r in loud]
    assert 3 <= len(loud) <= 2 * len(kinds), [r.getMessage() for r in loud]  # one a second per kind at most
    assert all(len(r.getMessage()) < 200 for r in loud)


async def test_an_unfinished_request_is_closed_after_the_header_timeout_while_others_are_served() -> None:
    settings = Settings(rate=5, symbols=("AAA",), header_timeout=0.5, keepalive_timeout=1)
    async with candlecast(settings) as cc:
        async with await raw_connection(cc.port) as half, await raw_connection(cc.port) as silent:
            opened = time.monotonic()
            await half.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            # meanwhile everyone else is served
            async with client(cc.ws_url("symbols=AAA")) as ws, httpx.AsyncClient(base_url=cc.url) as http:
                assert (await recv_json(ws))["s"] == "AAA"
                assert (await http.get("/healthz")).status_code == 200
                for conn in (half, silent):
                    with anyio.fail_after(DEADLINE):
                        got = b""
                        try:
                            while True:
                                got += await conn.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                            pass
                    assert got.startswith(b"HTTP/1.1 408") and b"connection: close" in got
                elapsed = time.monotonic() - opened
                assert 0.45 <= elapsed < 0.5 + 5.0
                assert (await recv_json(ws))["s"] == "AAA"  # still served
        assert await cc.metric("candlecast_header_timeouts_total") == 2
        # an idle keep-alive connection is closed after --keepalive-timeout
        async with await raw_connection(cc.port) as idle:
            await idle.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            with anyio.fail_after(DEADLINE):
                try:
                    while True:
                        got += await idle.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
            assert got.startswith(b"HTTP/1.1 200") and b'{"status":"ok"}' in got


async def test_control_messages_past_the_rate_limit_are_refused_then_the_client_is_closed() -> None:
    async with candlecast(Settings(rate=5, symbols=("AAA",))) as cc:
        async with client(cc.ws_url("symbols=NONE")) as ws:
            n = CONTROL_BURST + 5
            for i in range(n):  # past the burst: refused with an error frame, the connection stays
                await ws.send(f'{{"op":"ping","id":{i}}}')
            replies = [await recv_json(ws) for _ in range(n)]
            pongs = [r for r in replies if r.get("op") == "pong"]
            limited = [r for r in replies if r.get("error") == "rate_limited"]
            assert len(pongs) >= CONTROL_BURST and limited and len(pongs) + len(limited) == n
            for i in range(CONTROL_BURST * 3):  # persistent abuse: closed
                await ws.send(f'{{"op":"ping","id":{i}}}')
            code, reason, _ = await closed_with(ws)
            assert (code, reason) == (1008, "too many messages")
        assert await cc.metric("candlecast_rate_limited_total") == MAX_RATE_LIMITED + 1
        # a client within the limit is untouched
        async with client(cc.ws_url("symbols=NONE")) as ws:
            for i in range(CONTROL_BURST // 2):
                await ws.send(f'{{"op":"ping","id":{i}}}')
                assert (await recv_json(ws))["op"] == "pong"


async def test_clients_per_address_are_capped_behind_a_trusted_proxy() -> None:
    settings = Settings(
        rate=50, symbols=("AAA",), max_clients_per_ip=2, proxy_headers=True, forwarded_allow_ips="127.0.0.1"
    )

    def via(address: str) -> dict[str, Any]:
        return {"additional_headers": {"X-Forwarded-For": address}}

    async with candlecast(settings) as cc:
        url = cc.ws_url("symbols=AAA")
        async with client(url, **via("203.0.113.1")) as a1, client(url, **via("203.0.113.1")) as a2:
            await synced(a1)
            await synced(a2)
            async with client(url, **via("203.0.113.1")) as a3:
                code, reason, _ = await closed_with(a3)
                assert (code, reason) == (1013, "too many connections from your address")
            async with client(url, **via("203.0.113.2")) as b1:  # another address is not affected
                await synced(b1)
        async with client(url, **via("203.0.113.1")) as again:  # slots come back when clients leave
            await synced(again)
        assert await cc.metric("candlecast_address_refused_total") == 1


# -- HTTP hygiene ------------------------------------------------------------------------------


async def test_security_headers_on_the_page_the_api_and_static_files_and_no_cors() -> None:
    async with candlecast(Settings(rate=50, symbols=("AAA",))) as cc:
        async with httpx.AsyncClient(base_url=cc.url, headers={"Origin": "https://evil.example"}) as http:
            for path in ("/", "/api/symbols", "/api/candles?symbol=AAA&limit=1", "/static/app.js", "/healthz"):
                r = await http.get(path)
                assert r.status_code == 200, path
                csp = r.headers["content-security-policy"]
                assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
                assert r.headers["x-content-type-options"] == "nosniff"
                assert r.headers["referrer-policy"] == "no-referrer"
                assert "access-control-allow-origin" not in r.headers


# -- the low findings: vanished clients, token guessing, lifetimes, what /static serves ----------


async def test_a_client_that_stalls_the_servers_writes_and_hangs_up_costs_no_traceback() -> None:
    """A client without a token fills the server's outgoing buffer (pings it never reads the
    pongs of), so the auth-timeout error frame waits to be written; then it hangs up (a reset).
    The session ends quietly: no "Exception in ASGI application"."""
    settings = dataclasses.replace(SIM, tokens=("static-t0ken",), auth_timeout=0.2)
    async with candlecast(settings, sndbuf=16384) as cc:
        guard = cc.service.guard
        with captured("uvicorn", "uvicorn.error", "candlecast") as records:
            for _ in range(3):
                refused = anyio.Event()
                count = guard.auth_failed

                def hook(exc: Any, count: Any = count, refused: anyio.Event = refused) -> None:
                    count(exc)
                    refused.set()  # the session writes its error frame next: it will wait

                guard.auth_failed = hook  # type: ignore[method-assign]
                attacker = await stalled_stream(cc.port)
                await upgrade(attacker)
                with anyio.fail_after(DEADLINE):
                    async with anyio.create_task_group() as tg:

                        async def pings(attacker: Any = attacker) -> None:
                            for _ in range(2000):
                                await attacker.send(PING * 64)

                        tg.start_soon(pings)
                        await refused.wait()
                        tg.cancel_scope.cancel()
                del guard.auth_failed
                sock = attacker.extra(anyio.abc.SocketAttribute.raw_socket)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                await attacker.aclose()  # a reset: the peer is gone mid-write
            async with client(cc.ws_url("token=static-t0ken")) as ws:  # still serving; the others end
                assert "s" in await recv_json(ws)
                with anyio.fail_after(DEADLINE):
                    while len(cc.server.server_state.connections) > 1:  # the attackers' sessions ended
                        await recv_json(ws)
    loud = [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage()[:200] for r in loud]


async def test_refused_auth_messages_count_as_bad_messages_until_the_socket_is_closed() -> None:
    settings = dataclasses.replace(SIM, tokens=("static-t0ken",))
    async with candlecast(settings) as cc, client(cc.ws_url("token=static-t0ken&symbols=NONE")) as ws:
        for i in range(MAX_ERRORS + 1):
            await ws.send(f'{{"op":"auth","token":"guess-{i}"}}')
        code, reason, frames = await closed_with(ws)
        assert (code, reason) == (1008, "too many bad messages")
        assert {f.get("error") for f in frames} <= {"bad_token"}  # those written before the close


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"exp": 1e300}, False),
        ({"exp": float("inf")}, False),
        ({"exp": time.time() + 3 * 86_400}, False),
        ({"iat": time.time() - 3 * 86_400, "exp": time.time() + 600}, False),
        ({"iat": time.time() - 60, "exp": time.time() + 3600}, True),
    ],
    ids=["1e300", "infinity", "three-days-left", "issued-three-days-ago", "an-hour"],
)
async def test_token_lifetimes_are_capped(claims: dict[str, Any], accepted: bool) -> None:
    """--jwt-max-lifetime (here a day): exp - now and exp - iat above it are refused."""
    token = mint(**claims)
    async with candlecast(dataclasses.replace(SIM, jwt_max_lifetime=86_400)) as cc:
        async with httpx.AsyncClient(base_url=cc.url) as http:
            answer = await http.get("/api/symbols", headers={"authorization": f"Bearer {token}"})
        if accepted:
            assert answer.status_code == 200
        else:
            assert answer.status_code == 401 and answer.json()["error"] == "token_lifetime", answer.text


async def test_static_serves_only_the_pages_own_files() -> None:
    async with candlecast(Settings(rate=5, symbols=("AAA",))) as cc, httpx.AsyncClient(base_url=cc.url) as http:
        for path in ("/static/app.js", "/static/style.css", "/static/index.html"):
            assert (await http.get(path)).status_code == 200, path
        for path in (
            "/static/vendor/package-lock.sha256",
            "/static/vendor/lightweight-charts.mjs",
            "/static/vendor/",
            "/static/__init__.py",
            "/static/",
        ):
            assert (await http.get(path)).status_code == 404, path


async def test_a_client_closed_for_abuse_first_gets_what_was_queued_then_the_close() -> None:
    """2000 pings as fast as they go: every reply queued before the decision arrives (the pongs of
    the burst, then the rate_limited refusals), then 1008 -- not the close alone."""
    async with candlecast(Settings(rate=5, symbols=("AAA",))) as cc:
        async with client(cc.ws_url("symbols=NONE")) as ws:
            for i in range(2000):
                await ws.send(f'{{"op":"ping","id":{i}}}')
            code, reason, frames = await closed_with(ws)
            assert (code, reason) == (1008, "too many messages")
            pongs = [f["id"] for f in frames if f.get("op") == "pong"]
            limited = [f for f in frames if f.get("error") == "rate_limited"]
            assert pongs == list(range(len(pongs))) and len(pongs) >= CONTROL_BURST - 1, pongs
            assert len(limited) == MAX_RATE_LIMITED, len(limited)


async def test_a_client_closed_for_bad_messages_first_gets_their_error_frames() -> None:
    async with candlecast(Settings(rate=5, symbols=("AAA",))) as cc, client(cc.ws_url("symbols=NONE")) as ws:
        for _ in range(MAX_ERRORS + 1):
            await ws.send("not json")
        code, reason, frames = await closed_with(ws)
        assert (code, reason) == (1008, "too many bad messages")
        assert [f.get("error") for f in frames] == ["bad_json"] * MAX_ERRORS, frames
