"""Settings: one frozen object, filled from CLI flags and ``CANDLECAST_*`` variables.

The only module that reads ``os.environ`` (through the ``environ`` argument of :func:`load`).
Flags win over variables, variables over defaults. Every value is validated once, here: a bad
one raises :class:`SettingsError` whose message is one line naming the flag and the variable.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from .candles import FORMATS
from .rules import is_symbol, parse_bool

Source = Literal["sim", "ws", "replay"]
SOURCES: Final = ("sim", "ws", "replay")
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")
DEFAULT_SYMBOLS: Final = ("BTCUSD", "ETHUSD", "SOLUSD", "XRPUSD", "EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
ENV_PREFIX: Final = "CANDLECAST_"
#: Where ``npm ci`` in the checkout puts the dashboard's chart library.
DEFAULT_CHART_JS: Final = (
    Path(__file__).resolve().parents[2]
    / "node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.mjs"
)
_OPTIONAL: Final = ("upstream", "subscribe", "replay_file")


class SettingsError(ValueError):
    """A setting with a bad value; ``str()`` is one line fit for the terminal."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything candlecast can be told. Defaults run the simulator on 127.0.0.1:8000."""

    host: str = "127.0.0.1"
    port: int = 8000
    source: Source = "sim"
    upstream: str | None = None
    format: str = "seed"
    subscribe: str | None = None
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    rate: float = 20.0
    bar_seconds: float = 60.0
    seed: int = 1
    backfill: int = 300
    replay_file: str | None = None
    speed: float = 1.0
    history: int = 500
    client_queue: int = 1024
    max_clients: int = 10_000
    bridge_size: int = 65_536
    origins: tuple[str, ...] = ()
    tokens: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = "info"
    root_path: str = ""
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_compression: bool = False
    stale_after: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    chart_js: str = str(DEFAULT_CHART_JS)
    loop: str = "auto"
    ws_impl: str = "websockets-sansio"
    proxy_headers: bool = False
    forwarded_allow_ips: str = "127.0.0.1"

    def __post_init__(self) -> None:
        _validate(self)


