"""OpenAI Chat Completions wire details: request body, response and usage parsing, and the stream state machine.

Streaming forwards each upstream chunk's exact bytes as `ChatChunk(raw=...)`. Only cheap byte checks run per chunk
(is it `{...}`? is there content? is `finish_reason`/`usage` set? is there an `error`?); a chunk is parsed only when
it may carry a finish reason, usage or an error. So a truncated chunk is caught, but a chunk whose JSON is broken
inside its braces is forwarded as received (full validation would cost a parse per chunk). Chunks from the first
finish reason on are held back so the last chunk yielded can carry the stream's `finish_reason` and `usage`.

End of stream: `data: [DONE]` ends it normally. A body that ends without `[DONE]` is accepted only if a finish
reason was already seen (the answer is complete; usage may then be unknown); otherwise it is a ProtocolError, so a
truncated answer is never reported as a success.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from turnout.drivers._http import dumps, error_class_for, error_details, loads, strip_directives
from turnout.drivers.base import CallContext
from turnout.drivers.openai_prefill import with_prefix
from turnout.errors import ProtocolError, ProviderError, provider_error
from turnout.reasoning import Reasoning, openai_effort
from turnout.types import ChatChunk, ChatRequest, ChatResponse, ChunkBatch, Usage, chunk_data, is_mapping

_RESPONSE_KEYS = frozenset({"id", "object", "created", "model", "choices", "usage"})
_NULL = b"null"
_COLON_NULL = (b":null", b": null")
_STRING_START = (b'"', b' "')
_EMPTY_STRING = (b'""', b' ""')
_EMPTY: Mapping[str, Any] = MappingProxyType({})


# ---------------------------------------------------------------------------------------------- byte-level checks


def _is_set(raw: bytes, key: bytes) -> bool:
    """True when `key` is present with a non-null value.

    Safe on chunk JSON: inside a JSON string every `"` is escaped, so `"key"` followed by `"` only matches keys.
    """
    at = raw.find(key)
    if at < 0:
        return False
    return not raw[at + len(key) : at + len(key) + 8].lstrip(b": \t").startswith(_NULL)


def _unset(raw: bytes, key: bytes) -> bool:
    """True when `key` is absent or null. The per-chunk hot path: one find and one startswith, no slicing;
    unusual spacing is answered by the exact (slower) check."""
    at = raw.find(key)
    if at < 0:
        return True
    return raw.startswith(_COLON_NULL, at + len(key)) or not _is_set(raw, key)


def _has_content(raw: bytes) -> bool:
    """True when the chunk carries non-empty content, tool calls or a refusal (the streaming commit point)."""
    at = raw.find(b'"content":')
    if at >= 0 and raw.startswith(_STRING_START, at + 10) and not raw.startswith(_EMPTY_STRING, at + 10):
        return True
    return (b'"tool_calls"' in raw and _is_set(raw, b'"tool_calls"')) or (
        b'"refusal"' in raw and _is_set(raw, b'"refusal"')
    )


def _empty_choices(raw: bytes) -> bool:
    return b"[]" in raw and (b'"choices":[]' in raw or b'"choices": []' in raw)


# ---------------------------------------------------------------------------------------------- parsing


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _details(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if is_mapping(value) else _EMPTY


def parse_usage(data: Any) -> Usage:
    """OpenAI's `usage` object -> Usage (cached and reasoning details included); anything else -> unknown."""
    if not is_mapping(data):
        return Usage.UNKNOWN
    prompt, completion = data.get("prompt_tokens"), data.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int) or isinstance(prompt, bool):
        return Usage.UNKNOWN
    prompt_details, completion_details = (
        _details(data, "prompt_tokens_details"),
        _details(data, "completion_tokens_details"),
    )
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=_count(prompt_details.get("cached_tokens")),
        cache_write_tokens=_count(prompt_details.get("cache_write_tokens")),
        reasoning_tokens=_count(completion_details.get("reasoning_tokens")),
    )


