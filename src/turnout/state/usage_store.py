"""Usage counters in Redis: flushed in the background, exactly once, and read per day, week, month or in total.

A flush sends every pending ledger row in one `scripts/usage.lua` call that adds them to the day, month and
all-time hashes. Each flush has an id; the script refuses an id it has applied already, so a flush whose reply
was lost is simply sent again with the same id and content, and nothing counts twice or goes missing. Counters
only ever grow (HINCRBY of non-negative amounts), so an emptied Redis starts again from zero, never below.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from turnout.state.base import StoreError
from turnout.state.keys import Keys, split_usage_field, usage_field
from turnout.state.ledger import METRICS, Ledger, Period, Rows, UsageKey, add_row
from turnout.state.redis import Link, Script

MARKER_TTL = 86400  # seconds a flush id is remembered (a retry comes within seconds)
DAY_TTL = 400 * 86400  # seconds a day's hash is kept after its last update; months and the total are kept


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
        the rows are kept for the next try."""
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
        by_day: dict[str, list[Any]] = {}
        for (day, route, deployment, client), counters in rows.items():
            pairs = by_day.setdefault(day, [])
            for metric, value in zip(METRICS, counters, strict=True):
                if value:
                    pairs += [usage_field(route, deployment, client, metric), value]
        keys = [self.keys.flush_marker(flush_id)]
        args: list[Any] = [MARKER_TTL, DAY_TTL]
        for day, pairs in by_day.items():
            keys += [self.keys.usage_day(day), self.keys.usage_month(day[:7]), self.keys.usage_total]
            args += [len(pairs) // 2, *pairs]
        return keys, args

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


def _add_field(out: dict[UsageKey, list[int]], field: Any, value: Any) -> None:
    parts = split_usage_field(field.decode() if isinstance(field, bytes) else str(field))
    if parts is None or parts[3] not in METRICS:
        return
    route, deployment, client, metric = parts
    counters = [0] * len(METRICS)
    counters[METRICS.index(metric)] = max(0, int(value))
    add_row(out, UsageKey(route, deployment, client), counters)
