"""The questions the router asks its state, whichever backend answers them.

```
Router ──> StateBackend ──> Gate (one per deployment or client with limits, or any deployment when probes are
             │                      shared)
             │  record(...)          admit(tokens, probe) -> admission id | refusal reason
             │  usage(period, at)    refund(grant) / forget(grant) / release_probe(grant)
             │  meter                SpendMeter: spend per client/route/deployment and period, from memory
             │  breaker_changed(...) (local transitions out; remote ones come back through `on_breaker`)
             │  responses: ResponseStore (stored Responses API answers, `turnout.state.responses`)
             └─ status() / start() / warm() / aclose() / reconfigure(spec)
```

The router never knows which backend answers: `local` (in-process) or `redis` (shared by every worker and
replica on one Redis). A backend never raises into a request: when its store misbehaves it answers from local
state and says so in `status()` and through StateDegraded/StateRecovered events.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Protocol

from turnout.config import Limits, StateSpec
from turnout.state.ledger import Period, UsageKey, UsageTotals
from turnout.state.meter import SpendMeter
from turnout.types import Usage


class StoreError(Exception):
    """The shared store failed (connection refused or lost, an error reply). Its message never holds a secret.

    Raised by the transport only; a backend turns it into degraded local state, never into a failed request."""


class Refusal(str):
    """A gate's refusal: the reason (a str, as before), and `retry_after`, the seconds until an attempt of the same
    size would fit by what the gate knows (None when it cannot tell)."""

    retry_after: float | None

    def __new__(cls, reason: str, retry_after: float | None = None) -> Refusal:
        refusal = super().__new__(cls, reason)
        refusal.retry_after = retry_after
        return refusal


# (deployment key, "open" | "closed", seconds it stays open (open only), trips, origin replica): remote news
BreakerNews = Callable[[str, str, float | None, int, str], None]


class Gate(Protocol):
    """Admission to one deployment: rpm/tpm limits and, with a shared backend, cluster-wide half-open probes."""

    limited: bool  # it has an rpm or tpm limit (else it is only asked about probes)

    async def admit(self, tokens: int, probe: float | None) -> int | str:
        """May an attempt of `tokens` estimated tokens go now? Returns the admission's id (an int, for `refund` /
        `release_probe`) or the reason it may not (a str; a `Refusal` also says how long to wait when known).
        `probe` is the lease in seconds when the attempt is a half-open probe (None otherwise): at most
        `half_open_probes` leases are out at once across the cluster."""
        ...

    def refund(self, grant: int) -> None:
        """The admitted attempt used no tokens (the provider refused it before any output): give them back."""
        ...

    def forget(self, grant: int) -> None:
        """The admitted attempt failed because of the request itself: it counts against neither rpm nor tpm."""
        ...

    def release_probe(self, grant: int) -> None:
        """The probe admitted as `grant` has reported: its lease is free for the next one."""
        ...

    def usage(self) -> tuple[int, int]:
        """(requests, tokens) this process counts in the current window."""
        ...


class StateBackend(Protocol):
    """Where limits, shared breaker state and the usage ledger live (see the module docstring), and the Responses
    API's stored responses (`responses`, a `turnout.state.responses.ResponseStore`)."""

    kind: str  # "local" | "redis"
    meter: SpendMeter  # what budgets read (never I/O)
    budget_share: int  # each process enforces 1/budget_share of a budget (N workers sharing no ledger)
    responses: Any  # a turnout.state.responses.ResponseStore (stored Responses API answers)

    def gate(self, key: str, limits: Limits, probes: int) -> Gate | None:
        """The gate of one deployment (None when nothing needs asking: no limits and probes are not shared)."""
        ...

    def breaker_changed(self, key: str, state: str, open_for: float | None, trips: int) -> None:
        """This process's breaker of `key` opened (for `open_for` seconds) or closed: tell the other processes."""
        ...

    def record(
        self,
        route: str,
        deployment: str,
        client: str,
        usage: Usage,
        cost: float | None,
        served: bool = True,
        estimated: bool = False,
    ) -> None:
        """Count one attempt in the ledger: a served request, or (`served=False`) a failed attempt that was billed;
        `estimated` when its cost is an estimate. Cheap: the flush to a store happens in the background."""
        ...

    async def usage(self, period: Period = "day", at: date | str | None = None) -> dict[UsageKey, UsageTotals]:
        """Usage totals per (route, deployment, client) for the UTC day, ISO week or month containing `at`
        (default today), or all time."""
        ...

    def status(self) -> dict[str, Any]:
        """What /readyz shows: {"state": "ok" | "degraded", "state_backend": kind, ...}."""
        ...

    def reconfigure(self, spec: StateSpec) -> None:
        """A reload: apply what may change live (op_timeout, sync_interval); say so when a change needs a restart."""
        ...

    async def start(self) -> None: ...

    async def warm(self) -> None:
        """Wait (bounded, once) until the meter holds the store's spend totals; a no-op once it does."""
        ...

    async def aclose(self) -> None: ...