def _usage_of(obj: Mapping[str, Any]) -> Usage | None:
    """Usage from a response/chunk: OpenAI's `usage`, or Groq's `x_groq.usage`; None when neither is present."""
    usage = obj.get("usage")
    if usage is None:
        groq = obj.get("x_groq")
        usage = groq.get("usage") if is_mapping(groq) else None
    return parse_usage(usage) if usage is not None else None


def _finish_of(obj: Mapping[str, Any]) -> str | None:
    choices = obj.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if is_mapping(choice) and choice.get("finish_reason"):
            return str(choice["finish_reason"])
    return None


_STATUS_HINTS = (
    ("quota", 429),
    ("rate_limit", 429),
    ("context_length", 400),
    ("invalid_prompt", 400),
    ("content_filter", 400),
    ("invalid_request", 400),
    ("auth", 401),
    ("overloaded", 503),
    ("not_found", 404),
)


def stream_error(obj: Mapping[str, Any], raw: bytes, *, provider: str, model: str, after: bool) -> ProviderError:
    """Classify an error object that came with a 200: a `data: {"error": ...}` stream event or an error body.

    The class is guessed from the error's own status/code/type; the error carries no HTTP `status`, since the
    response itself was a 200.
    """
    message, code = error_details(raw)
    error = obj.get("error")
    detail = error if is_mapping(error) else _EMPTY
    status = detail.get("status") or detail.get("code")
    if not isinstance(status, int) or not 400 <= status < 600:
        hint = f"{code or ''} {detail.get('type') or ''}".lower()
        status = next((s for key, s in _STATUS_HINTS if key in hint), 500)
    return provider_error(
        error_class_for(status, message, code),
        message,
        provider=provider,
        model=model,
        code=code,
        after_first_token=after,
        body=raw[:2000],
    )


def _valid_choice(choice: Any) -> bool:
    if not is_mapping(choice) or not isinstance(choice.get("message"), Mapping):
        return False
    content = choice["message"].get("content")
    return (
        content is None
        or isinstance(content, str)
        or (isinstance(content, list) and all(is_mapping(p) and isinstance(p.get("text", ""), str) for p in content))
    )


def response_from(data: Any, *, provider: str, model: str) -> ChatResponse:
    """A non-streamed OpenAI body -> ChatResponse (`choices` kept as sent; unknown top-level fields in `extra`)."""
    if not is_mapping(data):
        raise ProtocolError("upstream answered with a non-object JSON body", provider=provider, model=model)
    if data.get("error") is not None:  # an error object inside a 200
        raise stream_error(data, dumps(data), provider=provider, model=model, after=False)
    choices = data.get("choices")
    if not isinstance(choices, list) or not all(_valid_choice(c) for c in choices):
        raise ProtocolError("upstream response has no valid 'choices'", provider=provider, model=model)
    return ChatResponse(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or model),
        choices=tuple(choices),
        usage=_usage_of(data) or Usage.UNKNOWN,
        created=data.get("created") if isinstance(data.get("created"), int) else int(time.time()),
        extra=MappingProxyType({k: v for k, v in data.items() if k not in _RESPONSE_KEYS}),
    )


def build_body(request: ChatRequest, ctx: CallContext, *, stream: bool, prefill: str | None = None) -> dict[str, Any]:
    """The upstream body: the client's, minus `turnout_*` directives, with model/stream options set, and the
    request's `assistant_prefix` (a continuation) in the upstream's `prefill` dialect (`openai_prefill`)."""
    body = strip_directives(request.body)
    body["model"] = ctx.model
    if request.reasoning is not None and "reasoning_effort" not in body:
        _add_reasoning(body, request.reasoning)
    if request.assistant_prefix is not None and prefill is not None:
        with_prefix(body, request.assistant_prefix, prefill)
    param = ctx.model_options.get("max_tokens_param")
    if param == "max_completion_tokens" and "max_tokens" in body and "max_completion_tokens" not in body:
        body["max_completion_tokens"] = body.pop("max_tokens")
    elif param == "max_tokens" and "max_completion_tokens" in body and "max_tokens" not in body:
        body["max_tokens"] = body.pop("max_completion_tokens")
    if stream:
        body["stream"] = True
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def _add_reasoning(body: dict[str, Any], reasoning: Reasoning) -> None:
    """`reasoning_effort` for a request that did not say it in OpenAI's words (a translation, or Anthropic's
    `thinking` object in a chat body, which OpenAI does not take and is left out). A client's own `reasoning_effort`
    is never touched."""
    body.pop("thinking", None)
    effort = openai_effort(reasoning)
    if effort is not None:
        body["reasoning_effort"] = effort


