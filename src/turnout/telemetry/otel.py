"""Spans from the Router's typed events (one of the two modules that import OpenTelemetry, with `exporters.py`).

```
chat <route>            SERVER (sidecar: the HTTP request's span, parented by an incoming traceparent)
│                       or INTERNAL (library: a child of the caller's current span)
├── chat <upstream>     CLIENT, one per attempt (a retry is another attempt)
├── chat <upstream>     ...
events on the request span: turnout.retry (each wait), turnout.fallback, turnout.stream_continued,
turnout.breaker.opened / half_opened / closed (decided while serving it), turnout.skip (a deployment passed over)
```

Attributes follow the OpenTelemetry GenAI semantic conventions (`gen_ai.operation.name`, `gen_ai.provider.name`,
`gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.response.id`,
`gen_ai.response.finish_reasons`, `gen_ai.usage.input_tokens` / `output_tokens`, `error.type`, `server.address` /
`server.port`) plus turnout's own `turnout.*` (route, deployment, attempt number, fallback step, error class, the
action taken after a failure, cost, continuation or restart of a cut stream). On the request span the request
model is the route the client asked for; on an attempt's, the upstream model. Prompt and completion text
(`gen_ai.input.messages`, `gen_ai.output.messages`) only with `server.log_content`.

Events of one request are matched by request id, and first through a context variable set when the request
starts: the sidecar answers each request in its own task, so two requests that send the same `x-request-id`
still get their own spans. A request that never ends (a stream nobody reads or closes) is ended as abandoned once
`MAX_OPEN` newer requests are open. A failed attempt's span stays open until the Router decides what to do (retry,
next, continue, fail), so its `turnout.action` is known; it ends at the failure's time.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from turnout.config import Config
from turnout.embeddings import EmbeddingResponse, dimensions_of
from turnout.events import (
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    Event,
    FallbackTaken,
    RequestStarted,
    ResponseCompleted,
    RetryScheduled,
    StreamContinued,
)
from turnout.telemetry.names import DeploymentName, deployment_names, route_steps
from turnout.types import ChatChunk, ChatResponse, Usage

log = logging.getLogger("turnout.telemetry")
MAX_OPEN = 10_000  # requests traced at once before the oldest is ended as abandoned
MAX_CONTENT = 64 * 1024  # characters of prompt or completion text recorded (log_content only)
FLUSH_TIMEOUT_MS = 5000
BREAKER_EVENTS = {
    BreakerOpened: "turnout.breaker.opened",
    BreakerHalfOpened: "turnout.breaker.half_opened",
    BreakerClosed: "turnout.breaker.closed",
}
try:
    VERSION = version("turnout")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    VERSION = "0"


class _Trace:
    """One request's spans while it is served."""

    __slots__ = (
        "attempt", "attempt_key", "continuing", "cut", "done", "failed", "failed_at", "mode", "output", "owned",
        "recording", "reply", "request_id", "restarted", "restarting", "route", "span", "tries",
    )  # fmt: skip

    def __init__(self, request_id: str, route: str, span: Any, owned: bool, mode: str) -> None:
        self.request_id = request_id
        self.route = route
        self.span = span
        self.owned = owned  # False: the sidecar's SERVER span, ended by the HTTP handler
        self.mode = mode  # the route's mid_stream policy
        self.attempt: Any = None  # the attempt span in progress
        self.attempt_key = ""
        self.failed: Any = None  # a failed attempt's span, until the action taken is known
        self.failed_at = 0
        self.cut = False  # the failed attempt broke after its first content reached the caller
        self.tries: dict[str, int] = {}
        self.continuing = False  # the next attempt continues a cut stream
        self.restarting = False  # the next attempt restarts a cut (held back) stream
        self.restarted = False  # some attempt did (mid_stream: restart)
        self.reply: Any = None  # the serving attempt's answer (response model, id, finish reasons)
        self.output: str | None = None
        self.recording = True  # False: sampled out, nothing more is recorded for it
        self.done = False


class _ServerSpan:
    """The sidecar's span of one HTTP request, adopted by the Router request it serves."""

    __slots__ = ("span", "trace")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.trace: _Trace | None = None


