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

from .access.tokens import KEY_ALGORITHMS, MIN_SECRET_BYTES, SECRET_ALGORITHMS, TokenError, load_public_key
from .formats import registry as formats
from .model.intervals import IntervalError, IntervalSet, parse_interval
from .model.intervals import from_ms as interval_from_ms
from .model.rules import is_symbol, parse_bool

Source = Literal["sim", "ws", "replay"]
SOURCES: Final = ("sim", "ws", "replay")
Role = Literal["all", "ingest", "edge"]
ROLES: Final = ("all", "ingest", "edge")
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")
DEFAULT_SYMBOLS: Final = ("BTCUSD", "ETHUSD", "SOLUSD", "XRPUSD", "EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
ENV_PREFIX: Final = "CANDLECAST_"
#: The dashboard's chart library, inside the package: the build (hatch_build.py) puts it there,
#: in a wheel, an sdist and an editable checkout alike.
DEFAULT_CHART_JS: Final = Path(__file__).resolve().parent / "static" / "vendor" / "lightweight-charts.mjs"
_OPTIONAL: Final = ("upstream", "subscribe", "replay_file", "base_interval", "redis_url", "rest_url")
_JWT_OPTIONAL: Final = ("jwt_secret", "jwt_public_key", "jwt_audience", "jwt_issuer")
DEFAULT_INTERVALS: Final = ("1m", "5m", "15m", "1h", "4h", "1d")


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
    intervals: tuple[str, ...] = DEFAULT_INTERVALS
    base_interval: str | None = None
    seed: int = 1
    backfill: int = 300
    rest_url: str | None = None
    rest_timeout: float = 10.0
    replay_file: str | None = None
    speed: float = 1.0
    history: int = 500
    client_queue: int = 1024
    max_clients: int = 10_000
    bridge_size: int = 65_536
    role: Role = "all"
    redis_url: str | None = None
    redis_prefix: str = "candlecast"
    stream_maxlen: int = 100_000
    lease_ttl: float = 5.0
    ingest_buffer: int = 100_000
    origins: tuple[str, ...] = ()
    tokens: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = "info"
    root_path: str = ""
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_compression: bool = False
    ws_direct: bool = True
    stale_after: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    chart_js: str = str(DEFAULT_CHART_JS)
    loop: str = "auto"
    ws_impl: str = "websockets-sansio"
    proxy_headers: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = None
    jwt_algorithms: tuple[str, ...] = ()
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 5.0
    auth_timeout: float = 5.0
    header_timeout: float = 10.0
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    jwt_max_lifetime: float = 86_400.0
    snapshot_bytes: int = 4 * 1024 * 1024
    snapshot_rate: int = 20_000
    keepalive_timeout: int = 5
    max_clients_per_ip: int = 0

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


def _format(text: str) -> str:
    """A built-in name, lower-cased; anything else (a plug-in name, an import string) as given."""
    return formats.builtin_name(text) or text.strip()


# name -> (converter, help). Each name is a Settings field, a --flag and a CANDLECAST_ variable.
_OPTIONS: Final[dict[str, tuple[Callable[[str], Any], str]]] = {
    "host": (_str, "interface to listen on"),
    "port": (_int(0, 65535), "TCP port (0: any free port)"),
    "source": (_choice(SOURCES), "upstream: sim (built-in simulator), ws (broker WebSocket), replay (JSONL)"),
    "upstream": (_str, "broker WebSocket URL (ws:// or wss://), for --source ws"),
    "format": (
        _format,
        f"upstream message format: {', '.join(formats.BUILTIN)}, a plug-in's name, or package.module:function",
    ),
    "subscribe": (_str, "JSON message sent to the broker on every (re)connect"),
    "symbols": (_list, "simulator symbols, comma-separated"),
    "rate": (_float(0.1, 1_000_000), "simulator updates per second, all symbols together"),
    "bar_seconds": (_float(0.001), "simulator bar length in seconds"),
    "intervals": (_list, "bar intervals served, comma-separated, built from the base bars (UTC-aligned)"),
    "base_interval": (_str, "the source's bar interval, e.g. 1m (default: --bar-seconds for sim, else 1m)"),
    "seed": (_int(0, 2**63), "simulator random seed"),
    "backfill": (
        _int(0, 100_000),
        "bars of history per symbol and interval loaded at start (capped at --history): made up by the simulator, "
        "fetched over the broker's REST API for --source ws when the format has a history half",
    ),
    "rest_url": (_str, "the broker's REST base URL for history, e.g. https://api.binance.com (default: the format's)"),
    "rest_timeout": (_float(0.05, 300.0), "seconds a history (REST) request may take to connect, and to answer"),
    "replay_file": (_str, "JSONL file for --source replay"),
    "speed": (_float(0.0), "replay speed factor (1: recorded pace, 0: as fast as possible)"),
    "history": (_int(1, 100_000), "bars kept per symbol for snapshots and /api/candles"),
    "client_queue": (_int(2, 1_000_000), "per-client bound on pending updates before 1013"),
    "max_clients": (_int(1, 1_000_000), "WebSocket clients at once"),
    "bridge_size": (_int(1, 10_000_000), "candles buffered between the producer thread and the loop"),
    "role": (_choice(ROLES), "all (one process), ingest (source -> Redis), edge (Redis -> clients); see Scaling"),
    "redis_url": (_str, "Redis for --role ingest/edge: redis://[user:pass@]host:port[/db], rediss:// or unix://"),
    "redis_prefix": (_str, "prefix of every Redis key the backplane uses (one per candlecast deployment)"),
    "stream_maxlen": (_int(1000, 100_000_000), "approximate Redis Stream retention, entries (XADD MAXLEN ~)"),
    "lease_ttl": (_float(0.1, 600.0), "ingest leader lease, seconds: a standby takes over this long after a crash"),
    "ingest_buffer": (_int(1, 10_000_000), "candles an ingest buffers while Redis is unreachable (oldest dropped)"),
    "origins": (_list, "allowed WebSocket Origin values, comma-separated (empty: any)"),
    "tokens": (_list, "access tokens, comma-separated (empty: no auth)"),
    "log_level": (_choice(LOG_LEVELS), "log level"),
    "root_path": (_str, "path prefix the app is mounted under behind a proxy, e.g. /candlecast"),
    "ws_ping_interval": (_float(0.0), "seconds between WebSocket pings to clients (0: off)"),
    "ws_ping_timeout": (_float(0.0), "seconds to wait for a pong before dropping a client"),
    "ws_direct": (
        parse_bool,
        "write caught-up clients' frames straight to their sockets, one write per pump step (needs"
        " --ws-impl websockets-sansio, no compression)",
    ),
    "ws_compression": (parse_bool, "permessage-deflate for clients (off: saves ~300 KiB/connection)"),
    "stale_after": (_float(0.1), "seconds without upstream data before /readyz reports stale"),
    "reconnect_min": (_float(0.01), "first upstream reconnect delay, seconds"),
    "reconnect_max": (_float(0.01), "longest upstream reconnect delay, seconds"),
    "chart_js": (_str, "the lightweight-charts ES module the dashboard loads (default: the one in the package)"),
    "loop": (_choice(("auto", "asyncio", "uvloop")), "event loop (auto: uvloop when installed)"),
    "ws_impl": (_choice(("websockets-sansio", "websockets", "wsproto")), "uvicorn's WebSocket implementation"),
    "proxy_headers": (parse_bool, "trust X-Forwarded-* from --forwarded-allow-ips"),
    "forwarded_allow_ips": (_str, "proxy addresses whose X-Forwarded-* headers are trusted"),
    "jwt_secret": (_str, f"HS256 secret for signed tokens (JWT), at least {MIN_SECRET_BYTES} bytes"),
    "jwt_public_key": (_str, "PEM file of the public key for RS256/ES256 signed tokens (JWT)"),
    "jwt_algorithms": (_list, "JWT algorithms accepted (empty: HS256 with a secret, RS256,ES256 with a key)"),
    "jwt_audience": (_str, "required JWT audience (aud), if set"),
    "jwt_issuer": (_str, "required JWT issuer (iss), if set"),
    "jwt_leeway": (_float(0.0, 300.0), "seconds of clock skew allowed on JWT exp and nbf"),
    "auth_timeout": (_float(0.05, 60.0), "seconds a /ws client without a token has to send its auth message"),
    "header_timeout": (_float(0.05, 3600.0), "seconds a connection has to send a complete HTTP request head"),
    "max_header_bytes": (
        _int(1024, 16 * 1024 * 1024),
        "bytes of an HTTP request head (request line and headers) before it is refused with 431",
    ),
    "max_headers": (_int(1, 10_000), "header lines in an HTTP request before it is refused with 431"),
    "jwt_max_lifetime": (
        _float(1.0, 10 * 365 * 86_400.0),
        "longest a signed token (JWT) may live, seconds: exp - iat (or exp - now without iat) above it is refused",
    ),
    "snapshot_bytes": (
        _int(64 * 1024, 1024**3),
        "bytes of snapshots (history sent on connect or subscribe) one client may have queued; past it: error frame",
    ),
    "snapshot_rate": (
        _int(100, 100_000_000),
        "snapshot bars per second one client may ask for (subscribe with history); past it: error frame",
    ),
    "keepalive_timeout": (_int(1, 3600), "seconds an idle keep-alive HTTP connection is kept open"),
    "max_clients_per_ip": (_int(0, 1_000_000), "WebSocket clients per client address (0: no cap)"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _fail(name: str, message: str) -> SettingsError:
    return SettingsError(f"invalid setting {_flag(name)} ({_env(name)}): {message}")


def interval_set(s: Settings) -> IntervalSet:
    """The base interval and the higher ones served; raises :class:`IntervalError`."""
    if s.base_interval:
        base = parse_interval(s.base_interval)
    elif s.source == "sim":
        base = interval_from_ms(max(1, round(s.bar_seconds * 1000)))
    else:
        base = parse_interval("1m")
    return IntervalSet.build(base, tuple(parse_interval(name) for name in s.intervals))


def _validate(s: Settings) -> None:
    """Cross-field checks; single-field ranges are checked by the converters."""
    try:
        interval_set(s)
    except IntervalError as exc:
        raise _fail("intervals" if s.intervals and s.base_interval is None else "base_interval", str(exc)) from None
    if s.source == "ws":
        if not s.upstream:
            raise _fail("upstream", "required with --source ws")
        if not re.match(r"^wss?://[^/\s]+", s.upstream):
            raise _fail("upstream", f"must be a ws:// or wss:// URL, got {s.upstream!r}")
    if s.rest_url is not None and not re.match(r"^https?://[^/\s]+", s.rest_url):
        raise _fail("rest_url", f"must be an http:// or https:// URL, got {s.rest_url[:60]!r}")
    if s.source == "replay" and not s.replay_file:
        raise _fail("replay_file", "required with --source replay")
    try:
        formats.resolve(s.format)
        formats.history(s.format)
    except formats.FormatError as exc:
        raise _fail("format", str(exc)) from None
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
    if s.role != "all" and not s.redis_url:
        raise _fail("redis_url", f"required with --role {s.role}")
    if s.redis_url and not re.match(r"^(rediss?://[^/\s]*|unix:///?\S+)", s.redis_url):
        raise _fail("redis_url", f"must be a redis://, rediss:// or unix:// URL, got {s.redis_url[:60]!r}")
    if not re.fullmatch(r"[\w.:{}-]{1,64}", s.redis_prefix):
        raise _fail("redis_prefix", f"must be 1-64 letters, digits or ._:{{}}-, got {s.redis_prefix[:70]!r}")
    if s.reconnect_max < s.reconnect_min:
        raise _fail("reconnect_max", "must be at least --reconnect-min")
    if s.root_path and (not s.root_path.startswith("/") or s.root_path.endswith("/")):
        raise _fail("root_path", f"must start with / and not end with /, got {s.root_path!r}")
    if s.ws_ping_interval and s.ws_ping_timeout == 0:
        raise _fail("ws_ping_timeout", "must be positive while pings are on")
    _validate_jwt(s)


def _validate_jwt(s: Settings) -> None:
    if s.jwt_secret is not None and len(s.jwt_secret.encode()) < MIN_SECRET_BYTES:
        raise _fail("jwt_secret", f"must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`)")
    if s.jwt_public_key is not None:
        try:
            pem = Path(s.jwt_public_key).read_bytes()
        except OSError as exc:
            raise _fail("jwt_public_key", f"cannot read {s.jwt_public_key!r}: {exc.strerror}") from None
        try:
            load_public_key(pem)
        except TokenError as exc:
            raise _fail("jwt_public_key", f"{s.jwt_public_key!r}: {exc.detail}") from None
    for alg in s.jwt_algorithms:
        if alg not in SECRET_ALGORITHMS and alg not in KEY_ALGORITHMS:
            raise _fail("jwt_algorithms", f"unknown algorithm {alg!r}")
        if alg in SECRET_ALGORITHMS and s.jwt_secret is None:
            raise _fail("jwt_algorithms", f"{alg} needs --jwt-secret")
        if alg in KEY_ALGORITHMS and s.jwt_public_key is None:
            raise _fail("jwt_algorithms", f"{alg} needs --jwt-public-key")
    jwt_on = s.jwt_secret is not None or s.jwt_public_key is not None
    for name in ("jwt_audience", "jwt_issuer"):
        if getattr(s, name) is not None and not jwt_on:
            raise _fail(name, "needs --jwt-secret or --jwt-public-key")


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
    for name in (*_OPTIONAL, *_JWT_OPTIONAL):
        if values.get(name) == "":
            values[name] = None  # an empty variable means "not set"
    return Settings(**values)


def from_argv(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse server flags (no sub-command) into :class:`Settings`."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="candlecast")
    parser.add_argument("--version", action="version", version=f"candlecast {__version__}")
    add_arguments(parser)
    return load(parser.parse_args(list(argv)), environ)
