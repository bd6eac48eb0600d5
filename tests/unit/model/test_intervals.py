"""Interval parsing and aggregation of base bars into higher intervals (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candlecast.model.candle import Candle
from candlecast.model.intervals import Aggregator, Interval, IntervalError, align, fold, parse_interval
from candlecast.settings import Settings, SettingsError

MIN = 60_000
DAY = 86_400_000
T0 = 1_699_999_200_000  # epoch ms, a whole number of 15 minutes


def base(ot: int, o: float, h: float, l: float, c: float, v: float | None = 1.0, t: int | None = None) -> Candle:  # noqa: E741
    return Candle("BTCUSD", ot + 1 if t is None else t, ot, o, h, l, c, v)


@pytest.mark.parametrize(
    ("text", "ms", "name"),
    [
        ("1m", MIN, "1m"),
        ("5m", 5 * MIN, "5m"),
        ("15m", 15 * MIN, "15m"),
        ("1h", 60 * MIN, "1h"),
        ("4h", 240 * MIN, "4h"),
        ("1d", DAY, "1d"),
        (" 30s ", 30_000, "30s"),
    ],
)
def test_interval_parses_canonical_names(text: str, ms: int, name: str) -> None:
    assert parse_interval(text) == Interval(ms, name)


@pytest.mark.parametrize("text", ["", "0m", "5", "m5", "5y", "1.5h", "-1m", "10000m"])
def test_interval_refuses_anything_else(text: str) -> None:
    with pytest.raises(IntervalError):
        parse_interval(text)


def test_day_bars_start_at_midnight_utc() -> None:
    day = parse_interval("1d")
    t = 1_700_000_000_000  # 2023-11-14T22:13:20Z
    assert day.start(t) == 1_699_920_000_000  # 2023-11-14T00:00:00Z


# Binance's REST docs ("Kline/Candlestick data", GET /api/v3/klines, developers.binance.com/docs/
# binance-spot-api-docs/rest-api/market-data-endpoints) answer with the row [1499040000000, ...,
# 1499644799999, ...]: a week-long bar (its close is 7 days less 1 ms later) opening at
# 1499040000000 = Monday 2017-07-03 00:00 UTC. Every exchange's weeks open on Monday.
MONDAY_2017_07_03 = 1_499_040_000_000
WEEK = 7 * DAY


def test_week_bars_open_on_monday_utc_like_the_exchanges() -> None:
    """The documented weekly bar is on the 1w grid; any time in its week starts it; the epoch's
    Thursday belongs to the week of Monday 1969-12-29; days keep the epoch's grid."""
    week = parse_interval("1w")
    assert week.start(MONDAY_2017_07_03) == MONDAY_2017_07_03
    assert week.start(1_499_644_799_999) == MONDAY_2017_07_03  # the bar's last millisecond (Sunday)
    assert week.start(1_499_644_800_000) == MONDAY_2017_07_03 + WEEK  # the next Monday
    assert week.start(0) == -3 * DAY
    assert week.bucket(1_499_040_000) == 1_499_040_000  # epoch seconds too
    assert align(MONDAY_2017_07_03 + 3 * DAY, 2 * WEEK) % WEEK == MONDAY_2017_07_03 % WEEK  # whole weeks: Mondays
    # only whole weeks move their origin: 1 d and 3 d keep the epoch's grid
    assert align(MONDAY_2017_07_03 + 5, DAY) == MONDAY_2017_07_03
    assert align(0, 3 * DAY) == 0 and align(3 * DAY - 1, 3 * DAY) == 0


def test_live_week_aggregates_are_monday_weeks() -> None:
    """1 d bars of Monday to Sunday fold into one 1w bar opening on Monday; the next Monday opens another."""
    agg = Aggregator(parse_interval("1w"), keep=2)
    got = [agg.update(base(MONDAY_2017_07_03 + k * DAY, 10, 11 + k, 9, 10.5)) for k in range(8)]
    assert all(g is not None for g in got)
    assert [g.ot for g in got if g is not None] == [MONDAY_2017_07_03] * 7 + [MONDAY_2017_07_03 + WEEK]
    sunday = got[6]
    assert sunday is not None and (sunday.h, sunday.v) == (17, 7.0)


@pytest.mark.parametrize("text", ["1M", "3M", " 1M ", "1mo"])
def test_calendar_months_are_refused_with_their_own_message(text: str) -> None:
    """A month is not a fixed length: refused by name, not mistaken for minutes or 'not an interval'."""
    with pytest.raises(IntervalError, match="calendar months are not served"):
        parse_interval(text)


def test_months_in_the_intervals_setting_fail_at_start_with_one_line_naming_the_flag() -> None:
    with pytest.raises(SettingsError) as exc:
        Settings(intervals=("1m", "1d", "1M"))
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("invalid setting --intervals (CANDLECAST_INTERVALS): '1M': calendar months")


