"""Budgets: the rule compiled from a `budget:` block, what a request reserves, and the check against the meter.

A request is checked *before* dispatch against a **reservation**: its prompt estimate plus its output allowance
(`max_tokens`, else the deployment's `max_output_tokens`, else `DEFAULT_OUTPUT_RESERVE`), priced at the most
expensive deployment it may use. The check is `spent + reserved + reservation <= usd` for the client's and the
route's budget; a deployment's own budget is checked the same way before each attempt on it, priced at that
deployment. Reservations are held in the meter while the request runs and released when it ends; every attempt
is charged its real cost as it ends (`turnout.router.dispatch`). So concurrent requests in one process can never
overshoot a budget together: each sees the others' reservations. What one process cannot see is other processes'
reservations and their spend since the last refresh (see `turnout.state.meter`).

An attempt that may have been billed but reported no usage (cut, timed out, abandoned) is charged its reservation
at its deployment's price: the most it could have cost. Budgets then trip early rather than never.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from turnout.config import Budget
from turnout.errors import BudgetExhausted
from turnout.events import BudgetWarning, Event
from turnout.state import StateBackend
from turnout.state.ledger import NANO
from turnout.state.meter import KIND
from turnout.types import ChatRequest

log = logging.getLogger("turnout.router")
DEFAULT_OUTPUT_RESERVE = 4096  # output tokens reserved for a request that sets no max_tokens on a model that
# declares no max_output_tokens


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A compiled budget: `scope` is the meter's key (c:/r:/d:), `owner` how messages name it, `limit` and `warn`
    in nano-USD, `kind` the period's index in the meter."""

    scope: str
    owner: str
    usd: Decimal
    per: str
    limit: int
    kind: int
    warn: int | None

    @classmethod
    def of(cls, budget: Budget, scope: str, owner: str) -> BudgetRule:
        limit = int(budget.usd * NANO)
        warn = int(limit * budget.warn_at) if budget.warn_at is not None else None
        return cls(scope, owner, budget.usd, budget.per, limit, KIND[budget.per], warn)


def output_reserve(request: ChatRequest, model_max: int | None) -> int:
    """Output tokens a request may produce on a model: its max_tokens (capped by the model's), else the model's
    max_output_tokens, else DEFAULT_OUTPUT_RESERVE."""
    asked = request.max_output_tokens
    if asked is not None:
        return min(asked, model_max) if model_max is not None else asked
    return model_max if model_max is not None else DEFAULT_OUTPUT_RESERVE


def resets_at(per: str, now: float) -> datetime | None:
    """When the current period of `per` ends (UTC); None for total."""
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if per == "day":
        return today + timedelta(days=1)
    if per == "week":
        return today + timedelta(days=7 - today.weekday())
    if per == "month":
        return (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    return None


def usd(nano: int) -> str:
    """$12.34, or more decimals for amounts under a cent ($0.0042)."""
    value = nano / NANO
    if value == 0 or abs(value) >= 0.01:
        return f"${value:,.2f}"
    return f"${value:.6f}".rstrip("0")


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class BudgetKeeper:
    """Checks budgets against one Router's meter and says so once per period when one warns or runs out."""

    def __init__(
        self,
        state: StateBackend,
        emit: Callable[[Event], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self._clock = clock
        self.meter = state.meter
        self.share = max(1, state.budget_share)
        self._emit = emit
        self._wall = wall
        self._noticed: dict[tuple[str, str], str] = {}  # (scope, "warn" | "exhausted") -> period id noticed in
        self.warmed = False

    def refusal(self, rule: BudgetRule, amount: int) -> BudgetExhausted | None:
        """None when `amount` (nano-USD) fits in `rule`'s budget now; else the refusal to raise or to note."""
        meter = self.meter
        spent = meter.spent(rule.scope, rule.kind) + meter.reserved.get(rule.scope, 0)
        limit = rule.limit // self.share
        if rule.warn is not None and spent >= rule.warn // self.share:
            self._notice(rule, "warn", spent, limit)
        if spent + amount <= limit and (amount > 0 or spent < limit):
            return None
        if spent >= limit:
            self._notice(rule, "exhausted", spent, limit)
        return self._refusal(rule, spent, limit, amount)

    def _refusal(self, rule: BudgetRule, spent: int, limit: int, amount: int) -> BudgetExhausted:
        now = self._wall()
        reset = resets_at(rule.per, now)
        period = "in total" if rule.per == "total" else f"per {rule.per} (UTC)"
        share = f" (this process's 1/{self.share} share)" if self.share > 1 else ""
        when = f"it resets at {stamp(reset)}" if reset is not None else "it never resets: raise it to continue"
        if spent >= limit:
            message = (
                f"Budget exhausted: {rule.owner} may spend {usd(limit)} {period}{share} and has spent or reserved "
                f"{usd(spent)}; {when}."
            )
        else:
            message = (
                f"Budget too low for this request: {rule.owner} has {usd(limit - spent)} left of {usd(limit)} "
                f"{period}{share}, less than the request's reservation of {usd(amount)} (its prompt estimate plus "
                f"max_tokens, priced at the most expensive deployment it may use); lower max_tokens, or wait: {when}."
            )
        return BudgetExhausted(
            message,
            budget=rule.owner,
            period=rule.per,
            resets_at=reset,
            spent_usd=spent / NANO,
            limit_usd=limit / NANO,
        )

    def _notice(self, rule: BudgetRule, level: str, spent: int, limit: int) -> None:
        pid = self.meter.today()[rule.kind]
        if self._noticed.get((rule.scope, level)) == pid:
            return
        self._noticed[(rule.scope, level)] = pid
        share = f" (1/{self.share} share)" if self.share > 1 else ""
        if level == "warn":
            figures = (rule.owner, usd(spent), usd(limit), rule.per, share)
            log.warning("budget: %s has spent or reserved %s of %s per %s%s", *figures)
        else:
            log.warning("budget: %s is exhausted (%s per %s%s)", rule.owner, usd(limit), rule.per, share)
        self._emit(BudgetWarning(self._clock(), rule.owner, rule.per, level, spent / NANO, limit / NANO))
