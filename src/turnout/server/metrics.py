"""Prometheus metrics for one sidecar app, fed by the Router's events (an Observer) and by the HTTP handlers.

Every app has its own registry and its own cells, so two apps (or tests) in one process never share counters.
All families are lock-free `turnout.server.families` (an update is a dict lookup and an add to a float64 cell)
exported through a collector at scrape time.

With `turnout serve --workers N` each worker keeps its cells in a file of a directory the supervisor shares
with them (`Metrics(store=CellStore.in_directory(...), directory=...)`), and a scrape on any worker renders the
combination of every worker's cells (`aggregate.py`): counters and histograms are summed over all workers,
including ones that exited, so they never go down; the in-flight gauge is summed over live workers and the
breaker state gauge is the worst (highest) state any live worker holds for the deployment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from turnout.events import (
    AttemptFailed,
    AttemptSucceeded,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    Event,
    FallbackTaken,
    ResponseCompleted,
    StateDegraded,
    StateRecovered,
)
from turnout.server.aggregate import DirectoryReader
from turnout.server.cells import CellStore
from turnout.server.families import CounterFamily, Family, FamilyCollector, GaugeFamily, HistogramFamily

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
BREAKER_STATE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
ANONYMOUS = "(anonymous)"  # the client label of requests from no declared client (labels stay bounded)


class Metrics:
    """The sidecar's metric families and an event observer (`metrics(event)`) that keeps them current."""

    def __init__(self, store: CellStore | None = None, *, directory: str | None = None) -> None:
        """`store`: where the cells live (default: this process only). `directory`: render the combination of
        every store in it instead of this store alone (`--workers`; `store` is one of them)."""
        self.store = store = store if store is not None else CellStore()
        self.directory = directory  # shared by every `--workers` worker (the status page's snapshots live there too)
        self.requests = CounterFamily(
            "turnout_requests", "HTTP requests answered, by route and status.", ["route", "status"], store
        )
        self.attempts = CounterFamily(
            "turnout_attempts",
            "Upstream attempts, by deployment, outcome and error class.",
            ["route", "deployment", "outcome", "error_class"],
            store,
        )
        self.fallbacks = CounterFamily(
            "turnout_fallbacks",
            "Times a request moved on from a deployment, by the error class that made it move.",
            ["route", "from_deployment", "error_class"],
            store,
        )
        self.latency = HistogramFamily(
            "turnout_request_duration_seconds",
            "End-to-end latency of chat requests.",
            ["route", "stream"],
            LATENCY_BUCKETS,
            store,
        )
        self.ttft = HistogramFamily(
            "turnout_time_to_first_token_seconds",
            "Streaming: time until the first content chunk.",
            ["route"],
            LATENCY_BUCKETS,
            store,
        )
        self.overhead = HistogramFamily(
            "turnout_router_overhead_seconds",
            "Time spent in turnout itself, outside upstream I/O.",
            ["route"],
            OVERHEAD_BUCKETS,
            store,
        )
        self.tokens = CounterFamily(
            "turnout_tokens", "Tokens used, by route, deployment and kind.", ["route", "deployment", "kind"], store
        )
        self.cost = CounterFamily(
            "turnout_cost_usd", "Accounted cost in USD, by route and deployment.", ["route", "deployment"], store
        )
        self.spend = CounterFamily(
            "turnout_spend_usd",
            "Spend in USD charged to the ledger (what budgets count, billed failed attempts and estimates included), "
            "by client, route and deployment. client is a declared client's name, or (anonymous).",
            ["client", "route", "deployment"],
            store,
        )
        self.rejected = CounterFamily(
            "turnout_rejected_requests",
            "Requests refused or cut before routing, by reason: max_in_flight (503), header_timeout and "
            "body_timeout (server.client_timeout; the connection is closed).",
            ["reason"],
            store,
        )
        self.in_flight = GaugeFamily(
            "turnout_in_flight_requests", "Chat requests being served right now (all workers).", [], store
        )
        self.breaker = GaugeFamily(
            "turnout_breaker_state",
            "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open (with --workers: the worst state "
            "any worker holds).",
            ["deployment"],
            store,
            combine="max",
        )
        self.breaker_transitions = CounterFamily(
            "turnout_breaker_transitions",
            "Breaker state changes by deployment and new state.",
            ["deployment", "state"],
            store,
        )
        self.reloads = CounterFamily(
            "turnout_config_reloads",
            "Config reloads, by result (success | failure); with --workers each worker reloads and counts.",
            ["result"],
            store,
        )
        self.config_problems = GaugeFamily(
            "turnout_config_last_reload_problems",
            "Problems found by the last failed reload (0 when it succeeded).",
            [],
            store,
            combine="max",
        )
        # Shared state (turnout.state): degraded = Redis bypassed, limits at this process's share meanwhile.
        self.state_degraded = GaugeFamily(
            "turnout_state_degraded",
            "1 while the shared state backend is unavailable (with --workers: 1 if any worker's is).",
            ["backend"],
            store,
            combine="max",
        )
        self.state_degradations = CounterFamily(
            "turnout_state_degradations",
            "Times the shared state backend became unavailable (requests went on with local state).",
            ["backend"],
            store,
        )
        self.families: tuple[Family, ...] = (
            self.requests,
            self.attempts,
            self.fallbacks,
            self.latency,
            self.ttft,
            self.overhead,
            self.tokens,
            self.cost,
            self.spend,
            self.rejected,
            self.in_flight,
            self.breaker,
            self.breaker_transitions,
            self.reloads,
            self.config_problems,
            self.state_degraded,
            self.state_degradations,
        )
        self.in_flight.set((), 0)
        self.config_problems.set((), 0)
        self.registry = CollectorRegistry(auto_describe=True)
        if directory is None:
            self.registry.register(FamilyCollector(self.families))
        else:
            self.registry.register(_Combined(DirectoryReader(directory, self.families), self.families))
        self._dispatch: dict[type, Callable[[Any], None]] = {
            AttemptFailed: self._attempt_failed,
            AttemptSucceeded: self._attempt_succeeded,
            FallbackTaken: self._fallback,
            BreakerOpened: lambda e: self._breaker(e.deployment, "open"),
            BreakerHalfOpened: lambda e: self._breaker(e.deployment, "half_open"),
            BreakerClosed: lambda e: self._breaker(e.deployment, "closed"),
            ResponseCompleted: self._completed,
            StateDegraded: self._state_degraded,
            StateRecovered: lambda e: self.state_degraded.set((e.backend,), 0),
        }
        self.event_types = frozenset(self._dispatch)  # the Router builds no other events for us

    def __call__(self, event: Event) -> None:
        handler = self._dispatch.get(type(event))
        if handler is not None:
            handler(event)

    def request_done(self, route: str, status: int) -> None:
        self.requests.inc((route, status))

    def in_flight_now(self, count: int) -> None:
        self.in_flight.set((), count)

    def reject(self, reason: str) -> None:
        self.rejected.inc((reason,))

    def reload_result(self, ok: bool, problems: int = 0) -> None:
        self.reloads.inc(("success" if ok else "failure",))
        self.config_problems.set((), 0 if ok else problems)

    def sync_breakers(self, health: Iterable[Any]) -> None:
        """Set the breaker gauge from the Router's current health (at startup and after a reload): one series per
        current deployment, from its kept or fresh breaker; series of removed deployments are dropped."""
        self.breaker.clear()
        for entry in health:
            self.breaker.set((entry.key,), BREAKER_STATE.get(entry.breaker.state, 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _attempt_failed(self, e: AttemptFailed) -> None:
        self.attempts.inc((e.route, e.deployment, "error", e.error_class))

    def _attempt_succeeded(self, e: AttemptSucceeded) -> None:
        self.attempts.inc((e.route, e.deployment, "success", ""))

    def _fallback(self, e: FallbackTaken) -> None:
        self.fallbacks.inc((e.route, e.from_deployment, e.error_class))

    def _breaker(self, deployment: str, state: str) -> None:
        self.breaker.set((deployment,), BREAKER_STATE[state])
        self.breaker_transitions.inc((deployment, state))

    def _state_degraded(self, e: StateDegraded) -> None:
        self.state_degraded.set((e.backend,), 1)
        self.state_degradations.inc((e.backend,))

    def _completed(self, e: ResponseCompleted) -> None:
        client = e.client or ANONYMOUS
        for deployment, cost in e.charges:  # the spend ledger's charges, failed billed attempts included
            self.spend.inc((client, e.route, deployment), cost)
        route = e.route
        self.latency.observe((route, "true" if e.stream else "false"), e.latency)
        if e.time_to_first_token is not None:
            self.ttft.observe((route,), e.time_to_first_token)
        if e.router_overhead is not None:
            self.overhead.observe((route,), e.router_overhead)
        served = e.served_by
        if not served:
            return
        usage = e.usage
        if usage.prompt_tokens is not None:
            self.tokens.inc((route, served, "prompt"), usage.prompt_tokens)
        if usage.completion_tokens is not None:
            self.tokens.inc((route, served, "completion"), usage.completion_tokens)
        if usage.cached_tokens:
            self.tokens.inc((route, served, "cached"), usage.cached_tokens)
        if e.cost_usd:
            self.cost.inc((route, served), e.cost_usd)


class _Combined(Collector):
    """The registry's view with `--workers`: every worker's cells, combined (see `aggregate.py`)."""

    def __init__(self, reader: DirectoryReader, families: Iterable[Family]) -> None:
        self._reader = reader
        self._families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        return self._reader.collect()

    def describe(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.empty()
