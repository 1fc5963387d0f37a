"""The one fallback/attempt loop for non-streamed requests, and the per-request state it shares with streams.

Read `dispatch` top to bottom: for each step of the route, for each deployment in the strategy's order
(skipping what cannot serve), try up to `1 + retry.attempts` times under a per-attempt timeout that never
exceeds what is left of the request's deadline. Before each attempt the breaker is asked (locally, free), then
the deployment's gate when it has one (rate limits; with shared state also cluster-wide half-open probes: the
one place a request may wait on the state backend, never longer than its op_timeout). Classify each failure
and act on it (retry after a backoff, move on, or fail now). Every try and skip lands in the trail; exhaustion
raises AllUpstreamsFailed whose cause is the most meaningful upstream error (rule in
`turnout.router.policy.most_meaningful`).

The loop is the same for every kind of request: what one attempt calls (`driver.send` for chat, `driver.embed`
for embeddings, see `turnout.router.embed`) and how a success is finished are its two parameters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from turnout.drivers._egress import Egress
from turnout.drivers.base import CallContext, TracedContext
from turnout.errors import (
    DEPLOYMENT_FAULTS,
    NOT_SENT_CODES,
    AllUpstreamsFailed,
    BadRequest,
    ErrorClass,
    ProtocolError,
    ProviderError,
    TurnoutError,
    UpstreamTimeout,
    provider_error,
)
from turnout.events import (
    EVENT_TYPES,
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    Event,
    FallbackTaken,
    RequestStarted,
    ResponseCompleted,
    RetryScheduled,
    StreamContinued,
)
from turnout.redaction import NOTHING, Redactor
from turnout.router import reasoning
from turnout.router.admission import Admission
from turnout.router.breaker import Ticket
from turnout.router.budgets import BudgetKeeper
from turnout.router.policy import TRIPS_BREAKER, action_for, most_meaningful, retry_delay
from turnout.router.pricing import request_cost
from turnout.router.timeouts import TimeoutMonitor
from turnout.types import Attempt, ChatRequest, ChatResponse, Splice, Usage

if TYPE_CHECKING:
    import aiohttp

    from turnout.router.clients import ClientGates, CompiledClient
    from turnout.router.graph import CompiledRoute, Deployment
    from turnout.router.health import DeploymentHealth, HealthTable
    from turnout.state import StateBackend

log = logging.getLogger("turnout.router")
R = TypeVar("R")  # what one attempt returns (a driver's answer)
T = TypeVar("T")  # what the request returns
# (deployment, request, context) -> the awaitable answer of one attempt.
AttemptCall = Callable[["Deployment", Any, CallContext], Awaitable[R]]
# (run, deployment, health, ticket, started, answer) -> the request's result, the success recorded.
Finish = Callable[["Run", "Deployment", "DeploymentHealth", Ticket, float, R], T]
_DETAIL_LIMIT = 300
UNENCODABLE = "invalid_unicode"  # the code of a request the driver could not even encode (never sent)
_UNSENT = NOT_SENT_CODES | {UNENCODABLE}


class Runtime:
    """What dispatch needs from its Router: time, randomness, health and observers (one per Router)."""

    __slots__ = (
        "_by_type", "budgets", "client_gates", "clock", "egress", "health", "observers", "redactor", "rng", "sleep",
        "state", "timeouts", "upstream_headers", "wanted",
    )  # fmt: skip

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        health: HealthTable,
        state: StateBackend,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.health = health
        self.state = state
        self.observers: list[Callable[[Event], None]] = []
        self.wanted: frozenset[type] = frozenset()  # event types some observer receives (see `observe`)
        self._by_type: dict[type, tuple[Callable[[Event], None], ...]] = {}
        self.timeouts = TimeoutMonitor()
        self.egress = Egress()  # sessions for client-supplied URLs (image fetches), apart from the upstream one
        self.redactor = NOTHING  # the current config's secrets (the Router sets it on every swap)
        self.budgets = BudgetKeeper(state, self.emit, clock=clock)
        self.client_gates: ClientGates | None = None  # the Router sets it (rate limits of declared clients)
        # (request id, deployment) -> extra headers for that attempt's upstream call (trace context), or None;
        # set by tracing when it propagates to some upstream (`telemetry.propagate_to`), else never asked
        self.upstream_headers: Callable[[str, Deployment], Mapping[str, str] | None] | None = None

    def observe(self, observers: Sequence[Callable[[Event], None]]) -> None:
        """Set the observers; an observer with `event_types` receives only those types."""
        self.observers = list(observers)
        by_type: dict[type, list[Callable[[Event], None]]] = {}
        for observer in self.observers:
            types = getattr(observer, "event_types", None)
            for kind in EVENT_TYPES if types is None else types:
                by_type.setdefault(kind, []).append(observer)
        self._by_type = {kind: tuple(found) for kind, found in by_type.items()}
        self.wanted = frozenset(self._by_type)

    def emit(self, event: Event) -> None:
        """Deliver to every observer; an observer that raises is logged and never breaks the request."""
        for observer in self._by_type.get(type(event), ()):
            try:
                observer(event)
            except Exception:
                log.exception("observer %r failed on %s", observer, type(event).__name__)


class Run(Admission):
    """The state of one request while it is dispatched: deadline, trail, errors, escalation constraints (and, from
    `Admission`, its client and what it reserved)."""

    __slots__ = (
        "completed",
        "deadline",
        "dropped",
        "entries",
        "errors",
        "grant",
        "min_window",
        "need_prefill",
        "number",
        "policy",
        "redactor",
        "request",
        "request_id",
        "route",
        "rt",
        "session",
        "slept",
        "splices",
        "started",
        "trail",
        "upstream_time",
    )

    def __init__(
        self,
        rt: Runtime,
        route: CompiledRoute,
        request: ChatRequest,
        request_id: str,
        session: aiohttp.ClientSession,
        client: CompiledClient | None = None,
        tag: str | None = None,
    ) -> None:
        self.rt = rt
        self.admission(client, tag)
        self.route = route
        self.request = request
        self.request_id = request_id
        self.session = session
        self.policy = route.policy
        self.redactor = rt.redactor  # of the config this request started on (its drivers hold those secrets)
        self.entries: dict[str, DeploymentHealth] = rt.health.entries  # this dict survives a concurrent swap
        self.started = rt.clock()
        self.deadline = self.started + self.policy.deadline
        self.trail: list[Attempt] = []
        self.splices: list[Splice] = []
        self.errors: list[ProviderError] = []
        self.grant = 0  # the current attempt's admission id from its deployment's gate (0: none)
        self.dropped: tuple[str, ...] = ()  # what the current attempt's deployment does not receive (reasoning)
        self.min_window: int | None = None
        self.need_prefill = False
        self.number = 0
        self.upstream_time = 0.0
        self.slept = 0.0
        self.completed = False
        if RequestStarted in rt.wanted:
            rt.emit(
                RequestStarted(self.started, request_id, route.name, request.stream, self.client_name, tag, request)
            )

    # -- choosing ----------------------------------------------------------------------------------------
    def candidates(self) -> Iterator[Deployment]:
        """Deployments in try order across the route's steps; the ones that cannot serve are recorded as skips."""
        request = self.request
        entries = self.entries
        for step in self.route.steps:
            deployments = step.deployments
            if len(deployments) > 1:
                deployments = step.strategy.order(deployments, step.weights, entries, request)
            for deployment in deployments:
                reason = self.unfit(deployment)
                if reason is None:
                    yield deployment
                else:
                    self.skip(deployment, reason)

    def unfit(self, d: Deployment) -> str | None:
        """Why `d` can never take this request (capability, context window), or None. Rate limits are asked just
        before each attempt (`admit`)."""
        r = self.request
        caps = d.capabilities
        if r.needs_tools and "tools" not in caps:
            return "lacks tools"
        if r.needs_vision and "vision" not in caps:
            return "lacks vision"
        if r.needs_json and "json" not in caps:
            return "lacks json"
        if r.stream and "streaming" not in caps:
            return "lacks streaming"
        if self.need_prefill and "prefill" not in caps:
            return "lacks prefill (cannot continue a cut stream)"
        native = r.native
        if native is not None and native.untranslatable and native.format not in d.native_formats:
            return f"cannot take {native.untranslatable} (only a {native.format} upstream can)"
        if self.deny_unpriced and d.price is None:
            return f"no price: client '{self.client_name}' has a budget, which counts every call"
        window = d.context_window
        if window is not None:
            if window < r.estimated_total_tokens:
                return f"context window {window} < estimated {r.estimated_total_tokens} tokens"
            if self.min_window is not None and window <= self.min_window:
                return f"context window {window} not larger than the {self.min_window} already exceeded"
        return None

    def skip(self, d: Deployment, reason: str) -> None:
        self.trail.append(Attempt(d.key, self.rt.clock(), 0.0, "skipped", detail=reason))

    async def admit(self, d: Deployment, h: DeploymentHealth, ticket: Ticket) -> bool:
        """Ask the deployment's gate for this attempt (call only when `h.gate` is set). False: it was refused,
        the breaker ticket is given back and the skip is in the trail."""
        gate = h.gate
        assert gate is not None
        probe = ticket is Ticket.PROBE
        if not (gate.limited or probe):
            return True
        try:
            got = await gate.admit(self.request.estimated_total_tokens, self.remaining() if probe else None)
        except BaseException:  # the caller went away while we asked: the probe slot must not leak
            h.breaker.release(ticket)
            self.unhold(d)
            raise
        if isinstance(got, int):
            self.grant = got
            return True
        h.breaker.release(ticket)
        self.unhold(d)
        self.skip(d, got)
        return False

    def _settle(self, h: DeploymentHealth, ticket: Ticket, *, refund: bool = False, forget: bool = False) -> None:
        """The attempt is over: free its probe lease; give its tokens back when it used none (`refund`), or drop
        it from the window altogether when the request itself was at fault (`forget`)."""
        grant, self.grant = self.grant, 0
        gate = h.gate
        if grant and gate is not None:
            if forget:
                gate.forget(grant)
            elif refund:
                gate.refund(grant)
            if ticket is Ticket.PROBE:
                gate.release_probe(grant)

    # -- one attempt -------------------------------------------------------------------------------------
    def context(self, d: Deployment, budget: float | None, *, batch: bool = False) -> CallContext:
        """The attempt's call context; built after `begin`, so a traced attempt's span exists to go upstream."""
        policy = self.policy
        make: Callable[..., CallContext] = CallContext
        extra = self.rt.upstream_headers
        if extra is not None:
            headers = extra(self.request_id, d)
            if headers:
                make = partial(TracedContext, headers=headers)
        return make(
            session=self.session,
            model=d.upstream,
            deadline=self.deadline,
            attempt_timeout=budget,
            first_token_timeout=policy.first_token_timeout,
            stall_timeout=policy.stall_timeout,
            connect_timeout=d.connect_timeout or policy.connect_timeout,
            model_options=d.model_options,
            clock=self.rt.clock,
            guarded=True,  # our TimeoutMonitor enforces the budget; the driver need not arm timers of its own
            batch=batch,
            egress=self.rt.egress,
        )

    def fitted(self, d: Deployment, request: ChatRequest) -> ChatRequest:
        """`request` as `d` receives it, for a request that asks for reasoning (`turnout.router.reasoning`); what it
        leaves out is kept in `dropped` for the answer's `x-turnout-dropped`."""
        fitted, why = reasoning.fit(request, d)
        self.dropped = (why,) if why is not None else ()
        return fitted

    def send_fitted(self, d: Deployment, request: ChatRequest, ctx: CallContext) -> Awaitable[ChatResponse]:
        """One non-streamed attempt of a request that asks for reasoning (`dispatch_chat`)."""
        return d.driver.send(self.fitted(d, request), ctx)

    def begin(self, d: Deployment, h: DeploymentHealth) -> float:
        """Count the attempt as started (in flight, event); returns its start time."""
        now = self.rt.clock()
        h.in_flight += 1
        self.number += 1
        if AttemptStarted in self.rt.wanted:
            self.rt.emit(AttemptStarted(now, self.request_id, self.route.name, d.key, self.number))
        return now

    def succeeded(
        self,
        d: Deployment,
        h: DeploymentHealth,
        ticket: Ticket,
        started: float,
        usage: Usage,
        ttft: float | None,
        estimated: bool = False,
        reply: Any = None,
    ) -> float:
        """Record a successful attempt; returns its end time. `estimated`: the upstream reported no usage, and
        `usage` is turnout's estimate (the attempt is priced from it, flagged). `reply`: the attempt's answer (a
        stream's final chunk), for observers that want its model, id or finish reasons."""
        now = self.rt.clock()
        duration = now - started
        self.upstream_time += duration
        h.in_flight -= 1
        h.observe(duration, True)
        h.breaker.record(ticket, None)
        if h.gate is not None:
            self._settle(h, ticket)
        cost = d.price.cost(usage) if d.price is not None else None
        self.trail.append(Attempt(d.key, started, duration, "success", usage=usage, cost_usd=cost, estimated=estimated))
        if self.rt.observers:
            self.rt.emit(
                AttemptSucceeded(now, self.request_id, self.route.name, d.key, duration, ttft, usage, cost, reply)
            )
        self.unhold(d)
        self.charge(d, usage, cost, served=True, estimated=estimated)
        return now

    def failed(
        self,
        d: Deployment,
        h: DeploymentHealth,
        ticket: Ticket,
        started: float,
        error: ProviderError,
        estimate: Usage | None = None,
    ) -> ProviderError:
        """Record a failed attempt and feed the breaker (and context-window escalation). `estimate` is the usage of
        a stream cut after content arrived (it never reported its own): the attempt is priced from it, flagged.
        Returns the error as it may travel on: with every configured secret masked in the upstream's text (see
        `turnout.redaction`), the one the caller must use from here on.

        Only the deployment's own faults count against it: a failure caused by the request itself (bad_request,
        content_policy, context_window) neither feeds the breaker, nor marks the latency as failing, nor uses up
        the rate limits (its rpm/tpm entry is dropped), so no client can take a deployment away from the others.
        """
        error = redacted(error, self.redactor)
        now = self.rt.clock()
        duration = now - started
        self.upstream_time += duration
        h.in_flight -= 1
        cls = error.error_class
        own_fault = cls in DEPLOYMENT_FAULTS
        if own_fault:
            h.observe(duration, False)
        h.breaker.record(ticket, error)
        if cls in TRIPS_BREAKER:
            h.breaker.trip()
        if cls is ErrorClass.CONTEXT_WINDOW and d.context_window is not None:
            self.min_window = max(self.min_window or 0, d.context_window)
        # Billed nothing only when the provider answered with an error status before any output, or the
        # connection never opened; anything else (reset, timeout mid-answer) may have been billed: unknown.
        unbilled = error.status is not None or error.code in _UNSENT
        cost = 0.0 if unbilled and not error.after_first_token else None
        if h.gate is not None:
            # Only the deployment's own faults use up its limits; refused before any output, it used no tokens.
            early = not error.after_first_token
            self._settle(h, ticket, forget=early and not own_fault, refund=early and own_fault and cost == 0.0)
        detail = error.message[:_DETAIL_LIMIT]
        if estimate is not None:
            cost = d.price.cost(estimate) if d.price is not None else None
        attempt = Attempt(d.key, started, duration, "error", cls.value, error.status, estimate, cost, detail)
        self.trail.append(attempt if estimate is None else replace(attempt, estimated=True))
        self.errors.append(error)
        if self.rt.observers:
            self.rt.emit(
                AttemptFailed(
                    now,
                    self.request_id,
                    self.route.name,
                    d.key,
                    cls.value,
                    error.status,
                    duration,
                    detail,
                    error.after_first_token,
                )
            )
        if estimate is not None:
            self.charge(d, estimate, cost, served=False, estimated=True)
        elif cost is None:  # it may have been billed, and reported nothing
            self.charge(d, Usage.UNKNOWN, None, served=False)
        self.unhold(d)
        return error

    def abandoned(
        self, h: DeploymentHealth, ticket: Ticket, d: Deployment, started: float, served_by: str | None = None
    ) -> None:
        """The caller cancelled mid-attempt: free the slot, count nothing against the deployment."""
        now = self.rt.clock()
        h.in_flight -= 1
        h.breaker.release(ticket)
        if h.gate is not None:
            self._settle(h, ticket)
        self.charge(d, Usage.UNKNOWN, None, served=False)  # it may have been billed in full
        self.unhold(d)
        self.upstream_time += now - started
        self.trail.append(Attempt(d.key, started, now - started, "error", detail="cancelled by the caller"))
        self.complete(served_by, error_class="cancelled")

    def decide(self, d: Deployment, error: ProviderError, n: int) -> float | None:
        """After failure n on `d`: seconds to wait before retrying it, or None to move on. Raises on "fail"."""
        action = action_for(self.policy, error)
        if action == "fail":
            self.complete(None, error_class=error.error_class.value)
            error.attempts = tuple(self.trail)  # type: ignore[attr-defined]  # the trail, for the sidecar to report
            raise error
        if action == "retry":
            rt = self.rt
            delay = retry_delay(self.policy, error, n, self.deadline - rt.clock(), rt.rng)
            if delay is not None:
                self.slept += delay
                if RetryScheduled in rt.wanted:
                    rt.emit(
                        RetryScheduled(
                            rt.clock(), self.request_id, self.route.name, d.key, error.error_class.value, delay, n + 1
                        )
                    )
                return delay
        self.moved_on(d, error)
        return None

    def moved_on(self, d: Deployment, error: ProviderError) -> None:
        if self.rt.observers:
            self.rt.emit(
                FallbackTaken(self.rt.clock(), self.request_id, self.route.name, d.key, error.error_class.value)
            )

    def spliced(self, continued_from: str, d: Deployment, chars_kept: int) -> Splice:
        """Record that `d` continues a cut stream from the `chars_kept` characters the caller already has."""
        splice = Splice(continued_from, d.key, chars_kept)
        self.splices.append(splice)
        if self.rt.observers:
            self.rt.emit(
                StreamContinued(self.rt.clock(), self.request_id, self.route.name, continued_from, d.key, chars_kept)
            )
        return splice

    def remaining(self) -> float:
        return self.deadline - self.rt.clock()

    # -- the end -----------------------------------------------------------------------------------------
    def exhausted(self) -> TurnoutError:
        """The error for a request nothing could serve, with the most meaningful upstream error as cause; a
        BudgetExhausted when every deployment was skipped for its budget."""
        budget = self.all_over_budget()
        if budget is not None:
            self.complete(None, error_class="budget_exhausted")
            return budget
        cause = most_meaningful(self.errors)
        if cause is None and self.remaining() <= 0:
            cause = UpstreamTimeout(f"deadline of {self.policy.deadline:g}s reached before any upstream answered")
        exc = AllUpstreamsFailed(self.route.name, self.trail, cause)
        exc.__cause__ = cause
        exc.__suppress_context__ = True
        self.complete(None, error_class=cause.error_class.value if cause is not None else "unavailable")
        return exc

    def complete(
        self,
        served_by: str | None,
        *,
        usage: Usage = Usage.UNKNOWN,
        cost: float | None = None,
        error_class: str | None = None,
        ttft: float | None = None,
    ) -> None:
        """Emit the request's one ResponseCompleted (later calls are ignored). A request the caller abandoned
        ends with `error_class="cancelled"`."""
        if self.completed:
            return
        self.completed = True
        rt = self.rt
        if not rt.observers:
            return
        now = rt.clock()
        latency = now - self.started
        overhead = max(0.0, latency - self.upstream_time - self.slept)
        rt.emit(
            ResponseCompleted(
                now,
                self.request_id,
                self.route.name,
                served_by,
                self.request.stream,
                tuple(self.trail),
                usage,
                cost,
                latency,
                ttft,
                error_class,
                overhead,
                tuple(self.splices),
                self.client_name,
                self.tag,
                tuple(self.charges),
            )
        )


