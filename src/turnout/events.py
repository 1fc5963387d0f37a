"""Typed, frozen events a Router emits, and the Observer protocol that receives them.

Observers are registered on one Router instance (never globally) and are called synchronously on the event
loop, so they must be cheap; an observer that raises is logged and ignored, never breaking a request.
`at` is the Router's monotonic clock reading.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from turnout.types import Attempt, ChatChunk, ChatRequest, ChatResponse, Splice, Usage

if TYPE_CHECKING:
    from turnout.embeddings import EmbeddingRequest, EmbeddingResponse


@dataclass(frozen=True, slots=True)
class Event:
    at: float


@dataclass(frozen=True, slots=True)
class RequestStarted(Event):
    """Built only when an observer asks for it. `request` holds the client's content: left out of the repr."""

    request_id: str
    route: str
    stream: bool
    client: str = ""  # the declared client's name ("" anonymous)
    tag: str | None = None  # the caller's attribution tag (x-turnout-tag), sanitised
    request: ChatRequest | EmbeddingRequest | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class AttemptStarted(Event):
    request_id: str
    route: str
    deployment: str
    number: int  # 1-based across the whole request


@dataclass(frozen=True, slots=True)
class AttemptFailed(Event):
    request_id: str
    route: str
    deployment: str
    error_class: str
    status: int | None
    duration: float
    message: str
    after_first_token: bool = False


@dataclass(frozen=True, slots=True)
class AttemptSucceeded(Event):
    """An attempt answered. `reply` is the deployment's own answer (a ChatResponse, a stream's final chunk, an
    EmbeddingResponse):
    what an observer that wants the response model, id or finish reasons reads (left out of the repr)."""

    request_id: str
    route: str
    deployment: str
    duration: float
    time_to_first_token: float | None = None
    usage: Usage | None = None  # this attempt's usage (a stream's own, not the rescued answer's total)
    cost_usd: float | None = None
    reply: ChatResponse | ChatChunk | EmbeddingResponse | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """The request waits `delay` seconds and tries `deployment` again (retry number `retry`, 1-based) after a
    failure of `error_class`. Built only when an observer asks for it (see `Observer`)."""

    request_id: str
    route: str
    deployment: str
    error_class: str
    delay: float
    retry: int


@dataclass(frozen=True, slots=True)
class FallbackTaken(Event):
    """The request moves on from `from_deployment` (retries exhausted or the action said "next")."""

    request_id: str
    route: str
    from_deployment: str
    error_class: str


@dataclass(frozen=True, slots=True)
class StreamContinued(Event):
    """A cut stream is continued (`mid_stream: continue`): `deployment` carries on from the `chars_kept`
    characters the caller already has, which `continued_from` streamed before it broke."""

    request_id: str
    route: str
    continued_from: str
    deployment: str
    chars_kept: int


@dataclass(frozen=True, slots=True)
class BreakerEvent(Event):
    deployment: str
    open_for: float | None = None  # seconds the breaker stays open (on open)
    origin: str | None = None  # None: this process decided; else the replica whose news it applies (shared state)


@dataclass(frozen=True, slots=True)
class BreakerOpened(BreakerEvent):
    pass


@dataclass(frozen=True, slots=True)
class BreakerHalfOpened(BreakerEvent):
    pass


@dataclass(frozen=True, slots=True)
class BreakerClosed(BreakerEvent):
    pass


@dataclass(frozen=True, slots=True)
class ResponseCompleted(Event):
    """The request ended, successfully (`error_class is None`) or not. Carries accounting for metrics/logs."""

    request_id: str
    route: str
    served_by: str | None
    stream: bool
    attempts: tuple[Attempt, ...]
    usage: Usage
    cost_usd: float | None
    latency: float
    time_to_first_token: float | None = None
    error_class: str | None = None
    router_overhead: float | None = None  # seconds spent in turnout itself, outside upstream I/O
    splices: tuple[Splice, ...] = ()  # where a cut stream was continued (`mid_stream: continue`)
    client: str = ""
    tag: str | None = None
    charges: tuple[tuple[str, float], ...] = ()  # (deployment, USD) put in the spend ledger, one per charged attempt


@dataclass(frozen=True, slots=True)
class AttemptCharged(Event):
    """One attempt's cost went into the spend ledger (and the budgets): a served answer, or a failed attempt that
    may have been billed. `estimated`: the cost is an estimate (no usage was reported; see `turnout.router.budgets`).
    """

    request_id: str
    route: str
    deployment: str
    client: str
    cost_usd: float
    estimated: bool = False
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetWarning(Event):
    """A budget passed its `warn_at` (`level="warn"`) or ran out (`level="exhausted"`): once per period and process.
    `budget` names it ("client 'team'", "route 'chat'", "deployment 'p/m'"); amounts include reservations."""

    budget: str
    period: str
    level: str
    spent_usd: float
    limit_usd: float


@dataclass(frozen=True, slots=True)
class ConversationUpdated(Event):
    """A `Conversation` took a turn: its history grew by `added` (the user turn and the reply), now `length` long.

    `added` holds message content, so it is left out of the event's repr (a logging observer never prints it);
    an observer that persists conversations reads it explicitly.
    """

    conversation_id: str
    route: str
    served_by: str | None
    length: int
    added: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class StateDegraded(Event):
    """The shared state backend failed or did not answer within op_timeout: the router goes on with local state
    (limits at this process's share, its own breakers, usage kept for later) until the backend answers again."""

    backend: str
    reason: str  # the kind of failure, never a credential


@dataclass(frozen=True, slots=True)
class StateRecovered(Event):
    """The shared state backend answers again and this process has resynchronised with it."""

    backend: str
    degraded_for: float  # seconds
    data_lost: bool = False  # the store came back empty (e.g. a restart without persistence)


# Every concrete event type (what an observer without `event_types` receives).
EVENT_TYPES: frozenset[type[Event]] = frozenset(
    {
        RequestStarted,
        AttemptStarted,
        AttemptFailed,
        AttemptSucceeded,
        FallbackTaken,
        RetryScheduled,
        StreamContinued,
        BreakerOpened,
        BreakerHalfOpened,
        BreakerClosed,
        ResponseCompleted,
        AttemptCharged,
        BudgetWarning,
        ConversationUpdated,
        StateDegraded,
        StateRecovered,
    }
)


class Observer(Protocol):
    """Any callable taking an Event. It may also have an `event_types` attribute (a collection of exact Event
    classes): it then receives only those, and when no observer wants a type the Router does not even build
    those events (of the four events of every request, RequestStarted and AttemptStarted are rarely wanted)."""

    def __call__(self, event: Event) -> None: ...


class LoggingObserver:
    """Logs every event at DEBUG and failures/breaker changes at WARNING, on the `turnout.events` logger.

    Events carry no request content and no credentials, and a failed attempt's detail (the provider's message,
    which may quote the request) is left out unless `details=True`, so this is safe to enable in production.
    """

    def __init__(self, logger: logging.Logger | None = None, *, details: bool = False) -> None:
        self._log = logger or logging.getLogger("turnout.events")
        self._details = details

    def __call__(self, event: Event) -> None:
        if isinstance(event, AttemptFailed) and not self._details:
            self._log.warning("%s", dataclasses.replace(event, detail=""))
        elif isinstance(
            event, AttemptFailed | BreakerOpened | FallbackTaken | StreamContinued | StateDegraded | BudgetWarning
        ):
            self._log.warning("%s", event)
        elif self._log.isEnabledFor(logging.DEBUG):
            self._log.debug("%s", event)
