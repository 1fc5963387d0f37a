"""The `redis` backend: limits, breaker news and usage counters shared by every process on one Redis.

On a request's path there is at most one round trip, and only for a deployment with limits (or a half-open
probe): its gate's operation joins the batch of the current loop iteration (`turnout.state.shared_gate`).
Everything else travels in the background: the sync loop (every `sync_interval`) sends a heartbeat that also
returns the breakers hash (reconcile) and the number of live replicas (the divisor of the fallback share), and
flushes the usage counters; breaker changes are published at once (`turnout.state.news`).

Redis misbehaving is expected. A gate batch unanswered within `op_timeout`, or any failed Redis operation,
*degrades* the backend: the links are dropped, StateDegraded is emitted and logged once, and until Redis answers
again every question is answered locally (this process's share of each limit, its own breakers, usage kept
in memory). The sync loop reconnects by itself; a reconnection counts only when the heartbeat answers within
op_timeout (a slow Redis stays bypassed). Then it resynchronises: what was admitted meanwhile is added to the
shared windows (all of the window when Redis came back empty: its epoch key changed), unpublished breaker
changes are published, the breakers hash is applied, usage is flushed, and StateRecovered is emitted.

On a Redis Cluster the links go to the node that serves the key prefix's slot, whichever node the url names
(`turnout.state.links`). A MOVED while healthy (a failover or a resharding moved the slot) degrades at once and
reconnects to the new owner without waiting for the next sync; requests meanwhile decide locally, as in any outage,
and never wait on the redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

from turnout.config import Limits, StateSpec
from turnout.events import Event, StateDegraded, StateRecovered
from turnout.state import window as _window
from turnout.state.base import BreakerNews, StoreError
from turnout.state.keys import Keys
from turnout.state.ledger import Ledger, Period, UsageKey, UsageTotals, period_days, resolve_day, totals_of
from turnout.state.links import Links
from turnout.state.meter import SpendMeter
from turnout.state.news import Newsroom, parse_message
from turnout.state.redis import Address, Link, Script
from turnout.state.redis_responses import RedisResponses
from turnout.state.shared_gate import Batcher, RedisGate, as_ms
from turnout.state.usage_store import UsageStore

log = logging.getLogger("turnout.state")
CONNECT_TIMEOUT = 2.0  # seconds; connecting happens in the background, never on a request's path
BACKGROUND_TIMEOUT = 2.0  # seconds a background operation (heartbeat, flush, publish) may take at most
HEARTBEAT_TTL = 3  # sync intervals after which a silent replica no longer counts


class RedisState:
    """The `redis` backend (see the module docstring)."""

    kind = "redis"

    def __init__(
        self,
        spec: StateSpec,
        *,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        emit: Callable[[Event], None] | None = None,
        on_breaker: BreakerNews | None = None,
    ) -> None:
        if spec.url is None:
            raise ValueError("the redis state backend needs a url")
        self.spec = spec
        self.workers = max(1, workers)
        self.clock = clock
        self._wall = wall
        self._emit = emit
        self._url = spec.url
        self.keys = Keys(spec.key_prefix)
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.window = _window.WINDOW
        self.window_us = int(self.window * 1_000_000)
        self.next_id = itertools.count(1).__next__
        self.meter = SpendMeter(wall=wall, folding=False)
        self.ledger = Ledger(wall=wall, meter=self.meter)
        self.budget_share = 1  # budgets are shared through Redis
        self.usage_store = UsageStore(self.keys, self.replica)
        self.responses = RedisResponses(self, max_size=spec.responses.max_size)
        self.news = Newsroom(self.replica, on_breaker)
        self.gates: dict[str, RedisGate] = {}
        self.processes = self.workers  # divisor of the fallback share: max(workers, live replicas)
        self.scripts = {name: Script(name) for name in ("gate", "sync", "breakers", "usage")}
        self.mode = "starting"  # "ok" | "degraded"
        self.restart_required = False
        self.last_error: str | None = None
        self.degraded_since: float | None = None
        self.degradations = 0
        self._healthy = False
        self.links = Links(spec.url, connect_timeout=CONNECT_TIMEOUT, on_lost=self._lost, on_moved=self._moved)
        self.batcher = Batcher(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._publishing: asyncio.Task[None] | None = None
        self._offset_us = 0  # server time (us) minus our clock (us), from the latest reply
        self._epoch: str | None = None
        self._closed = False
        self._loaded = False  # the spend totals were read from Redis at least once
        self._first: asyncio.Future[None] | None = None  # done after the first connection attempt
        self._wake: asyncio.Future[None] | None = None  # the sync loop's pause, cut short by a MOVED
        self._hurry = False  # a MOVED came: reconnect without pausing first

    # -- the request path -----------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Ask Redis? (on this event loop, and healthy). Starts the background work on first use."""
        if self._loop is not asyncio.get_running_loop():
            self._adopt_loop()
        return self._healthy

    def member(self, grant: int) -> str:
        return f"{self.replica}:{grant}"

    def link(self) -> Link | None:
        """The request path's link, while healthy."""
        return self.links.gate if self._healthy else None

    def store_link(self) -> Link | None:
        """The link for stored responses (the background one: their records may be large), while healthy."""
        if self._loop is not asyncio.get_running_loop():
            self._adopt_loop()
        return self.links.bg if self._healthy else None

    def offset_from(self, seconds: Any, micros: Any) -> None:
        """Note the server's time of a reply (its TIME), to map our clock onto it."""
        self._offset_us = int(seconds) * 1_000_000 + int(micros) - int(self.clock() * 1_000_000)

    def to_server_us(self, at: float) -> int:
        """A reading of our clock as the server's time in microseconds (offset from the latest reply)."""
        return int(at * 1_000_000) + self._offset_us

    # -- StateBackend -----------------------------------------------------------------------------------------
    def gate(self, key: str, limits: Limits, probes: int) -> RedisGate:
        gate = RedisGate(self, key, limits, probes)
        self.gates[key] = gate
        return gate

    def breaker_changed(self, key: str, state: str, open_for: float | None, trips: int) -> None:
        self.news.local(key, state, open_for, trips, self.clock())
        if self._healthy and self._loop is not None and self._publishing is None:
            self._publishing = self._loop.create_task(self._publish(), name="turnout-state-publish")

    def record(
        self,
        route: str,
        deployment: str,
        client: str,
        usage: Any,
        cost: float | None,
        served: bool = True,
        estimated: bool = False,
    ) -> None:
        self.ledger.record(route, deployment, client, usage, cost, served=served, estimated=estimated)
        if self._task is None and not self._closed:
            self._adopt_loop()

    async def warm(self) -> None:
        """Before the first budget check of a process that was not started: give the first connection up to
        op_timeout (a request never waits longer on Redis), so the spend totals come from Redis rather than from
        zero. `start()` (or `async with router`) connects before any request and avoids even that."""
        if self._loaded or self._closed:
            return
        if self._task is None:
            self._adopt_loop()
        first = self._first
        if first is not None and not first.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(first), self.spec.op_timeout)

    async def usage(self, period: Period = "day", at: date | str | None = None) -> dict[UsageKey, UsageTotals]:
        """Every process's usage (from Redis) plus this process's counters not flushed yet. Raises StoreError
        when Redis cannot answer (a budget must not read a partial total as the whole)."""
        days = period_days(period, resolve_day(at, self._wall))
        bg = self.links.bg
        if not self._healthy or bg is None:
            raise StoreError(f"Redis is unavailable ({self.last_error or 'not connected'})")
        summed = await self.usage_store.read(bg, period, days, BACKGROUND_TIMEOUT)
        self.usage_store.add_local(summed, self.ledger, days)
        return totals_of(summed)

    async def spend_totals(self, period_ids: tuple[str, ...]) -> dict[str, dict[str, int]]:
        """Every process's flushed spend per scope in each of `period_ids` (StoreError when Redis cannot answer)."""
        bg = self.links.bg
        if not self._healthy or bg is None:
            raise StoreError(f"Redis is unavailable ({self.last_error or 'not connected'})")
        return await self.usage_store.read_spend(bg, period_ids, BACKGROUND_TIMEOUT)

    def status(self) -> dict[str, Any]:
        return {
            "state": self.mode,
            "state_backend": "redis",
            "state_processes": self.processes,
            "state_error": self.last_error if self.mode == "degraded" else None,
            "state_restart_required": self.restart_required,
        }

    def reconfigure(self, spec: StateSpec) -> None:
        if spec.identity != self.spec.identity:
            self.restart_required = True
            log.warning("state.backend, url or key_prefix changed: restart to apply; still using the first ones")
            spec = replace(spec, backend=self.spec.backend, url=self.spec.url, key_prefix=self.spec.key_prefix)
        self.responses.max_size = spec.responses.max_size
        self.spec = spec

    async def start(self) -> None:
        """Connect now (bounded); on failure go on degraded and keep trying in the background."""
        self._closed = False
        self._adopt_loop(connect_now=False)
        await self._connect(first=True)
        self._spawn_sync()

    async def aclose(self) -> None:
        """Stop the background work, flush usage once more (bounded) and close every connection."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        publishing, self._publishing = self._publishing, None
        if publishing is not None:
            publishing.cancel()
            with contextlib.suppress(BaseException):
                await publishing
        if self._healthy and self.links.bg is not None:
            with contextlib.suppress(StoreError, TimeoutError):
                await self._flush_and_refresh()
        self._healthy = False
        await self.links.close()
        await self.responses.aclose()
        self._loop = None

    # -- health -----------------------------------------------------------------------------------------------
    def degrade(self, reason: str) -> None:
        """Redis failed or was too slow: go local now (log and emit once per outage), reconnect in the background."""
        self.last_error = reason
        was_healthy, self._healthy = self._healthy, False
        self._abort_links(reason)
        if self.mode == "degraded":
            return
        self.mode = "degraded"
        self.degraded_since = self.clock()
        self.degradations += 1
        if was_healthy:
            log.warning("state: Redis unavailable (%s); going on with local state until it answers again", reason)
        else:
            log.warning("state: cannot use Redis (%s); going on with local state and retrying", reason)
        if self._emit is not None:
            self._emit(StateDegraded(self.clock(), "redis", reason))

    def _recovered(self, data_lost: bool) -> None:
        was = self.mode
        self.mode = "ok"
        self._healthy = True
        self.last_error = None
        if was == "degraded":
            down = self.clock() - (self.degraded_since or self.clock())
            self.degraded_since = None
            lost = "; it had lost its data, so this process's recent state was written back" if data_lost else ""
            log.warning("state: Redis is back after %.1fs%s", down, lost)
            if self._emit is not None:
                self._emit(StateRecovered(self.clock(), "redis", down, data_lost))
        else:
            processes = f"{self.processes} process{'es' if self.processes != 1 else ''}"
            log.info("state: sharing limits, breakers and usage through Redis (%s)", processes)

    # -- the background -------------------------------------------------------------------------------------
    def _adopt_loop(self, *, connect_now: bool = True) -> None:
        """Bind to the running loop: drop what belongs to another loop (a Router reused across asyncio.run())."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                self._abort_links("event loop changed")
                self._healthy = False
            self._loop = loop
            self._task = None
            self._publishing = None
            self._first = loop.create_future()
            self.batcher.abort()
        if connect_now and self._task is None and not self._closed:
            self._spawn_sync()

    def _spawn_sync(self) -> None:
        if self._task is None and self._loop is not None:
            self._task = self._loop.create_task(self._sync_loop(), name="turnout-state-sync")

    async def _sync_loop(self) -> None:
        # `_closed` ends it too: Python 3.11's wait_for may swallow a cancellation that arrives just as the awaited
        # reply does, and the loop must still stop for `aclose`.
        while not self._closed:
            if self._healthy:
                await self._tick()
            else:
                await self._connect(first=False)
            await self._pause(self.spec.sync_interval)

    async def _pause(self, seconds: float) -> None:
        """Sleep until the next sync, or until a MOVED asks to reconnect now (`_moved`)."""
        if self._hurry:
            self._hurry = False
            return
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        timer = loop.call_later(seconds, _wake_up, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    async def _connect(self, *, first: bool) -> None:
        """Open the links, take a heartbeat within op_timeout (lenient on the very first try), resynchronise."""
        try:
            within = CONNECT_TIMEOUT if first and self.mode == "starting" else None
            beat = await self.links.open(lambda: self._heartbeat(within), log.info)
            sub = self.links.sub
            if sub is None:
                raise StoreError("not connected")
            await asyncio.wait_for(sub.subscribe(self.keys.channel, self._on_message), BACKGROUND_TIMEOUT)
            data_lost = self._epoch_changed(beat[3])
            await self._resync(data_lost)
            self._apply_beat(beat)
        except (StoreError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within op_timeout ({as_ms(self.spec.op_timeout)})"
            self.degrade(reason)
            return
        finally:
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
        self._recovered(data_lost)

    def _moved(self, address: Address) -> None:
        """A MOVED reply: the cluster now serves our key slot at `address`. Go local, and reconnect there now."""
        if self._healthy:
            self.degrade(f"Redis Cluster moved the key slot to {address[0]}:{address[1]}")
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)  # the sync loop is pausing: wake it
            else:
                self._hurry = True  # it is busy (a heartbeat that got MOVED too): it skips its next pause

    def _lost(self, reason: str) -> None:
        """A link's connection ended by itself (Redis went away, or a proxy cut it)."""
        if self._healthy:
            self.degrade(reason)

    async def _heartbeat(self, within: float | None = None) -> list[Any]:
        bg = self.links.bg
        if bg is None:
            raise StoreError("not connected")
        ttl = int(max(HEARTBEAT_TTL * self.spec.sync_interval, 1.0) * 1_000_000)
        keys = (self.keys.replicas, self.keys.epoch, self.keys.breakers)
        reply = bg.script(self.scripts["sync"], keys, (self.replica, ttl, os.urandom(8).hex()))
        values = await asyncio.wait_for(reply, within or self.spec.op_timeout)
        self.offset_from(values[0], values[1])
        return list(values)

    def _epoch_changed(self, epoch: Any) -> bool:
        """True when Redis's dataset is not the one we last saw (an empty restart)."""
        text = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        changed = self._epoch is not None and text != self._epoch
        self._epoch = text
        return changed

    def _apply_beat(self, beat: list[Any]) -> None:
        now_us = int(beat[0]) * 1_000_000 + int(beat[1])
        processes = max(self.workers, int(beat[2]))
        if processes != self.processes:
            self.processes = processes
            for gate in list(self.gates.values()):
                gate.resize(processes)
        self.news.reconcile(beat[4] or [], now_us)

    async def _tick(self) -> None:
        try:
            beat = await self._heartbeat(BACKGROUND_TIMEOUT)
            if self._epoch_changed(beat[3]):
                log.warning("state: Redis lost its data (restarted empty?); writing this process's state back")
                await self._resync(True)
            self._apply_beat(beat)
            await self._flush_and_refresh()
        except (StoreError, TimeoutError) as exc:
            self.degrade(str(exc) or "no answer from Redis in time")

    async def _flush_and_refresh(self) -> None:
        """Flush usage and spend, then read every process's spend totals for the budgets (the meter's base)."""
        bg = self.links.bg
        if bg is None:
            raise StoreError("not connected")
        await self.usage_store.flush(bg, self.ledger, BACKGROUND_TIMEOUT)
        base = await self.usage_store.read_spend(bg, self.meter.today(), BACKGROUND_TIMEOUT)
        self.meter.confirmed(base)
        self._loaded = True

    async def _resync(self, everything: bool) -> None:
        """After an outage: admissions made meanwhile, unpublished breaker changes, then usage (one call each)."""
        bg = self.links.bg
        if bg is None:
            raise StoreError("not connected")
        keys: list[str] = []
        args: list[Any] = [self.window_us]
        pushed: list[tuple[RedisGate, set[int]]] = []
        for gate in list(self.gates.values()):
            ops, grants = gate.resync_ops(everything, self.to_server_us)
            for op in ops:
                keys += gate.keys
                args += op
            pushed.append((gate, grants))
        if keys:
            await asyncio.wait_for(bg.script(self.scripts["gate"], keys, args), BACKGROUND_TIMEOUT)
        for gate, grants in pushed:
            gate.unsynced -= grants
        await self._publish_now()
        await self._flush_and_refresh()

    async def _publish(self) -> None:
        try:
            await self._publish_now()
        except (StoreError, TimeoutError) as exc:
            self.degrade(str(exc) or "no answer from Redis in time")
        finally:
            self._publishing = None
            if self.news.pending and self._healthy and self._loop is not None:
                self._publishing = self._loop.create_task(self._publish(), name="turnout-state-publish")

    async def _publish_now(self) -> None:
        args = self.news.outbox(self.clock())
        bg = self.links.bg
        if not args or bg is None:
            return
        deployments = list(self.news.pending)
        reply = await asyncio.wait_for(
            bg.script(self.scripts["breakers"], (self.keys.breakers,), (self.keys.channel, *args)), BACKGROUND_TIMEOUT
        )
        self.news.published(deployments, int(reply[0]) * 1_000_000 + int(reply[1]))

    def _on_message(self, data: bytes) -> None:
        parsed = parse_message(data)
        if parsed is not None:
            self.news.receive(*parsed)

    def _abort_links(self, reason: str) -> None:
        self.batcher.abort()
        self.links.abort(reason)

    def __repr__(self) -> str:
        return f"<RedisState {self.spec.key_prefix!r} {self.mode} replica={self.replica}>"


def _wake_up(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