_SERVER: contextvars.ContextVar[_ServerSpan | None] = contextvars.ContextVar("turnout_server_span", default=None)
_CURRENT: contextvars.ContextVar[_Trace | None] = contextvars.ContextVar("turnout_trace", default=None)


class Tracing:
    """An Observer that records spans (see the module docstring); one per Router."""

    def __init__(self, provider: Any, config: Config, *, owned: bool, description: str = "on") -> None:
        self.provider = provider
        self.owned = owned  # built by turnout (flushed and shut down with the Router) or the application's
        self.tracer = provider.get_tracer("turnout", VERSION)
        self.description = description  # for the serve banner
        self._open: dict[str, _Trace] = {}
        self._propagator = TraceContextTextMapPropagator()
        self._names: Mapping[str, DeploymentName] = {}
        self._steps: Mapping[str, Mapping[str, int]] = {}
        self._modes: Mapping[str, str] = {}
        self._operations: Mapping[str, str] = {}
        self.propagate_to: frozenset[str] = frozenset()
        self.log_content = False
        self.spec = config.telemetry
        self._dispatch: dict[type, Callable[[Any], None]] = {
            RequestStarted: self._started,
            AttemptStarted: self._attempt_started,
            AttemptSucceeded: self._attempt_succeeded,
            AttemptFailed: self._attempt_failed,
            RetryScheduled: self._retry,
            FallbackTaken: self._fallback,
            StreamContinued: self._continued,
            BreakerOpened: self._breaker,
            BreakerHalfOpened: self._breaker,
            BreakerClosed: self._breaker,
            ResponseCompleted: self._completed,
        }
        self.event_types = frozenset(self._dispatch)

    # -- the Router's side --------------------------------------------------------------------------------
    def use(self, config: Config, graph: Any) -> None:
        """Take a (re)loaded graph: deployment names, chain steps, propagate_to and log_content apply at once."""
        self._names = deployment_names(config)
        self._steps = route_steps(graph)
        self._modes = {name: route.policy.mid_stream for name, route in graph.routes.items()}
        self._operations = {name: getattr(route, "kind", "chat") for name, route in graph.routes.items()}
        self.propagate_to = config.telemetry.propagate_to
        self.log_content = config.server.log_content
        if config.telemetry.identity != self.spec.identity:
            log.warning("telemetry settings changed: restart to apply them (propagate_to is applied now)")
        self.spec = config.telemetry

    def upstream_headers(self, request_id: str, deployment: Any) -> Mapping[str, str] | None:
        """traceparent (and tracestate) of the attempt in progress, for a provider in `propagate_to`."""
        if deployment.provider not in self.propagate_to:
            return None
        current = self._lookup(request_id)
        if current is None:
            return None
        carrier: dict[str, str] = {}  # a sampled-out request sends its own context: the upstream samples it out too
        span = current.attempt if current.attempt is not None else current.span
        self._propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    async def aclose(self) -> None:
        """Flush and shut down a provider turnout built (never the application's)."""
        for open_trace in list(self._open.values()):
            self._abandon(open_trace)
        if not self.owned:
            return

        def shut() -> None:
            self.provider.force_flush(FLUSH_TIMEOUT_MS)
            self.provider.shutdown()

        await asyncio.to_thread(shut)

    def __call__(self, event: Event) -> None:
        handler = self._dispatch.get(type(event))
        if handler is not None:
            handler(event)

    # -- the sidecar's side -------------------------------------------------------------------------------
    def server(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """`handler` inside a SERVER span whose parent is the request's `traceparent` (W3C trace context); the
        Router request it serves records its attributes and attempts on that span."""

        async def traced(request: web.Request) -> web.StreamResponse:
            parent = self._propagator.extract(request.headers)
            host, _, port = (request.host or "").rpartition(":")
            attributes: dict[str, Any] = {
                "http.request.method": request.method,
                "url.path": request.path,
                "url.scheme": request.scheme,
                "server.address": host or request.host,
            }
            if port.isdigit():
                attributes["server.port"] = int(port)
            if request.remote:
                attributes["client.address"] = request.remote
            span = self.tracer.start_span(
                f"{request.method} {request.path}", context=parent, kind=SpanKind.SERVER, attributes=attributes
            )
            holder = _ServerSpan(span)
            token = _SERVER.set(holder)
            attached = otel_context.attach(trace.set_span_in_context(span, parent))
            try:
                response = await handler(request)
            except asyncio.CancelledError:
                span.set_attribute("turnout.cancelled", True)
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            else:
                if span.is_recording():
                    span.set_attribute("http.response.status_code", response.status)
                    if response.status >= 500:
                        span.set_status(Status(StatusCode.ERROR, str(response.status)))
                return response
            finally:
                otel_context.detach(attached)
                _SERVER.reset(token)
                if holder.trace is not None and not holder.trace.done:
                    self._abandon(holder.trace)
                span.end()

        return traced

    # -- events -------------------------------------------------------------------------------------------
    def _lookup(self, request_id: str) -> _Trace | None:
        current = _CURRENT.get()
        if current is not None and current.request_id == request_id and not current.done:
            return current
        return self._open.get(request_id)

    def _started(self, e: RequestStarted) -> None:
        holder = _SERVER.get()
        operation = self._operations.get(e.route, "chat")  # chat | embeddings (the semantic conventions' names)
        name = f"{operation} {e.route}"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": e.route,
            "turnout.route": e.route,
            "turnout.request_id": e.request_id,
            "turnout.stream": e.stream,
        }
        if e.client:
            attributes["turnout.client"] = e.client
        if e.tag:
            attributes["turnout.tag"] = e.tag
        body = getattr(e.request, "body", None)
        if body is not None:
            _request_attributes(attributes, body, self.log_content)
        adopted = holder is not None and holder.trace is None
        if adopted:
            span, owned = holder.span, False
            if span.is_recording():
                span.update_name(name)
                span.set_attributes(attributes)
        else:
            span, owned = self.tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes), True
        current = _Trace(e.request_id, e.route, span, owned, self._modes.get(e.route, "error"))
        current.recording = span.is_recording()
        if adopted:
            holder.trace = current
        _CURRENT.set(current)
        if len(self._open) >= MAX_OPEN:
            self._abandon(self._open.pop(next(iter(self._open))))
        self._open[e.request_id] = current

    def _attempt_started(self, e: AttemptStarted) -> None:
        current = self._lookup(e.request_id)
        if current is None or not current.recording:  # sampled out: its attempts would not be recorded either
            return
        self._settle(current, "next")
        if current.attempt is not None:  # defensive: an attempt that never reported
            current.attempt.end()
        tries = current.tries[e.deployment] = current.tries.get(e.deployment, 0) + 1
        operation = self._operations.get(e.route, "chat")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "turnout.deployment": e.deployment,
            "turnout.attempt": e.number,
        }
        if tries > 1:
            attributes["turnout.retry"] = tries - 1
        step = self._steps.get(e.route, {}).get(e.deployment)
        if step is not None:
            attributes["turnout.fallback_step"] = step
        name = self._names.get(e.deployment)
        upstream = e.deployment
        if name is not None:
            upstream = name.upstream
            attributes["gen_ai.provider.name"] = name.system
            attributes["gen_ai.request.model"] = name.upstream
            if name.address:
                attributes["server.address"] = name.address
                if name.port:
                    attributes["server.port"] = name.port
        if current.continuing:
            attributes["turnout.mid_stream"] = "continue"
        elif current.restarting:
            attributes["turnout.mid_stream"] = "restart"
            current.restarted = True
        current.continuing = current.restarting = False
        context = trace.set_span_in_context(current.span)
        current.attempt = self.tracer.start_span(
            f"{operation} {upstream}", context=context, kind=SpanKind.CLIENT, attributes=attributes
        )
        current.attempt_key = e.deployment

    def _attempt_succeeded(self, e: AttemptSucceeded) -> None:
        current = self._lookup(e.request_id)
        if current is None or current.attempt is None:
            return
        attributes: dict[str, Any] = {}
        _usage(attributes, e.usage)
        if e.cost_usd is not None:
            attributes["turnout.cost_usd"] = e.cost_usd
        if e.time_to_first_token is not None:
            attributes["turnout.time_to_first_token"] = e.time_to_first_token
        _reply(attributes, e.reply)
        current.reply = e.reply
        if self.log_content and isinstance(e.reply, ChatResponse):
            current.output = e.reply.text
        span = current.attempt
        span.set_attributes(attributes)
        span.end()
        current.attempt = None

    def _attempt_failed(self, e: AttemptFailed) -> None:
        current = self._lookup(e.request_id)
        if current is None or current.attempt is None:
            return
        attributes: dict[str, Any] = {"error.type": e.error_class, "turnout.error_class": e.error_class}
        if e.status is not None:
            attributes["http.response.status_code"] = e.status
        if e.after_first_token:
            attributes["turnout.after_first_token"] = True
        if self.log_content and e.message:
            attributes["turnout.error.message"] = e.message
        span = current.attempt
        span.set_attributes(attributes)
        span.set_status(Status(StatusCode.ERROR, e.error_class))
        current.failed, current.failed_at, current.attempt = span, time.time_ns(), None
        current.cut = e.after_first_token
        current.restarting = e.after_first_token and current.mode == "restart"

    def _retry(self, e: RetryScheduled) -> None:
        current = self._lookup(e.request_id)
        if current is None or not current.recording:
            return
        current.span.add_event(
            "turnout.retry",
            {
                "turnout.deployment": e.deployment,
                "error.type": e.error_class,
                "turnout.retry.delay": e.delay,
                "turnout.retry.number": e.retry,
            },
        )
        if current.failed is not None:
            current.failed.set_attribute("turnout.retry.delay", e.delay)
        self._settle(current, "retry")

    def _fallback(self, e: FallbackTaken) -> None:
        current = self._lookup(e.request_id)
        if current is None or not current.recording:
            return
        current.span.add_event(
            "turnout.fallback", {"turnout.deployment": e.from_deployment, "error.type": e.error_class}
        )
        if current.failed is not None and current.cut and current.mode == "continue":
            current.continuing = True
            self._settle(current, "continue")
        else:
            self._settle(current, "next")

    def _continued(self, e: StreamContinued) -> None:
        current = self._lookup(e.request_id)
        if current is None or not current.recording:
            return
        attributes = {"turnout.continued_from": e.continued_from, "turnout.chars_kept": e.chars_kept}
        if current.attempt is not None:
            current.attempt.set_attributes({**attributes, "turnout.mid_stream": "continue"})
        current.span.add_event("turnout.stream_continued", {**attributes, "turnout.deployment": e.deployment})

    def _breaker(self, e: BreakerOpened | BreakerHalfOpened | BreakerClosed) -> None:
        """A breaker decision made while serving the current request (another replica's news has an origin)."""
        current = _CURRENT.get()
        if current is None or current.done or not current.recording or e.origin is not None:
            return
        attributes: dict[str, Any] = {"turnout.deployment": e.deployment}
        if e.open_for is not None:
            attributes["turnout.breaker.open_for"] = e.open_for
        current.span.add_event(BREAKER_EVENTS[type(e)], attributes)

    def _completed(self, e: ResponseCompleted) -> None:
        current = self._lookup(e.request_id)
        if current is None:
            return
        current.done = True
        if self._open.get(e.request_id) is current:
            del self._open[e.request_id]
        if current.recording:
            self._record_end(current, e)
        if current.owned:
            current.span.end()

    def _record_end(self, current: _Trace, e: ResponseCompleted) -> None:
        """The request span's outcome: what served it, usage, cost, attempts, skips, the error if any."""
        cancelled = e.error_class == "cancelled"
        self._settle(current, "cancelled" if cancelled else "fail")
        if current.attempt is not None:  # the caller went away mid-attempt
            current.attempt.set_attribute("turnout.action", "cancelled")
            current.attempt.end()
            current.attempt = None
        span = current.span
        tried = [a for a in e.attempts if a.outcome != "skipped"]
        attributes: dict[str, Any] = {
            "turnout.attempts": len(tried),
            "turnout.fallbacks": len({a.deployment for a in tried}) - (1 if tried else 0),
        }
        if e.router_overhead is not None:
            attributes["turnout.router_overhead"] = e.router_overhead
        if e.time_to_first_token is not None:
            attributes["turnout.time_to_first_token"] = e.time_to_first_token
        if e.cost_usd is not None:
            attributes["turnout.cost_usd"] = e.cost_usd
        if e.served_by:
            attributes["turnout.served_by"] = e.served_by
            name = self._names.get(e.served_by)
            if name is not None:
                attributes["gen_ai.provider.name"] = name.system
            _reply(attributes, current.reply)
        _usage(attributes, e.usage)
        if e.splices:
            attributes["turnout.stream.continued"] = True
            attributes["turnout.stream.continued_from"] = [s.continued_from for s in e.splices]
        if current.restarted:
            attributes["turnout.stream.restarted"] = True
        if cancelled:
            attributes["turnout.cancelled"] = True
        elif e.error_class is not None:
            attributes["error.type"] = attributes["turnout.error_class"] = e.error_class
            span.set_status(Status(StatusCode.ERROR, e.error_class))
        if self.log_content and current.output is not None:
            output = json.dumps([{"role": "assistant", "content": current.output}])
            attributes["gen_ai.output.messages"] = _clip(output)
        span.set_attributes(attributes)
        self._skips(span, e)

    # -- helpers ------------------------------------------------------------------------------------------
    def _settle(self, current: _Trace, action: str) -> None:
        """End the failed attempt's span with the action taken after it, at the failure's time."""
        failed = current.failed
        if failed is None:
            return
        failed.set_attribute("turnout.action", action)
        failed.end(end_time=current.failed_at)
        current.failed = None

    def _skips(self, span: Any, e: ResponseCompleted) -> None:
        """A turnout.skip event per deployment passed over (breaker open, at its limit, lacking a capability)."""
        now = time.time_ns()
        for a in e.attempts:
            if a.outcome == "skipped":
                at = now - int(max(0.0, e.at - a.started_at) * 1e9)
                span.add_event(
                    "turnout.skip", {"turnout.deployment": a.deployment, "turnout.skip.reason": a.detail}, timestamp=at
                )

    def _abandon(self, current: _Trace) -> None:
        """End what is still open of a request that will never report its end."""
        if current.done:
            return
        current.done = True
        self._settle(current, "abandoned")
        if current.attempt is not None:
            current.attempt.set_attribute("turnout.action", "abandoned")
            current.attempt.end()
        current.span.set_attribute("turnout.abandoned", True)
        if current.owned:
            current.span.end()
        if self._open.get(current.request_id) is current:
            del self._open[current.request_id]


