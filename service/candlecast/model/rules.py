"""Value rules shared by the settings, the upstream formats and the client protocol. Pure.

One definition each, so that a symbol the simulator may be configured with is exactly a symbol
a format accepts and a client may subscribe to, and every boolean word means the same thing on
the command line and in a query string.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EPOCH_MS_ABOVE",
    "FALSE_WORDS",
    "MAX_SYMBOL_LENGTH",
    "MAX_TOKEN_CHARS",
    "TRUE_WORDS",
    "epoch_seconds",
    "is_symbol",
    "parse_bool",
]

#: Longest symbol accepted, in characters.
MAX_SYMBOL_LENGTH: Final = 32
#: Longest access token looked at, in characters, wherever it is offered (query, header, an
#: ``auth`` message, which must fit in one control message); longer ones are refused unparsed.
MAX_TOKEN_CHARS: Final = 4000
#: Epoch times above this are milliseconds, below it seconds (1e11 s is the year 5138; 1e11 ms
#: is 1973). The dashboard's ``toSeconds`` uses the same cut-off.
EPOCH_MS_ABOVE: Final = 1e11

TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS: Final = frozenset({"0", "false", "no", "off", ""})


def is_symbol(value: object) -> bool:
    """A non-empty string of at most :data:`MAX_SYMBOL_LENGTH` printable characters (any
    script), with no space, no comma (commas separate symbols in lists and queries) and no
    ``@`` (it names an interval: ``BTCUSD@5m``)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_SYMBOL_LENGTH
        and value.isprintable()
        and " " not in value
        and "," not in value
        and "@" not in value  # the stream separator (model.streams.SEPARATOR)
    )


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off/`` (any case, surrounding spaces ignored).

    Raises :class:`ValueError` for anything else.
    """
    value = text.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValueError(f"expected true or false (1/0), got {text[:20]!r}")


def epoch_seconds(t: float) -> float:
    """An epoch time of either unit, in seconds."""
    return t / 1000.0 if t > EPOCH_MS_ABOVE else float(t)
