"""Prometheus metrics for one sidecar app, fed by the Router's events (an Observer) and by the HTTP handlers.

Every app has its own `CollectorRegistry`, so two apps (or tests) in one process never share counters.
Labelled children are cached per label tuple: `labels()` validates and locks on every call, which would be the
largest per-request cost of metrics otherwise.

With `turnout serve --workers N` each worker process keeps its own registry; a scrape sees one worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from turnout.events import (
    AttemptFailed,
    AttemptSucceeded,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    Event,
    FallbackTaken,
    ResponseCompleted,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
BREAKER_STATE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


class Metrics:
    """The sidecar's metric families and an event observer (`metrics(event)`) that keeps them current."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "turnout_requests", "HTTP requests answered, by route and status.", ["route", "status"], registry=r
        )
        self.in_flight = Gauge("turnout_in_flight_requests", "Chat requests being served right now.", registry=r)
        self.attempts = Counter(
            "turnout_attempts",
            "Upstream attempts, by deployment, outcome and error class.",
            ["route", "deployment", "outcome", "error_class"],
            registry=r,
        )
        self.fallbacks = Counter(
            "turnout_fallbacks",
            "Times a request moved on from a deployment, by the error class that made it move.",
            ["route", "from_deployment", "error_class"],
            registry=r,
        )
        self.breaker = Gauge(
            "turnout_breaker_state",
            "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.",
            ["deployment"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "turnout_breaker_transitions",
            "Breaker state changes by deployment and new state.",
            ["deployment", "state"],
            registry=r,
        )
        self.latency = Histogram(
            "turnout_request_duration_seconds",
            "End-to-end latency of chat requests.",
            ["route", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "turnout_time_to_first_token_seconds",
            "Streaming: time until the first content chunk.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "turnout_router_overhead_seconds",
            "Time spent in turnout itself, outside upstream I/O.",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "turnout_tokens", "Tokens used, by route, deployment and kind.", ["route", "deployment", "kind"], registry=r
        )
        self.cost = Counter(
            "turnout_cost_usd", "Accounted cost in USD, by route and deployment.", ["route", "deployment"], registry=r
        )
        self.reloads = Counter(
            "turnout_config_reloads", "Config reloads, by result (success | failure).", ["result"], registry=r
        )
        self.config_problems = Gauge(
            "turnout_config_last_reload_problems",
            "Problems found by the last failed reload (0 when it succeeded).",
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._dispatch: dict[type, Callable[[Any], None]] = {
            AttemptFailed: self._attempt_failed,
            AttemptSucceeded: self._attempt_succeeded,
            FallbackTaken: self._fallback,
            BreakerOpened: lambda e: self._breaker(e.deployment, "open"),
            BreakerHalfOpened: lambda e: self._breaker(e.deployment, "half_open"),
            BreakerClosed: lambda e: self._breaker(e.deployment, "closed"),
            ResponseCompleted: self._completed,
        }

    def __call__(self, event: Event) -> None:
        handler = self._dispatch.get(type(event))
        if handler is not None:
            handler(event)

    def child(self, family: Any, *labels: Any) -> Any:
        """`family.labels(*labels)`, cached."""
        key = (id(family), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = family.labels(*labels)
        return found

    def request_done(self, route: str, status: int) -> None:
        self.child(self.requests, route, status).inc()

    def reload_result(self, ok: bool, problems: int = 0) -> None:
        self.child(self.reloads, "success" if ok else "failure").inc()
        self.config_problems.set(0 if ok else problems)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _attempt_failed(self, e: AttemptFailed) -> None:
        self.child(self.attempts, e.route, e.deployment, "error", e.error_class).inc()

    def _attempt_succeeded(self, e: AttemptSucceeded) -> None:
        self.child(self.attempts, e.route, e.deployment, "success", "").inc()

    def _fallback(self, e: FallbackTaken) -> None:
        self.child(self.fallbacks, e.route, e.from_deployment, e.error_class).inc()

    def _breaker(self, deployment: str, state: str) -> None:
        self.child(self.breaker, deployment).set(BREAKER_STATE[state])
        self.child(self.breaker_transitions, deployment, state).inc()

    def _completed(self, e: ResponseCompleted) -> None:
        route = e.route
        self.child(self.latency, route, "true" if e.stream else "false").observe(e.latency)
        if e.time_to_first_token is not None:
            self.child(self.ttft, route).observe(e.time_to_first_token)
        if e.router_overhead is not None:
            self.child(self.overhead, route).observe(e.router_overhead)
        served = e.served_by
        if not served:
            return
        usage = e.usage
        if usage.prompt_tokens is not None:
            self.child(self.tokens, route, served, "prompt").inc(usage.prompt_tokens)
        if usage.completion_tokens is not None:
            self.child(self.tokens, route, served, "completion").inc(usage.completion_tokens)
        if usage.cached_tokens:
            self.child(self.tokens, route, served, "cached").inc(usage.cached_tokens)
        if e.cost_usd:
            self.child(self.cost, route, served).inc(e.cost_usd)
