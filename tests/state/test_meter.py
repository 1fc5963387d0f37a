"""The spend meter: spend per scope and UTC period, as the store's base plus this process's unflushed spend."""

from __future__ import annotations

import datetime

from turnout.state.meter import KIND, SpendMeter, period_ids, spend_increments

UTC = datetime.UTC


def _at(y: int, m: int, d: int, hh: int = 12) -> float:
    return datetime.datetime(y, m, d, hh, tzinfo=UTC).timestamp()


class Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_period_ids_name_the_day_iso_week_month_and_total():
    """A day belongs to its ISO week (weeks start on Monday; 2024-12-30 is in week 1 of 2025) and its month."""
    assert period_ids("2025-06-04") == ("d:2025-06-04", "w:2025-W23", "m:2025-06", "t")
    assert period_ids("2024-12-30")[1] == "w:2025-W01"


def test_a_charge_counts_for_its_route_deployment_and_client():
    """One charge adds to the three scopes; an anonymous client ("") has no client scope."""
    meter = SpendMeter(wall=Wall(_at(2025, 6, 4)))
    meter.charge("2025-06-04", "chat", "p/m", "team", 300)
    meter.charge("2025-06-04", "chat", "p/m", "", 20)
    assert meter.spent("r:chat", KIND["day"]) == 320
    assert meter.spent("d:p/m", KIND["month"]) == 320
    assert meter.spent("c:team", KIND["total"]) == 300
    assert meter.spent("c:", KIND["day"]) == 0


def test_spend_counts_only_in_the_periods_its_day_belongs_to():
    """Yesterday's spend counts for this week and month but not for today; last month's only in total."""
    wall = Wall(_at(2025, 6, 4))
    meter = SpendMeter(wall=wall, folding=False)
    meter.charge("2025-06-03", "chat", "p/m", "", 5)
    meter.charge("2025-05-31", "chat", "p/m", "", 7)
    assert [meter.spent("r:chat", k) for k in range(4)] == [0, 5, 5, 12]


def test_the_flush_cycle_never_counts_twice_nor_loses_spend():
    """take -> confirmed(base) replaces what was flushed by the store's total; restore puts it back on failure."""
    meter = SpendMeter(wall=Wall(_at(2025, 6, 4)), folding=False)
    meter.charge("2025-06-04", "chat", "p/m", "", 10)
    meter.take()
    meter.charge("2025-06-04", "chat", "p/m", "", 1)  # recorded while the flush is under way
    assert meter.spent("r:chat", 0) == 11
    meter.restore()  # the flush failed
    assert meter.spent("r:chat", 0) == 11
    meter.take()
    meter.confirmed({"d:2025-06-04": {"r:chat": 111}})  # the store now holds ours (11) and others' (100)
    assert meter.spent("r:chat", 0) == 111
    meter.charge("2025-06-04", "chat", "p/m", "", 4)
    assert meter.spent("r:chat", 0) == 115


def test_without_a_store_finished_days_are_folded_into_the_base():
    """A meter with no store keeps reads cheap: at midnight yesterday's spend moves into week, month and total."""
    wall = Wall(_at(2025, 6, 4))
    meter = SpendMeter(wall=wall)
    meter.charge("2025-06-04", "chat", "p/m", "", 10)
    wall.now = _at(2025, 6, 5)
    assert [meter.spent("r:chat", k) for k in range(4)] == [0, 10, 10, 10]
    assert list(meter.pending) == []


def test_reservations_are_kept_apart_and_released():
    """Reservations add up per scope and leave no entry behind when released."""
    meter = SpendMeter(wall=Wall(_at(2025, 6, 4)))
    meter.reserve(("c:a", "r:chat"), 50)
    meter.reserve(("c:a",), 25)
    assert meter.reserved == {"c:a": 75, "r:chat": 50}
    meter.release(("c:a", "r:chat"), 50)
    meter.release(("c:a",), 25)
    assert meter.reserved == {}


def test_spend_increments_of_ledger_rows_cover_every_period():
    """A flushed row adds its cost to each scope in its day, week, month and total; free rows add nothing."""
    rows = {
        ("2025-06-04", "chat", "p/m", "team"): [1, 10, 5, 0, 42, 0, 0],
        ("2025-06-04", "chat", "p/free", ""): [1, 10, 5, 0, 0, 0, 0],
    }
    increments = spend_increments(rows, 4)
    assert set(increments) == {"d:2025-06-04", "w:2025-W23", "m:2025-06", "t"}
    assert increments["t"] == {"r:chat": 42, "d:p/m": 42, "c:team": 42}
