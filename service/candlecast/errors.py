"""The two kinds of error candlecast raises on purpose, and nothing else.

* :class:`ClientError`: what a client can provoke (a bad control message, a refused token). It
  carries a short, stable ``code`` (the ``error`` of an error frame, a metric label, an HTTP
  error body) and a ``detail`` for people; neither ever contains a secret.
* :class:`ConfigError`: a bad setting or a format that cannot be loaded; ``str()`` is one line
  fit for the terminal, naming what to change.

Pure; owns nothing. Upstream input has its own :class:`~candlecast.model.candle.MalformedMessage`
(a ``reason`` counted by metrics), since no client sees it.
"""

from __future__ import annotations

__all__ = ["ClientError", "ConfigError"]


class ClientError(ValueError):
    """Bad input from a client: ``code`` (stable, short) and ``detail`` (for people)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class ConfigError(ValueError):
    """A bad setting or plug-in; ``str()`` is one line."""
