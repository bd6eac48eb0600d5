"""Settings: flags over environment over defaults, and one clear line per bad value."""

from __future__ import annotations

import argparse
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st

from candlecast import settings
from candlecast.settings import (
    DEFAULT_CHART_JS,
    DEFAULT_SYMBOLS,
    Settings,
    SettingsError,
    derive,
    from_argv,
    load,
)
from tests.strategies import FAST


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
    argv = [
        *("--source", "ws", "--upstream", "wss://stream.example/ws"),
        *("--format", "binance", "--subscribe", '{"method":"SUBSCRIBE"}'),
    ]
    s = from_argv(argv, {})
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
        derive(from_argv(argv, env))  # as python -m candlecast does at start-up
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


# -- one declaration per setting, grouped ----------------------------------------------------------

#: Every setting as it was before settings were grouped (generated from that code): name, flag,
#: variable, default. Flags, variables and defaults are a public contract (README, deployments).
FROZEN: list[tuple[str, str, str, object]] = [
    ("host", "--host", "CANDLECAST_HOST", "127.0.0.1"),
    ("port", "--port", "CANDLECAST_PORT", 8000),
    ("source", "--source", "CANDLECAST_SOURCE", "sim"),
    ("upstream", "--upstream", "CANDLECAST_UPSTREAM", None),
    ("format", "--format", "CANDLECAST_FORMAT", "seed"),
    ("subscribe", "--subscribe", "CANDLECAST_SUBSCRIBE", None),
    (
        "symbols",
        "--symbols",
        "CANDLECAST_SYMBOLS",
        ("BTCUSD", "ETHUSD", "SOLUSD", "XRPUSD", "EURUSD", "GBPUSD", "USDJPY", "XAUUSD"),
    ),
    ("rate", "--rate", "CANDLECAST_RATE", 20.0),
    ("bar_seconds", "--bar-seconds", "CANDLECAST_BAR_SECONDS", 60.0),
    ("intervals", "--intervals", "CANDLECAST_INTERVALS", ("1m", "5m", "15m", "1h", "4h", "1d")),
    ("base_interval", "--base-interval", "CANDLECAST_BASE_INTERVAL", None),
    ("seed", "--seed", "CANDLECAST_SEED", 1),
    ("backfill", "--backfill", "CANDLECAST_BACKFILL", 300),
    ("rest_url", "--rest-url", "CANDLECAST_REST_URL", None),
    ("rest_timeout", "--rest-timeout", "CANDLECAST_REST_TIMEOUT", 10.0),
    ("replay_file", "--replay-file", "CANDLECAST_REPLAY_FILE", None),
    ("speed", "--speed", "CANDLECAST_SPEED", 1.0),
    ("history", "--history", "CANDLECAST_HISTORY", 500),
    ("client_queue", "--client-queue", "CANDLECAST_CLIENT_QUEUE", 1024),
    ("max_clients", "--max-clients", "CANDLECAST_MAX_CLIENTS", 10000),
    ("bridge_size", "--bridge-size", "CANDLECAST_BRIDGE_SIZE", 65536),
    ("role", "--role", "CANDLECAST_ROLE", "all"),
    ("redis_url", "--redis-url", "CANDLECAST_REDIS_URL", None),
    ("redis_prefix", "--redis-prefix", "CANDLECAST_REDIS_PREFIX", "candlecast"),
    ("stream_maxlen", "--stream-maxlen", "CANDLECAST_STREAM_MAXLEN", 100000),
    ("lease_ttl", "--lease-ttl", "CANDLECAST_LEASE_TTL", 5.0),
    ("ingest_buffer", "--ingest-buffer", "CANDLECAST_INGEST_BUFFER", 100000),
    ("origins", "--origins", "CANDLECAST_ORIGINS", ()),
    ("tokens", "--tokens", "CANDLECAST_TOKENS", ()),
    ("log_level", "--log-level", "CANDLECAST_LOG_LEVEL", "info"),
    ("root_path", "--root-path", "CANDLECAST_ROOT_PATH", ""),
    ("ws_ping_interval", "--ws-ping-interval", "CANDLECAST_WS_PING_INTERVAL", 20.0),
    ("ws_ping_timeout", "--ws-ping-timeout", "CANDLECAST_WS_PING_TIMEOUT", 20.0),
    ("ws_direct", "--ws-direct", "CANDLECAST_WS_DIRECT", True),
    ("ws_compression", "--ws-compression", "CANDLECAST_WS_COMPRESSION", False),
    ("stale_after", "--stale-after", "CANDLECAST_STALE_AFTER", 30.0),
    ("reconnect_min", "--reconnect-min", "CANDLECAST_RECONNECT_MIN", 0.5),
    ("reconnect_max", "--reconnect-max", "CANDLECAST_RECONNECT_MAX", 30.0),
    ("chart_js", "--chart-js", "CANDLECAST_CHART_JS", str(DEFAULT_CHART_JS)),
    ("loop", "--loop", "CANDLECAST_LOOP", "auto"),
    ("ws_impl", "--ws-impl", "CANDLECAST_WS_IMPL", "websockets-sansio"),
    ("proxy_headers", "--proxy-headers", "CANDLECAST_PROXY_HEADERS", False),
    ("forwarded_allow_ips", "--forwarded-allow-ips", "CANDLECAST_FORWARDED_ALLOW_IPS", "127.0.0.1"),
    ("jwt_secret", "--jwt-secret", "CANDLECAST_JWT_SECRET", None),
    ("jwt_public_key", "--jwt-public-key", "CANDLECAST_JWT_PUBLIC_KEY", None),
    ("jwt_algorithms", "--jwt-algorithms", "CANDLECAST_JWT_ALGORITHMS", ()),
    ("jwt_audience", "--jwt-audience", "CANDLECAST_JWT_AUDIENCE", None),
    ("jwt_issuer", "--jwt-issuer", "CANDLECAST_JWT_ISSUER", None),
    ("jwt_leeway", "--jwt-leeway", "CANDLECAST_JWT_LEEWAY", 5.0),
    ("auth_timeout", "--auth-timeout", "CANDLECAST_AUTH_TIMEOUT", 5.0),
    ("header_timeout", "--header-timeout", "CANDLECAST_HEADER_TIMEOUT", 10.0),
    ("max_header_bytes", "--max-header-bytes", "CANDLECAST_MAX_HEADER_BYTES", 32768),
    ("max_headers", "--max-headers", "CANDLECAST_MAX_HEADERS", 100),
    ("jwt_max_lifetime", "--jwt-max-lifetime", "CANDLECAST_JWT_MAX_LIFETIME", 86400.0),
    ("snapshot_bytes", "--snapshot-bytes", "CANDLECAST_SNAPSHOT_BYTES", 4194304),
    ("snapshot_rate", "--snapshot-rate", "CANDLECAST_SNAPSHOT_RATE", 20000),
    ("keepalive_timeout", "--keepalive-timeout", "CANDLECAST_KEEPALIVE_TIMEOUT", 5),
    ("max_clients_per_ip", "--max-clients-per-ip", "CANDLECAST_MAX_CLIENTS_PER_IP", 0),
]
#: The settings for which an empty flag or variable meant "not set" (the old _OPTIONAL lists).
FROZEN_OPTIONAL = {
    "upstream",
    "subscribe",
    "replay_file",
    "base_interval",
    "redis_url",
    "rest_url",
    "jwt_secret",
    "jwt_public_key",
    "jwt_audience",
    "jwt_issuer",
}
GROUP_ORDER = ["server", "source", "history", "fan-out", "backplane", "access", "logging"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="candlecast")
    settings.add_arguments(parser)
    return parser


