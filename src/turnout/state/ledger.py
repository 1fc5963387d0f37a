"""Usage and spend counters per UTC day, route, deployment and client: the ledger budgets are built on.

A row is keyed by (day, route, deployment, client) and holds integer counters (`METRICS`): requests, input,
output and cached tokens, cost in nano-USD (integers add exactly, in Python and in Redis alike) and the number of
requests whose cost was unknown (so a budget knows when its total is a lower bound). `client` is "" (anonymous)
until client keys exist. Reads aggregate rows into `UsageTotals` for one day, one month or all time.

The local backend keeps its rows here (in memory); the Redis backend keeps only the rows it has not flushed yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from turnout.types import Usage

Period = Literal["day", "week", "month", "total"]
PERIODS: tuple[str, ...] = ("day", "week", "month", "total")
METRICS: tuple[str, ...] = ("requests", "input_tokens", "output_tokens", "cached_tokens", "cost_nusd", "unpriced")
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
    """Counters of one UsageKey over a period. `cost_usd` is a lower bound when `unpriced_requests` > 0."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0

    @classmethod
    def of(cls, counters: Iterable[int]) -> UsageTotals:
        requests, inp, out, cached, nusd, unpriced = counters
        return cls(requests, inp, out, cached, nusd / NANO, unpriced)


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
    """Rows of usage counters. `record` is on every served request's path: one clock read, one dict lookup on a
    3-tuple and a few integer additions; the UTC day is recomputed only when the wall clock crosses midnight."""

    __slots__ = ("_day", "_day_end", "_day_start", "_today", "_wall", "days")

    def __init__(self, *, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
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

    def today(self) -> str:
        now = self._wall()
        if not self._day_start <= now < self._day_end:
            self._roll(now)
        return self._day

    def record(self, route: str, deployment: str, client: str, usage: Usage, cost: float | None) -> None:
        """Count one served request. Unknown token counts add nothing; an unknown cost counts as unpriced."""
        now = self._wall()
        if not self._day_start <= now < self._day_end:
            self._roll(now)
        row = self._today.get((route, deployment, client))
        if row is None:
            row = self._today[(route, deployment, client)] = [0, 0, 0, 0, 0, 0]
        row[0] += 1
        if usage.prompt_tokens is not None:
            row[1] += usage.prompt_tokens
        if usage.completion_tokens is not None:
            row[2] += usage.completion_tokens
        row[3] += usage.cached_tokens
        if cost is None:
            row[5] += 1
        elif cost > 0:
            row[4] += round(cost * NANO)

    @property
    def rows(self) -> Rows:
        """Every row, keyed (day, route, deployment, client)."""
        return {(day, *key): row for day, rows in self.days.items() for key, row in rows.items()}

    def take(self) -> Rows:
        """Hand every row over (to be flushed) and start empty."""
        rows = self.rows
        self.days = {}
        self._day_start = self._day_end = 0.0  # the next record starts a fresh dict for today
        return rows

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
