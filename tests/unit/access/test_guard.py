"""The guard: the one token check counted by reason, violations counted and logged at most once
a second per kind, read pauses counted quietly, and the /metrics families it yields. Pure: the
clock it reads is replaced, no sockets."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from candlecast.access import guard as guard_module
from candlecast.access.guard import VIOLATIONS, Guard, GuardCollector
from candlecast.access.tokens import EVERYTHING, TokenError
from candlecast.settings import Settings


class Clock:
    """The guard's ``time`` module, with a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(guard_module, "time", SimpleNamespace(monotonic=clock.monotonic, time=time.time))
    return clock


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "candlecast.access" and r.levelno >= logging.WARNING]


# -- the token check -------------------------------------------------------------------------------


def test_check_grants_what_the_verifier_grants_and_counts_nothing() -> None:
    guard = Guard(Settings(tokens=("t0k",)))
    assert guard.check("t0k") is EVERYTHING
    assert guard.auth_failures == {}


def test_check_counts_a_refused_token_by_reason_and_raises() -> None:
    """Every refusal is counted under its code, then re-raised for the route to answer."""
    guard = Guard(Settings(tokens=("t0k",)))
    for token in ("wrong", None, "also wrong"):
        with pytest.raises(TokenError):
            guard.check(token)
    assert guard.auth_failures == {"bad_token": 2, "token_required": 1}


def test_auth_failed_is_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    """Refusals are routine: nothing at warning or above."""
    guard = Guard(Settings(tokens=("t0k",)))
    with caplog.at_level(logging.DEBUG, logger="candlecast.access"):
        with pytest.raises(TokenError):
            guard.check("wrong")
    assert warnings(caplog) == []
    assert [r.levelno for r in caplog.records if r.name == "candlecast.access"] == [logging.DEBUG]


# -- violations and pauses -------------------------------------------------------------------------


def test_violation_counts_every_one_and_logs_one_line_a_second_per_kind(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The first of a kind is logged; the rest within the second are counted, and the next line
    says how many were held back. Another kind has its own budget."""
    guard = Guard(Settings())
    with caplog.at_level(logging.WARNING, logger="candlecast.access"):
        guard.violation("invalid_utf8", ("10.0.0.1", 5000), "text frame not UTF-8")
        clock.now += 0.2
        guard.violation("invalid_utf8", ("10.0.0.1", 5001), "again")
        guard.violation("invalid_utf8", None, "again")
        guard.violation("oversize", None, "x" * 200)
        clock.now += 1.0
        guard.violation("invalid_utf8", ("10.0.0.2", 6000), "later")
    assert guard.violations["invalid_utf8"] == 4 and guard.violations["oversize"] == 1
    assert warnings(caplog) == [
        "client protocol violation (invalid_utf8) from 10.0.0.1:5000: text frame not UTF-8",
        "client protocol violation (oversize) from unknown peer: " + "x" * 80,  # the detail is cut short
        "client protocol violation (invalid_utf8) from 10.0.0.2:6000: later (2 more since the last report)",
    ]


def test_violation_of_a_kind_not_listed_is_still_counted(clock: Clock) -> None:
    guard = Guard(Settings())
    guard.violation("something_new", None, "d")
    assert guard.violations["something_new"] == 1


def test_backpressured_counts_a_read_pause_without_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """A client that does not read is routine: counted for /metrics, never logged."""
    guard = Guard(Settings())
    with caplog.at_level(logging.DEBUG, logger="candlecast.access"):
        guard.backpressured(("10.0.0.1", 5000))
        guard.backpressured(None)
    assert guard.read_pauses == 2
    assert [r for r in caplog.records if r.name == "candlecast.access"] == []


# -- metrics ---------------------------------------------------------------------------------------


def test_metrics_yield_every_family_with_its_counts() -> None:
    """Violations by kind (every listed kind, zero or not), failures by reason, and the plain counters."""
    guard = Guard(Settings(tokens=("t0k",)))
    with pytest.raises(TokenError):
        guard.check("wrong")
    guard.violations["protocol"] = 3
    guard.header_timeouts, guard.rate_limited, guard.address_refused = 1, 2, 4
    guard.read_pauses, guard.expired_sessions = 5, 6
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in guard.metrics()
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert {name for name, _ in samples} == {
        "candlecast_protocol_violations_total",
        "candlecast_auth_failures_total",
        "candlecast_header_timeouts_total",
        "candlecast_rate_limited_total",
        "candlecast_address_refused_total",
        "candlecast_read_pauses_total",
        "candlecast_expired_sessions_total",
    }
    violations = {labels[0][1]: v for (name, labels), v in samples.items() if name.startswith("candlecast_protocol")}
    assert violations == {kind: (3.0 if kind == "protocol" else 0.0) for kind in VIOLATIONS}
    assert samples[("candlecast_auth_failures_total", (("reason", "bad_token"),))] == 1.0
    plain = {name: v for (name, labels), v in samples.items() if not labels}
    assert plain == {
        "candlecast_header_timeouts_total": 1.0,
        "candlecast_rate_limited_total": 2.0,
        "candlecast_address_refused_total": 4.0,
        "candlecast_read_pauses_total": 5.0,
        "candlecast_expired_sessions_total": 6.0,
    }


def test_collector_reads_the_guard_at_scrape_time() -> None:
    """Registered once; each scrape shows the counts of that moment."""
    guard = Guard(Settings())
    registry = CollectorRegistry()
    registry.register(GuardCollector(guard))
    assert b"candlecast_read_pauses_total 0.0" in generate_latest(registry)
    guard.backpressured(None)
    assert b"candlecast_read_pauses_total 1.0" in generate_latest(registry)