def _as_text(value: object) -> str:
    """A default as one would write it in a flag or a variable."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_the_frozen_list_names_every_setting_once() -> None:
    """Nothing was added or lost: the fields are exactly the frozen names."""
    names = [f.name for f in fields(Settings)]
    assert len(names) == len(FROZEN) == 58
    assert sorted(names) == sorted(row[0] for row in FROZEN)


@pytest.mark.parametrize(("name", "flag", "env", "default"), FROZEN, ids=[row[0] for row in FROZEN])
def test_every_setting_keeps_its_flag_variable_and_default(name: str, flag: str, env: str, default: object) -> None:
    """Each setting's flag, variable and default are as they were; both spellings reach the field."""
    assert getattr(Settings(), name) == default
    (action,) = [a for a in _parser()._actions if a.dest == name]
    assert action.option_strings == [flag]
    assert action.default is None  # unset flags fall through to the variable, then the default
    assert action.help is not None and f"[env {env}; default " in action.help
    text = _as_text(default)
    assert getattr(load({}, {env: text}), name) == default
    assert getattr(from_argv([flag, text], {}), name) == default
    assert getattr(from_argv([flag, text], {env: "@never read@"}), name) == default  # the flag wins


def test_load_reads_exactly_the_frozen_variables() -> None:
    """The environment is asked for each CANDLECAST_ variable once, and for nothing else."""
    asked: list[str] = []

    class Spy(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            asked.append(key)
            return super().get(key, default)

    load({}, Spy())
    assert sorted(asked) == sorted(row[2] for row in FROZEN)


def test_an_empty_value_means_not_set_for_the_optional_settings() -> None:
    """Exactly the settings whose default is None read an empty flag or variable as "not set"."""
    assert settings.OPTIONAL == FROZEN_OPTIONAL
    env = {settings._env(name): "" for name in FROZEN_OPTIONAL}
    s = load({}, env)
    assert all(getattr(s, name) is None for name in FROZEN_OPTIONAL)
    assert load({"root_path": "", "host": ""}, {}).host == ""  # elsewhere "" is a value like any other


def test_every_field_has_one_declaration_with_a_converter_a_group_and_help() -> None:
    """The field's metadata is the one place its converter, group and help are written."""
    for f in fields(Settings):
        option = f.metadata["candlecast.option"]
        assert isinstance(option, settings.Option), f.name
        assert settings.OPTIONS[f.name] is option
        assert callable(option.convert), f.name
        assert option.group in settings.GROUPS, f.name
        assert option.help and "\n" not in option.help, f.name
    assert list(settings.OPTIONS) == [f.name for f in fields(Settings)]
    assert {o.group for o in settings.OPTIONS.values()} == set(settings.GROUPS)  # no empty group
    assert not hasattr(settings, "_OPTIONAL") and not hasattr(settings, "_JWT_OPTIONAL")  # no parallel lists


def test_settings_are_built_by_keyword_and_read_flat() -> None:
    """Keyword construction and flat attributes, as every caller uses them; no positional surprises."""
    s = Settings(host="0.0.0.0", rate=50.0)
    assert (s.host, s.rate, s.port) == ("0.0.0.0", 50.0, 8000)
    with pytest.raises(TypeError):
        Settings("0.0.0.0")  # type: ignore[call-arg]  # the error under test
    secrets = Settings(tokens=("t0k3n",), jwt_secret="s3cr3t" * 6)
    assert "t0k3n" not in repr(secrets) and "s3cr3t" not in repr(secrets)  # declared secret=True


def test_help_lists_the_flags_in_their_groups(capsys: pytest.CaptureFixture[str]) -> None:
    """--help shows one section per group, in order, each flag under its own group."""
    with pytest.raises(SystemExit) as exc:
        from_argv(["--help"], {})
    assert exc.value.code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert list(settings.GROUPS) == GROUP_ORDER
    heads = [lines.index(f"{group}:") for group in GROUP_ORDER]
    assert heads == sorted(heads)
    bounds = dict(zip(GROUP_ORDER, [*heads[1:], len(lines)], strict=True))
    for name, flag, _, _ in FROZEN:
        group = settings.OPTIONS[name].group
        where = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{flag} "))
        assert lines.index(f"{group}:") < where < bounds[group], (name, group)


# -- --format: plug-ins are imported by the start-up check, not by Settings ---------------------------


class Probe(NamedTuple):
    name: str  # the plug-in module
    mark: Path  # the file its import-time code creates

    def imported(self) -> bool:
        return self.mark.exists() and self.name in sys.modules


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    """A plug-in module whose import-time code leaves a mark, registered as the entry point "probe"."""
    name = f"candlecast_probe_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_suffix('.imported').touch()\ndef parse(msg):\n    return []\n"
    )
    info = tmp_path / "probe_formats-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-formats\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[candlecast.formats]\nprobe = {name}:parse\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield Probe(name, tmp_path / f"{name}.imported")
    sys.modules.pop(name, None)


