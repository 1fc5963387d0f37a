"""Running a drill: each route x scenario x (plain, stream) through a real Router on the stage, in virtual time.

For each route and mode a *baseline* request (every provider healthy) finds the primary deployment; then every
scenario runs on a fresh Router (fresh breakers, limits and strategy state, the same seed, so it picks the same
primary first) with the fault on the primary's provider. The Router is the library's own, compiled from the file:
the drill adds no policy code. Time is virtual (`turnout.testing.virtual_time`): the Router's clock is the loop's,
so Retry-After sleeps, backoffs, timeouts and breaker recovery take their full policy time while costing
milliseconds, and a row's wall time is what production would take.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any

from turnout.config import Config
from turnout.errors import ErrorClass
from turnout.ops.common import plural
from turnout.ops.drill.claims import DEADLINE_SLACK, Claim, claim
from turnout.ops.drill.outage import run_outage
from turnout.ops.drill.report import Report, Row
from turnout.ops.drill.request import Outcome, ask
from turnout.ops.drill.scenarios import BEFORE_FAULT, FULL, Scenario
from turnout.ops.drill.stage import Stage
from turnout.router.client import Router
from turnout.router.compile import compile_graph
from turnout.router.graph import CompiledRoute, Deployment
from turnout.schema.units import format_duration
from turnout.testing.virtual_time import run_virtual
from turnout.types import Attempt

Progress = Callable[[int, int, str], None]


def run_drill(
    config: Config,
    *,
    routes: Sequence[str] | None = None,
    scenarios: Sequence[Scenario],
    modes: Sequence[bool] = (False, True),
    seed: int = 1,
    progress: Progress | None = None,
) -> Report:
    """Run the drill on a virtual-time loop of its own and return the report card."""
    drill = Drill(config, routes=routes, scenarios=scenarios, modes=modes, seed=seed, progress=progress)
    return run_virtual(drill.run())


class Drill:
    def __init__(
        self,
        config: Config,
        *,
        routes: Sequence[str] | None,
        scenarios: Sequence[Scenario],
        modes: Sequence[bool],
        seed: int,
        progress: Progress | None,
    ) -> None:
        self.stage = Stage(config)
        self.routes = list(routes) if routes is not None else list(config.routes)
        self.scenarios = list(scenarios)
        self.modes = list(modes)
        self.seed = seed
        self.progress = progress
        self.done = 0
        self.total = len(self.routes) * len(self.modes) * (1 + len(self.scenarios))
        self.rows: list[Row] = []

    async def run(self) -> Report:
        config = await self.stage.start()
        try:
            self.graph = compile_graph(config)
            for name in self.routes:
                for stream in self.modes:
                    await self._route(self.graph.routes[name], stream)
        finally:
            await self.stage.close()
        return Report(self.stage.original.source, tuple(self.rows), tuple(self.stage.notes), self.seed)

    def _tick(self, label: str, steps: int = 1) -> None:
        self.done += steps
        if self.progress is not None:
            self.progress(self.done, self.total, label)

    # -- one route in one mode ---------------------------------------------------------------------------------
    async def _route(self, route: CompiledRoute, stream: bool) -> None:
        mode = "stream" if stream else "plain"
        if route.kind != "chat":
            why = f"a route of kind {route.kind}: the drill's scenarios are chat requests"
            self.rows.append(self._row(route, None, stream, "skipped", why))
            self._tick(f"{route.name} {mode}", 1 + len(self.scenarios))
            return
        if stream and not any("streaming" in d.capabilities for d in route.deployments):
            self.rows.append(self._row(route, None, stream, "skipped", "no deployment of the route streams"))
            self._tick(f"{route.name} {mode}", 1 + len(self.scenarios))
            return
        self.stage.script(stream=stream)
        async with self._router() as router:
            base = await ask(router, route, stream)
        self._tick(f"{route.name} baseline {mode}")
        if not base.ok or base.served_by is None:
            why = f"the route does not answer with every provider healthy: {base.unexpected or base.error}"
            self.rows.append(self._row(route, None, stream, "failed", why, outcome=base))
            self._tick(f"{route.name} {mode}", len(self.scenarios))
            return
        self.rows.append(self._row(route, None, stream, "ok", "every provider healthy", outcome=base))
        primary = self.graph.deployments[base.served_by]
        if self.stage.in_process(primary.provider):
            why = f"its primary {primary.key} is the in-process mock provider: no provider fault to drill"
            self.rows.append(self._row(route, None, stream, "skipped", why, scenario_title="every scenario"))
            self._tick(f"{route.name} {mode}", len(self.scenarios))
            return
        for scenario in self.scenarios:
            self.stage.script(stream=stream, faulted=primary.provider, scenario=scenario, policy=route.policy)
            if scenario.outage:
                self.rows.append(await run_outage(self, route, scenario, stream, primary))
            else:
                async with self._router() as router:
                    outcome = await ask(router, route, stream)
                self.rows.append(self._judge(route, scenario, stream, primary, outcome))
            self._tick(f"{route.name} {scenario.name} {mode}")

    def _router(self, *observers: Any) -> Router:
        loop = asyncio.get_running_loop()
        rng = random.Random(self.seed)
        return Router(self.stage.config, clock=loop.time, sleep=asyncio.sleep, rng=rng, observers=observers)

    # -- verdicts ------------------------------------------------------------------------------------------------
    def _claim(self, route: CompiledRoute, scenario: Scenario, stream: bool, primary: Deployment, outcome: Outcome):
        observed = self._fault_class(outcome, primary.provider) or scenario.error_class
        return claim(
            route,
            observed,
            faulted=primary.provider,
            stream=stream,
            mid_stream=scenario.mid_stream,
            transient=scenario.transient,
            retry_after=scenario.retry_after,
        )

    def _fault_class(self, outcome: Outcome, faulted: str) -> ErrorClass | None:
        for attempt in outcome.attempts:
            if attempt.outcome == "error" and attempt.error_class and self._provider(attempt.deployment) == faulted:
                return ErrorClass(attempt.error_class)
        return None

    def _provider(self, key: str | None) -> str | None:
        deployment = self.graph.deployments.get(key) if key else None
        return deployment.provider if deployment is not None else None

    def _judge(
        self, route: CompiledRoute, scenario: Scenario, stream: bool, primary: Deployment, outcome: Outcome
    ) -> Row:
        promise = self._claim(route, scenario, stream, primary, outcome)
        result, why = self._verdict(route, scenario, stream, primary, outcome, promise)
        return self._row(route, scenario, stream, result, why, outcome=outcome, promise=promise)

    def _verdict(self, route, scenario, stream, primary, outcome: Outcome, promise: Claim) -> tuple[str, str]:
        deadline = route.policy.deadline
        misbehaved = self._misbehaved(outcome, deadline, stream)
        if misbehaved:
            return "failed", misbehaved
        hit = self._fault_class(outcome, primary.provider) is not None
        if outcome.ok:
            if not hit:
                return "skipped", f"the fault was never reached: {outcome.served_by} answered first"
            if scenario.error_class is ErrorClass.CONTENT_POLICY and promise.rescue is False:
                return "failed", f"a content-policy refusal was routed around although {promise.reason}"
            if promise.rescue is False:
                return "rescued", f"rescued, more than the policy claims ({promise.reason})"
            return "rescued", promise.reason
        if promise.rescue:
            return (
                "failed",
                f"claims it {promise.reason}, yet it ended in {outcome.error_class}{self._why(outcome, deadline)}",
            )
        return "clean error", promise.reason

    def _misbehaved(self, outcome: Outcome, deadline: float, stream: bool) -> str | None:
        if outcome.unexpected:
            return f"the router misbehaved: {outcome.unexpected}"
        if outcome.wall > deadline + DEADLINE_SLACK:
            return f"took {outcome.wall:.1f}s against a {format_duration(deadline)} deadline"
        if outcome.ok and not self._complete(outcome, stream):
            return f"ended as a success with an incomplete answer ({outcome.text!r})"
        return None

    def _complete(self, outcome: Outcome, stream: bool) -> bool:
        """The answer is whole: the fakes' FULL, a stream continued after BEFORE_FAULT, or the mock's own answer."""
        finisher = self._provider(outcome.finisher)
        continued = stream and outcome.finisher is not None and outcome.finisher != outcome.served_by
        if finisher is not None and self.stage.in_process(finisher):
            return bool(outcome.text) and (not continued or len(outcome.text) > len(BEFORE_FAULT))
        return outcome.text == FULL or (continued and outcome.text == BEFORE_FAULT + FULL)

    @staticmethod
    def _why(outcome: Outcome, deadline: float) -> str:
        if outcome.wall >= deadline - DEADLINE_SLACK:
            return f": the {format_duration(deadline)} deadline ran out after {plural(outcome.tried, 'attempt')}"
        return f": {outcome.error[:160]}"

    def _row(self, route: CompiledRoute, scenario: Scenario | None, stream: bool, result: str, why: str, *,
             outcome: Outcome | None = None, promise: Claim | None = None, attempts: int | None = None,
             scenario_title: str | None = None) -> Row:  # fmt: skip
        return Row(
            route=route.name,
            scenario=scenario.name if scenario is not None else ("all" if scenario_title else "baseline"),
            title=scenario_title or (scenario.title_for(stream) if scenario is not None else "baseline (no fault)"),
            mode="stream" if stream else "plain",
            result=result,
            reason=why,
            claim=promise.reason if promise is not None else "",
            attempts=attempts if attempts is not None else (outcome.tried if outcome is not None else 0),
            served_by=_served(outcome),
            wall=outcome.wall if outcome is not None else 0.0,
            deadline=route.policy.deadline,
            cost=outcome.cost if outcome is not None else None,
            trail=tuple(_step(a) for a in outcome.attempts) if outcome is not None else (),
        )


def _served(outcome: Outcome | None) -> str | None:
    """Who answered: one deployment, or "A → B" for a stream that B continued after A was cut."""
    if outcome is None or not outcome.ok:
        return None
    finisher = outcome.finisher
    if finisher is not None and outcome.served_by is not None and finisher != outcome.served_by:
        return f"{outcome.served_by} → {finisher}"
    return outcome.served_by


def _step(attempt: Attempt) -> str:
    if attempt.outcome == "success":
        return f"{attempt.deployment}: ok"
    if attempt.outcome == "skipped":
        return f"{attempt.deployment}: skipped ({attempt.detail})"
    status = f" {attempt.status}" if attempt.status else ""
    return f"{attempt.deployment}: {attempt.error_class or 'error'}{status}"