def redacted(error: ProviderError, redactor: Redactor) -> ProviderError:
    """`error` with configured secrets masked in its message, code and body: a new error (never the original
    patched, and not chained to it, whose text a traceback print would show), or `error` itself when clean."""
    message, code, body = redactor.secrets(error.message), error.code, error.body
    if code:
        code = redactor.secrets(code)
    if isinstance(body, bytes):
        body = redactor.secrets_bytes(body)
    elif body is not None:
        text = json.dumps(body, default=str)
        masked = redactor.secrets(text)
        if masked != text:
            try:
                body = json.loads(masked)
            except ValueError:
                body = masked
    if message == error.message and code == error.code and body is error.body:
        return error
    clean = provider_error(
        error.error_class,
        message,
        provider=error.provider,
        model=error.model,
        status=error.status,
        code=code,
        retry_after=error.retry_after,
        after_first_token=error.after_first_token,
        body=body,
    )
    clean.__suppress_context__ = True
    return clean


def driver_bug(d: Deployment, exc: Exception) -> ProviderError:
    """A driver let a foreign exception escape: classify it (protocol) instead of crashing the request.

    One foreign exception is the request's own fault, not the driver's or the deployment's: text that cannot be
    encoded as UTF-8 (a lone surrogate, which a JSON `\\ud800` escape produces). It becomes a bad_request, so
    it fails now (by default), is never counted by the breaker and never sent anywhere else.
    """
    if isinstance(exc, UnicodeEncodeError):
        bad = ascii(exc.object[exc.start : exc.end]) if isinstance(exc.object, str) else "a character"
        return BadRequest(
            f"the request contains text that cannot be encoded as UTF-8 ({bad}: a lone surrogate?)",
            provider=d.provider,
            model=d.upstream,
            code=UNENCODABLE,
        )
    log.error("driver for %s raised %r; drivers must raise ProviderError", d.key, exc, exc_info=exc)
    return ProtocolError(f"driver error: {type(exc).__name__}: {exc}", provider=d.provider, model=d.upstream)


