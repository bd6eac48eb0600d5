"""Upstream formats: the plug-in contract and the registry.

A format is a pure function of one decoded broker message returning the candles it carries
(:data:`Format`), raising :class:`MalformedMessage` on bad input; a format may also have a
history half (:class:`HistoryFormat`). :func:`resolve` turns a ``--format`` name into one
(built-ins, the ``candlecast.formats`` entry points, ``package.module:function``), and
:func:`history` finds its history half. Pure, importable from any thread.
"""

from __future__ import annotations

from ..model.candle import REASONS, Candle, Format, MalformedMessage, make_candle
from .registry import BUILTIN, ENTRY_POINT_GROUP, FormatError, builtin_name, history, resolve
from .rest import HistoryFormat, Request, Wanted

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "REASONS",
    "Candle",
    "Format",
    "FormatError",
    "HistoryFormat",
    "MalformedMessage",
    "Request",
    "Wanted",
    "builtin_name",
    "history",
    "make_candle",
    "resolve",
]
