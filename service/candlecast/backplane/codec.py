"""The backplane's data, pure: keys, entry ids and fields, the edge's position in the ingest's
sequence, and the ingest's mirror of the bars it wrote.

Nothing here awaits, reads the clock or touches a socket (times are passed in). See
:mod:`candlecast.backplane.scripts` for how the data sits in Redis.

Whatever an edge or an ingest reads from Redis is untrusted input, checked as strictly as a
broker's: an entry's candle goes through the ``candle`` format's rules
(:func:`candlecast.model.candle.parse_candle`: symbol, finite numbers, ``l <= min(o, c) <= max(o, c)
<= h``) plus a valid interval name, and anything else is a :class:`BadEntry` with a ``reason``
from :data:`BAD_REASONS` that metrics count by.

An entry's id is ``<epoch>-<seq>``, stamped by the ingest: ``seq`` numbers every candle the
ingest took from its source, and ``epoch`` names one continuous numbering (a new one only when a
leader finds Redis empty and has no numbering of its own). Because the ingest, not Redis, picks
the id, an edge resumes from its last id even across an empty restarted Redis that the ingest
re-seeded, and judges continuity by the sequence: the next number is delivered, an older one is a
duplicate (dropped), a jump or another epoch is a gap (re-snapshot).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from ..formats.candle import parse_candle
from ..model.candle import REASONS, Candle, MalformedMessage, decode
from ..model.intervals import IntervalError, parse_interval

__all__ = [
    "BAD_REASONS",
    "CANDLE",
    "MAX_ID_PART",
    "MAX_SEQ",
    "PUBLISHED",
    "BadEntry",
    "Bars",
    "Keys",
    "Position",
    "Snapshot",
    "Verdict",
    "candle_from_json",
    "decode_entry",
    "entry_id",
    "id_above",
    "parse_id",
    "parse_meta",
    "parse_snapshot",
]

#: Fields of a stream entry: the candle's JSON (the client frame) and the publish time (epoch µs).
CANDLE: Final = b"c"
PUBLISHED: Final = b"p"


#: Why an entry (or a snapshot's bar, or a reply) was refused: the candle rules' reasons
#: (:data:`candlecast.model.candle.REASONS`, less the two only a broker connection has), and
#: ``fields`` (an entry lacks ``c`` or ``p``), ``interval`` (a bad ``i``), ``id``, ``meta`` and
#: ``snapshot`` (replies), ``foreign`` (an entry beyond the stream's top: not the ingest's).
BAD_REASONS: Final = (
    "fields",
    *(r for r in REASONS if r not in ("refused", "format")),
    "interval",
    "id",
    "meta",
    "snapshot",
    "foreign",
)


class BadEntry(ValueError):
    """A stream entry or reply that is not what the ingest writes; ``reason`` is one of
    :data:`BAD_REASONS`, ``detail`` says what was wrong, for the log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis keys under one ``--redis-prefix``."""

    prefix: str

    @property
    def stream(self) -> str:
        return f"{self.prefix}:stream"

    @property
    def meta(self) -> str:
        return f"{self.prefix}:meta"

    @property
    def symbols(self) -> str:
        return f"{self.prefix}:symbols"

    @property
    def lease(self) -> str:
        return f"{self.prefix}:lease"

    @property
    def fence(self) -> str:
        return f"{self.prefix}:fence"

    @property
    def bars(self) -> str:
        """The prefix of the per-symbol bar keys (the symbol follows)."""
        return f"{self.prefix}:bars:"


# -- ids and entries ----------------------------------------------------------------------------


def entry_id(epoch: int, seq: int) -> str:
    return f"{epoch}-{seq}"


def parse_id(raw: bytes | str) -> tuple[int, int]:
    """``(epoch, seq)`` of an entry id; raises :class:`BadEntry`."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    epoch, sep, seq = text.partition("-")
    try:
        return int(epoch), int(seq)
    except ValueError:
        raise BadEntry("id", f"bad entry id {text[:40]!r}") from None