def _usage(into: dict[str, Any], usage: Usage | None) -> None:
    if usage is None:
        return
    if usage.prompt_tokens is not None:
        into["gen_ai.usage.input_tokens"] = usage.prompt_tokens
    if usage.completion_tokens is not None:
        into["gen_ai.usage.output_tokens"] = usage.completion_tokens
    if usage.cached_tokens:
        into["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens


def _reply(into: dict[str, Any], reply: Any) -> None:
    """gen_ai.response.model / id / finish_reasons from an answer, a stream's final chunk or embeddings."""
    if isinstance(reply, ChatResponse):
        if reply.model:
            into["gen_ai.response.model"] = reply.model
        if reply.id:
            into["gen_ai.response.id"] = reply.id
        reasons = [str(c.get("finish_reason")) for c in reply.choices if c.get("finish_reason")]
        if reasons:
            into["gen_ai.response.finish_reasons"] = reasons
    elif isinstance(reply, ChatChunk):
        data = reply.data
        if isinstance(data.get("model"), str) and data["model"]:
            into["gen_ai.response.model"] = data["model"]
        if isinstance(data.get("id"), str) and data["id"]:
            into["gen_ai.response.id"] = data["id"]
        if reply.finish_reason:
            into["gen_ai.response.finish_reasons"] = [reply.finish_reason]
    elif isinstance(reply, EmbeddingResponse):
        if reply.model:
            into["gen_ai.response.model"] = reply.model
        if reply.vectors:
            into["gen_ai.embeddings.dimension.count"] = dimensions_of(reply.vectors[0])


def _request_attributes(into: dict[str, Any], body: Mapping[str, Any], with_content: bool) -> None:
    """The request's sampling settings (gen_ai.request.*) and, with log_content, its messages."""
    for key, attribute in (
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("max_completion_tokens", "gen_ai.request.max_tokens"),
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("seed", "gen_ai.request.seed"),
    ):
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            into[attribute] = value
    if with_content:
        into["gen_ai.input.messages"] = _clip(json.dumps(body.get("messages"), default=str))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CONTENT else text[:MAX_CONTENT] + "…[truncated]"
