"""compose.yaml's default profile, for real: the image built from the Dockerfile, candlecast
behind nginx on 127.0.0.1:8080 (the published port), the simulator feeding it."""

from __future__ import annotations

import time

import anyio
import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from candlecast.version import __version__
from tests.conftest import DEADLINE
from tests.deploy.compose import report, stack
from tests.integration.harness import client, recv_json, synced

NGINX = "127.0.0.1:8080"
#: compose.yaml's stop_grace_period for candlecast (after it, the engine sends SIGKILL).
GRACE = 10.0

pytestmark = pytest.mark.timeout(240)


async def test_default_profile_serves_page_chart_and_live_candles_and_refuses_metrics() -> None:
    async with stack("nginx"):
        async with httpx.AsyncClient(base_url=f"http://{NGINX}", trust_env=False) as http:
            page = await http.get("/")
            assert page.status_code == 200 and 'src="static/app.js"' in page.text
            chart = await http.get("/vendor/lightweight-charts.mjs")
            assert chart.status_code == 200 and chart.headers["content-type"].startswith("text/javascript")
            assert "createChart" in chart.text
            assert len((await http.get("/api/symbols")).json()) == 8  # compose.yaml's CANDLECAST_SYMBOLS
            assert (await http.get("/metrics")).status_code == 403
            assert (await http.get("/readyz")).json() == {"status": "ready"}
        async with client(f"ws://{NGINX}/ws?symbols=BTCUSD") as ws:
            snapshot = await synced(ws)
            assert [c["s"] for c in snapshot] == ["BTCUSD"]
            live = [await recv_json(ws) for _ in range(5)]  # the simulator's next updates
            assert all(c["s"] == "BTCUSD" and set(c) >= {"t", "ot", "o", "h", "l", "c"} for c in live)
            times = [c["t"] for c in [*snapshot, *live]]
            assert times == sorted(times) and len(set(times)) == len(times)


async def test_the_image_runs_as_its_non_root_user_and_knows_its_version() -> None:
    async with stack("nginx") as s:
        uid = await s.python("candlecast", "import os; print(os.stat('/proc/1').st_uid, os.getuid())")
        assert uid.split() == ["10001", "10001"]  # the server (pid 1) and an exec'd process
        version = await s.run("exec", "-T", "candlecast", "candlecast", "--version")
        assert version.strip() == f"candlecast {__version__}"


async def test_compose_stop_closes_clients_with_1001_and_candlecast_exits_0_within_its_grace() -> None:
    async with stack("nginx") as s, client(f"ws://{NGINX}/ws?symbols=BTCUSD") as ws:
        await synced(ws)
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.run, "stop", "candlecast")  # SIGTERM, SIGKILL after the grace period
            with anyio.fail_after(DEADLINE), pytest.raises(ConnectionClosed) as closed:
                while True:
                    orjson.loads(await ws.recv())
        took = time.monotonic() - started
        report("docker compose stop candlecast", took)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001  # through nginx
        assert took < GRACE
        app = (await s.containers())["candlecast"]
        assert app["State"] == "exited" and app["ExitCode"] == 0
