"""Settings: one frozen object, filled from CLI flags and ``CANDLECAST_*`` variables.

The only module that reads ``os.environ`` (through the ``environ`` argument of :func:`load`).
Flags win over variables, variables over defaults. Every value is validated once, here: a bad
one raises :class:`SettingsError` whose message is one line naming the flag and the variable.

Each setting is declared once, as a field of :class:`Settings` whose metadata is its
:class:`Option` (converter, group, help). Its flag (``--name-with-dashes``), its variable
(``CANDLECAST_NAME``), its ``--help`` line and its place in :data:`GROUPS` are derived from
that declaration; so are :func:`add_arguments` and :func:`load`. A setting whose default is
``None`` is optional: an empty value (``CANDLECAST_UPSTREAM=``) means "not set".

Building :class:`Settings` imports no plug-in code: a ``--format`` that is not built in is only
resolved (and the JWT key file read) by :func:`derive`, which the command line and ``Service`` call once at start-up.
Runs in the calling thread; owns nothing, closes nothing.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import orjson

from .access.tokens import KEY_ALGORITHMS, MIN_SECRET_BYTES, SECRET_ALGORITHMS, TokenError, load_public_key
from .errors import ConfigError
from .formats import registry as formats
from .formats.contract import HistoryFormat
from .model.candle import Format
from .model.intervals import IntervalError, IntervalSet, parse_interval
from .model.intervals import from_ms as interval_from_ms
from .model.rules import is_symbol, parse_bool

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPublicKeys

__all__ = [
    "DEFAULT_CHART_JS",
    "DEFAULT_INTERVALS",
    "DEFAULT_SYMBOLS",
    "ENV_PREFIX",
    "GROUPS",
    "LOG_LEVELS",
    "OPTIONAL",
    "OPTIONS",
    "ROLES",
    "SOURCES",
    "Group",
    "Option",
    "Role",
    "Settings",
    "SettingsError",
    "Source",
    "add_arguments",
    "Derived",
    "derive",
    "from_argv",
    "interval_set",
    "load",
]

Source = Literal["sim", "ws", "replay"]
SOURCES: Final[tuple[Source, ...]] = ("sim", "ws", "replay")
Role = Literal["all", "ingest", "edge"]
ROLES: Final[tuple[Role, ...]] = ("all", "ingest", "edge")
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug")
DEFAULT_SYMBOLS: Final = ("BTCUSD", "ETHUSD", "SOLUSD", "XRPUSD", "EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
ENV_PREFIX: Final = "CANDLECAST_"
#: The dashboard's chart library, inside the package: the build (hatch_build.py) puts it there,
#: in a wheel, an sdist and an editable checkout alike.
DEFAULT_CHART_JS: Final = Path(__file__).resolve().parent / "static" / "vendor" / "lightweight-charts.mjs"
DEFAULT_INTERVALS: Final = ("1m", "5m", "15m", "1h", "4h", "1d")

Group = Literal["server", "source", "history", "fan-out", "backplane", "access", "logging"]
#: The groups settings are shown in by ``--help``, in this order, with what each holds.
GROUPS: Final[Mapping[Group, str]] = MappingProxyType(
    {
        "server": "the HTTP and WebSocket server (uvicorn) and the dashboard it serves",
        "source": "where candles come from: the simulator, a broker's WebSocket, a replay file",
        "history": "bars kept per symbol, the intervals built from them, history loaded over REST",
        "fan-out": "delivery to each client: queues, client counts, snapshot budgets",
        "backplane": "scale-out over Redis: --role ingest publishes, --role edge serves",
        "access": "who may connect: origins, static tokens, signed tokens (JWT), per-address caps",
        "logging": "what candlecast logs",
    }
)


class SettingsError(ConfigError):
    """A setting with a bad value; ``str()`` is one line fit for the terminal."""


@dataclass(frozen=True, slots=True)
class Option:
    """How one setting is told, kept in its field's metadata: ``convert`` turns the flag's or
    variable's text into the value (raising :class:`ValueError` with a one-line reason),
    ``group`` is its :data:`GROUPS` entry, ``help`` its ``--help`` text."""

    convert: Callable[[str], object]
    group: Group
    help: str


_OPTION: Final = "candlecast.option"  # the field-metadata key holding a setting's Option
_T = TypeVar("_T")
_S = TypeVar("_S", bound=str)


def _setting(default: _T, convert: Callable[[str], _T], group: Group, help_text: str, *, secret: bool = False) -> _T:
    """Declare one setting: its default, converter, group and help (``secret``: kept out of repr)."""
    return field(default=default, repr=not secret, metadata={_OPTION: Option(convert, group, help_text)})


# -- converters: text (a flag or a variable) -> value, or ValueError with a one-line reason ------------


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


def _choice(options: tuple[_S, ...]) -> Callable[[str], _S]:
    def conv(text: str) -> _S:
        value = text.strip().lower()
        for option in options:
            if option == value:
                return option
        raise ValueError(f"must be one of {', '.join(options)}, got {text!r}")

    return conv


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _str(text: str) -> str:
    return text


def _format(text: str) -> str:
    """A built-in name, lower-cased; anything else (a plug-in name, an import string) as given.
    Pure: whether a plug-in name resolves is :func:`derive`'s business."""
    return formats.builtin_name(text) or text.strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything candlecast can be told. Defaults run the simulator on 127.0.0.1:8000.

    Built by keyword (``Settings(port=0, rate=50.0)``) or by :func:`load`; validates itself
    (:class:`SettingsError`), except that a plug-in ``format`` is resolved by :func:`derive`."""

    # -- server -------------------------------------------------------------------------------------
    host: str = _setting("127.0.0.1", _str, "server", "interface to listen on")
    port: int = _setting(8000, _int(0, 65535), "server", "TCP port (0: any free port)")
    root_path: str = _setting(
        "", _str, "server", "path prefix the app is mounted under behind a proxy, e.g. /candlecast"
    )
    loop: str = _setting(
        "auto", _choice(("auto", "asyncio", "uvloop")), "server", "event loop (auto: uvloop when installed)"
    )
    ws_impl: str = _setting(
        "websockets-sansio",
        _choice(("websockets-sansio", "websockets", "wsproto")),
        "server",
        "uvicorn's WebSocket implementation",
    )
    ws_ping_interval: float = _setting(
        20.0, _float(0.0), "server", "seconds between WebSocket pings to clients (0: off)"
    )
    ws_ping_timeout: float = _setting(
        20.0, _float(0.0), "server", "seconds to wait for a pong before dropping a client"
    )
    ws_compression: bool = _setting(
        False, parse_bool, "server", "permessage-deflate for clients (off: saves ~300 KiB/connection)"
    )
    ws_direct: bool = _setting(
        True,
        parse_bool,
        "server",
        "write caught-up clients' frames straight to their sockets, one write per pump step (needs"
        " --ws-impl websockets-sansio, no compression)",
    )
    header_timeout: float = _setting(
        10.0, _float(0.05, 3600.0), "server", "seconds a connection has to send a complete HTTP request head"
    )
    max_header_bytes: int = _setting(
        32 * 1024,
        _int(1024, 16 * 1024 * 1024),
        "server",
        "bytes of an HTTP request head (request line and headers) before it is refused with 431",
    )
    max_headers: int = _setting(
        100, _int(1, 10_000), "server", "header lines in an HTTP request before it is refused with 431"
    )
    keepalive_timeout: int = _setting(
        5, _int(1, 3600), "server", "seconds an idle keep-alive HTTP connection is kept open"
    )
    proxy_headers: bool = _setting(False, parse_bool, "server", "trust X-Forwarded-* from --forwarded-allow-ips")
    forwarded_allow_ips: str = _setting(
        "127.0.0.1", _str, "server", "proxy addresses whose X-Forwarded-* headers are trusted"
    )
    chart_js: str = _setting(
        str(DEFAULT_CHART_JS),
        _str,
        "server",
        "the lightweight-charts ES module the dashboard loads (default: the one in the package)",
    )

    # -- source -------------------------------------------------------------------------------------
    source: Source = _setting(
        "sim", _choice(SOURCES), "source", "upstream: sim (built-in simulator), ws (broker WebSocket), replay (JSONL)"
    )
    upstream: str | None = _setting(None, _str, "source", "broker WebSocket URL (ws:// or wss://), for --source ws")
    format: str = _setting(
        "seed",
        _format,
        "source",
        f"upstream message format: {', '.join(formats.BUILTIN)}, a plug-in's name, or package.module:function",
    )
    subscribe: str | None = _setting(None, _str, "source", "JSON message sent to the broker on every (re)connect")
    symbols: tuple[str, ...] = _setting(DEFAULT_SYMBOLS, _list, "source", "simulator symbols, comma-separated")
    rate: float = _setting(20.0, _float(0.1, 1_000_000), "source", "simulator updates per second, all symbols together")
    bar_seconds: float = _setting(60.0, _float(0.001), "source", "simulator bar length in seconds")
    seed: int = _setting(1, _int(0, 2**63), "source", "simulator random seed")
    base_interval: str | None = _setting(
        None, _str, "source", "the source's bar interval, e.g. 1m (default: --bar-seconds for sim, else 1m)"
    )
    replay_file: str | None = _setting(None, _str, "source", "JSONL file for --source replay")
    speed: float = _setting(
        1.0, _float(0.0), "source", "replay speed factor (1: recorded pace, 0: as fast as possible)"
    )
    bridge_size: int = _setting(
        65_536, _int(1, 10_000_000), "source", "candles buffered between the producer thread and the loop"
    )
    stale_after: float = _setting(
        30.0, _float(0.1), "source", "seconds without upstream data before /readyz reports stale"
    )
    reconnect_min: float = _setting(0.5, _float(0.01), "source", "first upstream reconnect delay, seconds")
    reconnect_max: float = _setting(30.0, _float(0.01), "source", "longest upstream reconnect delay, seconds")

    # -- history ------------------------------------------------------------------------------------
    history: int = _setting(500, _int(1, 100_000), "history", "bars kept per symbol for snapshots and /api/candles")
    intervals: tuple[str, ...] = _setting(
        DEFAULT_INTERVALS,
        _list,
        "history",
        "bar intervals served, comma-separated, built from the base bars (UTC-aligned)",
    )
    backfill: int = _setting(
        300,
        _int(0, 100_000),
        "history",
        "bars of history per symbol and interval loaded at start (capped at --history): made up by the simulator, "
        "fetched over the broker's REST API for --source ws when the format has a history half",
    )
    rest_url: str | None = _setting(
        None,
        _str,
        "history",
        "the broker's REST base URL for history, e.g. https://api.binance.com (default: the format's)",
    )
    rest_timeout: float = _setting(
        10.0, _float(0.05, 300.0), "history", "seconds a history (REST) request may take to connect, and to answer"
    )

    # -- fan-out ------------------------------------------------------------------------------------
    client_queue: int = _setting(1024, _int(2, 1_000_000), "fan-out", "per-client bound on pending updates before 1013")
    max_clients: int = _setting(10_000, _int(1, 1_000_000), "fan-out", "WebSocket clients at once")
    snapshot_bytes: int = _setting(
        4 * 1024 * 1024,
        _int(64 * 1024, 1024**3),
        "fan-out",
        "bytes of snapshots (history sent on connect or subscribe) one client may have queued; past it: error frame",
    )
    snapshot_rate: int = _setting(
        20_000,
        _int(100, 100_000_000),
        "fan-out",
        "snapshot bars per second one client may ask for (subscribe with history); past it: error frame",
    )

    # -- backplane ----------------------------------------------------------------------------------
    role: Role = _setting(
        "all",
        _choice(ROLES),
        "backplane",
        "all (one process), ingest (source -> Redis), edge (Redis -> clients); see Scaling",
    )
    redis_url: str | None = _setting(
        None,
        _str,
        "backplane",
        "Redis for --role ingest/edge: redis://[user:pass@]host:port[/db], rediss:// or unix://",
    )
    redis_prefix: str = _setting(
        "candlecast",
        _str,
        "backplane",
        "prefix of every Redis key the backplane uses (one per candlecast deployment)",
    )
    stream_maxlen: int = _setting(
        100_000,
        _int(1000, 100_000_000),
        "backplane",
        "approximate Redis Stream retention, entries (XADD MAXLEN ~)",
    )
    lease_ttl: float = _setting(
        5.0,
        _float(0.1, 600.0),
        "backplane",
        "ingest leader lease, seconds: a standby takes over this long after a crash",
    )
    ingest_buffer: int = _setting(
        100_000,
        _int(1, 10_000_000),
        "backplane",
        "candles an ingest buffers while Redis is unreachable (oldest dropped)",
    )

    # -- access -------------------------------------------------------------------------------------
    origins: tuple[str, ...] = _setting(
        (), _list, "access", "allowed WebSocket Origin values, comma-separated (empty: any)"
    )
    tokens: tuple[str, ...] = _setting(
        (), _list, "access", "access tokens, comma-separated (empty: no auth)", secret=True
    )
    max_clients_per_ip: int = _setting(
        0, _int(0, 1_000_000), "access", "WebSocket clients per client address (0: no cap)"
    )
    auth_timeout: float = _setting(
        5.0, _float(0.05, 60.0), "access", "seconds a /ws client without a token has to send its auth message"
    )
    jwt_secret: str | None = _setting(
        None,
        _str,
        "access",
        f"HS256 secret for signed tokens (JWT), at least {MIN_SECRET_BYTES} bytes",
        secret=True,
    )
    jwt_public_key: str | None = _setting(
        None, _str, "access", "PEM file of the public key for RS256/ES256 signed tokens (JWT)"
    )
    jwt_algorithms: tuple[str, ...] = _setting(
        (), _list, "access", "JWT algorithms accepted (empty: HS256 with a secret, RS256,ES256 with a key)"
    )
    jwt_audience: str | None = _setting(None, _str, "access", "required JWT audience (aud), if set")
    jwt_issuer: str | None = _setting(None, _str, "access", "required JWT issuer (iss), if set")
    jwt_leeway: float = _setting(5.0, _float(0.0, 300.0), "access", "seconds of clock skew allowed on JWT exp and nbf")
    jwt_max_lifetime: float = _setting(
        86_400.0,
        _float(1.0, 10 * 365 * 86_400.0),
        "access",
        "longest a signed token (JWT) may live, seconds: exp - iat (or exp - now without iat) above it is refused",
    )

    # -- logging ------------------------------------------------------------------------------------
    log_level: str = _setting("info", _choice(LOG_LEVELS), "logging", "log level")

    def __post_init__(self) -> None:
        _validate(self)


#: Every setting's :class:`Option`, by field name, in declaration order (derived from the fields;
#: a field declared without :func:`_setting` fails here, at import).
OPTIONS: Final[Mapping[str, Option]] = MappingProxyType({f.name: f.metadata[_OPTION] for f in fields(Settings)})
#: The settings whose default is ``None``: for these an empty flag or variable means "not set".
OPTIONAL: Final = frozenset(f.name for f in fields(Settings) if f.default is None)


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


@dataclass(frozen=True, slots=True)
class Derived:
    """What the settings imply, worked out once at start-up (:func:`derive`) and handed to
    whoever needs it: the interval set, the format (a plug-in imported), its history half, and
    the JWT public key read from its file."""

    intervals: IntervalSet
    format: Format
    history: HistoryFormat | None
    public_key: AllowedPublicKeys | None


def derive(s: Settings) -> Derived:
    """The start-up check: resolve ``s.format`` and its history half (a plug-in's name or an
    import string imports its module here, in the calling thread), and read the public key.
    Raises :class:`SettingsError`, one line naming the flag. ``python -m candlecast`` calls it
    once and hands the result to ``Service`` (which derives it itself when not given one);
    :class:`Settings` itself never does."""
    try:
        fmt = formats.resolve(s.format)
        half = formats.history(s.format)
    except formats.FormatError as exc:
        raise _fail("format", str(exc)) from None
    return Derived(interval_set(s), fmt, half, _public_key(s.jwt_public_key))


def _public_key(path: str | None) -> AllowedPublicKeys | None:
    """The JWT public key in the PEM file ``path``: read here, once, at start-up."""
    if path is None:
        return None
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise _fail("jwt_public_key", f"cannot read {path!r}: {exc.strerror}") from None
    try:
        return load_public_key(pem)
    except TokenError as exc:
        raise _fail("jwt_public_key", f"{path!r}: {exc.detail}") from None


def _validate(s: Settings) -> None:
    """Cross-field checks; single-field ranges are checked by the converters. Imports nothing."""
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
    """Add one ``--flag`` per setting, in one argument group per :data:`GROUPS` entry (so ``--help``
    shows them grouped); values stay strings until :func:`load` converts them."""
    groups = {name: parser.add_argument_group(name, description) for name, description in GROUPS.items()}
    defaults = Settings()
    for name, option in OPTIONS.items():
        default = getattr(defaults, name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        groups[option.group].add_argument(
            _flag(name),
            dest=name,
            metavar=name.upper(),
            default=None,
            help=f"{option.help} [env {_env(name)}; default {shown!r}]",
        )


def load(args: argparse.Namespace | Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from parsed flags and the environment; raises :class:`SettingsError`.
    Imports no plug-in code: call :func:`derive` at start-up for that."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    values: dict[str, Any] = {}
    for name, option in OPTIONS.items():
        text = given.get(name)
        if text is None:
            text = environ.get(_env(name))
        if text is None:
            continue
        if text == "" and name in OPTIONAL:
            values[name] = None  # an empty value means "not set"
            continue
        try:
            values[name] = option.convert(text)
        except ValueError as exc:
            raise _fail(name, str(exc)) from None
    return Settings(**values)


def from_argv(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Parse server flags (no sub-command) into :class:`Settings` (no plug-in import: see :func:`derive`)."""
    from .version import __version__

    parser = argparse.ArgumentParser(prog="candlecast")
    parser.add_argument("--version", action="version", version=f"candlecast {__version__}")
    add_arguments(parser)
    return load(parser.parse_args(list(argv)), environ)