def test_aggregate_table_five_minutes_from_one_minute_bars() -> None:
    agg = Aggregator(parse_interval("5m"))
    t0 = 1_700_000_100_000 - 1_700_000_100_000 % (5 * MIN)
    steps = [
        (base(t0, 10, 11, 9, 10.5, 2.0), (10, 11, 9, 10.5, 2.0)),
        (base(t0, 10, 12, 9, 11.5, 3.0), (10, 12, 9, 11.5, 3.0)),  # the open base bar moves: in place
        (base(t0 + MIN, 11.5, 11.6, 8, 9, 1.0), (10, 12, 8, 9, 4.0)),  # a new base bar
        (base(t0, 10, 13, 9, 11.5, 5.0), (10, 13, 8, 9, 6.0)),  # late update of the older base bar
        (base(t0 + 5 * MIN, 9, 9.5, 8.5, 9.2, 1.0), (9, 9.5, 8.5, 9.2, 1.0)),  # the next 5 m bar
    ]
    for candle, (o, h, l, c, v) in steps:  # noqa: E741
        got = agg.update(candle)
        assert got is not None
        assert (got.o, got.h, got.l, got.c, got.v) == (o, h, l, c, v)
        assert got.ot == agg.interval.start(candle.ot)


def test_bucket_older_than_the_kept_ones_is_ignored() -> None:
    agg = Aggregator(parse_interval("5m"), keep=2)
    for k in range(3):
        assert agg.update(base(T0 + k * 5 * MIN, 1, 1, 1, 1)) is not None
    assert agg.update(base(T0, 1, 2, 1, 1)) is None


def test_seconds_stay_seconds() -> None:
    """A source whose times are epoch seconds gets aggregates in seconds."""
    agg = Aggregator(parse_interval("5m"))
    got = agg.update(Candle("A", 1_700_000_130, 1_700_000_100, 1, 1, 1, 1))
    assert got is not None and got.ot == 1_700_000_100 - 1_700_000_100 % 300 and got.i == "5m"


prices = st.floats(min_value=1, max_value=1000, allow_nan=False, allow_infinity=False)


@st.composite
def base_updates(draw: st.DrawFn) -> list[Candle]:
    """Updates of base 1 m bars over a few 5 m buckets, in any order, with any volumes."""
    out: list[Candle] = []
    for _ in range(draw(st.integers(1, 40))):
        ot = T0 + draw(st.integers(0, 14)) * MIN
        o, c = draw(prices), draw(prices)
        h = max(o, c) + draw(st.floats(0, 10))
        l = min(o, c) - draw(st.floats(0, 0.9))  # noqa: E741
        v = draw(st.one_of(st.none(), st.floats(0, 100)))
        out.append(base(ot, o, h, l, c, v, t=draw(st.integers(0, 10**6))))
    return out


@settings(max_examples=300, deadline=None)
@given(base_updates(), st.sampled_from(["2m", "5m", "15m"]))
def test_incremental_aggregate_equals_recomputing_from_base_bars(updates: list[Candle], name: str) -> None:
    """After every update, the aggregate returned equals folding the latest state of every base
    bar of its bucket (ordered by open time), whatever the order the updates came in."""
    interval = parse_interval(name)
    agg = Aggregator(interval, keep=100)
    latest: dict[int | float, Candle] = {}
    for candle in updates:
        latest[candle.ot] = candle
        bucket = interval.start(candle.ot)
        got = agg.update(candle)
        assert got is not None
        members = [latest[k] for k in sorted(latest) if interval.start(k) == bucket]
        expected = fold(members, candle.s, bucket, interval.name)
        # t is the newest base bar's t; the rest must match exactly
        assert (got.s, got.i, got.ot, got.o, got.h, got.l, got.c) == (
            expected.s,
            expected.i,
            expected.ot,
            expected.o,
            expected.h,
            expected.l,
            expected.c,
        )
        if expected.v is None:
            assert got.v is None
        else:
            assert got.v == pytest.approx(expected.v, rel=1e-9, abs=1e-6)


def test_a_seeded_aggregator_continues_the_bar_exactly() -> None:
    """A new leader continues the current bar from its stored state and its newest base bar:
    later updates give what one aggregator that saw everything gives."""
    interval = parse_interval("15m")
    seen_all = Aggregator(interval)
    updates = [base(T0 + k * MIN, 10 + k, 12 + k, 9 + k / 10, 11 + k, 1.0 + k) for k in range(4)]
    aggregate = None
    for candle in updates:
        aggregate = seen_all.update(candle)
    assert aggregate is not None
    successor = Aggregator(interval)
    assert successor.seed(aggregate, updates[-1])
    later = [base(T0 + 3 * MIN, 13, 16, 12.3, 15, 6.0), base(T0 + 4 * MIN, 15, 17, 14, 16, 2.0)]
    for candle in later:
        assert successor.update(candle) == seen_all.update(candle)
    assert not successor.seed(aggregate, base(T0 + 20 * MIN, 1, 1, 1, 1))  # another bucket: refused


def test_memory_per_bucket_is_bounded_and_kept_bars_are_still_corrected_exactly() -> None:
    """Past ``max_base`` base bars a bucket folds its oldest into one frozen bar: the aggregate
    stays exact, late updates of kept bars are corrected, older ones are ignored."""
    agg = Aggregator(parse_interval("1h"), max_base=3)
    latest: dict[int | float, Candle] = {}
    for k in range(10):
        candle = base(T0 + k * MIN, 10 + k, 20 + k, 5 + k, 11 + k, 1.0)
        latest[candle.ot] = candle
        got = agg.update(candle)
    late = base(T0 + 8 * MIN, 18, 40, 1, 18.5, 2.0)  # kept: corrected
    latest[late.ot] = late
    got = agg.update(late)
    assert got == fold([latest[k] for k in sorted(latest)], "BTCUSD", T0, "1h")
    ignored = agg.update(base(T0, 10, 99, 0.5, 11, 7.0))  # frozen already: ignored
    assert ignored == got
