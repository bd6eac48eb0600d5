"""candlecast as installed: ``python -m build`` (sdist, then the wheel from it), the wheel's file
list, the sdist built into a wheel with no Node.js in reach, and that wheel installed into a
fresh virtual environment outside the checkout, serving a dashboard that headless Chromium draws.

The builds use this environment's hatchling (``--no-isolation``: the build backend is pinned with
hashes in requirements-dev.lock); the fresh environment gets the runtime lock with
``--require-hashes``, then candlecast with ``--no-deps``, as the Dockerfile does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from candlecast import __version__
from tests.conftest import DEADLINE
from tests.integration.test_dashboard import browser, last_bar, open_live
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
MODULE = "candlecast/static/vendor/lightweight-charts.mjs"
#: Slow steps (a build, a pip install from the lock) get this long.
STEP_TIMEOUT = 300
pytestmark = pytest.mark.timeout(2 * STEP_TIMEOUT)


def run(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False, cwd=cwd, env=env)
    assert proc.returncode == 0, f"{cmd[:4]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path  # built by `python -m build` from the sdist
    nodeless: Path  # built from the sdist again, with no npm on PATH
    log: str  # what the no-npm build printed


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)])
    [sdist], [wheel] = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    nodeless = tmp_path_factory.mktemp("nodeless")
    empty = tmp_path_factory.mktemp("empty-path")  # PATH: no npm, no node, nothing at all
    env = {k: v for k, v in os.environ.items() if k != "NPM"} | {"PATH": str(empty)}
    proc = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-v",
            "-w",
            str(nodeless),
            str(sdist),
        ],
        env=env,
        cwd=nodeless,
    )
    [rebuilt] = nodeless.glob("*.whl")
    return Built(sdist, wheel, rebuilt, proc.stdout + proc.stderr)


def names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def test_the_wheel_installs_nothing_but_candlecast_at_the_top_level(built: Built) -> None:
    top = {name.split("/", 1)[0] for name in names(built.wheel)}
    assert top == {"candlecast", f"candlecast-{__version__}.dist-info"}


def test_the_wheel_and_the_sdist_carry_the_pinned_chart_module(built: Built) -> None:
    built_module = (ROOT / "service" / MODULE).read_bytes()
    with zipfile.ZipFile(built.wheel) as z:
        assert z.read(MODULE) == built_module
    with tarfile.open(built.sdist) as tar:
        member = tar.extractfile(f"candlecast-{__version__}/service/{MODULE}")
        assert member is not None and member.read() == built_module
        assert "node_modules" not in " ".join(tar.getnames())


def test_the_sdist_builds_without_node(built: Built) -> None:
    assert "chart module up to date" in built.log
    assert "npm ci" not in built.log
    assert sorted(names(built.nodeless)) == sorted(names(built.wheel))


def test_a_checkout_without_the_module_and_without_npm_says_what_to_do(built: Built, tmp_path: Path) -> None:
    with tarfile.open(built.sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    src = tmp_path / f"candlecast-{__version__}"
    (src / "service" / MODULE).unlink()
    env = {k: v for k, v in os.environ.items() if k != "NPM"} | {"PATH": str(tmp_path / "nothing")}
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "out"), str(src)],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
        env=env,
    )
    assert proc.returncode != 0
    assert "the dashboard's chart module is not built and npm is not found" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the checkout with the no-Node wheel installed; its bin/."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home / "env", with_pip=True)
    bin_dir = home / "env" / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, "--require-hashes", "-r", str(ROOT / "requirements.lock")], cwd=home)
    run([*pip, "--no-deps", str(built.nodeless)], cwd=home)
    return bin_dir


def test_the_installed_command_prints_its_version(installed: Path) -> None:
    assert run([str(installed / "candlecast"), "--version"]).stdout.strip() == f"candlecast {__version__}"
    where = run([str(installed / "python"), "-c", "import candlecast; print(candlecast.__file__)"], cwd=installed)
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), "imported from the venv, not the checkout"


@asynccontextmanager
async def serving(bin_dir: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """The installed ``candlecast`` on a free loopback port, run from outside the checkout; yields
    its URL once it listens, and the log lines read so far."""
    port = free_port()
    cmd = [
        str(bin_dir / "candlecast"),
        "--port",
        str(port),
        "--rate",
        "40",
        "--symbols",
        "AAA,BBB",
        "--bar-seconds",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANDLECAST_") and k != "PYTHONPATH"}
    async with await anyio.open_process(cmd, cwd=bin_dir.parent, env=env) as proc:
        assert proc.stderr is not None
        log = BufferedByteReceiveStream(proc.stderr)
        lines: list[str] = []
        try:
            with anyio.fail_after(DEADLINE):
                while "Uvicorn running on" not in (lines[-1] if lines else ""):
                    lines.append((await log.receive_until(b"\n", 65536)).decode())
            yield f"http://127.0.0.1:{port}", lines
        finally:
            proc.terminate()
            with anyio.fail_after(DEADLINE):
                await proc.wait()


async def test_the_installed_wheel_serves_a_dashboard_that_draws_live_candles(installed: Path) -> None:
    async with serving(installed) as (url, log), browser() as b:
        assert not any("chart library not found" in line for line in log), log
        async with httpx.AsyncClient(base_url=url) as http:
            chart = await http.get("/vendor/lightweight-charts.mjs")
        assert chart.status_code == 200 and chart.content == (ROOT / "service" / MODULE).read_bytes()
        page, errors = await open_live(b, url + "/?symbol=AAA")
        assert await page.locator("canvas").count() > 0
        first = await last_bar(page, "AAA")
        assert first is not None and first["high"] >= first["low"]
        await page.wait_for_function(  # live candles keep moving the chart's last bar
            "(prev) => JSON.stringify(window.candlecast.charts.get('AAA').series.data().at(-1)) !== prev",
            arg=await page.evaluate("() => JSON.stringify(window.candlecast.charts.get('AAA').series.data().at(-1))"),
            timeout=DEADLINE * 1000,
        )
        assert await page.locator("#status").text_content() == "live"
        assert errors.messages == []


def test_nothing_of_the_checkout_leaks_into_the_install(installed: Path) -> None:
    site = next((installed.parent / "lib").glob("python*/site-packages"))
    ours = {p.name for p in site.iterdir() if "candlecast" in p.name.lower() or p.name == "service"}
    assert ours == {"candlecast", f"candlecast-{__version__}.dist-info"}
