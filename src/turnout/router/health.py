"""Mutable per-deployment state, kept apart from the immutable graph so it survives reloads.

One `HealthTable` per Router, keyed by deployment key ("provider/model"). `sync(graph)` is called on every swap:
entries whose deployment is still present and unchanged are kept (their breaker state, rate-limit gate, latency
history); changed or new deployments get fresh state; removed ones are dropped. "Unchanged" means the same
breaker policy and limits and the same way of calling it: provider spec (driver, base_url, credentials, headers,
options, timeouts), upstream model and model options. Fixing an API key or URL therefore closes the breaker that
the old one opened, while a price or description edit keeps the state. That rule is `health_identity` plus
`keeps_health`: the reload and `turnout plan` both ask them, so the plan says exactly what a reload will do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from turnout.config import BreakerPolicy, Config, Limits, ModelSpec, ProviderSpec
from turnout.events import BreakerEvent
from turnout.router.breaker import Breaker
from turnout.state import Gate, StateBackend

if TYPE_CHECKING:
    from turnout.router.graph import Deployment, DispatchGraph

EWMA_ALPHA = 0.3  # weight of the newest latency sample
FAILURE_LATENCY = 1.0  # seconds: the least a failed attempt counts as, so fast failures never look fast


class HealthIdentity(NamedTuple):
    """What must stay the same for a deployment to keep its health across a reload (see the module docstring)."""

    breaker: BreakerPolicy
    limits: Limits
    provider: ProviderSpec | None  # driver, base_url, credentials, headers, options, timeouts
    upstream: str
    options: Mapping[str, Any]  # the model's options


def health_identity(config: Config, model: ModelSpec) -> HealthIdentity:
    """The identity of `model`'s deployment in `config`, as the health table compares it on every swap."""
    return HealthIdentity(
        config.breaker_for(model), model.limits, config.providers.get(model.provider), model.upstream, model.options
    )


def keeps_health(old: tuple[object, ...], new: tuple[object, ...]) -> bool:
    """Does a deployment whose identity was `old` keep its health when it becomes `new`? (The one rule.)"""
    return old == new


class DeploymentHealth:
    """Breaker, admission gate (rate limits, shared probes), in-flight count and latency EWMA of one deployment.

    `gate` is None when nothing needs asking before an attempt (no limits, and probes are not shared).
    """

    __slots__ = ("breaker", "failing", "failures", "gate", "in_flight", "key", "latency", "signature", "successes")

    def __init__(
        self, key: str, breaker: Breaker, limits: Limits, identity: tuple[object, ...] = (), gate: Gate | None = None
    ) -> None:
        self.key = key
        self.breaker = breaker
        self.gate = gate
        self.signature: tuple[object, ...] = identity or (breaker.policy, limits)
        self.in_flight = 0
        self.latency: float | None = None  # EWMA of attempt durations in seconds; None until measured
        self.successes = 0
        self.failures = 0
        self.failing = False  # the latest attempt failed

    def observe(self, duration: float, ok: bool) -> None:
        """Fold one attempt into the latency EWMA (`lowest_latency` ranks by it).

        A failure counts as at least max(FAILURE_LATENCY, twice the current average), so a failing deployment
        sinks in the order even when it fails fast. The first success after failures restarts the average from
        that success: the deployment has recovered and its failure-inflated history is stale, so it competes
        again at once (exploration is what sends it that first request).
        """
        if ok:
            self.successes += 1
            if self.failing or self.latency is None:
                self.failing = False
                self.latency = duration
                return
        else:
            self.failures += 1
            self.failing = True
            duration = max(duration, FAILURE_LATENCY, 2 * (self.latency or 0.0))
        self.latency = duration if self.latency is None else self.latency + EWMA_ALPHA * (duration - self.latency)


class HealthTable:
    """All deployments' health for one Router."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        emit: Callable[[BreakerEvent], None] | None = None,
        state: StateBackend | None = None,
    ) -> None:
        self._clock = clock
        self._emit = emit
        self._state = state
        self.entries: dict[str, DeploymentHealth] = {}

    def __getitem__(self, key: str) -> DeploymentHealth:
        return self.entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __iter__(self) -> Iterator[DeploymentHealth]:
        return iter(list(self.entries.values()))

    def __len__(self) -> int:
        return len(self.entries)

    def _new(self, deployment: Deployment, identity: tuple[object, ...]) -> DeploymentHealth:
        breaker = Breaker(deployment.key, deployment.breaker, clock=self._clock, emit=self._emit)
        state = self._state
        gate = state.gate(deployment.key, deployment.limits, deployment.breaker.half_open_probes) if state else None
        return DeploymentHealth(deployment.key, breaker, deployment.limits, identity, gate)

    def sync(self, graph: DispatchGraph) -> None:
        """Make the table match `graph`, keeping the state of unchanged deployments (see the module docstring)."""
        fresh: dict[str, DeploymentHealth] = {}
        config = graph.config
        for deployment in graph.deployments.values():
            identity = health_identity(config, config.models[deployment.model])
            old = self.entries.get(deployment.key)
            if old is not None and keeps_health(old.signature, identity):
                fresh[deployment.key] = old
            else:
                fresh[deployment.key] = self._new(deployment, identity)
        self.entries = fresh

    def open_breakers(self) -> list[str]:
        return sorted(key for key, entry in self.entries.items() if entry.breaker.state == "open")
