"""Canonical request/response values that flow between the router, drivers and the sidecar.

The canonical request *is* the OpenAI chat JSON the client sent (kept as-is, never copied) plus the few fields
routing needs. Responses and chunks render back to OpenAI JSON / SSE exactly. All values are immutable.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, ClassVar, Literal, NamedTuple

from turnout import _json
from turnout.errors import InvalidRequest
from turnout.reasoning import Reasoning, from_chat

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_IMAGE_TOKEN_ESTIMATE = 800  # a mid-size image at detail=auto; only used to rule out too-small windows
_CHARS_PER_TOKEN = 4
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def is_mapping(value: Any) -> bool:
    """isinstance(value, Mapping) with a fast path for dict (all parsed JSON): the ABC check costs ~0.3 us, and
    a request or a stream's tail is checked dozens of times."""
    return type(value) is dict or isinstance(value, Mapping)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage normalised across providers.

    `prompt_tokens` includes cached and cache-written input; `completion_tokens` includes reasoning.
    `None` counts mean the provider reported nothing: usage is *unknown*, never silently zero.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    UNKNOWN: ClassVar[Usage]

    @property
    def known(self) -> bool:
        return self.prompt_tokens is not None and self.completion_tokens is not None

    @property
    def total_tokens(self) -> int | None:
        if not self.known:
            return None
        return self.prompt_tokens + self.completion_tokens  # type: ignore[operator]

    def __add__(self, other: Usage) -> Usage:
        """Sum two usages; unknown on either side makes the sum unknown."""
        if not (self.known and other.known):
            return Usage.UNKNOWN
        return Usage(
            self.prompt_tokens + other.prompt_tokens,  # type: ignore[operator]
            self.completion_tokens + other.completion_tokens,  # type: ignore[operator]
            self.cached_tokens + other.cached_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    def to_openai(self) -> dict[str, Any] | None:
        """OpenAI's `usage` object, or None when unknown."""
        if not self.known:
            return None
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
        if self.cache_write_tokens:
            out["prompt_tokens_details"]["cache_write_tokens"] = self.cache_write_tokens
        return out


Usage.UNKNOWN = Usage()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try (or a deliberate skip) of one deployment while serving a request."""

    deployment: str
    started_at: float
    duration: float
    outcome: Literal["success", "error", "skipped"]
    error_class: str | None = None
    status: int | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    detail: str = ""
    estimated: bool = False  # `usage` (and so `cost_usd`) estimated: a stream cut before it reported usage

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "outcome": self.outcome,
            "error_class": self.error_class,
            "status": self.status,
            "duration_ms": round(self.duration * 1000, 3),
            "cost_usd": self.cost_usd,
            "detail": self.detail,
            "usage_estimated": self.estimated,
        }


@dataclass(frozen=True, slots=True)
class Splice:
    """A cut stream continued on another deployment (`mid_stream: continue`).

    `continued_from` is the deployment whose stream broke, `continued_by` the one that carried on from the text
    the caller already had (`chars_kept` characters, all kept: a delivered word cannot be taken back).
    """

    continued_from: str
    continued_by: str
    chars_kept: int

    def to_dict(self) -> dict[str, Any]:
        return {"continued_from": self.continued_from, "continued_by": self.continued_by, "chars_kept": self.chars_kept}


@dataclass(frozen=True, slots=True)
class NativeRequest:
    """The client's request in its own wire format, when it came in through an ingress other than OpenAI chat.

    `format` names the wire format (`"anthropic.messages"`). A driver that speaks that format sends `body` with only
    the model (and stream flag) replaced instead of translating the canonical body, and hands its answer back
    untranslated (`ChatResponse.native`, `ChatChunk.native`), so nothing is lost in the round trip. `headers` are
    the client's headers worth forwarding to such an upstream (e.g. `anthropic-beta`), lower-cased.
    `untranslatable` names what the canonical body could not carry (say, a PDF document): when set, only a
    deployment whose driver speaks `format` (its `native_formats`) can serve the request. `dropped` names what the
    canonical body leaves out by rule (tools only the client's own API runs, say): a deployment that translates
    serves the request without them, and the sidecar names them in the answer's `x-turnout-dropped` header.
    """

    format: str
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    untranslatable: str = ""
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The client's OpenAI chat body plus what routing needs to know about it.

    `body` is the exact JSON object the client sent; drivers for OpenAI-compatible upstreams forward it with
    only `model` (and stream options) replaced. `assistant_prefix` is set when a cut stream is continued on
    another deployment: the partial answer that the continuation must extend. `native` is the client's own body
    when it spoke another wire format (then `body` is its canonical translation). `reasoning` is what the client
    asked of the model's reasoning, in any format (`turnout.reasoning`), None when it asked nothing.
    """

    body: Mapping[str, Any]
    model: str
    stream: bool = False
    include_usage: bool = False
    needs_tools: bool = False
    needs_vision: bool = False
    needs_json: bool = False
    estimated_prompt_tokens: int = 0
    max_output_tokens: int | None = None
    assistant_prefix: str | None = None
    native: NativeRequest | None = None
    reasoning: Reasoning | None = None

    @property
    def messages(self) -> Sequence[Mapping[str, Any]]:
        return self.body["messages"]

    @property
    def estimated_total_tokens(self) -> int:
        return self.estimated_prompt_tokens + (self.max_output_tokens or 0)

    def with_prefix(self, prefix: str) -> ChatRequest:
        return replace(self, assistant_prefix=prefix)

    def without_reasoning(self) -> ChatRequest:
        """This request with no reasoning to translate (the client's own body is left as it is)."""
        return replace(self, reasoning=None)

    @classmethod
    def create(cls, *, model: str, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatRequest:
        """Build from keyword arguments, as `router.chat(model=..., messages=..., **openai_params)`."""
        return cls.from_openai({"model": model, "messages": list(messages), **params})

    @classmethod
    def from_openai(
        cls, body: Any, *, native: NativeRequest | None = None, reasoning: Reasoning | None = None
    ) -> ChatRequest:
        """Validate an OpenAI chat body and derive routing fields (`native`: the client's own body, when `body` is
        its translation, and `reasoning` what that body asked of the model's reasoning; a chat body's own is read
        from its `reasoning_effort` or `thinking`).

        Raises InvalidRequest naming the offending field (`param`), so the sidecar can answer 400 in OpenAI's
        shape and nothing malformed is ever sent upstream.
        """
        if not is_mapping(body):
            raise InvalidRequest("The request body must be a JSON object.", param=None)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("'messages' is required and must be a non-empty array.", param="messages")
        stream = body.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            raise InvalidRequest("'stream' must be a boolean.", param="stream")
        chars, images = _scan_messages(messages)
        max_out = _max_output_tokens(body)
        _check_numbers(body)
        tools = body.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise InvalidRequest("'tools' must be an array.", param="tools")
        stream_options = body.get("stream_options")
        if stream_options is not None and not is_mapping(stream_options):
            raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
        include_usage = stream_options.get("include_usage") if stream_options else None
        if include_usage is not None and not isinstance(include_usage, bool):
            raise InvalidRequest(
                "'stream_options.include_usage' must be a boolean.", param="stream_options.include_usage"
            )
        response_format = body.get("response_format")
        if response_format is not None and not is_mapping(response_format):
            raise InvalidRequest("'response_format' must be an object.", param="response_format")
        needs_json = bool(response_format) and response_format.get("type") in ("json_object", "json_schema")
        if native is None and ("reasoning_effort" in body or "thinking" in body):
            reasoning = from_chat(body)
        return cls(
            body=body,
            model=model,
            stream=stream,
            include_usage=include_usage is True,
            needs_tools=bool(tools),
            needs_vision=images > 0,
            needs_json=needs_json,
            estimated_prompt_tokens=chars // _CHARS_PER_TOKEN + 4 * len(messages) + images * _IMAGE_TOKEN_ESTIMATE,
            max_output_tokens=max_out,
            native=native,
            reasoning=reasoning,
        )


def _scan_messages(messages: list[Any]) -> tuple[int, int]:
    """Validate message shapes; return (text characters, image parts)."""
    chars = 0
    images = 0
    for i, message in enumerate(messages):
        if not is_mapping(message):
            raise InvalidRequest(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:  # a list role must be a 400, not a TypeError
            raise InvalidRequest(
                f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}.", param=f"messages[{i}].role"
            )
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not is_mapping(part) or not isinstance(part.get("type"), str):
                    raise InvalidRequest(
                        f"messages[{i}].content[{j}] must be an object with a string 'type'.",
                        param=f"messages[{i}].content[{j}]",
                    )
                kind = part["type"]
                if kind == "text":
                    text = part.get("text")
                    if not isinstance(text, str):
                        raise InvalidRequest(
                            f"messages[{i}].content[{j}].text must be a string.",
                            param=f"messages[{i}].content[{j}].text",
                        )
                    chars += len(text)
                elif kind == "image_url":
                    image = part.get("image_url")
                    url = image.get("url") if is_mapping(image) else image
                    if not isinstance(url, str) or not url:
                        raise InvalidRequest(
                            f"messages[{i}].content[{j}].image_url.url must be a non-empty string.",
                            param=f"messages[{i}].content[{j}].image_url",
                        )
                    images += 1
        elif content is not None:
            raise InvalidRequest(
                f"messages[{i}].content must be a string, an array of parts or null.",
                param=f"messages[{i}].content",
            )
        elif role in ("user", "system", "developer"):
            raise InvalidRequest(
                f"messages[{i}].content is required for role '{role}'.", param=f"messages[{i}].content"
            )
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            if not isinstance(tool_calls, list):
                raise InvalidRequest(f"messages[{i}].tool_calls must be an array.", param=f"messages[{i}].tool_calls")
            for call in tool_calls:
                fn = call.get("function") if is_mapping(call) else None
                if not is_mapping(fn):
                    raise InvalidRequest(
                        f"messages[{i}].tool_calls entries need a 'function' object.",
                        param=f"messages[{i}].tool_calls",
                    )
                args = fn.get("arguments")
                chars += len(args) if isinstance(args, str) else 0
    return chars, images


def _max_output_tokens(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    name = "max_completion_tokens"
    if value is None:
        value, name = body.get("max_tokens"), "max_tokens"
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    return value


def _check_numbers(body: Mapping[str, Any]) -> None:
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise InvalidRequest(f"'{name}' must be a number between {low} and {high}.", param=name)
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > 128):
        raise InvalidRequest("'n' must be an integer between 1 and 128.", param="n")


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A complete (non-streamed) answer in canonical, OpenAI-shaped form.

    `model` is the upstream model that served it (as OpenAI reports it). The routing fields (`route`,
    `served_by`, `attempts`, `cost_usd`, `dropped`) are filled in by the router; `cost_usd` is None when unknown.
    `native` is the upstream's own answer when it served a request in its own format (`ChatRequest.native`): the
    ingress of that format returns it as is. `dropped` names what of the request the serving deployment did not
    receive (its reasoning, when the model does not declare it: `turnout.router.reasoning`).
    """

    id: str
    model: str
    choices: tuple[Mapping[str, Any], ...]
    usage: Usage = Usage.UNKNOWN
    created: int = field(default_factory=lambda: int(time.time()))
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    route: str = ""
    served_by: str = ""
    attempts: tuple[Attempt, ...] = ()
    cost_usd: float | None = None
    native: Mapping[str, Any] | None = None
    dropped: tuple[str, ...] = ()

    @property
    def message(self) -> Mapping[str, Any]:
        return self.choices[0]["message"] if self.choices else {"role": "assistant", "content": None}

    @property
    def text(self) -> str:
        content = self.message.get("content")
        if isinstance(content, list):  # some upstreams answer with parts
            return "".join(p.get("text", "") for p in content if is_mapping(p))
        return content or ""

    @property
    def tool_calls(self) -> Sequence[Mapping[str, Any]]:
        return self.message.get("tool_calls") or ()

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].get("finish_reason") if self.choices else None

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": list(self.choices),
            "usage": self.usage.to_openai(),
        }
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


class NativeFrames(NamedTuple):
    """The upstream's own wire events a chunk stands for, when it served a request in its own format.

    The ingress of that format writes `data` as is instead of translating the chunk (b"" when an earlier chunk's
    frames covered this one). `next_block`, `open_block` and `open_type` describe the content blocks after these
    frames (the next free index; the block still open and its type, or None), so a continuation from another
    deployment can carry on in the same message. `state` is whatever else the format's ingress needs to carry on
    after them (the Responses stream's position: sequence numbers, output items), or None.
    """

    data: bytes
    next_block: int = 0
    open_block: int | None = None
    open_type: str | None = None
    state: Any = None


class ChatChunk:
    """One streamed OpenAI `chat.completion.chunk`, immutable.

    Built either from parsed chunk data (`data=`) or from the exact JSON bytes an OpenAI-compatible upstream
    sent (`raw=`), which the sidecar forwards untouched; the other form is derived lazily. The driver states
    what accounting needs without a parse: `is_content` (carries content, tool calls or a refusal: the
    streaming commit point), `finish_reason`, and `usage` (set on the stream's final chunk, `Usage.UNKNOWN`
    when the provider reported none). `usage_only` marks a chunk that exists only to carry usage
    (`choices: []`): the sidecar forwards it only to clients that asked for `stream_options.include_usage`.
    `native`: the upstream events it stands for, when the upstream spoke the client's own format (`NativeFrames`).
    """

    __slots__ = ("_data", "_raw", "finish_reason", "is_content", "native", "usage", "usage_only")

    count: ClassVar[int] = 1  # chunks this item stands for (see ChunkBatch)

    def __init__(
        self,
        *,
        data: Mapping[str, Any] | None = None,
        raw: bytes | None = None,
        is_content: bool = False,
        finish_reason: str | None = None,
        usage: Usage | None = None,
        usage_only: bool = False,
        native: NativeFrames | None = None,
    ) -> None:
        if data is None and raw is None:
            raise ValueError("ChatChunk needs data or raw")
        setter = object.__setattr__
        setter(self, "_data", data)
        setter(self, "_raw", raw)
        setter(self, "is_content", is_content)
        setter(self, "finish_reason", finish_reason)
        setter(self, "usage", usage)
        setter(self, "usage_only", usage_only)
        setter(self, "native", native)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ChatChunk is immutable")

    @property
    def data(self) -> Mapping[str, Any]:
        if self._data is None:
            object.__setattr__(self, "_data", _json.loads(self._raw))
        return self._data  # type: ignore[return-value]

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            object.__setattr__(self, "_raw", _json.dumps_escaped(self._data))
        return self._raw  # type: ignore[return-value]

    @property
    def is_final(self) -> bool:
        return self.usage is not None

    @property
    def delta(self) -> Mapping[str, Any]:
        choices = self.data.get("choices") or ()
        return choices[0].get("delta") or _EMPTY if choices else _EMPTY

    @property
    def content(self) -> str | None:
        return self.delta.get("content")

    @property
    def tool_calls(self) -> Sequence[Mapping[str, Any]]:
        return self.delta.get("tool_calls") or ()

    @property
    def model(self) -> str:
        return self.data.get("model", "")

    def to_openai(self) -> Mapping[str, Any]:
        return self.data

    def to_sse(self) -> bytes:
        return _sse_event(self.raw)

    @property
    def has_tool_call(self) -> bool:
        """True when this chunk streams (part of) a tool or function call."""
        delta = self.delta
        return bool(delta.get("tool_calls") or delta.get("function_call"))

    def __repr__(self) -> str:
        return (
            f"ChatChunk(content={self.content!r}, finish_reason={self.finish_reason!r}, "
            f"usage={self.usage!r}, is_content={self.is_content})"
        )


class ChunkBatch:
    """Consecutive plain chunks that arrived in one upstream read, handed over as one item.

    Only a consumer that forwards bytes asks for these (`ChatStream.batched()`, which the sidecar uses): it writes
    `to_sse()` as is instead of paying parser -> driver -> router -> relay hops and a ChatChunk per event. A
    batch only ever holds chunks after the streaming commit point and before the finish reason, with no usage and
    no error (the driver checked each one), so the stream's accounting never needs to look inside it; `content`
    and `has_tool_call` parse the chunks lazily for the few callers that do (content logging, `continue`).
    Iterating a batch gives its ChatChunks.
    """

    __slots__ = ("raws",)

    is_content: ClassVar[bool] = True
    finish_reason: ClassVar[None] = None
    usage: ClassVar[None] = None
    usage_only: ClassVar[bool] = False
    native: ClassVar[None] = None  # batches come from OpenAI-compatible upstreams only

    def __init__(self, raws: Sequence[bytes]) -> None:
        self.raws = raws  # the chunks' exact JSON bytes, in order

    @property
    def count(self) -> int:
        return len(self.raws)

    def __iter__(self) -> Iterator[ChatChunk]:
        return (ChatChunk(raw=raw, is_content=True) for raw in self.raws)

    @property
    def content(self) -> str:
        return "".join(chunk.content or "" for chunk in self)

    @property
    def has_tool_call(self) -> bool:
        return any(chunk.has_tool_call for chunk in self)

    def to_sse(self) -> bytes:
        for raw in self.raws:
            if b"\n" in raw:  # a payload spans lines: frame each one on its own
                return b"".join(_sse_event(raw) for raw in self.raws)
        return b"data: " + b"\n\ndata: ".join(self.raws) + b"\n\n"

    def __repr__(self) -> str:
        return f"ChunkBatch({len(self.raws)} chunks)"


def _sse_event(payload: bytes) -> bytes:
    """One `data:` event; a payload that spans lines (an upstream may send multi-line data) keeps every line a
    `data:` line, so the client reassembles the same payload."""
    if b"\n" in payload:
        payload = payload.replace(b"\n", b"\ndata: ")
    return b"data: " + payload + b"\n\n"


def chunk_data(
    *, id: str, model: str, created: int, delta: Mapping[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    """An OpenAI chunk body with a single choice (what translating drivers emit)."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk_data(*, id: str, model: str, created: int, usage: Usage) -> dict[str, Any]:
    """The extra final chunk OpenAI sends when `stream_options.include_usage` is set."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage.to_openai(),
    }