def attempt_timeout(d: Deployment, budget: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"no answer within {budget:.3g}s", provider=d.provider, model=d.upstream)


def dispatch_chat(run: Run) -> Awaitable[ChatResponse]:
    """Serve a non-streamed chat request (the coroutine of `dispatch`, so no extra await layer). A request that asks
    for reasoning is fitted to each deployment first; any other pays nothing for it."""
    if run.request.reasoning is None:
        return dispatch(run, _send, _finish)
    return dispatch(run, run.send_fitted, _finish)


def _send(d: Deployment, request: ChatRequest, ctx: CallContext) -> Awaitable[ChatResponse]:
    return d.driver.send(request, ctx)


async def dispatch(run: Run, call: AttemptCall[R], finish: Finish[R, T]) -> T:
    """Serve a non-streamed request: admission (`Run.admit_request`), then the plain nested loop described in the
    module docstring; what the request reserved is released however it ends."""
    try:
        await run.admit_request()
        return await _attempts(run, call, finish)
    finally:
        run.release()


async def _attempts(run: Run, call: AttemptCall[R], finish: Finish[R, T]) -> T:
    rt = run.rt
    policy = run.policy
    monitor = rt.timeouts
    loop_time = asyncio.get_running_loop().time
    for d in run.candidates():
        h = run.entries[d.key]
        n = 0
        while True:
            ticket = h.breaker.acquire()
            if not ticket:
                run.skip(d, "breaker open")
                break
            remaining = run.remaining()
            if remaining <= 0:
                h.breaker.release(ticket)
                raise run.exhausted()
            if d.budget is not None and not run.afford(d, h, ticket):
                break
            if h.gate is not None and not await run.admit(d, h, ticket):
                break
            budget = min(policy.attempt_timeout, run.remaining())
            started = run.begin(d, h)
            ctx = run.context(d, budget)
            guard = monitor.guard(loop_time() + budget)  # the generic timeout, on top of the driver's own
            try:
                response = await call(d, run.request, ctx)
            except ProviderError as exc:
                error = exc
            except asyncio.CancelledError:
                if not guard.expired():
                    run.abandoned(h, ticket, d, started)
                    raise
                error = attempt_timeout(d, budget)
            except Exception as exc:
                error = driver_bug(d, exc)
            else:
                return finish(run, d, h, ticket, started, response)
            finally:
                monitor.release(guard)
                if guard.fired:  # the driver turned our cancellation into something else: undo it
                    guard.expired()
            error = run.failed(d, h, ticket, started, error)
            delay = run.decide(d, error, n)
            if delay is None:
                break
            if delay > 0:
                await rt.sleep(delay)
            n += 1
    raise run.exhausted()


def _finish(
    run: Run, d: Deployment, h: DeploymentHealth, ticket: Ticket, started: float, response: ChatResponse
) -> ChatResponse:
    run.succeeded(d, h, ticket, started, response.usage, None, reply=response)
    cost = request_cost(run.trail)
    run.complete(d.key, usage=response.usage, cost=cost)
    # The constructor directly: dataclasses.replace() introspects the fields on every call.
    return ChatResponse(
        id=response.id,
        model=response.model,
        choices=response.choices,
        usage=response.usage,
        created=response.created,
        extra=response.extra,
        route=run.route.name,
        served_by=d.key,
        attempts=tuple(run.trail),
        cost_usd=cost,
        native=response.native,
        dropped=run.dropped,
    )
