"""Deployment: the real nginx running deploy/nginx.conf (and deploy/nginx-scale.conf) in front of
real candlecasts, and the compose file and Dockerfile checked by Docker Compose v2 and hadolint."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from websockets.exceptions import ConnectionClosed, InvalidStatus

from candlecast.settings import Settings
from tests.conftest import DEADLINE, IN_CI, require_binary, require_chart_library
from tests.integration.harness import Candlecast, candlecast, client, fake_broker, recv_json, seed, synced, ws_settings
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: The include both recipes share (log format, limits, timeouts, the server's locations).
COMMON = "nginx-common.conf"


def render(recipe: str, tmp: Path, subs: list[tuple[str, str]]) -> Path:
    """deploy/``recipe`` and the include it shares written into ``tmp`` (where nginx resolves
    the relative include), with ``subs`` and nginx's own paths (pid, logs, temp files)
    substituted; each substituted text must still be in one of the two files. The main file."""
    files = {name: (DEPLOY / name).read_text() for name in (recipe, COMMON)}
    paths = [
        ("pid /tmp/nginx.pid;", f"pid {tmp}/nginx.pid;"),
        ("error_log /dev/stderr warn;", "error_log stderr notice;"),  # notice: says when it listens
        ("access_log /dev/stdout candlecast;", f"access_log {tmp}/access.log candlecast;"),
    ]
    for old, new in [*paths, *subs]:
        holders = [name for name, text in files.items() if old in text]
        assert holders, f"deploy/{recipe} and deploy/{COMMON} no longer have {old!r}"
        for name in holders:
            files[name] = files[name].replace(old, new)
    tmp.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (tmp / name).write_text(text.replace("/tmp/nginx-", f"{tmp}/nginx-"))
    return tmp / recipe


def nginx_config(
    upstream_port: int, listen_port: int, tmp: Path, *, read_timeout: str | None = None, prefix_example: bool = False
) -> Path:
    """deploy/nginx.conf (and its include) with only the upstream, the listen port, paths and
    (when asked) the read timeout substituted, and (when asked) the prefix example uncommented."""
    subs = [
        ("server candlecast:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 8080;", f"listen 127.0.0.1:{listen_port};"),
    ]
    if read_timeout:
        subs.append(("proxy_read_timeout 75s;", f"proxy_read_timeout {read_timeout};"))
    conf = render("nginx.conf", tmp, subs)
    if prefix_example:
        common = tmp / COMMON
        begin, end = "# --- prefix example: begin", "# --- prefix example: end"
        head, rest = common.read_text().split(begin)
        block, tail = rest.split(end)
        block = re.sub(r"(?m)^(\s*)# ", r"\1", block.split("\n", 1)[1])
        common.write_text(head + block + tail)
    return conf


@asynccontextmanager
async def nginx(
    upstream_port: int, tmp: Path, *, read_timeout: str | None = None, prefix_example: bool = False
) -> AsyncIterator[str]:
    """The real nginx (deploy/nginx.conf) on a loopback port; yields its address once it listens."""
    binary = require_binary("nginx")
    port = free_port()
    conf = nginx_config(upstream_port, port, tmp, read_timeout=read_timeout, prefix_example=prefix_example)
    async with running_nginx(binary, conf, tmp):
        yield f"127.0.0.1:{port}"


@asynccontextmanager
async def nginx_scale(edges: list[int], tmp: Path, subs: list[tuple[str, str]] | None = None) -> AsyncIterator[str]:
    """The real nginx running deploy/nginx-scale.conf (and its include) in front of ``edges``
    (two loopback ports), with ``subs`` substituted too; yields its address once it listens."""
    binary = require_binary("nginx")
    port = free_port()
    upstreams = [
        ("server edge-a:8000", f"server 127.0.0.1:{edges[0]}"),
        ("server edge-b:8000", f"server 127.0.0.1:{edges[1]}"),
    ]
    conf = render("nginx-scale.conf", tmp, [*upstreams, ("listen 8080;", f"listen 127.0.0.1:{port};"), *(subs or [])])
    async with running_nginx(binary, conf, tmp):
        yield f"127.0.0.1:{port}"


@asynccontextmanager
async def running_nginx(binary: str, conf: Path, tmp: Path) -> AsyncIterator[None]:
    """nginx on ``conf`` (prefix ``tmp``), in the foreground, until the block ends; enters
    once it has bound its ports."""
    cmd = [binary, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"]
    async with await anyio.open_process(cmd) as proc:
        assert proc.stderr is not None
        log = BufferedByteReceiveStream(proc.stderr)
        try:
            with anyio.fail_after(DEADLINE):  # nginx logs this after binding its port
                while b"start worker process" not in await log.receive_until(b"\n", 65536):
                    pass
            yield
        finally:
            proc.terminate()
            await proc.wait()


async def test_page_and_api_load_through_nginx_and_metrics_are_refused(tmp_path: Path) -> None:
    async with candlecast(Settings(rate=50, symbols=("AAA", "BBB"))) as cc, nginx(cc.port, tmp_path) as addr:
        async with httpx.AsyncClient(base_url=f"http://{addr}") as http:
            page = await http.get("/")
            assert page.status_code == 200 and "candlecast" in page.text
            assert (await http.get("/static/app.js")).status_code == 200
            symbols = await http.get("/api/symbols")
            assert [s["symbol"] for s in symbols.json()] == ["AAA", "BBB"]
            assert (await http.get("/metrics")).status_code == 403
        async with httpx.AsyncClient(base_url=cc.url) as direct:
            assert (await direct.get("/metrics")).status_code == 200


async def test_fifty_clients_through_nginx_get_every_message_in_order(tmp_path: Path) -> None:
    n_clients, n_msgs = 50, 200
    async with fake_broker() as broker, candlecast(ws_settings(broker)) as cc, nginx(cc.port, tmp_path) as addr:
        await broker.wait_connections(1)
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(client(f"ws://{addr}/ws")) for _ in range(n_clients)]
            for ws in clients:
                await synced(ws)
            await broker.send(*(seed("AAA", i) for i in range(n_msgs)))
            got: list[list[int]] = [[] for _ in clients]

            async def read(i: int) -> None:
                got[i] = [(await recv_json(clients[i]))["ot"] for _ in range(n_msgs)]

            async with anyio.create_task_group() as tg:
                for i in range(n_clients):
                    tg.start_soon(read, i)
            assert all(g == list(range(n_msgs)) for g in got)


IDLE = 3.5  # seconds a client stays idle: longer than the shortened nginx read timeout (2 s)


async def idle_client_survives(cc: Candlecast, addr: str) -> bool:
    """Connect through nginx, receive nothing for IDLE seconds, then check the link."""
    async with client(f"ws://{addr}/ws?symbols=NOTHING") as ws:
        await synced(ws)
        try:
            with anyio.move_on_after(IDLE):  # the scenario is idleness itself: time must pass
                await ws.recv()
                raise AssertionError("nothing should arrive for a symbol without data")
            await ws.send('{"op":"ping"}')
            reply = await recv_json(ws)
            return bool(reply["op"] == "pong")
        except ConnectionClosed:
            return False


async def test_candlecast_pings_keep_an_idle_client_alive_past_nginx_timeout(tmp_path: Path) -> None:
    pinging = Settings(rate=5, symbols=("AAA",), ws_ping_interval=0.5, ws_ping_timeout=5)
    async with candlecast(pinging) as cc, nginx(cc.port, tmp_path / "a", read_timeout="2s") as addr:
        assert await idle_client_survives(cc, addr)
    # control: without candlecast's pings, nginx drops the same idle client
    silent = Settings(rate=5, symbols=("AAA",), ws_ping_interval=0)
    async with candlecast(silent) as cc, nginx(cc.port, tmp_path / "b", read_timeout="2s") as addr:
        assert not await idle_client_survives(cc, addr)


async def test_prefix_example_serves_candlecast_under_a_path(tmp_path: Path) -> None:
    settings = Settings(rate=50, symbols=("AAA",), root_path="/candlecast")
    async with candlecast(settings) as cc, nginx(cc.port, tmp_path, prefix_example=True) as addr:
        async with httpx.AsyncClient(base_url=f"http://{addr}") as http:
            redirect = await http.get("/candlecast")
            assert redirect.status_code == 301 and redirect.headers["location"].endswith("/candlecast/")
            page = await http.get("/candlecast/")
            assert page.status_code == 200 and 'src="static/app.js"' in page.text
            assert (await http.get("/candlecast/static/app.js")).status_code == 200
            require_chart_library()
            chart = await http.get("/candlecast/vendor/lightweight-charts.mjs")
            assert chart.status_code == 200 and chart.headers["content-type"].startswith("text/javascript")
            assert "createChart" in chart.text
            assert [s["symbol"] for s in (await http.get("/candlecast/api/symbols")).json()] == ["AAA"]
            assert (await http.get("/candlecast/metrics")).status_code == 403
            assert set((await http.get("/candlecast/readyz?verbose=1")).json()) == {"status"}
        async with client(f"ws://{addr}/candlecast/ws?symbols=AAA") as ws:
            assert (await recv_json(ws))["s"] == "AAA"


async def test_nginx_logs_no_query_string_and_limits_requests_per_address(tmp_path: Path) -> None:
    settings = Settings(rate=50, symbols=("AAA",), tokens=("s3cret-QZX",))
    async with candlecast(settings) as cc, nginx(cc.port, tmp_path) as addr:
        async with httpx.AsyncClient(base_url=f"http://{addr}") as http:
            assert (await http.get("/api/symbols", params={"token": "s3cret-QZX"})).status_code == 200
            async with client(f"ws://{addr}/ws?symbols=AAA&token=s3cret-QZX") as ws:
                assert (await recv_json(ws))["s"] == "AAA"
            # limit_req: 30 r/s with a burst of 100 per address; 250 requests at once go past it
            statuses: list[int] = []

            async def get() -> None:
                statuses.append((await http.get("/healthz")).status_code)

            async with anyio.create_task_group() as tg:
                for _ in range(250):
                    tg.start_soon(get)
            assert statuses.count(200) >= 100 and 429 in statuses and set(statuses) == {200, 429}
    log = (tmp_path / "access.log").read_text()
    assert '"GET /api/symbols HTTP/1.1" 200' in log and '"GET /ws HTTP/1.1" 101' in log
    assert "s3cret-QZX" not in log and "token" not in log


@contextmanager
def access_log() -> Iterator[list[str]]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("uvicorn.access")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize(("trusted", "expect_forwarded"), [("127.0.0.1", True), ("10.9.9.9", False)])
async def test_forwarded_headers_are_honoured_from_trusted_proxies_only(
    tmp_path: Path, trusted: str, expect_forwarded: bool
) -> None:
    settings = Settings(rate=5, symbols=("AAA",), proxy_headers=True, forwarded_allow_ips=trusted)
    async with candlecast(settings, log_level="info") as cc, nginx(cc.port, tmp_path) as addr:
        with access_log() as lines:
            async with httpx.AsyncClient(base_url=f"http://{addr}") as http:
                # nginx appends the real peer (127.0.0.1) to the client's X-Forwarded-For
                r = await http.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
                assert r.status_code == 200
    healthz = [line for line in lines if "/healthz" in line]
    assert len(healthz) == 1
    # trusted: the right-most address nginx did not add; untrusted: nginx's own peer address
    client = healthz[0].split(" ", 1)[0]
    if expect_forwarded:
        assert client == "203.0.113.9:0"
    else:
        assert client.startswith("127.0.0.1:") and client != "127.0.0.1:0"


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        message = f"{name} is not installed (it comes with the dev lock: ./scripts/bootstrap)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_compose_file_is_valid_for_docker_compose_v2() -> None:
    proc = subprocess.run(
        [tool("docker-compose"), "-f", str(ROOT / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def test_compose_file_wires_nginx_to_a_healthy_candlecast() -> None:
    proc = subprocess.run(
        [tool("docker-compose"), "-f", str(ROOT / "compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    import json

    cfg = json.loads(proc.stdout)
    nginx_svc, app = cfg["services"]["nginx"], cfg["services"]["candlecast"]
    assert nginx_svc["depends_on"]["candlecast"]["condition"] == "service_healthy"
    assert nginx_svc["ports"][0]["published"] == "8080"
    assert any(v["target"] == "/etc/nginx/nginx.conf" and v.get("read_only") for v in nginx_svc["volumes"])
    assert app["environment"]["CANDLECAST_SOURCE"] == "sim"
    assert app["stop_signal"] == "SIGTERM" and "ports" not in app


def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run(
        [tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("recipe", sorted(p.name for p in (DEPLOY / "standins").glob("*.Dockerfile")))
def test_each_base_image_stand_in_passes_hadolint(recipe: str) -> None:
    """deploy/standins/ (scripts/compose-test's stand-ins for the base images): each ignored rule
    is named in the recipe, beside its reason."""
    path = str(DEPLOY / "standins" / recipe)
    proc = subprocess.run([tool("hadolint"), path], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- both recipes: one log format, one set of limits, a public /readyz without detail ----------


@asynccontextmanager
async def recipe(name: str, tmp: Path, backends: list[Candlecast], subs: list[tuple[str, str]]) -> AsyncIterator[str]:
    """deploy/``name`` (nginx.conf: one backend; nginx-scale.conf: two) in front of ``backends``."""
    if name == "nginx.conf":
        listen = free_port()
        upstream = ("server candlecast:8000;", f"server 127.0.0.1:{backends[0].port};")
        conf = render(name, tmp, [upstream, ("listen 8080;", f"listen 127.0.0.1:{listen};"), *subs])
        async with running_nginx(require_binary("nginx"), conf, tmp):
            yield f"127.0.0.1:{listen}"
    else:
        async with nginx_scale([backends[0].port, backends[1].port], tmp, subs) as addr:
            yield addr


async def closed_by_peer(stream: anyio.abc.ByteStream) -> bytes:
    """Everything the peer sends until it closes the connection."""
    got = b""
    with anyio.fail_after(DEADLINE):
        try:
            while True:
                got += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            return got


RECIPES = ["nginx.conf", "nginx-scale.conf"]
CONNS = 5  # the tests lower limit_conn (100 per address) to this; the directive must be there


@pytest.mark.parametrize("name", RECIPES)
async def test_each_recipe_logs_no_token_however_spelled_and_enforces_its_limits(tmp_path: Path, name: str) -> None:
    secret = "s3cret-MXQ4"
    settings = Settings(rate=50, symbols=("AAA",), tokens=(secret,))
    subs = [
        ("limit_conn per_ip_conn 100;", f"limit_conn per_ip_conn {CONNS};"),
        ("client_header_timeout 10s;", "client_header_timeout 1s;"),
    ]
    async with AsyncExitStack() as stack:
        backends = [await stack.enter_async_context(candlecast(settings)) for _ in range(RECIPES.index(name) + 1)]
        addr = await stack.enter_async_context(recipe(name, tmp_path, backends, subs))
        async with httpx.AsyncClient(base_url=f"http://{addr}") as http:
            for key in ("token", "%74oken", "t%6Fken"):  # keys candlecast reads as token=
                assert (await http.get(f"/api/symbols?{key}={secret}")).status_code == 200, key
            async with client(f"ws://{addr}/ws?symbols=AAA&%74oken={secret}") as ws:
                assert (await recv_json(ws))["s"] == "AAA"
            # client_max_body_size 16k
            assert (await http.post("/api/symbols", content=b"x" * (17 * 1024))).status_code == 413
            # limit_conn: CONNS requests in progress (held WebSockets) per address, then 429
            async with AsyncExitStack() as held:
                for _ in range(CONNS):
                    await synced(await held.enter_async_context(client(f"ws://{addr}/ws?symbols=AAA&token={secret}")))
                with pytest.raises(InvalidStatus) as refused:
                    await held.enter_async_context(client(f"ws://{addr}/ws?symbols=AAA&token={secret}"))
                assert refused.value.response.status_code == 429
            # client_header_timeout: a request head never finished is dropped
            host, port = addr.rsplit(":", 1)
            async with await anyio.connect_tcp(host, int(port)) as half:
                await half.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                assert not (await closed_by_peer(half)).startswith(b"HTTP/1.1 200")
            # limit_req: 30 r/s, burst 100, per address (fewer at once than limit_conn allows)
            statuses: list[int] = []

            async def get(n: int) -> None:
                for _ in range(n):
                    statuses.append((await http.get("/healthz")).status_code)

            async with anyio.create_task_group() as tg:
                for _ in range(CONNS - 1):
                    tg.start_soon(get, 250 // (CONNS - 1))
            assert statuses.count(200) >= 100 and 429 in statuses and set(statuses) == {200, 429}
    log = (tmp_path / "access.log").read_text()
    assert '"GET /api/symbols HTTP/1.1" 200' in log and '"GET /ws HTTP/1.1" 101' in log
    assert '"POST /api/symbols HTTP/1.1" 413' in log
    assert secret not in log and "oken" not in log and "%74" not in log


@contextmanager
def logged(name: str, text: str, n: int) -> Iterator[anyio.Event]:
    """An event set once ``n`` records of logger ``name`` (or its children) contain ``text``."""
    seen = anyio.Event()
    count = 0

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            nonlocal count
            if text in record.getMessage():
                count += 1
                if count >= n:
                    seen.set()

    handler = Watch()
    logging.getLogger(name).addHandler(handler)
    try:
        yield seen
    finally:
        logging.getLogger(name).removeHandler(handler)


@pytest.mark.parametrize("name", RECIPES)
async def test_readyz_through_nginx_is_the_status_only_and_candlecast_itself_says_why(
    tmp_path: Path, name: str
) -> None:
    redis_port = free_port()  # nothing listens: each edge's readiness reason names this address
    edge = Settings(role="edge", redis_url=f"redis://127.0.0.1:{redis_port}/0", reconnect_min=0.02, reconnect_max=0.1)
    n = RECIPES.index(name) + 1
    async with AsyncExitStack() as stack:
        failed = stack.enter_context(logged("candlecast", "retrying every", n))
        backends = [await stack.enter_async_context(candlecast(edge)) for _ in range(n)]
        addr = await stack.enter_async_context(recipe(name, tmp_path, backends, []))
        with anyio.fail_after(DEADLINE):
            await failed.wait()  # every edge has tried Redis and failed
        async with httpx.AsyncClient() as http:
            for backend in backends:  # operators, on candlecast's own port: the reason
                direct = await http.get(backend.url + "/readyz")
                assert direct.status_code == 503 and f"127.0.0.1:{redis_port}" in direct.json()["reason"]
            for query in ("", "?verbose=1", "?brief=0", "?brief=1&x=1"):  # the public: the status
                public = await http.get(f"http://{addr}/readyz{query}")
                assert public.status_code == 503 and public.json() == {"status": "not ready"}, public.text
                assert str(redis_port) not in public.text and "redis" not in public.text.lower()
            ready = await http.get(backends[0].url + "/readyz?brief")
            assert ready.json() == {"status": "not ready"}


async def test_readyz_through_nginx_says_ready_and_nothing_more(tmp_path: Path) -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker)) as cc, nginx(cc.port, tmp_path) as addr:
        await broker.wait_connections(1)
        async with client(cc.ws_url("symbols=AAA")) as ws:
            await synced(ws)
            await broker.send(seed("AAA", 1))
            await recv_json(ws)  # data flowed: ready
        async with httpx.AsyncClient() as http:
            assert "last_message_age" in (await http.get(cc.url + "/readyz")).json()
            public = await http.get(f"http://{addr}/readyz")
            assert public.status_code == 200 and public.json() == {"status": "ready"}
