"""The usage ledger: rows per UTC day, route, deployment and client, and reads by day, week, month and total."""

from __future__ import annotations

import datetime

import pytest

from turnout.state.ledger import Ledger, UsageKey, period_days, resolve_day
from turnout.types import Usage

UTC = datetime.UTC


def _at(y: int, m: int, d: int, hh: int = 12, mm: int = 0, ss: float = 0) -> float:
    return datetime.datetime(y, m, d, hh, mm, tzinfo=UTC).timestamp() + ss


class Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_row_counts_requests_tokens_and_nano_usd():
    """One record adds 1 request, its tokens and its cost (as integer nano-USD) to today's row."""
    ledger = Ledger(wall=Wall(_at(2025, 6, 1)))
    ledger.record("chat", "p/m", "", Usage(100, 20, cached_tokens=30), 0.000123)
    ledger.record("chat", "p/m", "", Usage(1, 2), 0.5)
    assert ledger.rows == {("2025-06-01", "chat", "p/m", ""): [2, 101, 22, 30, 500_123_000, 0, 0]}


def test_unknown_usage_and_cost_add_nothing_but_the_request():
    """Unknown token counts add no tokens; an unknown cost counts the request as unpriced."""
    ledger = Ledger(wall=Wall(_at(2025, 6, 1)))
    ledger.record("chat", "p/m", "", Usage.UNKNOWN, None)
    assert ledger.rows[("2025-06-01", "chat", "p/m", "")] == [1, 0, 0, 0, 0, 1, 0]


def test_the_day_rolls_over_at_utc_midnight():
    """A record one second before and one after UTC midnight land on two days."""
    wall = Wall(_at(2025, 6, 1, 23, 59, 59))
    ledger = Ledger(wall=wall)
    ledger.record("chat", "p/m", "", Usage(1, 1), 0.0)
    wall.now += 2
    ledger.record("chat", "p/m", "", Usage(1, 1), 0.0)
    assert sorted(day for day, *_ in ledger.rows) == ["2025-06-01", "2025-06-02"]


def test_periods_select_the_days_they_contain():
    """A day is itself; a week runs Monday..Sunday (ISO); a month is its calendar days; total is every day."""
    day = datetime.date(2025, 6, 4)  # a Wednesday
    assert period_days("day", day) == ("2025-06-04",)
    assert period_days("week", day) == tuple(f"2025-06-{d:02d}" for d in range(2, 9))
    assert len(period_days("month", datetime.date(2024, 2, 10)) or ()) == 29
    assert period_days("total", day) is None
    with pytest.raises(ValueError, match="period must be one of"):
        period_days("year", day)  # type: ignore[arg-type]


def test_summed_aggregates_rows_per_key_over_the_period():
    """Rows of several days sum per (route, deployment, client); other keys stay apart."""
    wall = Wall(_at(2025, 6, 2))
    ledger = Ledger(wall=wall)
    ledger.record("chat", "p/m", "", Usage(10, 1), 0.001)
    wall.now = _at(2025, 6, 3)
    ledger.record("chat", "p/m", "", Usage(10, 1), 0.001)
    ledger.record("chat", "p/m", "team-a", Usage(5, 5), None)
    week = ledger.summed(period_days("week", datetime.date(2025, 6, 3)))
    assert week[UsageKey("chat", "p/m")] == [2, 20, 2, 0, 2_000_000, 0, 0]
    assert week[UsageKey("chat", "p/m", "team-a")] == [1, 5, 5, 0, 0, 1, 0]
    assert ledger.summed(("2025-06-02",)) == {UsageKey("chat", "p/m"): [1, 10, 1, 0, 1_000_000, 0, 0]}


def test_take_and_merge_hand_rows_over_and_back_without_losing_counts():
    """A flush takes the rows; a failed flush merges them back, adding to what was recorded meanwhile."""
    ledger = Ledger(wall=Wall(_at(2025, 6, 1)))
    ledger.record("chat", "p/m", "", Usage(1, 1), 0.0)
    taken = ledger.take()
    assert ledger.rows == {}
    ledger.record("chat", "p/m", "", Usage(2, 2), 0.0)
    ledger.merge(taken)
    assert ledger.rows[("2025-06-01", "chat", "p/m", "")] == [2, 3, 3, 0, 0, 0, 0]


def test_resolve_day_accepts_dates_iso_strings_and_today():
    """`at` may be a date, "YYYY-MM-DD" or None (today in UTC)."""
    assert resolve_day("2025-06-01") == datetime.date(2025, 6, 1)
    assert resolve_day(datetime.date(2025, 6, 1)) == datetime.date(2025, 6, 1)
    assert resolve_day(None, Wall(_at(2025, 6, 1, 23, 30))) == datetime.date(2025, 6, 1)


def test_a_billed_failed_attempt_adds_cost_but_no_request_and_estimates_are_counted_apart():
    """A failed attempt that was billed adds its cost (not a request); an estimated cost is also kept apart."""
    ledger = Ledger(wall=Wall(_at(2025, 6, 1)))
    ledger.record("chat", "p/m", "team", Usage.UNKNOWN, 0.000002, served=False, estimated=True)
    ledger.record("chat", "p/m", "team", Usage(3, 4), 0.000001)
    assert ledger.rows[("2025-06-01", "chat", "p/m", "team")] == [1, 3, 4, 0, 3000, 0, 2000]
    assert ledger.meter.spent("c:team", 0) == 3000
