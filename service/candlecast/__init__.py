"""candlecast: one upstream market-data feed in, many live dashboards out.

The public API is what ``__all__`` lists, importable from ``candlecast`` itself:

* for a format plug-in (``docs/formats.md``): :class:`Candle`, :func:`make_candle`,
  :class:`MalformedMessage`, the :data:`Format` type, and for a history half
  :class:`HistoryFormat`, :class:`Request`, :class:`Wanted`, :func:`rest_bar`, with the JSON
  shape helpers :func:`json_object`, :func:`json_list`, :func:`epoch_ms`;
* for running or embedding candlecast: :class:`Settings` (and :class:`SettingsError`),
  :class:`Service` and :func:`create_app` (loaded on first use: importing ``candlecast`` for a
  plug-in does not import the server);
* the errors a caller may catch: :class:`ClientError`, :class:`ConfigError`.

Everything else is internal and may change between releases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ClientError, ConfigError
from .formats.contract import HistoryFormat, Request, Wanted, rest_bar
from .formats.shapes import epoch_ms, json_list, json_object
from .model.candle import Candle, Format, MalformedMessage, make_candle
from .settings import Settings, SettingsError
from .version import __version__

if TYPE_CHECKING:
    from .web.app import Service, create_app

__all__ = [
    "Candle",
    "ClientError",
    "ConfigError",
    "Format",
    "HistoryFormat",
    "MalformedMessage",
    "Request",
    "Service",
    "Settings",
    "SettingsError",
    "Wanted",
    "__version__",
    "create_app",
    "epoch_ms",
    "json_list",
    "json_object",
    "make_candle",
    "rest_bar",
]

_LAZY = {"Service", "create_app"}


def __getattr__(name: str) -> Any:
    """``Service`` and ``create_app`` on first use (they import the server's dependencies)."""
    if name in _LAZY:
        from .web import app

        return getattr(app, name)
    raise AttributeError(f"module 'candlecast' has no attribute {name!r}")
