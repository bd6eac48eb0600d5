"""Secrets out of the log: a filter that masks access tokens in every record candlecast's
loggers and uvicorn's (access, error, asgi) emit.

What it masks: ``token=`` (and ``access_token=``) values in any query string, the value of an
``Authorization`` header, a bearer token, and a JSON ``"token": ...`` (an ``auth`` message in a
debug frame dump), wherever they appear in the formatted message.
Installed once, from :func:`candlecast.server.config`, after uvicorn has configured its
logging. Runs on whichever thread logs; holds nothing to close.
"""

from __future__ import annotations

import logging
import re
from typing import Final

#: ``token=...`` in a query string, ``Authorization: <scheme> <credentials>``, ``Bearer <token>``.
_SECRET: Final = re.compile(
    r"(?i)(?P<q>\b(?:access_)?token=)[^&\s\"'#]*"
    r"|(?P<h>\bauthorization['\"]?\s*[:=,]\s*['\"]?)(?:[\w-]+\s+)?[^\s'\"]+"
    r"|(?P<b>\bbearer\s+)[\w.~+/=-]+"
    r"|(?P<j>[\"']token[\"']\s*:\s*[\"']?)[^\"'\s,}]*"
)
MASK: Final = "***"
#: The loggers filtered: uvicorn's own and candlecast's (children are filtered at the root handlers).
LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "candlecast", "websockets")


def redact(text: str) -> str:
    """``text`` with every access token replaced by ``***``."""
    return _SECRET.sub(lambda m: (m.group("q") or m.group("h") or m.group("b") or m.group("j")) + MASK, text)


class Redact(logging.Filter):
    """Rewrites a record whose message holds a token; lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format: leave it to the handler to report
            return True
        if _SECRET.search(message):
            record.msg = redact(message)
            record.args = None
        return True


_FILTER: Final = Redact()


def install() -> None:
    """Add the filter to uvicorn's and candlecast's loggers, to every candlecast/uvicorn logger
    that exists, and to the root logger's handlers. Idempotent."""
    manager = logging.Logger.manager
    names = set(LOGGERS) | {
        name
        for name, obj in list(manager.loggerDict.items())
        if isinstance(obj, logging.Logger) and name.split(".", 1)[0] in ("candlecast", "uvicorn", "websockets")
    }
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
