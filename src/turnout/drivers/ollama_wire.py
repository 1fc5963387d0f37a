"""Ollama native `/api/chat` wire details: request translation, response parsing and the NDJSON stream state.

Translation (wire-formats.md section 5 and 10): content parts -> one string plus `images` (bare base64; https image
URLs are fetched through the shared session and inlined); assistant tool-call arguments JSON string <-> object;
tool messages carry `tool_name`, looked up from the earlier assistant tool call with the same id; max tokens ->
`options.num_predict`; `stop`, `temperature`, `top_p`, `seed`, penalties -> `options`; `response_format` -> `format`
("json" or the JSON schema); reasoning (sent only to a model that declares it) -> `think` (`think_for`), else the
provider's `think` option. Ollama gives no tool-call ids, so they are synthesised (`call_<index>_<hash>`,
stable for the same call); `done_reason: stop` becomes `tool_calls` when the answer called tools. Usage comes from
the `done: true` counters: a missing `prompt_eval_count` means 0 (a fully cached prompt), a missing `eval_count`
means usage unknown.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from turnout.drivers._http import error_class_for, loads, strip_directives
from turnout.drivers._images import ImageFetcher
from turnout.drivers.base import CallContext
from turnout.errors import BadRequest, ProtocolError, provider_error
from turnout.reasoning import Reasoning
from turnout.types import ChatChunk, ChatRequest, ChatResponse, Usage, chunk_data, usage_chunk_data

_OPTION_PARAMS = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


# ---------------------------------------------------------------------------------------------- request


def _text_of(content: Any) -> tuple[str, list[str]]:
    """(text, image URLs) of an OpenAI message content (string or parts)."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        return "", []
    texts, images = [], []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text":
            texts.append(part.get("text") or "")
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            images.append(image.get("url") if isinstance(image, Mapping) else image)
    return "\n".join(texts), images


def _arguments(raw: Any, *, provider: str) -> Any:
    if not isinstance(raw, str):
        return raw if raw is not None else {}
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        message = "tool call arguments are not valid JSON (Ollama needs an object)"
        raise BadRequest(message, provider=provider, code="invalid_arguments") from None


def dumps_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def call_id(index: int, name: str, arguments: Any) -> str:
    """A synthesised, stable tool-call id: the same call in the same position always gets the same id."""
    digest = hashlib.sha1(f"{name}:{json.dumps(arguments, sort_keys=True)}".encode()).hexdigest()[:12]
    return f"call_{index}_{digest}"


async def inline_image(url: str, fetcher: ImageFetcher) -> str:
    """Bare base64 of an image: decoded from a data URL, or fetched under the provider's `image_urls` policy."""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if ";base64" not in header:
            return base64.b64encode(data.encode()).decode()
        return data
    _, data = await fetcher.fetch(url)
    return data


async def translate_messages(
    messages: Sequence[Mapping[str, Any]], ctx: CallContext, provider: str, defaults: Mapping[str, Any]
) -> list[dict]:
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    fetcher: ImageFetcher | None = None  # one per request (its limits are per request), made when first needed
    for message in messages:
        role = message.get("role")
        text, images = _text_of(message.get("content"))
        if role in ("system", "developer"):
            out.append({"role": "system", "content": text})
        elif role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": text}
            calls = []
            for call in message.get("tool_calls") or ():
                fn = call.get("function") or {}
                tool_names[call.get("id", "")] = fn.get("name", "")
                args = _arguments(fn.get("arguments"), provider=provider)
                calls.append({"function": {"name": fn.get("name"), "arguments": args}})
            if calls:
                item["tool_calls"] = calls
            out.append(item)
        elif role in ("tool", "function"):
            name = tool_names.get(message.get("tool_call_id", ""), message.get("name", ""))
            out.append({"role": "tool", "content": text, "tool_name": name})
        else:
            item = {"role": "user", "content": text}
            if images:
                fetcher = fetcher or ImageFetcher(ctx, provider=provider, options=defaults)
                item["images"] = [await inline_image(url, fetcher) for url in images]
            out.append(item)
    return out