# -- parsing helpers ---------------------------------------------------------------------------


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def conv(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return conv


def _float(lo: float, hi: float = math.inf) -> Callable[[str], float]:
    def conv(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"must be a number from {lo} to {hi}, got {text}")
        return value

    return conv


def _choice(options: Sequence[str]) -> Callable[[str], str]:
    def conv(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {text!r}")
        return value

    return conv


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _str(text: str) -> str:
    return text


# name -> (converter, help). Each name is a Settings field, a --flag and a CANDLECAST_ variable.
_OPTIONS: Final[dict[str, tuple[Callable[[str], Any], str]]] = {
    "host": (_str, "interface to listen on"),
    "port": (_int(0, 65535), "TCP port (0: any free port)"),
    "source": (_choice(SOURCES), "upstream: sim (built-in simulator), ws (broker WebSocket), replay (JSONL)"),
    "upstream": (_str, "broker WebSocket URL (ws:// or wss://), for --source ws"),
    "format": (_choice(tuple(FORMATS)), "upstream message format: seed, binance or candle"),
    "subscribe": (_str, "JSON message sent to the broker on every (re)connect"),
    "symbols": (_list, "simulator symbols, comma-separated"),
    "rate": (_float(0.1, 1_000_000), "simulator updates per second, all symbols together"),
    "bar_seconds": (_float(0.001), "simulator bar length in seconds"),
    "seed": (_int(0, 2**63), "simulator random seed"),
    "backfill": (_int(0, 100_000), "simulator bars of made-up history per symbol at start (capped at --history)"),
    "replay_file": (_str, "JSONL file for --source replay"),
    "speed": (_float(0.0), "replay speed factor (1: recorded pace, 0: as fast as possible)"),
    "history": (_int(1, 100_000), "bars kept per symbol for snapshots and /api/candles"),
    "client_queue": (_int(2, 1_000_000), "per-client bound on pending updates before 1013"),
    "max_clients": (_int(1, 1_000_000), "WebSocket clients at once"),
    "bridge_size": (_int(1, 10_000_000), "candles buffered between the producer thread and the loop"),
    "origins": (_list, "allowed WebSocket Origin values, comma-separated (empty: any)"),
    "tokens": (_list, "access tokens, comma-separated (empty: no auth)"),
    "log_level": (_choice(LOG_LEVELS), "log level"),
    "root_path": (_str, "path prefix the app is mounted under behind a proxy, e.g. /candlecast"),
    "ws_ping_interval": (_float(0.0), "seconds between WebSocket pings to clients (0: off)"),
    "ws_ping_timeout": (_float(0.0), "seconds to wait for a pong before dropping a client"),
    "ws_compression": (parse_bool, "permessage-deflate for clients (off: saves ~300 KiB/connection)"),
    "stale_after": (_float(0.1), "seconds without upstream data before /readyz reports stale"),
    "reconnect_min": (_float(0.01), "first upstream reconnect delay, seconds"),
    "reconnect_max": (_float(0.01), "longest upstream reconnect delay, seconds"),
    "chart_js": (_str, "the lightweight-charts ES module the dashboard loads (npm ci puts it in node_modules)"),
    "loop": (_choice(("auto", "asyncio", "uvloop")), "event loop (auto: uvloop when installed)"),
    "ws_impl": (_choice(("websockets-sansio", "websockets", "wsproto")), "uvicorn's WebSocket implementation"),
    "proxy_headers": (parse_bool, "trust X-Forwarded-* from --forwarded-allow-ips"),
    "forwarded_allow_ips": (_str, "proxy addresses whose X-Forwarded-* headers are trusted"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _fail(name: str, message: str) -> SettingsError:
    return SettingsError(f"invalid setting {_flag(name)} ({_env(name)}): {message}")


def _validate(s: Settings) -> None:
    """Cross-field checks; single-field ranges are checked by the converters."""
    if s.source == "ws":
        if not s.upstream:
            raise _fail("upstream", "required with --source ws")
        if not re.match(r"^wss?://[^/\s]+", s.upstream):
            raise _fail("upstream", f"must be a ws:// or wss:// URL, got {s.upstream!r}")
    if s.source == "replay" and not s.replay_file:
        raise _fail("replay_file", "required with --source replay")
    if s.subscribe is not None:
        try:
            orjson.loads(s.subscribe)
        except orjson.JSONDecodeError as exc:
            raise _fail("subscribe", f"not valid JSON ({exc})") from None
    if s.source == "sim" and not s.symbols:
        raise _fail("symbols", "at least one symbol is needed")
    for sym in s.symbols:
        if not is_symbol(sym):
            raise _fail("symbols", f"bad symbol {sym!r}")
    if s.reconnect_max < s.reconnect_min:
        raise _fail("reconnect_max", "must be at least --reconnect-min")
    if s.root_path and (not s.root_path.startswith("/") or s.root_path.endswith("/")):
        raise _fail("root_path", f"must start with / and not end with /, got {s.root_path!r}")
    if s.ws_ping_interval and s.ws_ping_timeout == 0:
        raise _fail("ws_ping_timeout", "must be positive while pings are on")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per setting; values stay strings until :func:`load` converts them."""
    defaults = Settings()
    for name, (_, help_text) in _OPTIONS.items():
        default = getattr(defaults, name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        parser.add_argument(
            _flag(name),
            dest=name,
            metavar=name.upper(),
            default=None,
            help=f"{help_text} [env {_env(name)}; default {shown!r}]",
        )


def load(args: argparse.Namespace | Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from parsed flags and the environment; raises :class:`SettingsError`."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    values: dict[str, Any] = {}
    for name, (conv, _) in _OPTIONS.items():
        text = given.get(name)
        if text is None:
            text = environ.get(_env(name))
        if text is None:
            continue
        try:
            values[name] = conv(text)
        except ValueError as exc:
            raise _fail(name, str(exc)) from None
    for name in _OPTIONAL:
        if values.get(name) == "":
            values[name] = None  # an empty variable means "not set"
    return Settings(**values)


def from_argv(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse server flags (no sub-command) into :class:`Settings`."""
    parser = argparse.ArgumentParser(prog="candlecast")
    add_arguments(parser)
    return load(parser.parse_args(list(argv)), environ)
