"""Anthropic Messages response JSON and error bodies -> canonical values. Pure: no I/O.

Usage (wire-formats.md 9.2): Anthropic's `input_tokens` excludes cache traffic, so the canonical prompt count
is `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`; cached = cache reads, cache write =
cache creation, reasoning = `output_tokens_details.thinking_tokens` (already inside `output_tokens`).

Extended thinking: thinking text is returned as the message's `reasoning_content` (the field OpenAI-compatible
reasoning servers use) and the blocks themselves, signatures included, as `thinking_blocks`, which
`request` sends back when the client echoes the message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from turnout.errors import ErrorClass, ProviderError, provider_error
from turnout.types import ChatResponse, Usage

# stop_reason -> OpenAI finish_reason (section 9.1). `pause_turn` means "resend to continue": a stop for us.
STOP_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# error.type -> taxonomy class (section 3.5). invalid_request_error is refined by its message below.
ERROR_TYPES: Mapping[str, ErrorClass] = {
    "invalid_request_error": ErrorClass.BAD_REQUEST,
    "authentication_error": ErrorClass.AUTH,
    "permission_error": ErrorClass.AUTH,
    "billing_error": ErrorClass.QUOTA_EXCEEDED,
    "not_found_error": ErrorClass.NOT_FOUND,
    "request_too_large": ErrorClass.BAD_REQUEST,
    "rate_limit_error": ErrorClass.RATE_LIMIT,
    "api_error": ErrorClass.SERVER_ERROR,
    "timeout_error": ErrorClass.TIMEOUT,
    "overloaded_error": ErrorClass.OVERLOADED,
}
_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit", "context window", "too many tokens")
_QUOTA_MARKERS = ("credit balance is too low",)
_POLICY_MARKERS = ("content filtering policy", "usage policy")


def finish_reason(stop_reason: Any) -> str:
    return STOP_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def usage_from(raw: Any) -> Usage:
    """Anthropic `usage` -> Usage; unknown (never zero) when the counts are missing or not integers."""
    if not isinstance(raw, Mapping):
        return Usage.UNKNOWN
    input_tokens, output_tokens = _count(raw.get("input_tokens")), _count(raw.get("output_tokens"))
    if input_tokens is None or output_tokens is None:
        return Usage.UNKNOWN
    cache_write = _count(raw.get("cache_creation_input_tokens")) or 0
    cache_read = _count(raw.get("cache_read_input_tokens")) or 0
    details = raw.get("output_tokens_details")
    thinking = _count(details.get("thinking_tokens")) if isinstance(details, Mapping) else None
    return Usage(
        prompt_tokens=input_tokens + cache_write + cache_read,
        completion_tokens=output_tokens,
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=thinking or 0,
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def tool_call(block: Mapping[str, Any]) -> dict[str, Any]:
    """A `tool_use` block -> an OpenAI tool call (arguments as a JSON string)."""
    return {
        "id": block.get("id", ""),
        "type": "function",
        "function": {"name": block.get("name", ""), "arguments": json.dumps(block.get("input") or {})},
    }


def parse_response(
    data: Any, *, provider: str, model: str, created: int | None = None, native: bool = False
) -> ChatResponse:
    """A Messages API response body -> ChatResponse; ProtocolError if it is not one. With `native` the body itself
    rides along (`ChatResponse.native`) for a client that asked in the Messages format."""
    if isinstance(data, Mapping) and data.get("type") == "error":
        raise stream_error(data, provider=provider, model=model, after_first_token=False)
    if not isinstance(data, Mapping) or not isinstance(data.get("content"), list):
        raise provider_error(
            ErrorClass.PROTOCOL,
            "response is not an Anthropic message (no 'content' list)",
            provider=provider,
            model=model,
            body=data,
        )
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for block in data["content"]:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append(tool_call(block))
        elif kind in ("thinking", "redacted_thinking"):
            thinking.append(dict(block))
    reason = finish_reason(data.get("stop_reason"))
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if reason == "content_filter":
        details = data.get("stop_details")
        explanation = details.get("explanation") if isinstance(details, Mapping) else None
        message["refusal"] = explanation or text or "refused"
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(str(b.get("thinking") or "") for b in thinking)
        message["thinking_blocks"] = thinking
    return ChatResponse(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or model),
        choices=({"index": 0, "message": message, "logprobs": None, "finish_reason": reason},),
        usage=usage_from(data.get("usage")),
        created=int(time.time()) if created is None else created,
        native=data if native else None,
    )


def error_details(body: Any) -> tuple[str | None, str | None]:
    """(message, error.type) from an Anthropic error body (parsed JSON or raw text); (None, None) if foreign."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            return None, None
    if not isinstance(body, Mapping):
        return None, None
    error = body.get("error")
    if isinstance(error, Mapping):
        message, kind = error.get("message"), error.get("type")
        return (message if isinstance(message, str) else None), (kind if isinstance(kind, str) else None)
    if isinstance(error, str):
        return error, None
    return None, None


def classify(status: int | None, error_type: str | None, message: str | None) -> ErrorClass | None:
    """The taxonomy class Anthropic's own error says, or None to fall back to status-based classification."""
    text = (message or "").lower()
    if error_type == "invalid_request_error" or (error_type is None and status == 400):
        if any(marker in text for marker in _CONTEXT_MARKERS):
            return ErrorClass.CONTEXT_WINDOW
        if any(marker in text for marker in _QUOTA_MARKERS):
            return ErrorClass.QUOTA_EXCEEDED
        if any(marker in text for marker in _POLICY_MARKERS):
            return ErrorClass.CONTENT_POLICY
    if error_type in ERROR_TYPES:
        return ERROR_TYPES[error_type]
    if status == 529:
        return ErrorClass.OVERLOADED
    return None


def stream_error(data: Any, *, provider: str, model: str, after_first_token: bool) -> ProviderError:
    """An `event: error` received after HTTP 200 -> classified ProviderError (server_error if unknown)."""
    message, kind = error_details(data)
    error_class = classify(None, kind, message) or ErrorClass.SERVER_ERROR
    return provider_error(
        error_class,
        message or "upstream sent an error event",
        provider=provider,
        model=model,
        code=kind,
        after_first_token=after_first_token,
        body=data,
    )
