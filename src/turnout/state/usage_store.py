"""Usage and spend counters in Redis: flushed in the background, exactly once, and read back.

A flush sends every pending ledger row in one `scripts/usage.lua` call that adds them to the day, month and
all-time usage hashes, and their cost to the spend hashes budgets read (one per period id: `{p}s:d:2025-06-04`,
`{p}s:w:2025-W23`, `{p}s:m:2025-06`, `{p}s:t`; field = scope, `c:<client>`, `r:<route>` or `d:<deployment>`).
Each flush has an id; the script refuses an id it has applied already, so a flush whose reply was lost is simply
sent again with the same id and content, and nothing counts twice or goes missing. Counters only ever grow
(HINCRBY of non-negative amounts), so an emptied Redis starts again from zero, never below.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from turnout.state.base import StoreError
from turnout.state.keys import Keys, split_usage_field, usage_field
from turnout.state.ledger import COST, METRICS, Ledger, Period, Rows, UsageKey, add_row
from turnout.state.meter import spend_increments
from turnout.state.redis import Link, Script

MARKER_TTL = 86400  # seconds a flush id is remembered (a retry comes within seconds)
DAY_TTL = 400 * 86400  # seconds a day's (or week's) hash is kept after its last update; months and totals are kept


class UsageStore:
    """Flushes one process's ledger rows and reads everyone's totals."""

    def __init__(self, keys: Keys, replica: str) -> None:
        self.keys = keys
        self.script = Script("usage")
        self._ids = itertools.count(1)
        self._replica = replica
        self.unacked: tuple[str, Rows] | None = None  # a flush sent but not confirmed: resent as is

    async def flush(self, link: Link, ledger: Ledger, within: float) -> None:
        """Send the unconfirmed flush (if any), then everything recorded since. Raises StoreError/TimeoutError;
        the rows are kept for the next try (their spend stays in the meter's `flushing` until a refresh)."""
        for _ in range(2):  # the unconfirmed flush first, then what was recorded since
            if self.unacked is None:
                rows = ledger.take()
                if not rows:
                    return
                self.unacked = (f"{self._replica}:{next(self._ids)}", rows)
            flush_id, rows = self.unacked
            keys, args = self._call(flush_id, rows)
            await asyncio.wait_for(link.script(self.script, keys, args), within)
            self.unacked = None

    def _call(self, flush_id: str, rows: Rows) -> tuple[list[str], list[Any]]:
        hashes: dict[str, dict[str, int]] = {}  # key -> field -> increment
        for (day, route, deployment, client), counters in rows.items():
            targets = [
                hashes.setdefault(key, {})
                for key in (self.keys.usage_day(day), self.keys.usage_month(day[:7]), self.keys.usage_total)
            ]
            for metric, value in zip(METRICS, counters, strict=True):
                if value:
                    field = usage_field(route, deployment, client, metric)
                    for target in targets:
                        target[field] = target.get(field, 0) + value
        for pid, scopes in spend_increments(rows, COST).items():
            hashes[self.keys.spend(pid)] = dict(scopes)
        keys = [self.keys.flush_marker(flush_id)]
        args: list[Any] = [MARKER_TTL]
        for key, fields in hashes.items():
            keys.append(key)
            args += [_ttl_of(key, self.keys), len(fields)]
            for field, value in fields.items():
                args += [field, value]
        return keys, args

    async def read_spend(self, link: Link, period_ids: tuple[str, ...], within: float) -> dict[str, dict[str, int]]:
        """Every scope's spend in each of `period_ids` (one round trip): the meter's new base."""
        futures = [link.call("HGETALL", self.keys.spend(pid)) for pid in period_ids]
        try:
            replies = await asyncio.wait_for(asyncio.gather(*futures), within)
        except TimeoutError:
            raise StoreError("no answer from Redis in time") from None
        out: dict[str, dict[str, int]] = {}
        for pid, reply in zip(period_ids, replies, strict=True):
            scopes = out[pid] = {}
            for i in range(0, len(reply) - 1, 2):
                field = reply[i].decode() if isinstance(reply[i], bytes) else str(reply[i])
                scopes[field] = max(0, int(reply[i + 1]))
        return out

    async def read(
        self, link: Link, period: Period, days: tuple[str, ...] | None, within: float
    ) -> dict[UsageKey, list[int]]:
        """Every process's flushed counters of the period, summed per key (one round trip)."""
        if days is None:
            hashes = [self.keys.usage_total]
        elif period == "month":
            hashes = [self.keys.usage_month(days[0][:7])]
        else:
            hashes = [self.keys.usage_day(day) for day in days]
        futures = [link.call("HGETALL", key) for key in hashes]
        try:
            replies = await asyncio.wait_for(asyncio.gather(*futures), within)
        except TimeoutError:
            raise StoreError("no answer from Redis in time") from None
        out: dict[UsageKey, list[int]] = {}
        for reply in replies:
            for i in range(0, len(reply) - 1, 2):
                _add_field(out, reply[i], reply[i + 1])
        return out

    def add_local(self, summed: dict[UsageKey, list[int]], ledger: Ledger, days: tuple[str, ...] | None) -> None:
        """Add this process's counters that are not in Redis yet (pending and unconfirmed rows)."""
        pending = Ledger()
        pending.merge(ledger.rows)
        if self.unacked is not None:
            pending.merge(self.unacked[1])
        for key, counters in pending.summed(days).items():
            add_row(summed, key, counters)


def _ttl_of(key: str, keys: Keys) -> int:
    """Days and weeks expire DAY_TTL after their last update; months and totals are kept."""
    if key.startswith((keys.tag + "u:d:", keys.tag + "s:d:", keys.tag + "s:w:")):
        return DAY_TTL
    return 0


def _add_field(out: dict[UsageKey, list[int]], field: Any, value: Any) -> None:
    parts = split_usage_field(field.decode() if isinstance(field, bytes) else str(field))
    if parts is None or parts[3] not in METRICS:
        return
    route, deployment, client, metric = parts
    counters = [0] * len(METRICS)
    counters[METRICS.index(metric)] = max(0, int(value))
    add_row(out, UsageKey(route, deployment, client), counters)
