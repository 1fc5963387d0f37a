"""Spend per budget scope, read from memory on every request: what budgets are checked against.

A *scope* is one client (`c:<name>`), route (`r:<name>`) or deployment (`d:<provider/model>`). Every charged
attempt adds its cost (integer nano-USD) to the three scopes it belongs to. A budget asks for the spend of its
scope in the current UTC *period* (day, ISO week, month, or total), each named by a period id:

```
d:2025-06-04   w:2025-W23   m:2025-06   t
```

What this process knows of a scope's spend in a period is the sum of three parts, kept apart so that nothing is
counted twice or lost while a flush is under way:

- `base`: the shared store's totals per period id (every process's flushed spend), replaced by each refresh;
- `flushing`: this process's spend handed to the store but not yet seen in a refresh;
- `pending`: this process's spend recorded since.

plus `reserved`: what requests in flight here have reserved and not settled yet. The store's cycle (in the
background, at least every second) is: `take()` (pending -> flushing), write and read the store off the request
path, then `confirmed(base)` (flushing cleared, base replaced) or `restore()` (flushing -> pending) on failure.
With no store (a ledger kept in memory) nothing is ever flushed, and a day's spend is folded into `base` when the
day is over, so reads stay O(1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from functools import lru_cache

PeriodIds = tuple[str, str, str, str]  # (day, week, month, total) ids
KIND = {"day": 0, "week": 1, "month": 2, "total": 3}
TOTAL = "t"
ByDay = dict[str, dict[str, int]]  # day "YYYY-MM-DD" -> scope -> nano-USD


@lru_cache(maxsize=64)
def period_ids(day: str) -> PeriodIds:
    """The ids of the day, ISO week, month and total that `day` ("YYYY-MM-DD") belongs to."""
    year, week, _ = date.fromisoformat(day).isocalendar()
    return (f"d:{day}", f"w:{year}-W{week:02d}", f"m:{day[:7]}", TOTAL)


def client_scope(name: str) -> str:
    return f"c:{name}"


def route_scope(name: str) -> str:
    return f"r:{name}"


def deployment_scope(key: str) -> str:
    return f"d:{key}"


class SpendMeter:
    """This process's view of spend per scope and period (see the module docstring)."""

    __slots__ = (
        "_day",
        "_day_end",
        "_day_start",
        "_ids",
        "_names",
        "_wall",
        "base",
        "flushing",
        "folding",
        "pending",
        "reserved",
    )

    def __init__(self, *, wall: Callable[[], float] = time.time, folding: bool = True) -> None:
        """`folding`: no store behind this meter (a ledger in memory): fold finished days into `base`."""
        self._wall = wall
        self.folding = folding
        self.base: dict[str, dict[str, int]] = {}  # period id -> scope -> nano-USD
        self.pending: ByDay = {}
        self.flushing: ByDay = {}
        self.reserved: dict[str, int] = {}
        self._day = ""
        self._day_start = self._day_end = 0.0
        self._ids: PeriodIds = ("", "", "", TOTAL)
        self._names: dict[tuple[str, str, str], tuple[str, ...]] = {}  # (route, deployment, client) -> its scopes

    # -- the request path --------------------------------------------------------------------------------------
    def today(self) -> PeriodIds:
        """The current period ids (recomputed only when the wall clock crosses UTC midnight)."""
        now = self._wall()
        if not self._day_start <= now < self._day_end:
            self._roll(now)
        return self._ids

    def charge(self, day: str, route: str, deployment: str, client: str, nusd: int) -> None:
        """Count spend of `day` against its route, deployment and (when named) client scopes."""
        spent = self.pending.get(day)
        if spent is None:
            spent = self.pending[day] = {}
        names = self._names.get((route, deployment, client))
        if names is None:
            names = self._scope_names(route, deployment, client)
        for scope in names:
            spent[scope] = spent.get(scope, 0) + nusd

    def _scope_names(self, route: str, deployment: str, client: str) -> tuple[str, ...]:
        if len(self._names) > 100_000:  # a bounded cache (names come from the file, but be safe)
            self._names.clear()
        names = (route_scope(route), deployment_scope(deployment)) + ((client_scope(client),) if client else ())
        self._names[(route, deployment, client)] = names
        return names

    def spent(self, scope: str, kind: int) -> int:
        """Nano-USD spent by `scope` in the current period of `kind` (see KIND), reservations not included."""
        ids = self.today()
        wanted = ids[kind]
        total = self.base.get(wanted, {}).get(scope, 0)
        for days in (self.pending, self.flushing):
            for day, scopes in days.items():
                if period_ids(day)[kind] == wanted:
                    total += scopes.get(scope, 0)
        return total

    def reserve(self, scopes: tuple[str, ...], nusd: int) -> None:
        reserved = self.reserved
        for scope in scopes:
            reserved[scope] = reserved.get(scope, 0) + nusd

    def release(self, scopes: tuple[str, ...], nusd: int) -> None:
        reserved = self.reserved
        for scope in scopes:
            left = reserved.get(scope, 0) - nusd
            if left > 0:
                reserved[scope] = left
            else:
                reserved.pop(scope, None)

    # -- the store's cycle -------------------------------------------------------------------------------------
    def take(self) -> None:
        """The ledger's pending rows are being handed to the store: their spend moves to `flushing`."""
        _merge(self.flushing, self.pending)
        self.pending = {}

    def restore(self) -> None:
        """The flush failed (the rows went back to the ledger): their spend is pending again."""
        _merge(self.pending, self.flushing)
        self.flushing = {}

    def confirmed(self, base: Mapping[str, Mapping[str, int]]) -> None:
        """The store holds everything flushed so far, and `base` is its totals per period id (read after)."""
        self.flushing = {}
        self.base = {pid: dict(scopes) for pid, scopes in base.items()}

    # -- internals ---------------------------------------------------------------------------------------------
    def _roll(self, now: float) -> None:
        day = datetime.fromtimestamp(now, UTC).date()
        start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        self._day, self._day_start, self._day_end = day.isoformat(), start, start + 86400.0
        self._ids = period_ids(self._day)
        if self.folding:
            self._fold()

    def _fold(self) -> None:
        """Without a store: a finished day's spend becomes part of `base` for its week, month and total."""
        for day in [d for d in self.pending if d != self._day]:
            for pid in period_ids(day):
                into = self.base.setdefault(pid, {})
                for scope, nusd in self.pending[day].items():
                    into[scope] = into.get(scope, 0) + nusd
            del self.pending[day]


def _merge(into: ByDay, more: ByDay) -> None:
    for day, scopes in more.items():
        target = into.setdefault(day, {})
        for scope, nusd in scopes.items():
            target[scope] = target.get(scope, 0) + nusd


def spend_increments(rows: Mapping[tuple[str, str, str, str], list[int]], cost_index: int) -> dict[str, dict[str, int]]:
    """What ledger rows add to the store's spend totals: period id -> scope -> nano-USD (for every period id of
    each row's day)."""
    out: dict[str, dict[str, int]] = {}
    for (day, route, deployment, client), counters in rows.items():
        nusd = counters[cost_index]
        if not nusd:
            continue
        scopes = [f"r:{route}", f"d:{deployment}"] + ([f"c:{client}"] if client else [])
        for pid in period_ids(day):
            target = out.setdefault(pid, {})
            for scope in scopes:
                target[scope] = target.get(scope, 0) + nusd
    return out
