"""Upstream formats: the plug-in contract and the registry.

A format is a pure function of one decoded broker message returning the candles it carries
(:data:`Format`), raising :class:`MalformedMessage` on bad input; a format may also have a
history half (:class:`HistoryFormat`). :func:`resolve` turns a ``--format`` name into one
(built-ins, the ``candlecast.formats`` entry points, ``package.module:function``),
:func:`history` finds its history half and :func:`heartbeat_of` its text keepalive. Pure, importable from any thread.
"""

from __future__ import annotations

from ..model.candle import REASONS, Candle, Format, MalformedMessage, make_candle
from .contract import Heartbeat, HistoryFormat, Request, Wanted, heartbeat_of, rest_bar, subscribe_message
from .registry import BUILTIN, ENTRY_POINT_GROUP, EXAMPLES, HISTORY, FormatError, builtin_name, history, resolve
from .shapes import epoch_ms, json_list, json_object

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "EXAMPLES",
    "HISTORY",
    "REASONS",
    "Candle",
    "Format",
    "FormatError",
    "Heartbeat",
    "HistoryFormat",
    "MalformedMessage",
    "Request",
    "Wanted",
    "builtin_name",
    "epoch_ms",
    "heartbeat_of",
    "history",
    "json_list",
    "json_object",
    "make_candle",
    "resolve",
    "rest_bar",
    "subscribe_message",
]
