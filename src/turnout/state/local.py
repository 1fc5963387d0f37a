"""The local backend: limits, probes and the usage ledger in this process, the ledger persisted to sqlite.

With `workers` processes on one host serving the same file (`turnout serve --workers N`) each enforces its share
of every limit, `limit // workers` (at least 1), so together they never send more than the limit. Half-open
probes are limited by the local breaker alone (so up to `workers * half_open_probes` per host), and breaker
state is not shared: each process discovers a failing deployment by itself.

The spend ledger is kept in the sqlite file `state.ledger` names (`turnout.state.sqlite`), so a restart never
resets a budget. Nothing touches the file on a request's path: requests record into memory, and a background task
flushes what was recorded at least every second (and on shutdown) through one dedicated thread, reading back the
spend totals budgets are checked against. Every worker flushes its own deltas into the same file; each sees the
others' spend as of their last flush and its own last refresh (`SpendMeter`), so together they may overshoot a
budget by at most what the other workers spent and reserved within about two flush intervals. With the ledger in
memory (`ledger: memory`, or a file loaded from text) each of N workers enforces 1/N of every budget instead, and a
restart starts from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date
from typing import Any

from turnout.config import Limits, StateSpec
from turnout.events import Event, StateDegraded, StateRecovered
from turnout.state import window as _window
from turnout.state.base import Refusal, StoreError
from turnout.state.ledger import (
    Ledger,
    Period,
    Rows,
    UsageKey,
    UsageTotals,
    add_row,
    period_days,
    resolve_day,
    totals_of,
)
from turnout.state.local_responses import LocalResponses
from turnout.state.meter import SpendMeter
from turnout.state.sqlite import LedgerFileError, SqliteLedger
from turnout.state.window import SlidingWindow, share
from turnout.types import Usage

log = logging.getLogger("turnout.state")
FLUSH_EVERY = 1.0  # seconds: the ledger reaches the file at least this often (sync_interval when shorter)
CLOSE_TIMEOUT = 5.0  # seconds the final flush on shutdown may take


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
        now = self._clock()
        reason = self.window.admit(now, tokens, grant)
        return grant if reason is None else Refusal(reason, self.window.wait_for(now, tokens))

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
    """The `local` backend (the default): everything in this process, the ledger flushed to sqlite."""

    kind = "local"

    def __init__(
        self,
        spec: StateSpec,
        *,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        emit: Callable[[Event], None] | None = None,
    ) -> None:
        self.spec = spec
        self.workers = max(1, workers)
        self._clock = clock
        self._wall = wall
        self._emit = emit
        self._ids = itertools.count(1).__next__
        self.store = SqliteLedger(spec.ledger) if spec.ledger is not None else None
        self.meter = SpendMeter(wall=wall, folding=self.store is None)
        self.ledger = Ledger(wall=wall, meter=self.meter, on_roll=self._wake if self.store is not None else None)
        self.record = self.ledger.record  # on every attempt: no extra call layer
        self.budget_share = self.workers if self.store is None else 1  # an unshared ledger splits budgets
        self.responses = LocalResponses(spec.ledger, max_size=spec.responses.max_size, wall=wall)
        self.restart_required = False
        self.error: str | None = None
        self.degraded_since: float | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._loaded: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._flushing: Rows = {}
        self._closed = False

    def gate(self, key: str, limits: Limits, probes: int) -> LocalGate | None:
        if limits.rpm is None and limits.tpm is None:
            return None
        note_for = f"1 of {self.workers} workers'"
        return LocalGate(local_window(limits, self.workers, note_for=note_for), self._clock, self._ids)

    def breaker_changed(self, key: str, state: str, open_for: float | None, trips: int) -> None:
        """Nothing to tell: breakers are per process with the local backend."""

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
        """Count one attempt in the in-memory ledger (bound straight to it in `__init__`)."""
        self.ledger.record(route, deployment, client, usage, cost, served=served, estimated=estimated)

    async def usage(self, period: Period = "day", at: date | str | None = None) -> dict[UsageKey, UsageTotals]:
        """Usage from the ledger file (every worker's flushed rows) plus this process's rows not in it yet.
        Raises StoreError when the file cannot be read (a partial total must not pass for the whole)."""
        days = period_days(period, resolve_day(at, self._wall))
        if self.store is None:
            return totals_of(self.ledger.summed(days))
        try:
            summed = await self._in_thread(self.store.usage, days)
        except LedgerFileError as exc:
            raise StoreError(str(exc)) from None
        pending = Ledger(wall=self._wall)
        pending.merge(self.ledger.rows)
        pending.merge(self._flushing)
        for key, counters in pending.summed(days).items():
            add_row(summed, key, counters)
        return totals_of(summed)

    async def warm(self) -> None:
        """Wait (once, bounded) until the spend totals were read from the ledger file: a budget checked before that
        would see a restarted process's spend as zero."""
        if self.store is None or self._closed:
            return
        self._wake()
        loaded = self._loaded
        if loaded is not None and not loaded.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(loaded), CLOSE_TIMEOUT)

    def status(self) -> dict[str, Any]:
        return {
            "state": "degraded" if self.error is not None else "ok",
            "state_backend": "local",
            "state_processes": self.workers,
            "state_error": self.error,
            "state_restart_required": self.restart_required,
        }

    def reconfigure(self, spec: StateSpec) -> None:
        if spec.identity != self.spec.identity:
            self.restart_required = True
            log.warning(
                "state.backend, url, key_prefix or ledger changed: restart to apply; still using the local backend"
                + (f" with the ledger {self.spec.ledger}" if self.spec.ledger else "")
            )
            spec = replace(spec, backend=self.spec.backend, ledger=self.spec.ledger)
        self.responses.max_size = spec.responses.max_size
        self.spec = spec

    async def start(self) -> None:
        """Open the ledger file and read its spend totals (a file that cannot be used degrades the backend: the
        ledger stays in memory until the file works again)."""
        self._closed = False
        self._wake()
        await self.warm()

    async def aclose(self) -> None:
        """Stop flushing after one last flush (bounded by CLOSE_TIMEOUT) and close the file (and the stored
        responses' connection to it)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            self._stop.set()  # the loop flushes once more and ends
            try:
                await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT)
            except (TimeoutError, Exception):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self.store is not None and self._executor is not None:
            with contextlib.suppress(Exception):
                await self._in_thread(self.store.close)
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)
        await self.responses.aclose()
        self._loop = None
        self._loaded = None

    # -- the background ---------------------------------------------------------------------------------------
    def _wake(self) -> None:
        """Make sure the flush task runs on the current loop (called when the ledger starts a day's rows)."""
        if self._closed or self.store is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous caller: the next record on a loop starts it
            return
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._stop = asyncio.Event()
            self._loaded = loop.create_future()
            self._task = loop.create_task(self._flush_loop(self._stop, self._loaded), name="turnout-ledger-flush")

    async def _flush_loop(self, stop: asyncio.Event, loaded: asyncio.Future[None]) -> None:
        """Flush at least every second until `stop` is set, then once more."""
        while True:
            try:
                await self._cycle()
            finally:
                if not loaded.done():
                    loaded.set_result(None)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(self.spec.sync_interval, FLUSH_EVERY))

    async def _cycle(self) -> None:
        """Flush what was recorded and refresh the spend totals; on failure keep the rows for the next try."""
        store = self.store
        assert store is not None
        rows = self.ledger.take()
        self._flushing = rows
        try:
            base = await self._in_thread(store.cycle, rows, self.meter.today())
        except LedgerFileError as exc:
            self.ledger.give_back(rows)
            self._degrade(str(exc))
            return
        except Exception as exc:  # a bug must not lose spend either: keep the rows, say so, retry
            log.exception("state: flushing the ledger failed unexpectedly")
            self.ledger.give_back(rows)
            self._degrade(f"cannot write the ledger {store.path}: {type(exc).__name__}")
            return
        finally:
            self._flushing = {}
        self.meter.confirmed(base)
        self._recovered()

    async def _in_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnout-ledger")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    def _degrade(self, reason: str) -> None:
        if self.error is None:
            self.degraded_since = self._clock()
            log.error("state: %s; spend is kept in memory and the flush retried every second", reason)
            if self._emit is not None:
                self._emit(StateDegraded(self._clock(), "local", reason))
        self.error = reason

    def _recovered(self) -> None:
        if self.error is None:
            return
        down = self._clock() - (self.degraded_since or self._clock())
        self.error = None
        self.degraded_since = None
        log.warning("state: the ledger %s works again after %.1fs; nothing was lost", self.spec.ledger, down)
        if self._emit is not None:
            self._emit(StateRecovered(self._clock(), "local", down))

    def __repr__(self) -> str:
        where = self.spec.ledger or "memory"
        return f"<LocalState workers={self.workers} ledger={where}>"