@pytest.mark.parametrize("spelling", ["import string", "entry point"])
def test_settings_import_no_plugin_but_the_start_up_check_does(probe: Probe, spelling: str) -> None:
    """Settings(...) and load() leave a plug-in format unimported; derive imports it."""
    fmt = f"{probe.name}:parse" if spelling == "import string" else "probe"
    s = Settings(format=fmt)
    assert load({"format": fmt}, {}).format == fmt
    assert not probe.mark.exists() and probe.name not in sys.modules
    derive(s)
    assert probe.imported()


def test_settings_resolve_the_format_once_and_name_the_flag() -> None:
    assert load({"format": "KRAKEN"}, {}).format == "kraken"
    assert load({}, {"CANDLECAST_FORMAT": "tests.example_format:parse"}).format == "tests.example_format:parse"
    Settings(format="nope.module:parse")  # building settings imports no plug-in; the start-up check does
    with pytest.raises(SettingsError) as exc:
        derive(Settings(format="nope.module:parse"))
    assert str(exc.value).startswith("invalid setting --format (CANDLECAST_FORMAT): format 'nope.module:parse': ")


def test_a_builtin_format_needs_no_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built-in names (any case) pass the start-up check without asking the plug-in registry
    (no entry point read, nothing imported) and resolve to the built-in format."""
    from candlecast.formats import registry

    def no(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(f"looked for a plug-in: {args!r}")

    monkeypatch.setattr(registry, "entry_points", no)
    monkeypatch.setattr(registry, "_import_string", no)
    for name in ("seed", "binance", " OKX ", "Kraken"):
        assert derive(Settings(format=name)).format is registry.BUILTIN[name.strip().lower()]


@pytest.mark.parametrize(
    ("fmt", "says"),
    [
        ("fix", "unknown format 'fix'"),
        ("", "unknown format ''"),
        ("no_such_module_xyz:parse", "cannot import no_such_module_xyz: ModuleNotFoundError"),
        ("tests.example_format:nope", "tests.example_format has no attribute 'nope'"),
    ],
)
def test_the_start_up_check_refuses_a_bad_format_with_one_line(fmt: str, says: str) -> None:
    """A bad --format is accepted by Settings and refused by derive, in one line naming the flag."""
    s = load({"format": fmt}, {})
    with pytest.raises(SettingsError) as exc:
        derive(s)
    message = str(exc.value)
    assert message.startswith("invalid setting --format (CANDLECAST_FORMAT): ")
    assert says in message and "\n" not in message


def test_a_plugin_that_fails_on_import_is_one_line_at_the_start_up_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plug-in whose import raises: Settings accepts the name, derive reports the error in one line."""
    name = f"candlecast_broken_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('no broker\\nconfigured')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    s = Settings(format=f"{name}:parse")
    with pytest.raises(SettingsError) as exc:
        derive(s)
    assert str(exc.value) == (
        f"invalid setting --format (CANDLECAST_FORMAT): format '{name}:parse': "
        f"cannot import {name}: RuntimeError: no broker configured"
    )


