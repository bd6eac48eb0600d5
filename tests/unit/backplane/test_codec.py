"""The backplane's codec: entry ids, entries checked as broker input, the edge's position,
snapshots and meta, the keys, the ingest's bar mirror (pure)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from candlecast.backplane.codec import (
    BadEntry,
    Bars,
    Keys,
    Position,
    Verdict,
    candle_from_json,
    decode_entry,
    entry_id,
    id_above,
    parse_id,
    parse_meta,
    parse_snapshot,
)
from candlecast.model.candle import Candle, encode

# -- ids and entries -------------------------------------------------------------------------------


def test_entry_id_round_trips_epoch_and_sequence() -> None:
    """An id is the ingest's stamp: ``<epoch>-<seq>``."""
    assert parse_id(entry_id(1795630853647, 42).encode()) == (1795630853647, 42)


def test_parse_id_rejects_what_the_ingest_never_writes() -> None:
    """A Redis-generated or garbled id is a BadEntry, not a crash."""
    with pytest.raises(BadEntry):
        parse_id(b"abc-1")


@pytest.mark.parametrize(
    "candle",
    [
        Candle("AAA", 1795630856275, 1795630800000, 2.5717, 2.6028, 2.5418, 2.5755, 157.3692),
        Candle("B.B", 5, 5, 100.0, 101.0, 99.0, 100.5),
        Candle("CCC", 1.5, 1.0, 1e-7, 3.0, 1e-8, 2.0, None, "5m"),
    ],
)
def test_candle_json_decodes_to_a_candle_that_encodes_to_the_same_bytes(candle: Candle) -> None:
    """Edges re-encode what they read: the frames must be byte-identical to role=all's."""
    raw = encode(candle)
    assert candle_from_json(raw) == candle
    assert encode(candle_from_json(raw)) == raw


def test_decode_entry_gives_the_candle_and_publish_time_and_rejects_bad_fields() -> None:
    """Publish time is epoch microseconds in ``p``."""
    candle = Candle("AAA", 1, 1, 1.0, 2.0, 0.5, 1.5)
    assert decode_entry({b"c": encode(candle), b"p": b"1500000"}) == (candle, 1.5)
    for bad in ({b"c": encode(candle)}, {b"c": b"{}", b"p": b"1"}, {b"c": b"nope", b"p": b"1"}):
        with pytest.raises(BadEntry):
            decode_entry(bad)


GOOD: dict[str, Any] = {"s": "AAA", "t": 1, "ot": 1, "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"s": ["X"]}, "symbol"),
        ({"s": {}}, "symbol"),
        ({"s": "A B"}, "symbol"),
        ({"ot": "zzz"}, "type"),
        ({"t": True}, "type"),
        ({"o": "1.0"}, "type"),  # the candle format takes numbers, not numeric strings
        ({"h": 0.1}, "ohlc"),
        ({"v": [1]}, "type"),
        ({"i": ["5m"]}, "interval"),
        ({"i": "zzz"}, "interval"),
        ({"c": None}, "type"),
    ],
)
def test_candle_from_json_applies_the_candle_formats_rules(change: dict[str, Any], reason: str) -> None:
    """An entry is untrusted input: the broker formats' rules, one reason each."""
    with pytest.raises(BadEntry) as err:
        candle_from_json(orjson.dumps({**GOOD, **change}))
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"{nope", "json"), (b"[1]", "shape"), (b'{"s": "AAA"}', "shape"), (b"x" * 70_000, "oversize")],
)
def test_candle_from_json_refuses_what_is_not_a_candle_object(raw: bytes, reason: str) -> None:
    """Not JSON, not an object, fields missing, too large."""
    with pytest.raises(BadEntry) as err:
        candle_from_json(raw)
    assert err.value.reason == reason


def test_a_snapshot_leaves_out_its_unreadable_bars_and_says_why() -> None:
    """One bad bar does not make the whole snapshot unreadable (nor the edge wait forever)."""
    good = Candle("AAA", 1, 1, 1.0, 2.0, 0.5, 1.5)
    snap = parse_snapshot([b"7", b"10", [b"AAA"], [[encode(good), b'{"s": {}}']]])
    assert snap is not None
    candles, bad = snap.read()
    assert candles == [good] and [b.reason for b in bad] == ["shape"]
    mirror = Bars(history=3)
    assert mirror.load(snap) == 1 and len(mirror) == 1


@pytest.mark.parametrize(
    ("top", "at", "above"),
    [
        ((7, 999_999_999_999), (7, 10), (7, 999_999_999_999)),  # later numbers in the same epoch
        ((7, 2**53), (7, 10), (8, 10)),  # past what Lua compares exactly: a new epoch above it
        ((9, 5), (7, 10), (10, 10)),  # a later epoch on top: just above it
        ((2**64 - 1, 2**64 - 1), (7, 10), None),  # the highest id: nothing fits
        ((6, 100), (7, 10), (7, 10)),  # below: nothing to step over
    ],
)
def test_id_above_finds_where_an_ingest_continues_over_a_foreign_top(
    top: tuple[int, int], at: tuple[int, int], above: tuple[int, int] | None
) -> None:
    """``(epoch, seq)`` to continue from (the next id is ``seq + 1``), above the top."""
    assert id_above(top, *at) == above