async def build_body(
    request: ChatRequest, ctx: CallContext, *, stream: bool, provider: str, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """The `/api/chat` body for a canonical request (see the module docstring for the mapping)."""
    src = strip_directives(request.body)
    options: dict[str, Any] = dict(defaults.get("options") or {})
    for name in _OPTION_PARAMS:
        if src.get(name) is not None:
            options[name] = src[name]
    limit = src.get("max_completion_tokens") or src.get("max_tokens")
    if limit is not None:
        options["num_predict"] = limit
    stop = src.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    body: dict[str, Any] = {
        "model": ctx.model,
        "messages": await translate_messages(request.messages, ctx, provider, defaults),
        "stream": stream,
    }
    if src.get("tools"):
        body["tools"] = src["tools"]
    response_format = src.get("response_format")
    if isinstance(response_format, Mapping):
        if response_format.get("type") == "json_object":
            body["format"] = "json"
        elif response_format.get("type") == "json_schema":
            body["format"] = (response_format.get("json_schema") or {}).get("schema") or "json"
    if options:
        body["options"] = options
    if "keep_alive" in defaults:
        body["keep_alive"] = defaults["keep_alive"]
    think = defaults.get("think") if request.reasoning is None else think_for(request.reasoning, defaults.get("think"))
    if think is not None:
        body["think"] = think
    return body


def think_for(reasoning: Reasoning, configured: Any) -> bool | str:
    """`think` for a reasoning request: false when turned off; the request's level (low, medium, high) when the
    provider's own `think` is a level (the model takes levels, as gpt-oss does), else true (every thinking model
    takes a boolean)."""
    if reasoning.off:
        return False
    if isinstance(configured, str):
        return configured if reasoning.default_depth else reasoning.level
    return True


# ---------------------------------------------------------------------------------------------- response


def usage_from(line: Mapping[str, Any]) -> Usage:
    completion = line.get("eval_count")
    if not isinstance(completion, int):
        return Usage.UNKNOWN
    prompt = line.get("prompt_eval_count")
    return Usage(prompt_tokens=prompt if isinstance(prompt, int) else 0, completion_tokens=completion)


def message_of(line: Mapping[str, Any], *, provider: str, model: str, after: bool = False) -> Mapping[str, Any]:
    """The line's `message`, checked: text fields are strings and tool calls have a named function."""
    message = line.get("message", _EMPTY)
    problem = None
    if not isinstance(message, Mapping):
        problem = "'message' is not an object"
    elif any(not isinstance(message.get(k) or "", str) for k in ("content", "thinking")):
        problem = "'message.content' is not a string"
    else:
        calls = message.get("tool_calls") or []
        if not isinstance(calls, list) or not all(
            isinstance(c, Mapping)
            and isinstance(c.get("function"), Mapping)
            and isinstance(c["function"].get("name"), str)
            and isinstance(c.get("id") or "", str)
            for c in calls
        ):
            problem = "'message.tool_calls' is malformed"
    if problem is not None:
        raise ProtocolError(
            f"upstream sent a bad message: {problem}", provider=provider, model=model, after_first_token=after
        )
    return message


def tool_calls_from(message: Mapping[str, Any], start: int = 0) -> list[dict[str, Any]]:
    """OpenAI tool calls from an Ollama message already checked by `message_of`."""
    calls = []
    for offset, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") or {}
        args = fn.get("arguments") if fn.get("arguments") is not None else {}
        index = start + offset
        calls.append(
            {
                "id": call.get("id") or call_id(index, fn.get("name", ""), args),
                "type": "function",
                "function": {
                    "name": fn.get("name", ""),
                    "arguments": args if isinstance(args, str) else dumps_text(args),
                },
            }
        )
    return calls


def finish_reason(done_reason: Any, has_calls: bool) -> str:
    if done_reason == "length":
        return "length"
    return "tool_calls" if has_calls else "stop"


def _stream_status(message: str) -> int:
    """An HTTP status for an in-stream `{"error"}` line (the response itself was a 200), from its text."""
    text = message.lower()
    if "busy" in text or "overloaded" in text:
        return 503
    if "not found" in text:
        return 404
    if "context" in text or "flagged" in text or "invalid" in text:
        return 400
    return 500


def response_from(data: Any, *, provider: str, model: str) -> ChatResponse:
    """A non-streamed /api/chat body -> ChatResponse (tool calls with synthesised ids, finish reason, usage)."""
    if not isinstance(data, Mapping):
        raise ProtocolError("upstream answered with a non-object JSON body", provider=provider, model=model)
    if data.get("error") is not None:  # an error object inside a 200
        message = str(data["error"])
        error_class = error_class_for(_stream_status(message), message)
        raise provider_error(error_class, message, provider=provider, model=model)
    if not isinstance(data.get("message"), Mapping):
        raise ProtocolError("upstream response has no 'message'", provider=provider, model=model)
    message = message_of(data, provider=provider, model=model)
    calls = tool_calls_from(message)
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content") or (None if calls else "")}
    if calls:
        out["tool_calls"] = calls
    if message.get("thinking"):
        out["reasoning_content"] = message["thinking"]
    reason = finish_reason(data.get("done_reason"), bool(calls))
    choice = {"index": 0, "message": out, "logprobs": None, "finish_reason": reason}
    return ChatResponse(
        id=f"chatcmpl-ollama-{time.monotonic_ns():x}",
        model=str(data.get("model") or model),
        choices=(choice,),
        usage=usage_from(data),
    )


class StreamState:
    """Turns NDJSON lines into OpenAI chunks; remembers whether content was produced and how many tool calls."""

    __slots__ = ("calls", "content", "created", "done", "id", "model", "provider", "started")

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.id = f"chatcmpl-ollama-{time.monotonic_ns():x}"
        self.created = int(time.time())
        self.content = False
        self.started = False
        self.done = False
        self.calls = 0

    def _chunk(self, delta: Mapping[str, Any], reason: str | None = None) -> dict[str, Any]:
        return chunk_data(id=self.id, model=self.model, created=self.created, delta=delta, finish_reason=reason)

    def feed(self, raw: bytes) -> list[ChatChunk]:
        line = loads(raw, provider=self.provider, model=self.model, after_first_token=self.content)
        if not isinstance(line, Mapping):
            raise ProtocolError("stream line is not a JSON object", provider=self.provider, model=self.model)
        if line.get("error") is not None:
            message = str(line["error"])
            raise provider_error(
                error_class_for(_stream_status(message), message),
                message,
                provider=self.provider,
                model=self.model,
                after_first_token=self.content,
                body=raw[:2000],
            )
        message = message_of(line, provider=self.provider, model=self.model, after=self.content)
        delta: dict[str, Any] = {} if self.started else {"role": "assistant"}
        if message.get("content"):
            delta["content"] = message["content"]
        calls = tool_calls_from(message, self.calls)
        if calls:
            delta["tool_calls"] = [{"index": self.calls + i, **call} for i, call in enumerate(calls)]
            self.calls += len(calls)
        if message.get("thinking"):
            delta["reasoning_content"] = message["thinking"]
        is_content = bool(message.get("content") or calls)
        self.content = self.content or is_content
        out = []
        if len(delta) > 1 or (delta and "role" not in delta) or not (self.started or line.get("done")):
            out.append(ChatChunk(data=self._chunk(delta), is_content=is_content))
            self.started = True
        if line.get("done"):
            self.done = True
            reason = finish_reason(line.get("done_reason"), self.calls > 0)
            usage = usage_from(line)
            out.append(ChatChunk(data=self._chunk({}, reason), finish_reason=reason))
            final = usage_chunk_data(id=self.id, model=self.model, created=self.created, usage=usage)
            out.append(ChatChunk(data=final, finish_reason=reason, usage=usage, usage_only=True))
        return out