def batch_of(raws: list[bytes]) -> ChatChunk | ChunkBatch:
    """One run of batchable chunks: a ChunkBatch, or the plain chunk when the run is a single one."""
    if len(raws) == 1:
        return ChatChunk(raw=raws[0], is_content=_has_content(raws[0]))
    return ChunkBatch(raws)


def _ends_a_stream(raw: bytes) -> bool:
    """A cheap look for the stream's tail (`[DONE]`, the finish chunk, the usage chunk): True only for chunks
    that are certainly not batchable. What it misses, `plain_run` refuses."""
    return raw[:1] != b"{" or not _unset(raw, b'"finish_reason"') or not _unset(raw, b'"usage"')


def plain_run(raws: list[bytes]) -> bool:
    """True when every chunk in `raws` is batchable (see StreamState.batchable), checked on all of them at once:
    a few C-level scans over the joined bytes instead of five checks per chunk. Exact: each count can only match
    where the per-chunk check would (a key cannot span two chunks: they are joined by a newline), and any doubt
    (odd spacing, an empty array anywhere) answers False, so the caller checks chunk by chunk instead."""
    for raw in raws:
        if raw[:1] != b"{" or raw[-1:] != b"}":
            return False
    joined = b"\n".join(raws)
    if b'"error"' in joined:
        return False
    if joined.count(b'"finish_reason"') != joined.count(b'"finish_reason":null'):
        return False
    if b'"usage"' in joined and joined.count(b'"usage"') != joined.count(b'"usage":null'):
        return False
    return b"[]" not in joined or (b'"choices":[]' not in joined and b'"choices": []' not in joined)


