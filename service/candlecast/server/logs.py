"""Secrets and client text out of the log: a filter on every record candlecast's loggers,
uvicorn's (access, error, asgi) and websockets' emit.

What it masks (``***``): the value of every query parameter whose key, decoded the way
Starlette decodes it (``parse_qsl``: ``+`` and percent escapes, so ``%74oken=`` and
``t%6Fken=`` are ``token=``), is ``token`` or ``access_token``; the value of an
``Authorization`` header; a bearer token; and the value of a JSON (or Python dict) key
``"token"`` (an ``auth`` message in a debug frame dump), its key decoded too (``"\\u0074oken"``).
Starlette's keys are case-sensitive, so ``TOKEN=`` authenticates nobody; it is masked all the
same (whatever the key, the value may be a live credential sent by mistake).

What it escapes: a record whose text has a character that is not printable (a newline, a
carriage return, an ANSI escape: a client's WebSocket close reason in websockets' debug frame
dump, a path, a header) gets each offending piece written as ``repr`` would, without quotes,
so one record is one line; each piece is cut to :data:`FIELD_LIMIT` characters.

How: in place, keeping the record's shape. Each argument is cleaned on its own and put back
where it was (numbers untouched), because formatters may read ``record.args``: uvicorn's
access formatter unpacks its five and builds the line from them, not from the message. Only
when a secret or a control character spans the format string and its arguments is the message
rewritten whole (its arguments consumed by ``%.0s``, still there for such a formatter).

Installed once, from :func:`candlecast.server.runner.config`, after uvicorn has configured its
logging. Runs on whichever thread logs; holds nothing to close.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote_plus

__all__ = ["FIELD_LIMIT", "LOGGERS", "MASK", "MESSAGE_LIMIT", "SECRET_KEYS", "Redact", "clean", "install", "redact"]

MASK: Final = "***"
#: Query and JSON keys whose values are credentials (compared decoded, in lower case).
SECRET_KEYS: Final = frozenset({"token", "access_token"})
#: Longest argument (a path, a header, a frame dump) a record keeps, in characters.
FIELD_LIMIT: Final = 512
#: Longest message a record without arguments keeps, in characters.
MESSAGE_LIMIT: Final = 4096
#: The loggers filtered: uvicorn's own and candlecast's (children are filtered at the root handlers).
LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "candlecast", "websockets")

#: ``key=value`` in a query string (or free text): the key after ``?``, ``&``, a space, a quote
#: or the start; the value up to the next ``&`` or space (``parse_qsl`` splits on ``&`` only),
#: a quote ending it only where a space, ``&`` or the end follows (the log line's own quote).
_PAIR: Final = re.compile(
    r"""(?:(?<=[?&\s"'(\[,])|^)(?P<key>[^\s?&=#"'()\[\],]+)=(?P<value>(?:[^&\s"']|["'](?=[^&\s"']))*)"""
)
#: ``"key": value`` in JSON or a Python repr; the key with its escapes, the value to its end
#: (a frame dump elides the middle of a long one: everything up to a quote or a space goes).
_JSON: Final = re.compile(
    r"""(?P<key>"(?:[^"\\]|\\.){1,64}"|'(?:[^'\\]|\\.){1,64}')(?P<sep>\s*:\s*)"""
    r"""(?P<value>"(?:[^"'\\\s]|\\.)*"?|'(?:[^"'\\\s]|\\.)*'?|[^"'\s,}\]]*)"""
)
#: ``Authorization: <scheme> <credentials>``, ``Bearer <token>``.
_HEADER: Final = re.compile(
    r"(?i)(?P<h>\bauthorization['\"]?\s*[:=,]\s*['\"]?)(?:[\w-]+\s+)?[^\s'\"]+"
    r"|(?P<b>\bbearer\s+)[\w.~+/=-]+"
)


def _secret_pair(match: re.Match[str]) -> str:
    key = match["key"]
    return f"{key}={MASK}" if unquote_plus(key).lower() in SECRET_KEYS else match[0]


def _json_key(quoted: str) -> set[str]:
    """What a quoted key may decode to: JSON escapes, read as written or once un-doubled (a
    ``repr`` doubles every backslash)."""
    raw = quoted[1:-1]
    names = {raw.lower()}
    for text in {raw, raw.replace("\\\\", "\\")}:
        try:
            name = json.loads(f'"{text}"')
        except ValueError:
            continue
        if isinstance(name, str):
            names.add(name.lower())
    return names


def _secret_value(match: re.Match[str]) -> str:
    if not _json_key(match["key"]) & SECRET_KEYS:
        return match[0]
    value = match["value"]
    quote = value[:1] if value[:1] in ("'", '"') else ""
    return f"{match['key']}{match['sep']}{quote}{MASK}{quote}"


def redact(text: str) -> str:
    """``text`` with every access token replaced by ``***``."""
    if "=" in text:
        text = _PAIR.sub(_secret_pair, text)
    if ":" in text:
        text = _JSON.sub(_secret_value, text)
    return _HEADER.sub(lambda m: (m["h"] or m["b"]) + MASK, text)


def clean(text: str, limit: int = FIELD_LIMIT) -> str:
    """``text`` fit for one log line: tokens masked, unprintable characters escaped as ``repr``
    writes them (backslashes doubled then too, so an escape is never ambiguous), cut to
    ``limit`` characters (the cut marked with the original length). Idempotent."""
    text = redact(text)
    if not text.isprintable():
        text = repr(text)[1:-1]
    if len(text) > limit:
        mark = f"...[{len(text)} chars]"
        text = text[: max(limit - len(mark), 0)] + mark
    return text


def _clean_arg(arg: object) -> object:
    """``arg`` itself when its text needs nothing, else its cleaned text."""
    if isinstance(arg, int | float) or arg is None:
        return arg
    try:
        text = arg if isinstance(arg, str) else str(arg)
    except Exception:  # a broken __str__: leave it to the handler to report
        return arg
    cleaned = clean(text)
    return arg if cleaned == text else cleaned


def _is_clean(message: str, limit: int) -> bool:
    return len(message) <= limit and message.isprintable() and redact(message) == message


class Redact(logging.Filter):
    """Masks the tokens and escapes the control characters of a record, in place; lets every
    record through. Idempotent: a record may meet it on its logger and again on a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format: leave it to the handler to report
            return True
        args = record.args
        if not args:
            if not _is_clean(message, MESSAGE_LIMIT):
                record.msg, record.args = clean(message, MESSAGE_LIMIT), ()
            return True
        if _is_clean(message, FIELD_LIMIT):
            return True
        if isinstance(args, Mapping):
            record.args = {key: _clean_arg(value) for key, value in args.items()}
        else:
            record.args = tuple(_clean_arg(arg) for arg in args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        if not _is_clean(message, MESSAGE_LIMIT):
            # the secret or the control character spans the format and its arguments: rewrite
            # the message whole; the arguments stay (a formatter may unpack them), consumed empty
            text = clean(message, MESSAGE_LIMIT).replace("%", "%%")
            record.msg = text if isinstance(record.args, Mapping) else text + "%.0s" * len(record.args)
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
