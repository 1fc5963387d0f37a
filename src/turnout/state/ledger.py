"""Usage and spend counters per UTC day, route, deployment and client: the ledger budgets are built on.

A row is keyed by (day, route, deployment, client) and holds integer counters (`METRICS`): requests served,
input, output and cached tokens, cost in nano-USD (integers add exactly, in Python, sqlite and Redis alike), the
number of requests whose cost is unknown because their deployment has no price (so a total knows when it is a lower
bound), and the part of the cost that was charged from an estimate (see `record`). `client` is "" for an anonymous
caller. Reads aggregate rows into `UsageTotals` for one day, week, month or all time.

Every charge also goes to the ledger's `SpendMeter` (`turnout.state.meter`), which budgets read. A ledger kept in
memory holds every row; one with a store (sqlite, Redis) holds only the rows not flushed yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from turnout.state.meter import SpendMeter
from turnout.types import Usage

Period = Literal["day", "week", "month", "total"]
PERIODS: tuple[str, ...] = ("day", "week", "month", "total")
METRICS: tuple[str, ...] = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_nusd",
    "unpriced",
    "estimated_nusd",
)
COST = METRICS.index("cost_nusd")
NANO = 1_000_000_000  # nano-USD per USD
RowKey = tuple[str, str, str, str]  # (day "YYYY-MM-DD", route, deployment, client)
Rows = dict[RowKey, list[int]]


@dataclass(frozen=True, slots=True)
class UsageKey:
    """Who spent: a route, the deployment that served it, and the client ("" until clients are identified)."""

    route: str
    deployment: str
    client: str = ""


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Counters of one UsageKey over a period. `cost_usd` is what budgets count: reported costs plus estimates
    (`estimated_usd` of it) for attempts that were billed without reporting usage; it is a lower bound when
    `unpriced_requests` > 0 (requests served by a deployment with no price)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0
    estimated_usd: float = 0.0

    @classmethod
    def of(cls, counters: Iterable[int]) -> UsageTotals:
        requests, inp, out, cached, nusd, unpriced, estimated = counters
        return cls(requests, inp, out, cached, nusd / NANO, unpriced, estimated / NANO)

    def to_dict(self) -> dict[str, int | float]:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": self.cost_usd,
            "estimated_usd": self.estimated_usd,
            "unpriced_requests": self.unpriced_requests,
        }


def period_days(period: Period, at: date) -> tuple[str, ...] | None:
    """The UTC days ("YYYY-MM-DD") of the period containing `at`; None for "total" (every day). Weeks are ISO
    weeks (Monday to Sunday)."""
    if period == "day":
        return (at.isoformat(),)
    if period == "week":
        monday = at - timedelta(days=at.weekday())
        return tuple((monday + timedelta(days=i)).isoformat() for i in range(7))
    if period == "month":
        first = at.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return tuple((first + timedelta(days=i)).isoformat() for i in range((following - first).days))
    if period == "total":
        return None
    raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")


def add_row(into: dict[UsageKey, list[int]], key: UsageKey, counters: Iterable[int]) -> None:
    row = into.get(key)
    if row is None:
        into[key] = list(counters)
    else:
        for i, value in enumerate(counters):
            row[i] += value


def totals_of(summed: Mapping[UsageKey, list[int]]) -> dict[UsageKey, UsageTotals]:
    return {key: UsageTotals.of(counters) for key, counters in summed.items()}


class Ledger:
    """Rows of usage counters. `record` is on every attempt's path: one clock read, one dict lookup on a 3-tuple
    and a few integer additions (plus the meter's three scopes when it cost something); the UTC day is recomputed
    only when the wall clock crosses midnight. `on_roll` is called whenever a new day's dict is started (the first
    record, and the first after each `take`): a backend starts its flushing there."""

    __slots__ = ("_day", "_day_end", "_day_start", "_today", "_wall", "days", "meter", "on_roll")

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        meter: SpendMeter | None = None,
        on_roll: Callable[[], None] | None = None,
    ) -> None:
        self._wall = wall
        self.meter = meter if meter is not None else SpendMeter(wall=wall)
        self.on_roll = on_roll
        self.days: dict[str, dict[tuple[str, str, str], list[int]]] = {}  # day -> (route, deployment, client) -> row
        self._today: dict[tuple[str, str, str], list[int]] = {}
        self._day = ""
        self._day_start = 0.0
        self._day_end = 0.0

    def _roll(self, now: float) -> None:
        day = datetime.fromtimestamp(now, UTC).date()
        start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        self._day, self._day_start, self._day_end = day.isoformat(), start, start + 86400.0
        self._today = self.days.setdefault(self._day, {})
        if self.on_roll is not None:
            self.on_roll()

    def today(self) -> str:
        now = self._wall()
        if not self._day_start <= now < self._day_end:
            self._roll(now)
        return self._day

    def record(
        self,
        route: str,
        deployment: str,
        client: str,
        usage: Usage,
        cost: float | None,
        served: bool = True,
        estimated: bool = False,
    ) -> None:
        """Count one attempt: a served request (`served`), or a failed attempt that was billed. Unknown token
        counts add nothing; a served request with an unknown cost counts as unpriced; an `estimated` cost (no usage
        was reported) is also counted apart. Every cost is charged to the meter."""
        now = self._wall()
        if not self._day_start <= now < self._day_end:
            self._roll(now)
        row = self._today.get((route, deployment, client))
        if row is None:
            row = self._today[(route, deployment, client)] = [0, 0, 0, 0, 0, 0, 0]
        if served:
            row[0] += 1
        if usage.prompt_tokens is not None:
            row[1] += usage.prompt_tokens
        if usage.completion_tokens is not None:
            row[2] += usage.completion_tokens
        row[3] += usage.cached_tokens
        if cost is None:
            if served:
                row[5] += 1
        elif cost > 0:
            nusd = round(cost * NANO)
            row[4] += nusd
            if estimated:
                row[6] += nusd
            self.meter.charge(self._day, route, deployment, client, nusd)

    @property
    def rows(self) -> Rows:
        """Every row, keyed (day, route, deployment, client)."""
        return {(day, *key): row for day, rows in self.days.items() for key, row in rows.items()}

    def take(self) -> Rows:
        """Hand every row over (to be flushed) and start empty; the meter moves their spend to `flushing`."""
        rows = self.rows
        self.days = {}
        self._day_start = self._day_end = 0.0  # the next record starts a fresh dict for today
        self.meter.take()
        return rows

    def give_back(self, rows: Mapping[RowKey, list[int]]) -> None:
        """A flush of `rows` (everything taken since the last confirmed one) failed: keep them for the next."""
        self.merge(rows)
        self.meter.restore()

    def merge(self, rows: Mapping[RowKey, list[int]]) -> None:
        """Add rows (e.g. a flush that failed) to whatever was recorded meanwhile."""
        for (day, route, deployment, client), counters in rows.items():
            day_rows = self.days.setdefault(day, {})
            row = day_rows.get((route, deployment, client))
            if row is None:
                day_rows[(route, deployment, client)] = list(counters)
            else:
                for i, value in enumerate(counters):
                    row[i] += value
        if self._day in self.days:
            self._today = self.days[self._day]

    def summed(self, days: tuple[str, ...] | None) -> dict[UsageKey, list[int]]:
        """This ledger's rows of the given days (None: all of them), summed per UsageKey."""
        out: dict[UsageKey, list[int]] = {}
        for day, rows in self.days.items():
            if days is None or day in days:
                for (route, deployment, client), counters in rows.items():
                    add_row(out, UsageKey(route, deployment, client), counters)
        return out


def resolve_day(at: date | str | None, wall: Callable[[], float] = time.time) -> date:
    """`at` as a date: a date, an ISO string ("2025-06-01"), or None for today (UTC)."""
    if at is None:
        return datetime.fromtimestamp(wall(), UTC).date()
    if isinstance(at, str):
        return date.fromisoformat(at)
    return at
