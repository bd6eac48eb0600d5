"""Settings: flags over environment over defaults, and one clear line per bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from candlecast.settings import DEFAULT_SYMBOLS, Settings, SettingsError, from_argv


def test_defaults_run_the_simulator_on_loopback_8000() -> None:
    s = from_argv([], {})
    assert (s.host, s.port, s.source) == ("127.0.0.1", 8000, "sim")
    assert s.symbols == DEFAULT_SYMBOLS and len(s.symbols) == 8
    assert s.ws_compression is False


def test_environment_fills_and_flags_win() -> None:
    env = {"CANDLECAST_PORT": "9001", "CANDLECAST_SYMBOLS": "A,B", "CANDLECAST_WS_COMPRESSION": "true"}
    s = from_argv(["--port", "9002"], env)
    assert s.port == 9002
    assert s.symbols == ("A", "B")
    assert s.ws_compression is True


def test_ws_source_takes_url_format_and_subscribe() -> None:
    s = from_argv(
        ["--source", "ws", "--upstream", "wss://stream.example/ws", "--format", "binance",
         "--subscribe", '{"method":"SUBSCRIBE"}'],
        {},
    )  # fmt: skip
    assert (s.source, s.format, s.subscribe) == ("ws", "binance", '{"method":"SUBSCRIBE"}')


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (["--port", "http"], {}, "--port"),
        (["--port", "70000"], {}, "--port"),
        ([], {"CANDLECAST_RATE": "-3"}, "CANDLECAST_RATE"),
        (["--source", "kafka"], {}, "--source"),
        (["--source", "ws"], {}, "--upstream"),
        (["--source", "ws", "--upstream", "http://x"], {}, "--upstream"),
        (["--source", "replay"], {}, "--replay-file"),
        (["--subscribe", "{bad"], {}, "--subscribe"),
        (["--format", "fix"], {}, "--format"),
        (["--symbols", "A B"], {}, "--symbols"),
        (["--history", "0"], {}, "--history"),
        (["--root-path", "api/"], {}, "--root-path"),
        (["--ws-compression", "perhaps"], {}, "--ws-compression"),
        (["--reconnect-min", "5", "--reconnect-max", "1"], {}, "--reconnect-max"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_setting(argv: list[str], env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError) as exc:
        from_argv(argv, env)
    message = str(exc.value)
    assert "\n" not in message
    assert names in message


def test_settings_object_validates_itself() -> None:
    with pytest.raises(SettingsError):
        Settings(source="ws")


def test_cli_prints_one_clear_line_and_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "candlecast", "--port", "nope"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("candlecast: invalid setting --port (CANDLECAST_PORT)")
