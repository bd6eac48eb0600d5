"""The runner's uvicorn version check: the pin in pyproject.toml, the range, the one-line refusal."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from candlecast.__main__ import main
from candlecast.server import runner
from candlecast.server.runner import UVICORN_RANGE, UnsupportedUvicorn, check_uvicorn, config
from candlecast.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that is never called: config() only needs one to name."""


def test_pyproject_pins_the_uvicorn_range_the_runner_checks() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [pin] = [d for d in project["dependencies"] if d.startswith("uvicorn")]
    assert pin == f"uvicorn[standard]{runner.uvicorn_requirement()}"
    assert runner.uvicorn_requirement() == ">=0.54,<0.55" and UVICORN_RANGE == ((0, 54), (0, 55))


def test_the_installed_uvicorn_is_supported() -> None:
    check_uvicorn()


@pytest.mark.parametrize("version", ["0.54.0", "0.54.9", "0.54.1rc1"])
def test_a_supported_uvicorn_starts(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setattr(uvicorn, "__version__", version)
    assert isinstance(config(ok_app, Settings()), uvicorn.Config)


@pytest.mark.parametrize("version", ["0.55.0", "0.53.2", "1.0.0", "nightly"])
def test_another_uvicorn_refuses_to_start_with_one_line(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setattr(uvicorn, "__version__", version)
    with pytest.raises(UnsupportedUvicorn) as refused:
        config(ok_app, Settings())
    message = str(refused.value)
    assert "\n" not in message
    assert f"uvicorn {version} is installed" in message and "uvicorn>=0.54,<0.55" in message


def test_the_command_refuses_another_uvicorn_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(uvicorn, "__version__", "0.99.0")
    assert main(["--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("candlecast: uvicorn 0.99.0 is installed")
