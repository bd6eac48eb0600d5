"""Upstream formats by name: the built-in ones, plug-ins registered by other packages, and
import strings.

:func:`resolve` turns a ``--format`` value into a :data:`~candlecast.model.candle.Format`, in this
order: a built-in name (:data:`BUILTIN`, any case); a name registered under the entry-point
group :data:`ENTRY_POINT_GROUP` by an installed distribution; an import string
``package.module:callable`` (uvicorn's convention; the attribute may be dotted). Anything else,
or an import that fails, raises :class:`FormatError` with one line that says why. The settings,
``candlecast record`` and the sources all resolve through here, so they accept the same names.

A format may also have a *history half* (:class:`~candlecast.formats.contract.HistoryFormat`: REST requests
for past bars and their answers as candles); :func:`history` finds it: the built-in one for a
built-in name, else the ``history`` attribute of the plug-in's callable, if it has one.

Imports plug-in code (at start-up, in the calling thread); owns nothing, closes nothing.
The contract a plug-in implements, with a complete example: ``docs/formats.md``.
"""

from __future__ import annotations

import importlib
import re
from importlib.metadata import entry_points
from typing import Final, cast

from ..errors import ConfigError
from ..model.candle import Format
from . import binance, bybit, candle, kraken, okx, seed
from .contract import HistoryFormat

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "EXAMPLES", "HISTORY", "FormatError", "builtin_name", "history", "resolve"]

#: Entry-point group other distributions register formats under, e.g. in their pyproject.toml:
#: ``[project.entry-points."candlecast.formats"]`` ``mybroker = "mybroker.candles:parse"``.
ENTRY_POINT_GROUP: Final = "candlecast.formats"

#: Every built-in format, by name. A plug-in cannot take one of these names.
BUILTIN: Final[dict[str, Format]] = {
    "seed": seed.parse_seed,
    "binance": binance.parse_binance,
    "candle": candle.parse_candle,
    "bybit": bybit.parse_bybit,
    "okx": okx.parse_okx,
    "kraken": kraken.parse_kraken,
}
#: The built-in formats' history halves, by format name.
HISTORY: Final[dict[str, HistoryFormat]] = {
    "binance": binance.BinanceHistory(),
    "bybit": bybit.BybitHistory(),
    "okx": okx.OkxHistory(),
    "kraken": kraken.KrakenHistory(),
}
#: Per broker format: a public endpoint and the subscribe message to send there (the README
#: shows the same, as ``CANDLECAST_*`` settings).
EXAMPLES: Final[dict[str, tuple[str, str]]] = {
    "binance": binance.EXAMPLE,
    "bybit": bybit.EXAMPLE,
    "okx": okx.EXAMPLE,
    "kraken": kraken.EXAMPLE,
}

_DOTTED: Final = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class FormatError(ConfigError):
    """A ``--format`` value that names no usable format; ``str()`` is one line."""


def builtin_name(name: str) -> str | None:
    """The built-in format ``name`` means (any case, surrounding spaces ignored), if any."""
    key = name.strip().lower()
    return key if key in BUILTIN else None


def resolve(name: str) -> Format:
    """The format ``name`` names; raises :class:`FormatError` (one line) when there is none."""
    key = builtin_name(name)
    if key is not None:
        return BUILTIN[key]
    name = name.strip()
    if ":" in name:
        return _import_string(name)
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise FormatError(
            f"unknown format {name!r}: not built in ({', '.join(BUILTIN)}), not registered by an installed "
            f"package (entry point group {ENTRY_POINT_GROUP}), and not an import string (package.module:function)"
        )
    owners = sorted({ep.dist.name if ep.dist is not None else "?" for ep in found})
    if len(found) > 1:
        raise FormatError(
            f"format {name!r} is registered by several packages ({', '.join(owners)}); use an import string"
        )
    ep = found[0]
    try:
        loaded = ep.load()
    except Exception as exc:  # a plug-in's import error, whatever it is, is one line at start-up
        raise FormatError(
            f"format {name!r} (entry point {ep.value} from {owners[0]}): cannot load it: {_one_line(exc)}"
        ) from None
    return _callable(loaded, f"format {name!r} (entry point {ep.value})")


def history(name: str) -> HistoryFormat | None:
    """The history half of the format ``name`` names, or ``None`` when it has none (it then
    starts with no history, as a stream-only format always did); raises :class:`FormatError`
    like :func:`resolve`, and when a plug-in's ``history`` attribute is not a history half."""
    key = builtin_name(name)
    if key is not None:
        return HISTORY.get(key)
    half = getattr(resolve(name), "history", None)
    if half is None:
        return None
    if not isinstance(half, HistoryFormat):
        raise FormatError(
            f"format {name.strip()!r}: its history attribute is a {type(half).__name__}, not a history half "
            "(base_url, max_limit, streams, serves, request, parse, pause: see docs/formats.md)"
        )
    return half


def _import_string(text: str) -> Format:
    module_name, _, attr = text.partition(":")
    if not _DOTTED.fullmatch(module_name) or not _DOTTED.fullmatch(attr):
        raise FormatError(f"format {text!r}: an import string looks like package.module:function")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:  # ModuleNotFoundError, or whatever the module raises on import
        raise FormatError(f"format {text!r}: cannot import {module_name}: {_one_line(exc)}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FormatError(f"format {text!r}: {module_name} has no attribute {attr!r}") from None
    return _callable(obj, f"format {text!r}")


def _callable(obj: object, what: str) -> Format:
    if not callable(obj):
        raise FormatError(f"{what} is a {type(obj).__name__}, not a function")
    return cast(Format, obj)  # the contract (docs/formats.md) is checked per message by the normalizer


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