def candle_from_json(raw: bytes | str) -> Candle:
    """The candle of an entry's JSON, validated by the ``candle`` format's rules (what the ingest
    writes with :func:`candlecast.model.candle.encode` passes them, and encodes again to the same
    bytes); ``i``, when present, must name an interval. Raises :class:`BadEntry`."""
    try:
        msg = decode(raw)
        candle = parse_candle(msg)[0]
    except MalformedMessage as exc:
        raise BadEntry(exc.reason, exc.detail) from None
    assert isinstance(msg, dict)  # parse_candle accepts objects only
    i = msg.get("i")
    if i is None:
        return candle
    if not isinstance(i, str):
        raise BadEntry("interval", f"i must be a string, got {type(i).__name__}")
    try:
        return replace(candle, i=parse_interval(i).name)
    except IntervalError as exc:
        raise BadEntry("interval", str(exc)) from None


def decode_entry(fields: Mapping[bytes, bytes]) -> tuple[Candle, float]:
    """``(candle, publish time in epoch seconds)``; raises :class:`BadEntry`."""
    try:
        raw, published = fields[CANDLE], int(fields[PUBLISHED])
    except (KeyError, ValueError) as exc:
        raise BadEntry("fields", f"entry lacks {exc}") from None
    return candle_from_json(raw), published / 1e6


def id_above(top: tuple[int, int], epoch: int, seq: int) -> tuple[int, int] | None:
    """Where an ingest at ``(epoch, seq)`` (its last stamped) continues when the stream's top
    ``top`` (an entry it did not write) is at or above its next id: the same epoch from
    ``top``'s sequence on when ``top`` is in its epoch, else a new epoch just above ``top``'s,
    keeping the sequence. ``None`` when no id above ``top`` fits (or the sequence would pass
    :data:`MAX_SEQ`)."""
    top_epoch, top_seq = top
    if top_epoch < epoch:
        return epoch, seq  # the top is below: nothing to step over
    if top_epoch == epoch and top_seq < MAX_SEQ:
        return epoch, max(seq, top_seq)
    if top_epoch < MAX_ID_PART and seq < MAX_SEQ:
        return top_epoch + 1, seq
    return None


#: Largest part of a Redis Stream id.
MAX_ID_PART: Final = 2**64 - 1
#: Largest sequence an ingest stamps: the Lua scripts compare sequences as doubles, exact to 2**53.
MAX_SEQ: Final = 2**53 - 1


# -- the edge's position ------------------------------------------------------------------------


class Verdict(enum.Enum):
    NEXT = "next"  # deliver it
    DUPLICATE = "duplicate"  # delivered already (re-sent after a reset): drop it
    GAP = "gap"  # something between was missed, or another epoch: re-snapshot


class Position:
    """Where an edge is in the ingest's sequence: the last ``(epoch, seq)`` delivered.

    ``Position()`` (``0-0``, :attr:`fresh`) is before the first entry of a stream that did not
    exist yet: an ingest's epochs are its clock in milliseconds and its sequence starts at 1, so
    any epoch's entry 1 is next from there."""

    __slots__ = ("epoch", "seq")

    def __init__(self, epoch: int = 0, seq: int = 0) -> None:
        self.epoch = epoch
        self.seq = seq

    @property
    def last_id(self) -> str:
        return entry_id(self.epoch, self.seq)

    @property
    def fresh(self) -> bool:
        """Nothing delivered yet: reading the stream from ``0-0`` misses nothing."""
        return self.epoch == 0 and self.seq == 0

    def judge(self, epoch: int, seq: int) -> Verdict:
        if self.fresh:
            return Verdict.NEXT if seq == 1 else Verdict.GAP
        if epoch != self.epoch:
            return Verdict.GAP
        if seq <= self.seq:
            return Verdict.DUPLICATE
        return Verdict.NEXT if seq == self.seq + 1 else Verdict.GAP

    @staticmethod
    def accounts_for(top: tuple[int, int], epoch: int, seq: int) -> bool:
        """Whether the stream's top ``(epoch, seq)`` (``meta``, which every PUBLISH moves with
        its entries, atomically) is at or past the entry ``epoch-seq`` in the stream's order:
        the ingest wrote it (a real gap), else someone else did (a foreign entry: skip it)."""
        return top >= (epoch, seq)

    def behind(self, epoch: int, seq: int) -> bool:
        """Whether Redis's top ``(epoch, seq)`` means the edge cannot continue from here: another
        epoch, or a sequence that went backwards (Redis lost what the edge delivered)."""
        return epoch != self.epoch or seq < self.seq


