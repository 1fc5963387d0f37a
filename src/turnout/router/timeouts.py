"""Generic attempt timeouts with one timer per Router instead of one per attempt (or per streamed chunk).

Every attempt holds a `Guard` with the loop time by which the wait it is in must end (`until`; None while it
is not waiting, e.g. a stream whose chunk is with the caller). The monitor keeps a single `call_at` timer at
the earliest `until` it knows of. When that timer fires it cancels the tasks whose wait overran, marking their
guard as fired, and re-arms for the next earliest `until`; guards that moved their limit later (a stream that
got another chunk) simply get checked again then. Per attempt this costs a set insert and removal, per chunk a
float store and a comparison, where `asyncio.timeout` would schedule and cancel a timer handle every time
(measurably slower, and the cancelled handles pile up in the loop's heap while a task never yields).

Cancellation follows `asyncio.timeout`: the guard remembers how often its task was already being cancelled, so
a caller's own cancellation arriving at the same time is never swallowed.
"""

from __future__ import annotations

import asyncio
import math


class Guard:
    """One attempt's timeout: the wait in progress must end by `until` (loop time)."""

    __slots__ = ("_cancelling", "fired", "monitor", "task", "until")

    def __init__(self, monitor: TimeoutMonitor, task: asyncio.Task, until: float | None) -> None:
        self.monitor = monitor
        self.task = task
        self.until = until
        self.fired = False
        self._cancelling = task.cancelling()

    def wait_until(self, until: float) -> None:
        """A new wait begins that must end by `until`."""
        self.until = until
        if until < self.monitor.armed_at:
            self.monitor.arm(until)

    def expired(self) -> bool:
        """Call while handling CancelledError: True when the cancellation was this guard's timeout alone."""
        if not self.fired:
            return False
        self.fired = False
        return self.task.uncancel() <= self._cancelling


class TimeoutMonitor:
    """The single timer behind every Guard of one Router (created lazily on the running loop)."""

    __slots__ = ("_guards", "_handle", "_loop", "armed_at")

    def __init__(self) -> None:
        self._guards: set[Guard] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.armed_at = math.inf

    def guard(self, until: float | None = None) -> Guard:
        """Watch the current task; `until` (loop time) may be set now or per wait with `Guard.wait_until`."""
        task = asyncio.current_task()
        assert task is not None, "guards are only used inside a task"
        loop = task.get_loop()
        if loop is not self._loop:
            self._adopt(loop)
        guard = Guard(self, task, None)
        self._guards.add(guard)
        if until is not None:
            guard.wait_until(until)
        return guard

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """A Router reused on a new event loop: forget the old loop's timer and guards. A timer still armed when
        the old loop closed never fires, and its `armed_at` would keep every later, larger limit from arming one."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self.armed_at = math.inf
        self._guards.clear()
        self._loop = loop

    def release(self, guard: Guard) -> None:
        guard.until = None
        self._guards.discard(guard)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def arm(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
        if self._handle is not None:
            self._handle.cancel()
        self.armed_at = when
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.armed_at = math.inf
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        following = math.inf
        for guard in list(self._guards):
            until = guard.until
            if until is None:
                continue
            if until <= now:
                guard.until = None
                guard.fired = True
                self._guards.discard(guard)
                guard.task.cancel()
            elif until < following:
                following = until
        if following < math.inf:
            self.armed_at = following
            self._handle = loop.call_at(following, self._fire)
