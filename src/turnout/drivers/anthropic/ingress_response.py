"""Canonical answers and failures -> Messages response and error bodies. Pure: no I/O.

The inverse of `response.py`, for the sidecar's `/v1/messages`. An answer an Anthropic deployment gave to the
client's own body (`ChatResponse.native`) is returned as it came; any other is rendered from the canonical answer:

- finish reasons map back through `response.STOP_REASONS` (the first Messages reason for each canonical one:
  stop -> end_turn, length -> max_tokens, tool_calls -> tool_use, content_filter -> refusal);
- usage is in Anthropic's terms (`input_tokens` excludes cache reads and writes, which get their own fields); when
  the upstream reported none, the counts are turnout's estimate (the API has no "unknown");
- tool calls become `tool_use` blocks with ids Anthropic accepts (`request.tool_id`), so the client can send them
  back to any deployment; thinking blocks only when they carry a signature (an Anthropic upstream's).

Errors use `{"type": "error", "error": {"type", "message"}}` with the status Anthropic documents for each type
(wire-formats.md 3.5): "at capacity" answers (the sidecar's `server.max_in_flight`, no usable deployment, an
overloaded upstream) are 529 `overloaded_error`, which the `anthropic` SDK raises as OverloadedError and retries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from turnout.drivers.anthropic.request import clean_tool_id
from turnout.drivers.anthropic.response import STOP_REASONS
from turnout.drivers.anthropic.thinking import thinking_blocks
from turnout.types import ChatResponse, Usage


def _first_reasons() -> dict[str, str]:
    """Canonical finish reason -> the first Messages stop_reason that maps to it (`STOP_REASONS` inverted)."""
    out: dict[str, str] = {}
    for reason, finish in STOP_REASONS.items():
        out.setdefault(finish, reason)
    out.setdefault("function_call", "tool_use")  # OpenAI's legacy name for a tool call
    return out


STOP_REASON: Mapping[str, str] = MappingProxyType(_first_reasons())

OVERLOADED = 529
# The error type Anthropic sends with each status (other 4xx: invalid_request_error, other 5xx: api_error).
ERROR_TYPE_BY_STATUS: Mapping[int, str] = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    OVERLOADED: "overloaded_error",
}
_CHARS_PER_TOKEN = 4


def stop_reason(finish_reason: str | None) -> str:
    return STOP_REASON.get(finish_reason or "stop", "end_turn")


def message_id(upstream_id: str) -> str:
    """A `msg_` id (Anthropic's prefix) for an answer another format named."""
    if upstream_id.startswith("msg_"):
        return upstream_id
    return "msg_" + (clean_tool_id(upstream_id) if upstream_id else "turnout")


def wire_usage(usage: Usage, *, input_estimate: int, output_estimate: int) -> dict[str, int]:
    """Usage as the Messages API reports it; estimates stand in for counts the upstream did not report."""
    if not usage.known:
        return {
            "input_tokens": input_estimate,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_estimate,
        }
    cached, written = usage.cached_tokens, usage.cache_write_tokens
    return {
        "input_tokens": max(0, (usage.prompt_tokens or 0) - cached - written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.completion_tokens or 0,
    }


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / _CHARS_PER_TOKEN)


def tool_use_id(value: Any, fallback: str) -> str:
    """A tool call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`; the same rewrite as `request.tool_id`)."""
    return clean_tool_id(value) if isinstance(value, str) and value else fallback


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON-string arguments as the `input` object; what is not a JSON object is kept under
    `_invalid_arguments` rather than lost (the client's tool validation then reports it to the model)."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        value = None
    return value if isinstance(value, dict) else {"_invalid_arguments": arguments}


def message_body(reply: ChatResponse, *, input_estimate: int) -> Mapping[str, Any]:
    """The Messages response for `reply`: the upstream's own when it spoke Messages, else rendered."""
    if reply.native is not None:
        return reply.native
    message = reply.message
    msg_id = message_id(reply.id)
    content: list[dict[str, Any]] = list(thinking_blocks(message.get("thinking_blocks")))
    text = reply.text
    if text:
        content.append({"type": "text", "text": text})
    for n, call in enumerate(reply.tool_calls):
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": tool_use_id(call.get("id"), f"toolu_{msg_id[4:]}_{n}"),
                "name": str(function.get("name") or ""),
                "input": tool_input(function.get("arguments")),
            }
        )
    usage = wire_usage(reply.usage, input_estimate=input_estimate, output_estimate=estimate_tokens(len(text)))
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": stop_reason(reply.finish_reason),
        "stop_sequence": None,
        "usage": usage,
    }


def error_status(status: int, error_class: str | None) -> tuple[int, str]:
    """(status, error.type) of a failure the sidecar answers with `status` (and its upstream error class)."""
    if error_class == "overloaded" or status == 503:
        return OVERLOADED, ERROR_TYPE_BY_STATUS[OVERLOADED]
    kind = ERROR_TYPE_BY_STATUS.get(status)
    if kind is not None:
        return status, kind
    if status >= 500:
        return 500, "api_error"
    return status, "invalid_request_error"


def error_body(error_type: str, message: str, **extra: Any) -> dict[str, Any]:
    """Anthropic's error shape; `extra` (turnout's attempt trail, error class) goes inside `error`."""
    return {"type": "error", "error": {"type": error_type, "message": message, **extra}}