# -- snapshots ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The bars Redis holds and the position they belong to. ``bars``: stream -> JSON texts,
    oldest first."""

    epoch: int
    seq: int
    bars: dict[str, list[bytes]]

    def read(self) -> tuple[list[Candle], list[BadEntry]]:
        """Every readable bar as a candle, oldest first per stream: higher-interval streams
        first, then the base ones, so the hub's aggregates of the base bars come last, as they
        did live; and why each unreadable one was left out."""
        good: list[Candle] = []
        bad: list[BadEntry] = []
        for stream in sorted(self.bars, key=lambda name: ("@" not in name, name)):
            for raw in self.bars[stream]:
                try:
                    good.append(candle_from_json(raw))
                except BadEntry as exc:
                    bad.append(exc)
        return good, bad

    def candles(self) -> Iterator[Candle]:
        """The readable bars, in :meth:`read`'s order."""
        return iter(self.read()[0])


def parse_snapshot(reply: Sequence[object]) -> Snapshot | None:
    """The SNAPSHOT script's reply; ``None`` when Redis holds no backplane data. Raises
    :class:`BadEntry`."""
    if not reply:
        return None
    try:
        epoch, seq, symbols, bars = reply
        assert isinstance(symbols, list) and isinstance(bars, list)
        return Snapshot(_int(epoch), _int(seq), {_text(s): list(b) for s, b in zip(symbols, bars, strict=True)})
    except (ValueError, TypeError, AssertionError) as exc:
        raise BadEntry("snapshot", f"bad snapshot reply: {exc}") from None


def parse_meta(reply: Sequence[bytes | str | None]) -> tuple[int, int] | None:
    """``HMGET meta epoch seq`` -> ``(epoch, seq)``, ``None`` when absent; raises :class:`BadEntry`."""
    if len(reply) != 2 or reply[0] is None or reply[1] is None:
        return None
    try:
        return int(reply[0]), int(reply[1])
    except ValueError:
        raise BadEntry("meta", f"bad meta {reply!r:.80}") from None


def _int(value: object) -> int:
    if isinstance(value, bytes | str | int):
        return int(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- the ingest's mirror of the bars --------------------------------------------------------------


class Bars:
    """The last ``history`` bars of each stream as the ingest wrote them, by the hub's rule (a
    newer bar is appended, the same bar replaced, an older one fixed in place or inserted in order),
    so that the ingest can write them back to an empty restarted Redis."""

    def __init__(self, history: int) -> None:
        self.history = history
        self._bars: dict[str, deque[tuple[float, str]]] = {}

    def record(self, stream: str, ot: float, text: str) -> None:
        bars = self._bars.get(stream)
        if bars is None:
            bars = self._bars[stream] = deque(maxlen=self.history)
        if not bars or ot > bars[-1][0]:
            bars.append((ot, text))
        elif ot == bars[-1][0]:
            bars[-1] = (ot, text)
        else:  # an older bar: replace it if kept, else insert it in order (history, a gap fill)
            i = len(bars) - 2
            while i >= 0 and bars[i][0] > ot:
                i -= 1
            if i >= 0 and bars[i][0] == ot:
                bars[i] = (ot, text)
                return
            if len(bars) == bars.maxlen:
                if i < 0:
                    return
                bars.popleft()
                i -= 1
            bars.insert(i + 1, (ot, text))

    def load(self, snapshot: Snapshot) -> int:
        """Replace everything with what a snapshot holds (its unreadable bars left out);
        returns how many were left out."""
        self._bars.clear()
        bad = 0
        for stream, texts in snapshot.bars.items():
            for raw in texts:
                try:
                    ot = candle_from_json(raw).ot
                except BadEntry:
                    bad += 1
                    continue
                self.record(stream, ot, raw.decode())
        return bad

    def streams(self) -> list[str]:
        return list(self._bars)

    def last(self, stream: str) -> str | None:
        """The JSON of the newest bar of ``stream``, if any."""
        bars = self._bars.get(stream)
        return bars[-1][1] if bars else None

    def items(self) -> Iterable[tuple[str, float, str]]:
        """``(stream, ot, JSON)`` of every bar, oldest first per stream."""
        for stream, bars in self._bars.items():
            for ot, text in bars:
                yield stream, ot, text

    def __len__(self) -> int:
        return sum(len(b) for b in self._bars.values())
