"""The driver interface: one small protocol every wire format implements.

A driver is built from its `ProviderSpec` without I/O. Per call it receives the canonical `ChatRequest` and a
`CallContext` that carries the Router's shared aiohttp session, the upstream model id and the time budget.
Drivers translate every foreign failure into a `turnout.errors.ProviderError` subclass at their boundary;
nothing aiohttp-specific escapes them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from turnout.config import ProviderSpec
from turnout.types import ChatChunk, ChatRequest, ChatResponse

if TYPE_CHECKING:
    import aiohttp

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
    ignore it and always yield single chunks.
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

    def remaining(self) -> float | None:
        """Seconds left for this attempt: the tighter of the attempt timeout and the overall deadline."""
        left = None if self.deadline is None else max(0.0, self.deadline - self.clock())
        if self.attempt_timeout is None:
            return left
        return self.attempt_timeout if left is None else min(left, self.attempt_timeout)


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
