"""The `mock` driver: an in-process provider for demos, tests and fault drills (no HTTP, no keys).

It answers with an echo of the last user message (or a fixed `reply`), with plausible usage (prompt ~ chars/4 plus
4 per message; completion = reply tokens, a "token" being a word with its trailing space), paced by `latency` and
`tokens_per_second`. Scripted `faults` make it fail exactly as an HTTP upstream would (a `status` fault goes through
`_http.classify_status`).

Per-request directives: with `request_directives: true` in the provider's options, a body key `turnout_mock` (the
same keys as the options, minus `seed` and `request_directives`) overrides the options for that request, e.g.
`{"turnout_mock": {"faults": [{"kind": "cut", "after_chunks": 3}]}}`. They are off by default, because whoever can
send a request could then script this provider's failures, and a scripted fault counts against its breaker like a
real one: enable them only on a provider that serves drill routes. A provider without the option treats the key
like every HTTP driver does: as an unknown parameter it ignores (so a drill that fails over to a plain mock is
answered by it, unscripted).

Fault kinds (each `{kind, probability=1, ...}`; per request the first fault whose probability roll succeeds acts):
`status` (status, body, retry_after), `drop` (connection reset), `hang` (never answers: times out at the attempt's
budget), `cut` (stream broken after `after_chunks` content chunks), `stall` (pause `duration` after `after_chunks`),
`malformed` (protocol error after `after_chunks`), `no_terminator` (stream ends unfinished after `after_chunks`,
default all), `refusal` (content_policy), `context_length` (context_window), `slow` (extra `duration` first).

Randomness (fault probabilities) comes from one `random.Random(seed)` per driver instance: the only state a mock
keeps, so a seeded drill replays identically.

The mock never holds the event loop: an unpaced stream (`tokens_per_second: 0`) hands control back every
`YIELD_EVERY` chunks, and the answer is produced lazily, token by token, so a huge echoed prompt costs neither a
long stall nor a list of every chunk up front.

Embeddings (`embed`): deterministic unit vectors (`mock_vectors`) of the model's `dimensions`, or the shorter length
a request asks for; the same latency and faults apply, as to a non-streamed chat request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, ClassVar

from turnout.config import ProviderSpec
from turnout.drivers._http import classify_status, validate_options
from turnout.drivers.base import CallContext, CredentialCheck, EmbeddingContext, ModelInfo
from turnout.drivers.mock_vectors import DEFAULT_DIMENSIONS, estimate_tokens, mock_vector
from turnout.embeddings import EmbeddingRequest, EmbeddingResponse
from turnout.errors import (
    BadRequest,
    ContentPolicyError,
    ContextWindowExceeded,
    ProtocolError,
    ProviderError,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from turnout.types import ChatChunk, ChatRequest, ChatResponse, Usage, chunk_data, usage_chunk_data

FAULT_KINDS = (
    "status",
    "drop",
    "hang",
    "cut",
    "stall",
    "malformed",
    "no_terminator",
    "refusal",
    "context_length",
    "slow",
)
_DURATION = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$"}]}
_FAULT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind"],
    "properties": {
        "kind": {"enum": list(FAULT_KINDS)},
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "body": {},
        "retry_after": _DURATION,
        "after_chunks": {"type": "integer", "minimum": 0},
        "duration": _DURATION,
        "message": {"type": "string"},
    },
}
_OPTIONS = {
    "reply": {"type": "string", "description": "'echo' (the last user message) or a fixed reply"},
    "latency": {**_DURATION, "description": "wait before the answer / first token"},
    "tokens_per_second": {"type": "number", "minimum": 0, "description": "streaming pace; 0 = no pause"},
    "chunk_tokens": {"type": "integer", "minimum": 1, "description": "tokens per streamed chunk"},
    "tool_call": {"type": "boolean", "description": "call the first offered tool when the request has tools"},
    "seed": {"type": "integer", "description": "seed of the fault-probability rolls (replayable drills)"},
    "faults": {"type": "array", "items": _FAULT, "description": "scripted failures (see the driver docs)"},
    "request_directives": {
        "type": "boolean",
        "description": "honour a per-request `turnout_mock` body key (fault drills); off by default, since any "
        "client could then script this provider's failures and open its breaker",
    },
}
OPTIONS_SCHEMA: Mapping[str, Any] = MappingProxyType(
    {"type": "object", "additionalProperties": False, "properties": _OPTIONS}
)
# The per-request directive: the same keys minus the seed (the instance's random stream is shared) and the switch.
DIRECTIVE_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {k: v for k, v in _OPTIONS.items() if k not in ("seed", "request_directives")},
}
MAX_DIRECTIVE_DEPTH = 32  # a directive is a handful of nested objects; deeper is a hostile body
YIELD_EVERY = 32  # chunks an unpaced stream emits before handing the event loop back
_TOKEN = re.compile(r"\S+\s*|\s+")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_TEXT = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like "5ms", "1.5s", "2m"."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION_TEXT.match(str(value))
    if match is None:
        raise ValueError(f"not a duration: {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    probability: float = 1.0
    status: int = 500
    body: Any = None
    retry_after: float | None = None
    after_chunks: int | None = None
    duration: float = 0.0
    message: str = ""

    @property
    def at(self) -> int:
        """Content chunks emitted before a mid-stream fault strikes (default 1; no_terminator: after all)."""
        if self.after_chunks is not None:
            return self.after_chunks
        return 1_000_000_000 if self.kind == "no_terminator" else 1

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Fault:
        return cls(
            kind=raw["kind"],
            probability=float(raw.get("probability", 1.0)),
            status=int(raw.get("status", 500)),
            body=raw.get("body"),
            retry_after=parse_duration(raw["retry_after"]) if "retry_after" in raw else None,
            after_chunks=raw.get("after_chunks"),
            duration=parse_duration(raw.get("duration", 0)),
            message=str(raw.get("message", "")),
        )


@dataclass(frozen=True, slots=True)
class Behaviour:
    """Resolved mock settings for one request (provider options, overridden by the request's directive)."""

    reply: str = "echo"
    latency: float = 0.0
    tokens_per_second: float = 0.0
    chunk_tokens: int = 1
    tool_call: bool = False
    faults: tuple[Fault, ...] = ()

    def merged(self, raw: Mapping[str, Any]) -> Behaviour:
        changes: dict[str, Any] = {}
        for key in ("reply", "tool_call"):
            if key in raw:
                changes[key] = raw[key]
        if "latency" in raw:
            changes["latency"] = parse_duration(raw["latency"])
        if "tokens_per_second" in raw:
            changes["tokens_per_second"] = float(raw["tokens_per_second"])
        if "chunk_tokens" in raw:
            changes["chunk_tokens"] = int(raw["chunk_tokens"])
        if "faults" in raw:
            changes["faults"] = tuple(Fault.parse(f) for f in raw["faults"])
        return replace(self, **changes)


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply `value` nests lists/objects, looking no deeper than `limit + 1` (iterative: no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, Mapping) else item))
    return deepest


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                texts = (p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
                return " ".join(texts)
            return ""
    return ""


def estimate_prompt_tokens(request: ChatRequest) -> int:
    chars = len(request.assistant_prefix or "")
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return math.ceil(chars / 4) + 4 * len(request.messages)


def _tool_arguments(tool: Mapping[str, Any], text: str) -> dict[str, Any]:
    """Plausible arguments: every required property filled by its type (strings get the user's text)."""
    params = tool["function"].get("parameters")
    params = params if isinstance(params, Mapping) else {}
    props = params.get("properties") if isinstance(params.get("properties"), Mapping) else {}
    required = params.get("required") if isinstance(params.get("required"), list | tuple) else ()
    samples = {"string": text, "number": 1, "integer": 1, "boolean": True, "array": [], "object": {}}
    out: dict[str, Any] = {}
    for name in required:
        prop = props.get(name) if isinstance(name, str) else None
        if isinstance(name, str):
            kind = prop.get("type") if isinstance(prop, Mapping) else None
            out[name] = samples.get(kind) if isinstance(kind, str) else None
    return out


def _tool_deltas(call: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], int]]:
    """(delta, tokens in it) for a streamed tool call: the opening delta, then the arguments token by token."""
    fn = {"name": call["function"]["name"], "arguments": ""}
    yield {"tool_calls": [{"index": 0, "id": call["id"], "type": "function", "function": fn}]}, 0
    for match in _TOKEN.finditer(call["function"]["arguments"]):
        yield {"tool_calls": [{"index": 0, "function": {"arguments": match.group()}}]}, 1


