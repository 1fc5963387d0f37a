"""The compiled, immutable dispatch graph: routes -> ordered steps -> deployments.

Everything a request needs is precomputed here so dispatch does one dict lookup (route by name) and then
walks tuples. Config values are frozen; the only mutable thing reachable from a graph is a step's strategy
cursor (round-robin position, smooth-weighted credits), which is selection state, not configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from turnout.config import BreakerPolicy, Config, Kind, Limits, Policy
from turnout.drivers.base import Driver
from turnout.errors import InvalidRequest
from turnout.router.pricing import TokenPrice

if TYPE_CHECKING:
    from turnout.router.budgets import BudgetRule
    from turnout.router.clients import CompiledClient
    from turnout.router.select import Strategy

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class Deployment:
    """One model on one provider, ready to call. `key` is "provider/model-key" (the model's name in the file).

    `native_formats`: the client wire formats its driver sends as they are (`ChatRequest.native`), from the driver.
    An embeddings deployment (`kind="embeddings"`) returns `dimensions`-long vectors, or from `min_dimensions` up
    to that on request; `token_input` says whether its driver takes token-id arrays.
    """

    key: str
    provider: str
    model: str
    upstream: str
    driver: Driver
    capabilities: frozenset[str]
    breaker: BreakerPolicy
    limits: Limits = field(default_factory=Limits)
    price: TokenPrice | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    connect_timeout: float | None = None
    model_options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    native_formats: frozenset[str] = frozenset()
    kind: Kind = "chat"
    dimensions: int | None = None
    min_dimensions: int | None = None
    token_input: bool = False
    budget: BudgetRule | None = None

    def __repr__(self) -> str:
        return f"Deployment({self.key!r})"

    def returns(self, dimensions: int | None) -> bool:
        """Whether this (embeddings) deployment returns vectors of `dimensions` (None: its own length)."""
        if dimensions is None or dimensions == self.dimensions:
            return True
        low = self.min_dimensions
        return low is not None and self.dimensions is not None and low <= dimensions <= self.dimensions


@dataclass(frozen=True, slots=True, eq=False)
class Step:
    """One entry of a route's chain: a pool of deployments tried in the order its strategy gives."""

    name: str
    kind: str  # "pool" | "model"
    strategy: Strategy
    deployments: tuple[Deployment, ...]
    weights: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Excluded:
    """A chain member that can never serve this route, and why (shown by explain and /readyz)."""

    deployment: str
    reason: str


@dataclass(frozen=True, slots=True, eq=False)
class PlannedMember:
    """A chain member as written, with the deployment it compiled to or the reason it never serves here."""

    key: str
    model: str
    provider: str
    weight: float
    deployment: Deployment | None
    excluded: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class PlannedStep:
    """A chain entry as written (pool or model), every member included: what `turnout explain` shows."""

    name: str
    kind: str  # "pool" | "model"
    strategy: str
    members: tuple[PlannedMember, ...]


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRoute:
    """`steps` is what dispatch walks (usable deployments only); `plan` is the chain as written, for display.

    `kind` is what the route serves (chat or embeddings); an embeddings route's deployments all return
    `dimensions`-long vectors by default. `aliases` are further names clients may send for it.
    """

    name: str
    steps: tuple[Step, ...]
    policy: Policy
    requires: frozenset[str] = frozenset()
    description: str = ""
    excluded: tuple[Excluded, ...] = ()
    plan: tuple[PlannedStep, ...] = ()
    kind: Kind = "chat"
    aliases: tuple[str, ...] = ()
    dimensions: int | None = None
    budget: BudgetRule | None = None
    budgeted: bool = False  # the route or one of its deployments has a budget

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        return tuple(d for step in self.steps for d in step.deployments)


@dataclass(frozen=True, slots=True, eq=False)
class DispatchGraph:
    """The whole compiled routing file. `disabled_providers` maps provider name -> reason.

    `routes` holds each route under its name; `by_name` every name a client may send (route names and aliases), so
    resolving a request's `model` stays one dict lookup. Built by `compile_graph`; when left empty it is `routes`.
    """

    config: Config
    routes: Mapping[str, CompiledRoute]
    deployments: Mapping[str, Deployment]
    drivers: Mapping[str, Driver]
    disabled_providers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    clients: Mapping[str, CompiledClient] = field(default_factory=lambda: _EMPTY)
    client_keys: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # key digest -> client name
    by_name: Mapping[str, CompiledRoute] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if not self.by_name:
            object.__setattr__(self, "by_name", self.routes)

    def route_names(self) -> list[str]:
        return list(self.routes)

    def route_of(self, name: str) -> str | None:
        """The route a client's `model` names (itself, or the route it is an alias of); None when it names none."""
        route = self.by_name.get(name)
        return route.name if route is not None else None


def wrong_kind(route: CompiledRoute, model: str) -> InvalidRequest:
    """The 400 for a request of the other kind: a chat request to an embeddings route, or the reverse."""
    named = f"'{model}'" if model == route.name else f"'{model}' (route '{route.name}')"
    if route.kind == "embeddings":
        message = f"{named} serves embeddings: send it to POST /v1/embeddings (router.embed), not chat completions."
    else:
        message = f"{named} serves chat completions: send it to POST /v1/chat/completions (router.chat)."
    return InvalidRequest(message, param="model", code="wrong_endpoint")
