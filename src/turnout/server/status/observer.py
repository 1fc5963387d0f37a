"""The status page's Observer: per-deployment figures, the recent failovers and errors, rate-limit refusals.

Everything per request is read from the one ResponseCompleted event (its trail names every attempt and skip), which
the sidecar's metrics already have the Router build, so the page adds no event construction to the hot path: a
request served by its first attempt costs one loop step over its trail and one `DeploymentStats.add`. The rest
(breaker changes, shared-state trouble) is rare and lands in the same bounded ring of recent events.

Times here are wall-clock seconds (`clock`, default `time.time`): several workers' snapshots are merged by them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from turnout.errors import DEPLOYMENT_FAULTS
from turnout.events import (
    BreakerClosed,
    BreakerEvent,
    BreakerHalfOpened,
    BreakerOpened,
    Event,
    ResponseCompleted,
    StateDegraded,
    StateRecovered,
)
from turnout.server.status.stats import DeploymentStats
from turnout.types import Attempt

RECENT = 50  # recent events kept per process
OWN_FAULTS = frozenset(c.value for c in DEPLOYMENT_FAULTS)  # what counts as a deployment's error
LIMIT_SKIPS = ("at rpm limit", "at tpm limit")  # how a gate's refusal reads in a trail (turnout.state)
BREAKER_KINDS = {BreakerOpened: "breaker_open", BreakerHalfOpened: "breaker_half_open", BreakerClosed: "breaker_closed"}


def record(
    at: float,
    kind: str,
    *,
    route: str | None = None,
    source: str | None = None,
    target: str | None = None,
    error_class: str | None = None,
    status: int | None = None,
    detail: str = "",
) -> dict[str, Any]:
    """One entry of the recent-events list, always with the same keys (the documented JSON shape)."""
    return {
        "at": at,
        "kind": kind,
        "route": route,
        "from": source,
        "to": target,
        "error_class": error_class,
        "status": status,
        "detail": detail,
    }


class StatusObserver:
    """Feeds the status page (see the module docstring). One per sidecar app; its data is read by `snapshot`."""

    event_types = frozenset(
        {ResponseCompleted, BreakerOpened, BreakerHalfOpened, BreakerClosed, StateDegraded, StateRecovered}
    )

    def __init__(self, *, clock: Callable[[], float] = time.time, capacity: int = RECENT) -> None:
        self.clock = clock
        self.stats = DeploymentStats()
        self.recent: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.limited: dict[str, tuple[float, str]] = {}  # deployment -> (when, reason) of its latest limit refusal

    def __call__(self, event: Event) -> None:
        if type(event) is ResponseCompleted:  # the hot one: every request
            self._completed(event)
        elif isinstance(event, BreakerEvent):
            self._breaker(event)
        elif isinstance(event, StateDegraded):
            self.recent.append(record(self.clock(), "state_degraded", detail=f"{event.backend}: {event.reason}"))
        elif isinstance(event, StateRecovered):
            lost = ", its data was lost" if event.data_lost else ""
            detail = f"{event.backend} after {event.degraded_for:.1f}s{lost}"
            self.recent.append(record(self.clock(), "state_recovered", detail=detail))

    def _completed(self, e: ResponseCompleted) -> None:
        now = self.clock()
        add = self.stats.add
        attempts = e.attempts
        for a in attempts:
            outcome = a.outcome
            if outcome == "skipped":
                if a.detail.startswith(LIMIT_SKIPS):
                    self.limited[a.deployment] = (now, a.detail)
                continue
            add(a.deployment, now, a.duration, outcome == "error" and a.error_class in OWN_FAULTS, a.cost_usd)
        if len(attempts) > 1 or (e.error_class is not None and e.error_class != "cancelled"):
            self._story(now, e)

    def _story(self, now: float, e: ResponseCompleted) -> None:
        """Failovers (a failed attempt followed by another deployment), continuations, and a request's failure."""
        tried = [a for a in e.attempts if a.outcome != "skipped"]
        recent = self.recent
        continued = {(s.continued_from, s.continued_by) for s in e.splices}  # told below, as continuations
        for a, after in pairwise(tried):
            pair = (a.deployment, after.deployment)
            if a.outcome == "error" and pair[0] != pair[1] and pair not in continued:
                recent.append(_failover(now, e.route, a, after.deployment))
        for splice in e.splices:
            detail = f"continued after {splice.chars_kept} characters"
            recent.append(
                record(now, "continued", route=e.route, source=splice.continued_from, target=splice.continued_by,
                       detail=detail)
            )  # fmt: skip
        if e.error_class is not None and e.error_class != "cancelled":
            last = tried[-1] if tried else None
            skipped = len(e.attempts) - len(tried)
            detail = f"{len(tried)} attempts" + (f", {skipped} skipped" if skipped else "")
            recent.append(
                record(now, "error", route=e.route, source=last.deployment if last else None,
                       error_class=e.error_class, status=last.status if last else None, detail=detail)
            )  # fmt: skip

    def _breaker(self, event: BreakerEvent) -> None:
        kind = BREAKER_KINDS.get(type(event))
        if kind is None:
            return
        detail = f"open for {event.open_for:g}s" if event.open_for else ""
        if event.origin is not None:
            detail = (detail + "; " if detail else "") + f"news from replica {event.origin}"
        self.recent.append(record(self.clock(), kind, source=event.deployment, detail=detail))


def _failover(now: float, route: str, failed: Attempt, target: str) -> dict[str, Any]:
    return record(
        now,
        "failover",
        route=route,
        source=failed.deployment,
        target=target,
        error_class=failed.error_class,
        status=failed.status,
    )
