"""JSON shapes and time encodings the brokers use, checked in one place. Pure.

Each helper returns the value in the shape a format expects or raises
:class:`~candlecast.model.candle.MalformedMessage` (``shape`` or ``type``) naming what was wrong.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from typing import Any, Final

from ..model.candle import MalformedMessage

__all__ = [
    "EPOCH_US_ABOVE",
    "epoch_millis",
    "epoch_ms",
    "epoch_ms_text",
    "header_int",
    "json_list",
    "json_object",
    "rfc3339_ms",
]


def json_object(value: object, what: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object; ``what`` names it in the error."""
    if not isinstance(value, dict):
        raise MalformedMessage("shape", f"{what} must be an object, got {type(value).__name__}")
    return value


def json_list(value: object, what: str) -> list[Any]:
    """``value`` if it is a JSON array; ``what`` names it in the error."""
    if not isinstance(value, list):
        raise MalformedMessage("shape", f"{what} must be a list, got {type(value).__name__}")
    return value


def epoch_ms_text(value: object, field: str) -> int:
    """Epoch milliseconds sent as a string of digits (OKX's ``ts``)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    raise MalformedMessage("type", f"{field} must be epoch milliseconds as a string of digits, got {value!r:.40}")


#: Epoch times above this are microseconds, below it milliseconds: 1e15 ms is the year 33658, 1e15 µs
#: is 2001-09-09, before any exchange's data (Binance's ``timeUnit=MICROSECOND`` streams).
EPOCH_US_ABOVE: Final = 10**15


def epoch_millis(value: object) -> object:
    """An epoch time in milliseconds: an int in microseconds (above :data:`EPOCH_US_ABOVE`) is
    truncated to the millisecond; anything else is returned as it is, for :func:`make_candle`
    to check. The unit is read from the value itself, so a recording replays the same."""
    if isinstance(value, int) and not isinstance(value, bool) and value > EPOCH_US_ABOVE:
        return value // 1000
    return value


def epoch_ms(value: object, field: str) -> int:
    """Epoch milliseconds as an int or a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    raise MalformedMessage("type", f"{field} must be epoch milliseconds, got {value!r:.40}")


_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def rfc3339_ms(value: object, field: str) -> int:
    """An RFC 3339 time (``2023-10-04T15:25:00.000000000Z``, up to nanoseconds) in epoch
    milliseconds, truncated; raises :class:`MalformedMessage`."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise MalformedMessage("type", f"{field} must be an RFC 3339 time, got {value!r:.40}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise MalformedMessage("type", f"{field} is not a valid time: {value!r:.40}")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if match.group(9):  # an offset: local time = UTC + offset
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == "+" else -offset
    millis = int((match.group(7) or "0")[:3].ljust(3, "0"))
    return seconds * 1000 + millis


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """An HTTP header's integer value, or ``None`` when absent or not a number."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
