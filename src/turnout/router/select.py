"""Strategies: the order in which a pool's deployments are tried for one request.

Each is a small object with one method, `order(deployments, weights, health, request) -> sequence`. The
dispatcher walks that order and skips what cannot serve (breaker open, rate limit, capability, window), so a
strategy only ranks. Strategies that need memory (round-robin cursor, smooth-weighted credits) keep it on the
instance, one instance per pool step.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from turnout.types import ChatRequest

if TYPE_CHECKING:
    from turnout.router.graph import Deployment
    from turnout.router.health import DeploymentHealth

DEFAULT_OUTPUT_ESTIMATE = 256  # tokens assumed when neither the request nor the model caps the output
MAX_TOKEN_ESTIMATE = 10**15  # a client's absurd max_tokens (10**400) must not overflow the float price estimate


class Strategy(Protocol):
    name: str

    def order(
        self,
        deployments: tuple[Deployment, ...],
        weights: tuple[float, ...],
        health: Mapping[str, DeploymentHealth],
        request: ChatRequest,
    ) -> Sequence[Deployment]: ...


class Priority:
    """In the order written in the file."""

    name = "priority"

    def order(self, deployments, weights, health, request):
        return deployments


class RoundRobin:
    """Each request starts one further along the list; the rest follow as fallbacks."""

    name = "round_robin"
    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def order(self, deployments, weights, health, request):
        n = len(deployments)
        start = self._next % n
        self._next = start + 1
        return deployments[start:] + deployments[:start]


class Weighted:
    """Smooth weighted round-robin (nginx): deterministic, spreads picks evenly in proportion to weight.

    Every call adds each member's weight to its credit, picks the member with the largest credit and takes
    the total weight off it. With weights 3:1 the picks are A A B A, A A B A, ... The other members follow
    the pick in file order as fallbacks.
    """

    name = "weighted"
    __slots__ = ("_credit",)

    def __init__(self) -> None:
        self._credit: list[float] = []

    def order(self, deployments, weights, health, request):
        credit = self._credit
        if len(credit) != len(weights):
            credit[:] = [0.0] * len(weights)
        best = 0
        for i, weight in enumerate(weights):
            credit[i] += weight
            if credit[i] > credit[best]:
                best = i
        credit[best] -= sum(weights)
        if best == 0:
            return deployments
        return (deployments[best], *deployments[:best], *deployments[best + 1 :])


class LeastBusy:
    """Fewest in-flight attempts first (ties keep file order)."""

    name = "least_busy"

    def order(self, deployments, weights, health, request):
        return sorted(deployments, key=lambda d: health[d.key].in_flight)


class LowestLatency:
    """Lowest latency EWMA first, with epsilon exploration.

    Untried deployments (no EWMA yet) go first so each gets measured. With probability `epsilon` a random
    member is moved to the front, so a deployment whose EWMA was inflated by failures gets traffic again and
    its average recovers once it is healthy. `rng` is injected (the Router's), so tests are deterministic.
    """

    name = "lowest_latency"
    __slots__ = ("epsilon", "rng")

    def __init__(self, rng: random.Random, epsilon: float = 0.1) -> None:
        self.rng = rng
        self.epsilon = epsilon

    def order(self, deployments, weights, health, request):
        ranked = sorted(deployments, key=lambda d: health[d.key].latency or 0.0)
        if len(ranked) > 1 and self.rng.random() < self.epsilon:
            ranked.insert(0, ranked.pop(self.rng.randrange(len(ranked))))
        return ranked


class LowestCost:
    """Cheapest expected price first: input price x estimated prompt + output price x max output tokens.

    Unpriced deployments go last (their cost is unknown, not zero).
    """

    name = "lowest_cost"

    def order(self, deployments, weights, health, request):
        prompt = request.estimated_prompt_tokens

        def expected(d: Deployment) -> float:
            if d.price is None:
                return float("inf")
            output = request.max_output_tokens or d.max_output_tokens or DEFAULT_OUTPUT_ESTIMATE
            return d.price.estimate(min(prompt, MAX_TOKEN_ESTIMATE), min(output, MAX_TOKEN_ESTIMATE))

        return sorted(deployments, key=expected)


def make_strategy(name: str, rng: random.Random) -> Strategy:
    """A fresh strategy instance for one pool step."""
    if name == "priority":
        return Priority()
    if name == "round_robin":
        return RoundRobin()
    if name == "weighted":
        return Weighted()
    if name == "least_busy":
        return LeastBusy()
    if name == "lowest_latency":
        return LowestLatency(rng)
    if name == "lowest_cost":
        return LowestCost()
    raise ValueError(f"unknown strategy '{name}'")
