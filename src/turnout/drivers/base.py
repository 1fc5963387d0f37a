"""The driver interface: one small protocol every wire format implements.

A driver is built from its `ProviderSpec` without I/O. Per call it receives the canonical `ChatRequest` and a
`CallContext` that carries the Router's shared aiohttp session, the upstream model id and the time budget.
Drivers translate every foreign failure into a `turnout.errors.ProviderError` subclass at their boundary;
nothing aiohttp-specific escapes them.

What a driver can honour may depend on its options (the `openai` driver continues a prefix only when told the
upstream's prefill dialect). Beyond the protocol, a driver class may therefore define, all optional:
- `capabilities_for(options, model_options) -> frozenset[str]` (a classmethod): what it honours for one model, given
  the provider's and the model's options; without it, its `capabilities` attribute is used (`honoured()` below);
- `model_options_schema`: a JSON Schema for a model's `options` (checked, located, when the file loads);
- `capability_hints`: capability -> how to make the driver honour it (added to the load error);
- `native_formats`: the client wire formats (`NativeRequest.format`) it sends as the client wrote them instead of
  translating the canonical body (the `anthropic` driver: `"anthropic.messages"`). A request whose content has no
  canonical form (`NativeRequest.untranslatable`) is served only by such a driver. A driver whose answer depends on
  the model defines `native_formats_for(model_options)` instead (the `openai` driver serves `"openai.responses"`
  for OpenAI's own API and for models that declare `responses: true`).
A model whose `supports` declares what its driver cannot honour is a located error when the file loads.

Embeddings are optional too: a driver that can serve them defines `embed(request, ctx)` (see `EmbeddingsDriver`),
and `embedding_token_input = True` when its upstream takes token-id arrays as input. An embeddings model on a
driver without `embed` is a located error when the file loads.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from turnout.config import ProviderSpec
from turnout.embeddings import EmbeddingRequest, EmbeddingResponse
from turnout.types import ChatChunk, ChatRequest, ChatResponse

if TYPE_CHECKING:
    import aiohttp

    from turnout.drivers._egress import Egress

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CallContext:
    """What one upstream call may use: the shared session, the upstream model, and its time budget.

    `deadline` is absolute on `clock` (the request's overall deadline); `attempt_timeout` bounds this attempt;
    for streams `first_token_timeout` bounds the wait for the first content chunk and `stall_timeout` every
    later gap. `None` means "no limit" for each of them. `model_options` are the model's `options` from the
    routing file (e.g. `max_tokens_param: max_completion_tokens`). `guarded` is True when the caller (the Router)
    already enforces `remaining()` and the stream timeouts with its own timer: drivers then skip arming per-request
    timers of their own (aiohttp's costs ~15 us per call), but must still never block past `remaining()`
    when `guarded` is False. `batch` is True when the consumer forwards bytes and accepts `ChunkBatch` items
    (consecutive plain chunks of one read, after the first content and before the finish reason); a driver may
    ignore it and always yield single chunks. `egress` holds the sessions for URLs a client sent (image fetches;
    see `turnout.drivers._egress`), never the upstream session; None makes such a fetch use a session of its own.
    An embeddings call gets an `EmbeddingContext`, which adds the model's length; a chat attempt whose trace context
    goes upstream (`telemetry.propagate_to`) a `TracedContext`, whose `headers` the `_http` helpers send.
    """

    session: aiohttp.ClientSession
    model: str
    deadline: float | None = None
    attempt_timeout: float | None = None
    first_token_timeout: float | None = None
    stall_timeout: float | None = None
    connect_timeout: float | None = None
    model_options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    clock: Callable[[], float] = time.monotonic
    guarded: bool = False
    batch: bool = False
    egress: Egress | None = None
    headers: ClassVar[Mapping[str, str] | None] = None  # extra upstream headers: only a TracedContext has them

    def remaining(self) -> float | None:
        """Seconds left for this attempt: the tighter of the attempt timeout and the overall deadline."""
        left = None if self.deadline is None else max(0.0, self.deadline - self.clock())
        if self.attempt_timeout is None:
            return left
        return self.attempt_timeout if left is None else min(left, self.attempt_timeout)


@dataclass(frozen=True, slots=True)
class EmbeddingContext(CallContext):
    """A `CallContext` for one embeddings call. `dimensions` is the length the model returns by default (its
    `dimensions` in the routing file): a driver asks its upstream for another length only when the request's
    `dimensions` differs from it. (A subclass, not a field of CallContext: every chat attempt builds a context, and
    a field it never reads would cost it.)"""

    dimensions: int | None = None


@dataclass(frozen=True, slots=True)
class TracedContext(CallContext):
    """A `CallContext` whose attempt sends `headers` upstream (the trace context, `traceparent`/`tracestate`).
    A subclass for the same reason as EmbeddingContext: the field would cost every untraced attempt."""

    headers: Mapping[str, str] | None = None  # type: ignore[misc]


def offers_embeddings(driver: Any) -> bool:
    """True when `driver` (a class or an instance) can serve embeddings (it defines `embed`)."""
    return callable(getattr(driver, "embed", None))


def honoured(
    driver: Any, options: Mapping[str, Any], model_options: Mapping[str, Any] = _EMPTY
) -> frozenset[str] | None:
    """The capabilities `driver` (a class or an instance) honours for one model; None when it does not say."""
    capabilities_for = getattr(driver, "capabilities_for", None)
    if callable(capabilities_for):
        return frozenset(capabilities_for(options, model_options))
    declared = getattr(driver, "capabilities", None)
    return frozenset(declared) if isinstance(declared, frozenset | set) else None


def unhonoured(
    driver: Any, supports: Sequence[str], options: Mapping[str, Any], model_options: Mapping[str, Any] = _EMPTY
) -> list[tuple[int, str]]:
    """(index, message) for each entry of a model's `supports` that `driver` cannot honour with these options."""
    offers = honoured(driver, options, model_options)
    if offers is None:
        return []
    name = getattr(driver, "name", type(driver).__name__)
    hints: Mapping[str, str] = getattr(driver, "capability_hints", None) or _EMPTY
    out = []
    for index, capability in enumerate(supports):
        if capability not in offers:
            hint = hints.get(capability) or f"it offers {', '.join(sorted(offers)) or 'nothing'}"
            out.append((index, f"driver '{name}' cannot honour '{capability}' for this model: {hint}"))
    return out


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    owned_by: str = ""
    context_window: int | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """Result of a cheap authenticated call. Never an exception for a bad key: `ok=False` with the reason."""

    provider: str
    ok: bool
    status: int | None = None
    error_class: str | None = None
    message: str = ""
    latency: float | None = None


@runtime_checkable
class Driver(Protocol):
    """One wire format. Instances are immutable after construction and safe to share across tasks."""

    name: ClassVar[str]
    options_schema: ClassVar[Mapping[str, Any]]
    capabilities: frozenset[str]
    spec: ProviderSpec

    def __init__(self, spec: ProviderSpec) -> None: ...

    async def send(self, request: ChatRequest, ctx: CallContext) -> ChatResponse: ...

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk]:
        """Yield chunks; the last one has `usage` set (Usage.UNKNOWN if the provider sent none) and the
        stream's `finish_reason`. A failure at any point raises a ProviderError."""
        ...

    async def list_models(self, ctx: CallContext) -> list[ModelInfo]: ...

    async def check_credentials(self, ctx: CallContext) -> CredentialCheck: ...


@runtime_checkable
class EmbeddingsDriver(Protocol):
    """What a driver adds to serve embeddings (optional; see the module docstring)."""

    embedding_token_input: ClassVar[bool]

    async def embed(self, request: EmbeddingRequest, ctx: EmbeddingContext) -> EmbeddingResponse:
        """One vector per input, in order. Ask the upstream for `request.dimensions` only when it differs from
        `ctx.dimensions`; refuse token-id inputs (BadRequest, never sent) unless `embedding_token_input`. Usage is
        `Usage.UNKNOWN` when the upstream reports none. A failure raises a ProviderError."""
        ...
