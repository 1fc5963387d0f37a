"""What a request may do, before and while it is dispatched: its client's routes and rate limit, and the budgets
it reserves room in and is charged to (`turnout.router.budgets` has the rules and the arithmetic).

`Admission` is the part of a `Run` (`turnout.router.dispatch`) that holds a request's client, tag and reservations:

- `admit_request()`, before the first attempt: the client's and the route's budgets reserve the request's
  reservation (or BudgetExhausted), then the client's rate limit admits it (or ClientRateLimited);
- `afford(d)`, before each attempt on a deployment with a budget: reserve its cost there, or skip it like a
  deployment at its rate limit;
- `charge(d, ...)` as each attempt ends: its cost (or, billed without usage, its reservation) into the ledger;
- `release()` when the request ends: free what it reserved.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from turnout.errors import BudgetExhausted, ClientRateLimited
from turnout.events import AttemptCharged
from turnout.router.budgets import output_reserve, stamp, usd
from turnout.state.ledger import NANO
from turnout.types import Usage

if TYPE_CHECKING:
    from turnout.router.breaker import Ticket
    from turnout.router.clients import CompiledClient
    from turnout.router.graph import CompiledRoute, Deployment
    from turnout.router.health import DeploymentHealth


class Admission:
    """A request's client, tag and budget reservations (a base of `Run`, which provides the rest)."""

    __slots__ = (
        "attempt_hold",
        "budget_refusals",
        "charges",
        "client",
        "client_name",
        "deny_unpriced",
        "hold",
        "hold_scopes",
        "tag",
    )

    if TYPE_CHECKING:  # provided by Run
        rt: Any
        route: CompiledRoute
        request: Any
        request_id: str
        trail: list[Any]
        errors: list[Any]

        def complete(self, served_by: str | None, **fields: Any) -> None: ...

        def skip(self, d: Deployment, reason: str) -> None: ...

    def admission(self, client: CompiledClient | None, tag: str | None) -> None:
        """Set up the request's admission state (called by `Run.__init__`)."""
        self.client = client
        self.client_name = client.name if client is not None else ""
        self.deny_unpriced = client is not None and client.denies_unpriced
        self.tag = tag
        self.hold = 0  # nano-USD this request reserved against its client and route budgets
        self.hold_scopes: tuple[str, ...] = ()
        self.attempt_hold = 0  # nano-USD the current attempt reserved against its deployment's budget
        self.budget_refusals: list[BudgetExhausted] = []  # deployments skipped for their budget
        self.charges: list[tuple[str, float]] = []  # (deployment, USD) charged so far (ResponseCompleted carries it)

    async def admit_request(self) -> None:
        """The request's client and route budgets reserve room for it, then the client's rate limit admits it.
        Raises BudgetExhausted or ClientRateLimited (nothing was sent; nothing is held afterwards)."""
        route = self.route
        client = self.client
        if client is None and not route.budgeted:
            return  # nothing to reserve, nobody to limit: the common case costs one test
        rt = self.rt
        rules = [r for r in (client.budget if client is not None else None, route.budget) if r is not None]
        if rules or route.budgeted:
            keeper = rt.budgets
            if not keeper.warmed:
                await rt.state.warm()
                keeper.warmed = True
        if rules:
            amount = self.reservation()
            for rule in rules:
                refused = rt.budgets.refusal(rule, amount)
                if refused is not None:
                    self.complete(None, error_class="budget_exhausted")
                    raise refused
            self.hold_scopes = tuple(rule.scope for rule in rules)
            self.hold = amount
            rt.state.meter.reserve(self.hold_scopes, amount)
        if client is not None and client.limited and rt.client_gates is not None:
            gate = rt.client_gates.get(client.name)
            if gate is not None:
                got = await gate.admit(self.request.estimated_total_tokens, None)
                if not isinstance(got, int):
                    self.release()
                    self.complete(None, error_class="client_rate_limited")
                    raise ClientRateLimited(client.name, str(got), getattr(got, "retry_after", None))

    def reservation(self) -> int:
        """Nano-USD this request could cost at most on one attempt: its prompt estimate plus output allowance, priced
        at the most expensive deployment it may use (see `turnout.router.budgets`)."""
        highest = 0
        for step in self.route.steps:
            for d in step.deployments:
                if d.price is not None:
                    highest = max(highest, self.reservation_at(d))
        return highest

    def reservation_at(self, d: Deployment) -> int:
        """Nano-USD one attempt on `d` could cost at most (0 when it has no price)."""
        price = d.price
        if price is None:
            return 0
        cost = price.estimate(self.request.estimated_prompt_tokens, self.output_allowance(d))
        return math.ceil(cost * NANO)

    def output_allowance(self, d: Deployment) -> int:
        """Output tokens an attempt on `d` may produce (an embeddings run produces none)."""
        return output_reserve(self.request, d.max_output_tokens)

    def afford(self, d: Deployment, h: DeploymentHealth, ticket: Ticket) -> bool:
        """Before an attempt on a deployment with a budget: reserve its cost there, or skip it like a deployment at
        its rate limit (the breaker ticket is given back and the skip is in the trail)."""
        rule = d.budget
        assert rule is not None
        amount = self.reservation_at(d)
        refused = self.rt.budgets.refusal(rule, amount)
        if refused is not None:
            h.breaker.release(ticket)
            self.budget_refusals.append(refused)
            reset = f"; resets {stamp(refused.resets_at)}" if refused.resets_at is not None else ""
            self.skip(d, f"over its budget ({usd(rule.limit)} per {rule.per}{reset})")
            return False
        self.rt.state.meter.reserve((rule.scope,), amount)
        self.attempt_hold = amount
        return True

    def unhold(self, d: Deployment) -> None:
        """The attempt on `d` is over (or never started): free its budget reservation."""
        if self.attempt_hold and d.budget is not None:
            self.rt.state.meter.release((d.budget.scope,), self.attempt_hold)
        self.attempt_hold = 0

    def release(self) -> None:
        """The request is over: free what it reserved (idempotent). What it cost was charged attempt by attempt."""
        if self.hold:
            self.rt.state.meter.release(self.hold_scopes, self.hold)
            self.hold = 0

    def charge(self, d: Deployment, usage: Usage, cost: float | None, *, served: bool, estimated: bool = False) -> None:
        """Put one attempt's cost in the ledger (and so the budgets). A priced attempt that reported no usage (and
        so no cost) is charged its reservation at `d`, flagged estimated: a stream is never free."""
        if cost is None and d.price is not None:
            cost = self.reservation_at(d) / NANO
            estimated = True
        elif cost is None and not served:
            return  # a failed attempt on a deployment with no price: nothing to count
        rt = self.rt
        rt.state.record(self.route.name, d.key, self.client_name, usage, cost, served, estimated)
        if cost:
            self.charges.append((d.key, cost))
        if cost and AttemptCharged in rt.wanted:
            rt.emit(
                AttemptCharged(
                    rt.clock(), self.request_id, self.route.name, d.key, self.client_name, cost, estimated, self.tag
                )
            )

    def all_over_budget(self) -> BudgetExhausted | None:
        refusals = self.budget_refusals
        if not refusals or self.errors or len(refusals) != sum(1 for a in self.trail if a.outcome == "skipped"):
            return None
        first = min(refusals, key=lambda r: (r.resets_at is None, r.resets_at or 0))
        owners = ", ".join(dict.fromkeys(r.budget for r in refusals))
        message = f"Every deployment of route '{self.route.name}' is over its budget ({owners}). {first.message}"
        return BudgetExhausted(
            message,
            budget=first.budget,
            period=first.period,
            resets_at=first.resets_at,
            spent_usd=first.spent_usd,
            limit_usd=first.limit_usd,
        )
