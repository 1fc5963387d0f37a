"""The "outage that recovers" sequence: the primary's breaker opening during an outage and closing after it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from turnout.events import BreakerClosed, BreakerOpened, Event
from turnout.ops.drill.claims import breaker_claim
from turnout.ops.drill.report import Row
from turnout.ops.drill.request import Outcome, ask
from turnout.ops.drill.scenarios import Scenario
from turnout.router.graph import CompiledRoute, Deployment
from turnout.schema.units import format_duration

if TYPE_CHECKING:
    from turnout.ops.drill.runner import Drill

RECOVERY_REQUESTS = 8  # requests after the outage ends, waiting for one to probe the primary


class BreakerWatch:
    """Observer: when the primary's breaker opened (and for how long) and when it closed."""

    event_types = frozenset({BreakerOpened, BreakerClosed})

    def __init__(self, key: str) -> None:
        self.key = key
        self.opened_at: float | None = None
        self.open_for: float | None = None
        self.closed_at: float | None = None

    def __call__(self, event: Event) -> None:
        if getattr(event, "deployment", None) != self.key:
            return
        if isinstance(event, BreakerOpened) and self.opened_at is None:
            self.opened_at, self.open_for = event.at, event.open_for
        elif isinstance(event, BreakerClosed) and self.opened_at is not None:
            self.closed_at = event.at


async def run_outage(drill: Drill, route: CompiledRoute, scenario: Scenario, stream: bool, primary: Deployment) -> Row:
    """Fail the primary's provider until its breaker opens (plus one request while open), recover it, then send
    requests until one probes the primary and closes the breaker; one row tells the story."""
    watch = BreakerWatch(primary.key)
    outcomes: list[Outcome] = []
    threshold = primary.breaker.failure_threshold
    async with drill._router(watch) as router:
        for _ in range(max(threshold, 1) + 1):  # every request adds at least one fault
            outcomes.append(await ask(router, route, stream))
            if watch.opened_at is not None:
                break
        if watch.opened_at is not None:
            outcomes.append(await ask(router, route, stream))  # while open: the primary is skipped
        during = len(outcomes)
        drill.stage.heal(primary.provider, stream=stream)
        await asyncio.sleep((watch.open_for or primary.breaker.recovery_timeout) + 0.01)
        for _ in range(RECOVERY_REQUESTS):
            outcomes.append(await ask(router, route, stream))
            if watch.closed_at is not None or watch.opened_at is None:
                break
    return _outage_row(drill, route, scenario, stream, primary, outcomes, during, watch)


def _outage_row(drill: Drill, route, scenario, stream, primary, outcomes: list[Outcome], during: int, watch) -> Row:
    requests = drill._claim(route, scenario, stream, primary, outcomes[0])
    breaker = breaker_claim(primary)
    story = _story(outcomes, during, watch, primary)
    result, why = "rescued", f"{requests.reason}; {story}"
    problems = [p for p in (drill._misbehaved(o, route.policy.deadline, stream) for o in outcomes) if p]
    failed_during = [o for o in outcomes[:during] if not o.ok]
    if problems:
        result, why = "failed", problems[0]
    elif (
        breaker.rescue and watch.opened_at is None and _faults(outcomes[:during], primary.key) >= threshold_of(primary)
    ):
        result, why = "failed", f"{breaker.reason}, yet it never opened; {story}"
    elif not outcomes[-1].ok:
        result, why = "failed", f"the route did not recover once the provider did; {story}"
    elif failed_during and requests.rescue:
        result, why = "failed", f"claims it {requests.reason}, yet requests failed during the outage; {story}"
    elif failed_during:
        result, why = "clean error", f"{requests.reason}; {story}"
    wall = max(o.wall for o in outcomes)
    costs = [o.cost for o in outcomes]
    cost = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    merged = Outcome(all(o.ok for o in outcomes), "", outcomes[-1].served_by, (), cost, wall)
    tried = sum(o.tried for o in outcomes)
    return drill._row(route, scenario, stream, result, why, outcome=merged, promise=breaker, attempts=tried)


def _story(outcomes: list[Outcome], during: int, watch: BreakerWatch, primary: Deployment) -> str:
    answered = sum(1 for o in outcomes[:during] if o.ok)
    faults = _faults(outcomes[:during], primary.key)
    parts = [f"{answered} of {during} requests answered during the outage ({faults} faults on {primary.key})"]
    if watch.opened_at is not None:
        parts.append(f"breaker opened for {format_duration(watch.open_for or 0)}")
    elif faults < threshold_of(primary):
        parts.append("its breaker never had to open: the strategy stopped sending it requests")
    if watch.closed_at is not None and watch.opened_at is not None:
        parts.append(f"closed by a probe {watch.closed_at - watch.opened_at:.0f}s after opening")
    elif watch.opened_at is not None:
        parts.append(
            f"still half-open after {len(outcomes) - during} requests: the strategy sent none to {primary.key}"
        )
    return ", ".join(parts)


def _faults(outcomes: Sequence[Outcome], key: str) -> int:
    return sum(1 for o in outcomes for a in o.attempts if a.deployment == key and a.outcome == "error")


def threshold_of(primary: Deployment) -> int:
    threshold = primary.breaker.failure_threshold
    return threshold if threshold > 0 else 1 << 30
