"""The local backend: limits, probes and the usage ledger in this process.

With `workers` processes on one host serving the same file (`turnout serve --workers N`) each enforces its share
of every limit, `limit // workers` (at least 1), so together they never send more than the limit. Half-open
probes are limited by the local breaker alone (so up to `workers * half_open_probes` per host), and breaker
state is not shared: each process discovers a failing deployment by itself.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from turnout.config import Limits, StateSpec
from turnout.state import window as _window
from turnout.state.ledger import Ledger, Period, UsageKey, UsageTotals, period_days, resolve_day, totals_of
from turnout.state.window import SlidingWindow, share
from turnout.types import Usage

log = logging.getLogger("turnout.state")


class LocalGate:
    """A deployment's limits in one process: a sliding window over this process's share of them."""

    __slots__ = ("_clock", "_ids", "limited", "window")

    def __init__(self, window: SlidingWindow, clock: Callable[[], float], ids: Callable[[], int]) -> None:
        self.window = window
        self.limited = True
        self._clock = clock
        self._ids = ids

    async def admit(self, tokens: int, probe: float | None) -> int | str:
        grant = self._ids()
        reason = self.window.admit(self._clock(), tokens, grant)
        return grant if reason is None else reason

    def refund(self, grant: int) -> None:
        self.window.refund(grant)

    def forget(self, grant: int) -> None:
        self.window.forget(grant)

    def release_probe(self, grant: int) -> None:
        """Probes are limited by the local breaker; there is no lease to free."""

    def usage(self) -> tuple[int, int]:
        return self.window.usage(self._clock())


def local_window(limits: Limits, parts: int, *, note_for: str) -> SlidingWindow:
    """A window enforcing 1/`parts` of `limits`; its refusals say whose share it is (`note_for`)."""
    note = "" if parts <= 1 else f": {note_for} share of {_limit_text(limits)}"
    return SlidingWindow(share(limits.rpm, parts), share(limits.tpm, parts), window=_window.WINDOW, note=note)


def _limit_text(limits: Limits) -> str:
    parts = []
    if limits.rpm is not None:
        parts.append(f"{limits.rpm} rpm")
    if limits.tpm is not None:
        parts.append(f"{limits.tpm} tpm")
    return " / ".join(parts)


class LocalState:
    """The `local` backend (the default): everything in this process."""

    kind = "local"

    def __init__(
        self,
        spec: StateSpec,
        *,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.workers = max(1, workers)
        self._clock = clock
        self._wall = wall
        self._ids = itertools.count(1).__next__
        self.ledger = Ledger(wall=wall)
        self.record = self.ledger.record  # on every served request: no extra call layer
        self.restart_required = False

    def gate(self, key: str, limits: Limits, probes: int) -> LocalGate | None:
        if limits.rpm is None and limits.tpm is None:
            return None
        note_for = f"1 of {self.workers} workers'"
        return LocalGate(local_window(limits, self.workers, note_for=note_for), self._clock, self._ids)

    def breaker_changed(self, key: str, state: str, open_for: float | None, trips: int) -> None:
        """Nothing to tell: breakers are per process with the local backend."""

    def record(self, route: str, deployment: str, client: str, usage: Usage, cost: float | None) -> None:
        """Count one served request in the in-memory ledger (bound straight to it in `__init__`)."""
        self.ledger.record(route, deployment, client, usage, cost)

    async def usage(self, period: Period = "day", at: date | str | None = None) -> dict[UsageKey, UsageTotals]:
        return totals_of(self.ledger.summed(period_days(period, resolve_day(at, self._wall))))

    def status(self) -> dict[str, Any]:
        return {
            "state": "ok",
            "state_backend": "local",
            "state_processes": self.workers,
            "state_error": None,
            "state_restart_required": self.restart_required,
        }

    def reconfigure(self, spec: StateSpec) -> None:
        if spec.identity != self.spec.identity:
            self.restart_required = True
            log.warning("state.backend, url or key_prefix changed: restart to apply; still using the local backend")
        self.spec = spec

    async def start(self) -> None:
        """Nothing to open."""

    async def aclose(self) -> None:
        """Nothing to close; the in-memory ledger is dropped with the process."""

    def __repr__(self) -> str:
        return f"<LocalState workers={self.workers}>"
