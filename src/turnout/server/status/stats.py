"""Per-deployment figures over the last few minutes: attempts, own-fault errors, a latency histogram, spend.

Time is cut into `BUCKET` second buckets kept in a ring of `BUCKETS` per deployment (5 minutes), so memory is
bounded by the number of deployments, and adding one attempt is O(1): find the ring slot of the current bucket
(resetting it when it holds an older bucket), add to three counters and to one latency bin. The latency bin is
computed, not searched: bins are geometric (each edge `RATIO` times the previous one, from `FIRST_EDGE`), so the
index is one `log`; the median read from it is exact to within a bin (about 13% with `RATIO` = 2**(1/3)).

`summary()` sums a ring's live buckets into one small list (sparse latency bins); the summaries of several workers
are added (`merge`) before the figures are computed (`figures`), so the page shows every worker's traffic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

BUCKET = 10.0  # seconds per bucket
BUCKETS = 30  # buckets per ring: the window is BUCKET * BUCKETS seconds
WINDOW = BUCKET * BUCKETS
FIRST_EDGE = 0.001  # seconds: the upper edge of the first latency bin
RATIO = 2 ** (1 / 3)
BINS = 56  # the last bin (from FIRST_EDGE * RATIO**54, about 4.5 minutes) takes everything longer
REQUESTS, ERRORS, SPEND, PRICED = 0, 1, 2, 3  # counters at the start of a bucket; latency bins follow
HEAD = 4
MAX_DEPLOYMENTS = 10_000  # a bound on keys, whatever an old graph's in-flight requests still report
_LOG_RATIO = math.log(RATIO)


def latency_bin(seconds: float) -> int:
    """The bin of one attempt's duration: 0 up to FIRST_EDGE, then one per RATIO step; the last takes the rest."""
    if seconds <= FIRST_EDGE:
        return 0
    index = math.ceil(math.log(seconds / FIRST_EDGE) / _LOG_RATIO - 1e-9)
    return index if index < BINS else BINS - 1


def bin_edges(index: int) -> tuple[float, float]:
    """(lower, upper) seconds of a latency bin (the last one's upper edge is its lower edge times RATIO)."""
    upper = FIRST_EDGE * RATIO**index
    return (0.0 if index == 0 else upper / RATIO), upper


class _Ring:
    """One deployment's buckets: `stamps[i]` is the bucket number slot i holds, `slots[i]` its counters."""

    __slots__ = ("slots", "stamps")

    def __init__(self) -> None:
        self.stamps: list[int] = [-1] * BUCKETS
        self.slots: list[list[float] | None] = [None] * BUCKETS

    def slot(self, bucket: int) -> list[float]:
        i = bucket % BUCKETS
        cells = self.slots[i]
        if self.stamps[i] != bucket or cells is None:
            cells = self.slots[i] = [0.0] * (HEAD + BINS)
            self.stamps[i] = bucket
        return cells


class DeploymentStats:
    """The rings of every deployment one process has attempted (see the module docstring)."""

    __slots__ = ("_rings",)

    def __init__(self) -> None:
        self._rings: dict[str, _Ring] = {}

    def add(self, deployment: str, now: float, duration: float, failed: bool, cost: float | None) -> None:
        """Count one attempt that ended at `now` (wall-clock seconds)."""
        ring = self._rings.get(deployment)
        if ring is None:
            if len(self._rings) >= MAX_DEPLOYMENTS:
                return
            ring = self._rings[deployment] = _Ring()
        cells = ring.slot(int(now // BUCKET))
        cells[REQUESTS] += 1
        if failed:
            cells[ERRORS] += 1
        if cost is not None:
            cells[SPEND] += cost
            cells[PRICED] += 1
        cells[HEAD + latency_bin(duration)] += 1

    def retain(self, keys: Iterable[str]) -> None:
        """Forget deployments that are no longer in the graph (called when a snapshot is taken)."""
        wanted = set(keys)
        for key in [k for k in self._rings if k not in wanted]:
            del self._rings[key]

    def summary(self, now: float) -> dict[str, list[Any]]:
        """deployment -> its window's totals at `now` (`SUMMARY` form: counters, then {latency bin: count}),
        for deployments with attempts in the window. Small enough to publish every second for other workers."""
        oldest = int(now // BUCKET) - BUCKETS + 1
        out: dict[str, list[Any]] = {}
        for key, ring in self._rings.items():
            total: list[float] | None = None
            for stamp, cells in zip(ring.stamps, ring.slots, strict=True):
                if cells is None or stamp < oldest:
                    continue
                if total is None:
                    total = [0.0] * (HEAD + BINS)
                for i, value in enumerate(cells):
                    total[i] += value
            if total is not None:
                bins = {str(i): count for i, count in enumerate(total[HEAD:]) if count}
                out[key] = [*total[:HEAD], bins]
        return out


def merge(summaries: Iterable[Mapping[str, list[Any]]]) -> dict[str, list[float]]:
    """Add several `summary()`s (one per worker) into one dense counter list per deployment (for `figures`)."""
    total: dict[str, list[float]] = {}
    for summary in summaries:
        for key, entry in summary.items():
            if len(entry) != HEAD + 1 or not isinstance(entry[HEAD], Mapping):
                continue
            into = total.get(key)
            if into is None:
                into = total[key] = [0.0] * (HEAD + BINS)
            for i in range(HEAD):
                into[i] += float(entry[i])
            for index, count in entry[HEAD].items():
                if 0 <= int(index) < BINS:
                    into[HEAD + int(index)] += float(count)
    return total


def figures(cells: list[float] | None) -> dict[str, Any]:
    """What the page shows for one deployment: attempts (`requests`), own-fault errors, error rate, p50 latency (ms)
    and spend (USD)."""
    if cells is None or not cells[REQUESTS]:
        return {"requests": 0, "errors": 0, "error_rate": None, "p50_ms": None, "spend_usd": 0.0, "unpriced": 0}
    requests = int(cells[REQUESTS])
    errors = int(cells[ERRORS])
    priced = int(cells[PRICED])
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests,
        "p50_ms": round(median(cells[HEAD:]) * 1000, 1),
        "spend_usd": cells[SPEND] if priced else None,  # None: no attempt's cost is known (never a made-up 0)
        "unpriced": requests - priced,  # attempts whose cost is unknown (the spend is a lower bound then)
    }


def median(bins: list[float]) -> float:
    """The median duration of a latency histogram, interpolated linearly inside the bin that holds it."""
    total = sum(bins)
    half = total / 2
    seen = 0.0
    for index, count in enumerate(bins):
        if count and seen + count >= half:
            lower, upper = bin_edges(index)
            return lower + (upper - lower) * (half - seen) / count
        seen += count
    return bin_edges(len(bins) - 1)[1]