def test_position_accounts_only_for_entries_up_to_the_streams_top() -> None:
    """An entry beyond ``meta`` is not the ingest's (it moves meta with every entry)."""
    assert Position.accounts_for((7, 12), 7, 12) and Position.accounts_for((8, 1), 7, 99)
    assert not Position.accounts_for((7, 10), 7, 11)


def test_keys_share_one_prefix() -> None:
    """Every key sits under --redis-prefix."""
    k = Keys("cc")
    assert [k.stream, k.meta, k.symbols] == ["cc:stream", "cc:meta", "cc:symbols"]
    assert [k.lease, k.fence, k.bars] == ["cc:lease", "cc:fence", "cc:bars:"]


# -- the edge's position ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch", "seq", "verdict"),
    [
        (7, 11, Verdict.NEXT),
        (7, 10, Verdict.DUPLICATE),
        (7, 3, Verdict.DUPLICATE),
        (7, 12, Verdict.GAP),  # one was missed (trimmed, or dropped by a full ingest buffer)
        (8, 1, Verdict.GAP),  # another epoch: Redis lost everything and a new numbering began
        (6, 11, Verdict.GAP),  # an epoch that went backwards
    ],
)
def test_position_judges_each_entry_by_the_ingest_sequence(epoch: int, seq: int, verdict: Verdict) -> None:
    """Continuity is judged by (epoch, seq), never by Redis's own ids."""
    assert Position(7, 10).judge(epoch, seq) is verdict


@pytest.mark.parametrize(
    ("epoch", "seq", "verdict"),
    [
        (1_700_000_000_000, 1, Verdict.NEXT),  # a new stream's first entry, whatever its epoch
        (5, 1, Verdict.NEXT),
        (1_700_000_000_000, 2, Verdict.GAP),  # the stream began before this edge read it
        (1_700_000_000_000, 4097, Verdict.GAP),  # a re-seeded stream's retained entries
    ],
)
def test_a_fresh_position_takes_any_epochs_first_entry_and_nothing_else(epoch: int, seq: int, verdict: Verdict) -> None:
    """Before anything was delivered (no stream yet: the edge reads from 0-0), entry 1 is next."""
    p = Position()
    assert p.fresh and p.last_id == "0-0"
    assert p.judge(epoch, seq) is verdict
    assert not Position(7, 0).fresh and not Position(7, 10).fresh


def test_position_is_behind_when_redis_changed_epoch_or_went_backwards() -> None:
    """An idle edge re-checks Redis's top: another epoch or a lower sequence means re-snapshot."""
    p = Position(7, 10)
    assert not p.behind(7, 10) and not p.behind(7, 500)
    assert p.behind(8, 10) and p.behind(7, 9)
    assert p.last_id == "7-10"


# -- snapshots and meta ----------------------------------------------------------------------------


def test_snapshot_reply_parses_and_orders_interval_streams_before_base_ones() -> None:
    """The hub's aggregates of base bars must come after loaded interval history, as live."""
    a1, a2 = Candle("AAA", 1, 1, 1.0, 2.0, 0.5, 1.5), Candle("AAA", 2, 2, 1.0, 2.0, 0.5, 1.5)
    h = Candle("AAA", 1, 0, 1.0, 2.0, 0.5, 1.5, None, "5m")
    snap = parse_snapshot([b"7", b"10", [b"AAA", b"AAA@5m"], [[encode(a1), encode(a2)], [encode(h)]]])
    assert snap is not None and (snap.epoch, snap.seq) == (7, 10)
    assert list(snap.candles()) == [h, a1, a2]
    assert parse_snapshot([]) is None
    with pytest.raises(BadEntry):
        parse_snapshot([b"x", b"1", [], []])


def test_meta_is_none_when_redis_is_empty() -> None:
    """A restarted empty Redis is "wait for the re-seed", not a gap."""
    assert parse_meta([None, None]) is None
    assert parse_meta([b"7", b"10"]) == (7, 10)


# -- the ingest's bar mirror -----------------------------------------------------------------------


def test_bars_keep_the_hubs_rule() -> None:
    """Append newer, replace the same bar, fix an older kept bar, ignore one older than all kept."""
    bars = Bars(history=3)
    for ot in (1, 2, 3, 4):
        bars.record("A", ot, f"v{ot}")
    bars.record("A", 4, "v4b")
    bars.record("A", 3, "v3b")
    bars.record("A", 1, "gone")
    assert list(bars.items()) == [("A", 2, "v2"), ("A", 3, "v3b"), ("A", 4, "v4b")]
    assert len(bars) == 3