def test_cli_refuses_a_bad_format_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """python -m candlecast runs the start-up check before anything starts: exit 2, one line."""
    from candlecast.__main__ import main

    assert main(["--format", "no_such_module_xyz:parse"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("candlecast: invalid setting --format (CANDLECAST_FORMAT): ")


def test_service_refuses_a_bad_format_at_construction(probe: Probe) -> None:
    """Service(settings) runs the start-up check too: a bad format is refused, a plug-in imported."""
    from candlecast.web.app import Service

    with pytest.raises(SettingsError, match=r"^invalid setting --format \(CANDLECAST_FORMAT\): "):
        Service(Settings(format="no_such_module_xyz:parse"))
    assert not probe.mark.exists()
    Service(Settings(format=f"{probe.name}:parse"))
    assert probe.imported()


# -- any value: a setting or one SettingsError line ------------------------------------------------


@FAST
@given(name=st.sampled_from(sorted(settings.OPTIONS)), text=st.text(max_size=40))
def test_every_settings_converter_returns_a_value_or_raises_value_error(name: str, text: str) -> None:
    convert = settings.OPTIONS[name].convert
    try:
        convert(text)
    except ValueError:
        pass


#: Options whose value names something to open or import; the others are loaded whole below.
_TOUCHES_FILES = {"format", "jwt_public_key", "replay_file", "chart_js", "upstream", "source"}


@FAST
@given(
    values=st.dictionaries(
        st.sampled_from(sorted(set(settings.OPTIONS) - _TOUCHES_FILES)), st.text(max_size=40), max_size=4
    )
)
def test_settings_load_returns_settings_or_raises_settings_error(values: dict[str, str]) -> None:
    try:
        loaded = settings.load(values, {})
    except SettingsError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(loaded, Settings)