class MockDriver:
    """In-process provider; see the module docstring for options, faults and the per-request directive."""

    name: ClassVar[str] = "mock"
    options_schema: ClassVar[Mapping[str, Any]] = OPTIONS_SCHEMA
    capabilities: frozenset[str] = frozenset({"tools", "vision", "json", "prefill", "streaming"})
    capability_hints: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"reasoning": "the mock does not reason: leave reasoning out (a reasoning request on it is answered without)"}
    )
    embedding_token_input: ClassVar[bool] = True

    def __init__(self, spec: ProviderSpec) -> None:
        validate_options(self.name, spec.name, self.options_schema, spec.options)
        self.spec = spec
        self._base = Behaviour().merged(spec.options)
        self._directives = bool(spec.options.get("request_directives", False))
        self._rng = random.Random(spec.options.get("seed"))
        self._ids = itertools.count(1)

    # -- planning

    def _behaviour(self, request: ChatRequest | EmbeddingRequest) -> Behaviour:
        directive = request.body.get("turnout_mock")
        if directive is None or not self._directives:
            return self._base  # directives are for providers that opted in; others ignore the key, as HTTP drivers do
        if nesting_depth(directive, MAX_DIRECTIVE_DEPTH) > MAX_DIRECTIVE_DEPTH:
            raise BadRequest(
                f"turnout_mock is nested too deeply (more than {MAX_DIRECTIVE_DEPTH} levels)",
                provider=self.spec.name,
                code="invalid_turnout_mock",
            )
        try:
            validate_options(self.name, self.spec.name, DIRECTIVE_SCHEMA, directive)
        except ValueError as exc:
            raise BadRequest(
                str(exc).replace("options", "turnout_mock", 1), provider=self.spec.name, code="invalid_turnout_mock"
            ) from None
        return self._base.merged(directive)

    def _pick_fault(self, behaviour: Behaviour) -> Fault | None:
        for fault in behaviour.faults:
            if fault.probability >= 1.0 or self._rng.random() < fault.probability:
                return fault
        return None

    def _reply(self, request: ChatRequest, behaviour: Behaviour) -> str:
        text = last_user_text(request.messages) if behaviour.reply == "echo" else behaviour.reply
        response_format = request.body.get("response_format")
        if isinstance(response_format, Mapping) and response_format.get("type") in ("json_object", "json_schema"):
            text = json.dumps({"reply": text})
        prefix = request.assistant_prefix
        if prefix:
            return text[len(prefix) :] if text.startswith(prefix) else text
        return text

    def _tool(self, request: ChatRequest, behaviour: Behaviour) -> Mapping[str, Any] | None:
        tools = request.body.get("tools")
        if not behaviour.tool_call or not tools or request.messages[-1].get("role") != "user":
            return None
        return tools[0] if isinstance(tools[0], Mapping) and isinstance(tools[0].get("function"), Mapping) else None

    # -- failures

    def _error(self, cls: type[ProviderError], message: str, ctx: CallContext, **fields: Any) -> ProviderError:
        return cls(message, provider=self.spec.name, model=ctx.model, **fields)

    async def _sleep(self, seconds: float, ctx: CallContext, limit: float | None, after: bool) -> None:
        """Sleep, but never past the attempt's budget or `limit`: hitting either raises UpstreamTimeout."""
        budget = [t for t in (ctx.remaining(), limit) if t is not None]
        cap = min(budget) if budget else None
        if cap is not None and seconds > cap:
            await asyncio.sleep(cap)
            raise self._error(UpstreamTimeout, f"mock: no data for {cap:.3f}s", ctx, after_first_token=after)
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _before_answer(
        self, fault: Fault | None, behaviour: Behaviour, ctx: CallContext, *, stream: bool
    ) -> None:
        """Latency and the faults that strike before any output (streams also honour first_token_timeout)."""
        delay = behaviour.latency + (fault.duration if fault is not None and fault.kind == "slow" else 0.0)
        if fault is not None and fault.kind == "hang":
            delay = math.inf
        await self._sleep(delay, ctx, ctx.first_token_timeout if stream else None, after=False)
        if fault is None:
            return
        if fault.kind == "status":
            body = fault.body
            if body is None:
                body = {"error": {"message": fault.message or f"mock fault: HTTP {fault.status}", "type": "mock"}}
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            headers = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            raise classify_status(fault.status, raw, headers, provider=self.spec.name, model=ctx.model)
        if fault.kind == "drop":
            raise self._error(UpstreamConnectionError, "mock: connection reset by peer", ctx)
        if fault.kind == "refusal":
            message = fault.message or "mock: the request was refused by the content policy"
            raise self._error(ContentPolicyError, message, ctx, status=400, code="content_filter")
        if fault.kind == "context_length":
            message = fault.message or "mock: this model's maximum context length was exceeded"
            raise self._error(ContextWindowExceeded, message, ctx, status=400, code="context_length_exceeded")

    def _mid_fault(self, fault: Fault | None, emitted: int, ctx: CallContext) -> ProviderError | None:
        """The failure (if any) that strikes after `emitted` content chunks."""
        if fault is None or fault.kind not in ("cut", "malformed") or emitted != fault.at:
            return None
        after = emitted > 0
        if fault.kind == "cut":
            message = "mock: stream cut by the upstream"
            return self._error(UpstreamConnectionError, message, ctx, after_first_token=after)
        return self._error(ProtocolError, "mock: upstream sent invalid JSON", ctx, after_first_token=after)

    # -- calls

    async def _whole_answer(self, request: ChatRequest | EmbeddingRequest, ctx: CallContext) -> Behaviour:
        """Latency and faults of a non-streamed answer (chat or embeddings); returns the request's behaviour."""
        behaviour = self._behaviour(request)
        fault = self._pick_fault(behaviour)
        await self._before_answer(fault, behaviour, ctx, stream=False)
        if fault is not None and fault.kind == "stall":
            await self._sleep(fault.duration, ctx, None, after=False)
        if fault is not None and fault.kind == "cut":
            raise self._error(UpstreamConnectionError, "mock: connection broke while reading the body", ctx)
        if fault is not None and fault.kind in ("malformed", "no_terminator"):
            raise self._error(ProtocolError, "mock: upstream sent a truncated JSON body", ctx)
        return behaviour

    async def send(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        behaviour = await self._whole_answer(request, ctx)
        tool = self._tool(request, behaviour)
        if tool is not None:
            call = self._tool_call(request, tool, 0)
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish, completion = "tool_calls", len(_TOKEN.findall(call["function"]["arguments"]))
        else:
            text = self._reply(request, behaviour)
            message = {"role": "assistant", "content": text, "refusal": None}
            finish, completion = "stop", len(_TOKEN.findall(text))
        return ChatResponse(
            id=f"chatcmpl-mock{next(self._ids)}",
            model=ctx.model,
            choices=({"index": 0, "message": message, "logprobs": None, "finish_reason": finish},),
            usage=Usage(estimate_prompt_tokens(request), completion),
            created=int(time.time()),
        )

    def _tool_call(self, request: ChatRequest, tool: Mapping[str, Any], index: int) -> dict[str, Any]:
        name = str(tool["function"].get("name") or "tool")
        args = _tool_arguments(tool, last_user_text(request.messages))
        function = {"name": name, "arguments": json.dumps(args)}
        return {"id": f"call_mock{index}", "type": "function", "function": function}

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk]:
        behaviour = self._behaviour(request)
        fault = self._pick_fault(behaviour)
        await self._before_answer(fault, behaviour, ctx, stream=True)
        ident, created = f"chatcmpl-mock{next(self._ids)}", int(time.time())

        def chunk(delta: Mapping[str, Any], finish: str | None = None) -> dict[str, Any]:
            return chunk_data(id=ident, model=ctx.model, created=created, delta=delta, finish_reason=finish)

        if request.assistant_prefix is None:
            yield ChatChunk(data=chunk({"role": "assistant", "content": ""}))
        tool = self._tool(request, behaviour)
        deltas = (
            self._content_deltas(request, behaviour)
            if tool is None
            else _tool_deltas(self._tool_call(request, tool, 0))
        )
        finish = "stop" if tool is None else "tool_calls"
        pause = behaviour.chunk_tokens / behaviour.tokens_per_second if behaviour.tokens_per_second else 0.0
        emitted = completion = 0
        for delta, tokens in deltas:
            error = self._mid_fault(fault, emitted, ctx)
            if error is not None:
                raise error
            if fault is not None and fault.kind == "stall" and emitted == fault.at:
                limit = ctx.stall_timeout if emitted else ctx.first_token_timeout
                await self._sleep(fault.duration, ctx, limit, after=emitted > 0)
            if fault is not None and fault.kind == "no_terminator" and emitted == fault.at:
                break
            if emitted and pause:
                await self._sleep(pause, ctx, ctx.stall_timeout, after=True)
            elif emitted % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # unpaced: let the rest of the server run between bursts
            yield ChatChunk(data=chunk(delta), is_content=True)
            emitted += 1
            completion += tokens
        else:
            error = self._mid_fault(fault, emitted, ctx)
            if error is not None:
                raise error
        if fault is not None and fault.kind == "no_terminator":
            raise self._error(
                ProtocolError, "mock: stream ended before the answer was complete", ctx, after_first_token=emitted > 0
            )
        usage = Usage(estimate_prompt_tokens(request), completion)
        yield ChatChunk(data=chunk({}, finish), finish_reason=finish)
        final = usage_chunk_data(id=ident, model=ctx.model, created=created, usage=usage)
        yield ChatChunk(data=final, finish_reason=finish, usage=usage, usage_only=True)

    def _content_deltas(self, request: ChatRequest, behaviour: Behaviour) -> Iterator[tuple[dict[str, Any], int]]:
        """(delta, tokens in it) for the text answer, `chunk_tokens` tokens at a time, produced lazily."""
        size = behaviour.chunk_tokens
        group: list[str] = []
        for match in _TOKEN.finditer(self._reply(request, behaviour)):
            group.append(match.group())
            if len(group) == size:
                yield {"content": "".join(group)}, size
                group = []
        if group:
            yield {"content": "".join(group)}, len(group)

    async def embed(self, request: EmbeddingRequest, ctx: EmbeddingContext) -> EmbeddingResponse:
        """Deterministic unit vectors, one per input (see `mock_vectors`)."""
        await self._whole_answer(request, ctx)
        size = ctx.dimensions or DEFAULT_DIMENSIONS
        length = request.dimensions or size
        if length > size:
            raise self._error(
                BadRequest, f"mock: this model returns at most {size} dimensions, not {length}", ctx, status=400
            )
        vectors = tuple(mock_vector(item, size, length) for item in request.inputs)
        usage = Usage(sum(estimate_tokens(item) for item in request.inputs), 0)
        return EmbeddingResponse(model=ctx.model, vectors=vectors, usage=usage)

    async def list_models(self, ctx: CallContext) -> list[ModelInfo]:
        return [ModelInfo(id=ctx.model or "mock", owned_by="turnout")]

    async def check_credentials(self, ctx: CallContext) -> CredentialCheck:
        return CredentialCheck(self.spec.name, True, None, None, "mock provider needs no credentials", 0.0)
