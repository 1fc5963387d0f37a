"""What both directions of the Responses API share: its name, ids, usage, statuses and error codes. Pure: no I/O.

| canonical (OpenAI chat)      | Responses                                                                        |
|------------------------------|----------------------------------------------------------------------------------|
| finish_reason stop           | status completed                                                                 |
| finish_reason tool_calls     | status completed (function_call / custom_tool_call items in `output`)            |
| finish_reason length         | status incomplete, incomplete_details.reason max_output_tokens                   |
| finish_reason content_filter | status incomplete, incomplete_details.reason content_filter                      |
| usage prompt_tokens          | input_tokens (cached_tokens and cache_write_tokens included, as in chat)         |
| usage completion_tokens      | output_tokens (reasoning_tokens included)                                        |

A failed response (`status: failed`, or a `response.failed` / `error` stream event) carries `error.code`;
`error_class_of` gives it the HTTP status OpenAI would have answered with and classifies it like any upstream error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from turnout.drivers._classify import error_class_for
from turnout.errors import ProviderError, provider_error
from turnout.reasoning import RESPONSES
from turnout.types import Usage, is_mapping

NATIVE_FORMAT = RESPONSES  # `NativeRequest.format` of a request that came in as a Responses request

FINISH_BY_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}
INCOMPLETE_BY_FINISH = {"length": "max_output_tokens", "content_filter": "content_filter"}

# error.code of a failed response -> the HTTP status the same failure has as an answer (for classification)
_STATUS_BY_CODE = (
    ("insufficient_quota", 429),
    ("rate_limit", 429),
    ("context_length", 400),
    ("invalid_prompt", 400),
    ("content_filter", 400),
    ("invalid", 400),
    ("unsupported", 400),
    ("not_found", 404),
    ("auth", 401),
    ("overloaded", 503),
    ("timeout", 504),
)
_CLEAN_ID = re.compile(r"[^A-Za-z0-9_-]")


def new_id(prefix: str) -> str:
    """An id in OpenAI's style (`resp_`, `msg_`, `fc_`, `ctc_` + 48 hex digits), unique without coordination."""
    return f"{prefix}_{os.urandom(24).hex()}"


def clean_id(value: str) -> str:
    """A client-supplied id made safe for headers, keys and logs (letters, digits, `_` and `-`; at most 128)."""
    return _CLEAN_ID.sub("", value)[:128]


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def usage_of(data: Any) -> Usage:
    """A Responses `usage` object -> Usage; anything else (null, a partial object) -> unknown."""
    if not is_mapping(data):
        return Usage.UNKNOWN
    prompt, completion = data.get("input_tokens"), data.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int) or isinstance(prompt, bool):
        return Usage.UNKNOWN
    inputs = data.get("input_tokens_details")
    outputs = data.get("output_tokens_details")
    inputs = inputs if is_mapping(inputs) else {}
    outputs = outputs if is_mapping(outputs) else {}
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=_count(inputs.get("cached_tokens")),
        cache_write_tokens=_count(inputs.get("cache_write_tokens")),
        reasoning_tokens=_count(outputs.get("reasoning_tokens")),
    )


def wire_usage(usage: Usage) -> dict[str, Any] | None:
    """Usage as the Responses API reports it, or None when the upstream reported none (never a made-up zero)."""
    if not usage.known:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": usage.cache_write_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def status_of(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """(status, incomplete_details) of an answer that ended with `finish_reason`."""
    reason = INCOMPLETE_BY_FINISH.get(finish_reason or "")
    if reason is None:
        return "completed", None
    return "incomplete", {"reason": reason}


def finish_of(response: Mapping[str, Any], has_calls: bool) -> str:
    """The canonical finish reason of a finished Responses object."""
    details = response.get("incomplete_details")
    if response.get("status") == "incomplete" and is_mapping(details):
        return FINISH_BY_INCOMPLETE.get(str(details.get("reason")), "length")
    return "tool_calls" if has_calls else "stop"


def failure_of(
    error: Any, *, provider: str, model: str, after_first_token: bool, body: bytes | None = None
) -> ProviderError:
    """A failed response's `error` ({code, message}, from a failed answer or a stream's `response.failed` / `error`
    event) as the classified ProviderError; there is no HTTP status to report (the call itself was a 200)."""
    detail = error if is_mapping(error) else {}
    message = detail.get("message")
    message = str(message) if message else "the upstream reported a failed response without a reason"
    code = detail.get("code") or detail.get("type")
    code = str(code) if code else None
    hint = (code or "").lower()
    status = next((s for key, s in _STATUS_BY_CODE if key in hint), 500)
    return provider_error(
        error_class_for(status, message, code),
        message[:1000],
        provider=provider,
        model=model,
        code=code,
        after_first_token=after_first_token,
        body=body[:2000] if body else None,
    )