class StreamState:
    """Per-stream bookkeeping: what was seen, and the chunks held back since the first finish reason."""

    __slots__ = ("content", "done", "failure", "finish_reason", "held", "model", "provider", "usage")

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.content = False
        self.done = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.held: list[tuple[bytes, bool]] = []  # (raw, usage_only)
        self.failure: ProviderError | None = None  # raised by the driver after the chunks before it

    def feed(self, raw: bytes) -> ChatChunk | None:
        """One SSE data payload -> a chunk to yield now, or None (held back, skipped or the terminator)."""
        if raw == b"[DONE]":
            self.done = True
            return None
        if b'"error"' in raw:
            obj = loads(raw, provider=self.provider, model=self.model, after_first_token=self.content)
            if is_mapping(obj) and obj.get("error") is not None:
                raise stream_error(obj, raw, provider=self.provider, model=self.model, after=self.content)
        if raw[:1] != b"{" or raw[-1:] != b"}":  # the cheap structural check every chunk gets
            loads(raw, provider=self.provider, model=self.model, after_first_token=self.content)
            raise ProtocolError(
                f"stream chunk is not a JSON object: {raw[:100]!r}",
                provider=self.provider,
                model=self.model,
                after_first_token=self.content,
            )
        if self.finish_reason is None and _unset(raw, b'"finish_reason"') and _unset(raw, b'"usage"'):
            if _has_content(raw):
                self.content = True
                return ChatChunk(raw=raw, is_content=True)
            if _empty_choices(raw):  # Azure's prompt-filter chunk
                return None
            return ChatChunk(raw=raw)
        obj = loads(raw, provider=self.provider, model=self.model, after_first_token=self.content)
        if not is_mapping(obj):
            raise ProtocolError("stream chunk is not a JSON object", provider=self.provider, model=self.model)
        usage = _usage_of(obj)
        if usage is not None:
            self.usage = usage
        self.finish_reason = _finish_of(obj) or self.finish_reason
        empty = not obj.get("choices")
        if empty and usage is None:
            return None
        if not self.content and _has_content(raw):
            self.content = True
        self.held.append((raw, empty))
        return None

    def take(self, raws: Sequence[bytes], batching: bool, start: int = 0) -> tuple[list[ChatChunk | ChunkBatch], int]:
        """What one upstream read hands over from `raws[start:]`, in order, and where it stopped.

        Chunks, or with `batching` a ChunkBatch for each run of plain chunks after the first content. It stops
        right after the stream's first content chunk (the commit point goes out before the rest of the read is
        looked at: time to first token), at `[DONE]`, or at a failure, which is kept in `failure` for the caller
        to raise after handing over what came before it.

        A read usually holds plain content chunks and then the stream's tail (finish, usage, `[DONE]`), so the
        tail is found from the end and everything before it checked at once (`plain_run`); a run that fails that
        check is taken chunk by chunk.
        """
        out: list[ChatChunk | ChunkBatch] = []
        run: list[bytes] | None = None
        tried = False
        tail = len(raws)  # from here on every chunk is known not to be batchable
        before_content = not self.content
        i, n = start, len(raws)
        try:
            while i < n:
                raw = raws[i]
                if batching and not tried and n - i > 2 and self.content and self.finish_reason is None:
                    tried = True
                    end = n
                    while end > i + 1 and _ends_a_stream(raws[end - 1]):
                        end -= 1
                    tail = end
                    if end - i > 2:
                        middle = raws[i:end]
                        if plain_run(middle):
                            out.append(ChunkBatch(middle))
                            i = end
                            continue
                if batching and i < tail and self.batchable(raw):
                    if run is None:
                        run = [raw]
                    else:
                        run.append(raw)
                    i += 1
                    continue
                if run is not None:
                    out.append(batch_of(run))
                    run = None
                chunk = self.feed(raw)
                i += 1
                if chunk is not None:
                    out.append(chunk)
                if self.done or (before_content and self.content):
                    break
        except ProviderError as exc:
            self.failure = exc
            i = n
        if run is not None:
            out.append(batch_of(run))
        return out, i

    def batchable(self, raw: bytes) -> bool:
        """True when `raw` may travel inside a ChunkBatch: the stream is past its first content and before any
        finish reason, and the chunk is a JSON object with no error, finish reason or usage (so `feed` would
        have passed it on untouched). The same byte checks as `feed`, without building a chunk."""
        return (
            self.content
            and self.finish_reason is None
            and raw[:1] == b"{"
            and raw[-1:] == b"}"
            and b'"error"' not in raw
            and _unset(raw, b'"finish_reason"')
            and _unset(raw, b'"usage"')
            and not _empty_choices(raw)
        )

    def finish(self) -> list[ChatChunk]:
        """The held chunks, the last one carrying finish reason and usage; or the error for a truncated stream."""
        if not self.done and self.finish_reason is None:
            raise ProtocolError(
                "stream ended before the answer was complete (no finish_reason and no [DONE])",
                provider=self.provider,
                model=self.model,
                after_first_token=self.content,
            )
        usage = self.usage or Usage.UNKNOWN
        if not self.held:
            data = chunk_data(id="", model=self.model, created=int(time.time()), delta={})
            return [ChatChunk(data=data, usage=usage)]
        out = [ChatChunk(raw=raw, finish_reason=self.finish_reason) for raw, _ in self.held[:-1]]
        raw, usage_only = self.held[-1]
        out.append(ChatChunk(raw=raw, finish_reason=self.finish_reason, usage=usage, usage_only=usage_only))
        return out
