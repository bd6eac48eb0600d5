"""The REST client's pacing, pure: the declared rate's slots, the hold, and the hold rule (time
passed in)."""

from __future__ import annotations

import pytest

from candlecast.formats.contract import Rate
from candlecast.history.rates import DEFAULT_HOLD, HEADROOM, MAX_HOLD, Pacer, hold_for, spacing

RATE = Rate(4, 1.0)
GAP = 1.0 / 4 / HEADROOM  # 0.2777… s


def sends(pacer: Pacer, rate: Rate, until: float, step: float = 0.001) -> list[float]:
    """When requests of ``rate`` sent as soon as allowed go, on a clock stepped by ``step``."""
    out: list[float] = []
    now = 0.0
    while now < until:
        if pacer.wait(rate, now) == 0.0:
            out.append(now)
        now = round(now + step, 6)
    return out


def test_spacing_is_the_window_over_the_requests_with_headroom() -> None:
    assert spacing(RATE) == pytest.approx(GAP)
    assert spacing(Rate(20, 2.0)) == pytest.approx(0.1 / 0.9)


def test_pacer_gives_the_first_slot_at_once_then_one_per_spacing() -> None:
    """The first request goes at once; the next waits exactly until its slot."""
    pacer = Pacer()
    assert pacer.wait(RATE, 10.0) == 0.0
    assert pacer.wait(RATE, 10.0) == pytest.approx(GAP)
    assert pacer.wait(RATE, 10.1) == pytest.approx(GAP - 0.1)
    assert pacer.wait(RATE, 10.0 + GAP + 1e-9) == 0.0


def test_pacer_never_exceeds_the_rate_in_any_window() -> None:
    """Sent as fast as allowed for 10 s: any 1 s window holds at most 4 (and the pace is 90 %)."""
    times = sends(Pacer(), RATE, 10.0)
    assert all(sum(1 for u in times if t <= u < t + RATE.window) <= RATE.requests for t in times)
    assert len(times) == pytest.approx(10.0 / GAP, abs=1.5)


def test_pacer_keeps_one_budget_per_rate() -> None:
    """Two scopes are two budgets; equal rates share one."""
    pacer = Pacer()
    assert pacer.wait(Rate(1, 1.0, "a"), 0.0) == 0.0
    assert pacer.wait(Rate(1, 1.0, "b"), 0.0) == 0.0
    assert pacer.wait(Rate(1, 1.0, "a"), 0.0) > 0
    assert pacer.wait(Rate(1, 1.0, "b"), 0.5) > 0


def test_a_hold_stops_every_rate_until_it_ends() -> None:
    """During a hold every rate waits for its end; a longer hold lengthens it, a shorter never
    shortens it; only the first of overlapping holds is fresh (logged)."""
    pacer = Pacer()
    assert pacer.hold(5.0, 100.0) is True
    assert pacer.wait(RATE, 101.0) == pytest.approx(4.0)
    assert pacer.wait(Rate(1, 60.0, "other"), 104.5) == pytest.approx(0.5)
    assert pacer.hold(1.0, 101.0) is False and pacer.resume_at == 105.0
    assert pacer.hold(10.0, 101.0) is False and pacer.resume_at == 111.0
    assert pacer.wait(RATE, 111.0) == 0.0
    assert pacer.hold(1.0, 200.0) is True


@pytest.mark.parametrize(
    ("status", "signal", "retry_after", "hold"),
    [
        (429, None, 7.0, 7.0),  # Retry-After
        (418, None, None, DEFAULT_HOLD),  # says nothing: 60 s
        (429, 2.0, None, 2.0),  # OKX: no Retry-After, the format's window
        (429, 2.0, 30.0, 30.0),  # the longer of the two
        (403, 600.0, None, 600.0),  # Bybit's IP limit: the format's signal
        (200, 10.0, None, 10.0),  # Kraken's error array
        (200, None, 5.0, None),  # a Retry-After on a good answer is no limit answer
        (403, None, None, None),  # another 403 is an ordinary failure
        (429, 1e9, None, MAX_HOLD),  # capped
    ],
)
def test_hold_for_is_the_one_rule_of_limit_answers(
    status: int, signal: float | None, retry_after: float | None, hold: float | None
) -> None:
    assert hold_for(status, signal, retry_after) == hold
