"""Error classification shared by drivers: error-body parsing, Retry-After, and the status/body -> class mapping.

`classify_status` is the generic mapping every driver falls back to after pre-classifying its own
provider-specific cases:

| status | class |
|---|---|
| 429 | rate_limit; quota_exceeded for quota/billing/"Request too large" codes or messages, or `x-should-retry: false` |
| 402 | quota_exceeded |
| 401, 403 | auth |
| 404 | not_found |
| 408, 504 | timeout |
| 413 | bad_request (request too large) |
| 409, other 5xx | server_error; 503, 529 and "overloaded" messages: overloaded |
| 400, 422 | context_window / content_policy by message and code, else bad_request |
| other 4xx | bad_request; 1xx/3xx: protocol |

Only the provider's own failures may count against its breaker, and a 400's message often quotes the client's
request (OpenAI echoes unknown parameter names, Gemini unknown field names). So `auth` comes from 401/403 only,
never from a phrase found somewhere in an error text; the one exception is recognised by its whole shape: xAI's
documented bad-key answer, a 400 `{"code": "Client specified an invalid argument", "error": "Incorrect API key
provided: ..."}` whose message *begins* with that phrase (a client cannot choose how a provider's message starts).
A phrase a client smuggles in can only turn a 400 into context_window or content_policy, which say nothing against
the deployment either.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from turnout.errors import ErrorClass, ProviderError, provider_error

MAX_MESSAGE = 200
_TAG = re.compile(rb"<[^>]*>")
_SPACE = re.compile(rb"\s+")

_CONTEXT_PHRASES = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "input token count",
    "too many tokens",
    "exceeds the maximum number of tokens",
)
_POLICY_PHRASES = (
    "invalid_prompt",
    "content_filter",
    "content_policy",
    "content management policy",
    "flagged",
    "safety",
    "responsibleaipolicyviolation",
)
_QUOTA_PHRASES = ("insufficient_quota", "exceeded your current quota", "billing", "request too large")
_XAI_INVALID_ARGUMENT = "client specified an invalid argument"
_XAI_BAD_KEY = "incorrect api key provided"


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup that works for CIMultiDict and plain dicts alike."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds the upstream asked us to wait: `retry-after-ms`, else `retry-after` (seconds or an HTTP-date).

    Negative, non-finite or unparsable values give None; a date in the past gives 0. `now` is wall-clock epoch
    seconds (injectable for tests).
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        with contextlib.suppress(ValueError):
            ms = float(raw_ms)
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000.0
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# ---------------------------------------------------------------------------------------------------- classification


def _plain_text(body: bytes) -> str:
    """First 200 characters of a non-JSON body (HTML error pages lose their tags)."""
    text = _SPACE.sub(b" ", _TAG.sub(b" ", body[:4096])).strip()
    return text[:MAX_MESSAGE].decode("utf-8", "replace")


def error_details(body: bytes) -> tuple[str, str | None]:
    """(message, code) from any error body shape turnout knows, or the body's plain text.

    Shapes: OpenAI/Azure/Gemini `{"error": {"message", "code"|"type"|"status"}}`, Anthropic
    `{"type": "error", "error": {"type", "message"}}`, vLLM/Mistral `{"object": "error", "message", "type"}`,
    xAI `{"code": "...", "error": "text"}`, Ollama `{"error": "text"}`.
    """
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        data = None
    if not isinstance(data, Mapping):
        return (_plain_text(body) or "(empty body)"), None
    err = data.get("error")
    if isinstance(err, Mapping):
        message = err.get("message")
        code = err.get("code")
        if not isinstance(code, str) or not code:
            code = err.get("status") if isinstance(err.get("status"), str) else err.get("type")
        return (str(message) if message is not None else _plain_text(body)), (str(code) if code else None)
    if isinstance(err, str):
        code = data.get("code")
        return err, (str(code) if code is not None else None)
    message = data.get("message") or data.get("detail")
    if message is not None:
        code = data.get("code") if isinstance(data.get("code"), str) else data.get("type")
        return str(message), (str(code) if code else None)
    return _plain_text(body), None


def _has(haystack: str, phrases: tuple[str, ...]) -> bool:
    return any(p in haystack for p in phrases)


def _class_for(status: int, code: str, text: str, should_retry: str | None, message: str) -> ErrorClass:
    if status == 429:
        if _has(text, _QUOTA_PHRASES) or "quota" in code or should_retry == "false":
            return ErrorClass.QUOTA_EXCEEDED
        return ErrorClass.RATE_LIMIT
    if status == 402:
        return ErrorClass.QUOTA_EXCEEDED
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 404:
        return ErrorClass.NOT_FOUND
    if status in (408, 504):
        return ErrorClass.TIMEOUT
    if status in (503, 529) or (status >= 500 and "overloaded" in text):
        return ErrorClass.OVERLOADED
    if status == 409 or status >= 500:
        return ErrorClass.SERVER_ERROR
    if status in (400, 422):
        if _has(text, _CONTEXT_PHRASES):
            return ErrorClass.CONTEXT_WINDOW
        if _has(text, _POLICY_PHRASES):
            return ErrorClass.CONTENT_POLICY
        if code == _XAI_INVALID_ARGUMENT and message.lstrip().lower().startswith(_XAI_BAD_KEY):
            return ErrorClass.AUTH  # xAI's bad key (see the module docstring): the message's start, not its text
        return ErrorClass.BAD_REQUEST
    if 400 <= status < 500:
        return ErrorClass.BAD_REQUEST
    return ErrorClass.PROTOCOL


def error_class_for(
    status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None
) -> ErrorClass:
    """The taxonomy class for an error status plus the provider's message/code (table in the module docstring)."""
    # The code goes first so a bare code like "insufficient_quota" is matched by the phrase lists.
    text = f"{code or ''} {message}".lower()
    should_retry = _header(headers, "x-should-retry")
    return _class_for(status, (code or "").lower(), text, should_retry.lower() if should_retry else None, message)


def classify_status(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None,
    *,
    provider: str,
    model: str,
    message: str | None = None,
    code: str | None = None,
    after_first_token: bool = False,
) -> ProviderError:
    """The generic status/body -> ProviderError mapping (table in the module docstring).

    Drivers pass their own parsed `message`/`code` when they have them; otherwise they are read from the body.
    """
    if message is None:
        message, parsed_code = error_details(body)
        code = code or parsed_code
    error_class = error_class_for(status, message, code, headers)
    if status == 413 and not message.lower().startswith("request too large"):
        message = f"request too large: {message}"
    if error_class is ErrorClass.PROTOCOL:
        message = f"unexpected HTTP status {status}: {message}"
    return provider_error(
        error_class,
        message[:1000],
        provider=provider,
        model=model,
        status=status,
        code=code,
        retry_after=parse_retry_after(headers),
        after_first_token=after_first_token,
        body=body[:2000] if body else None,
    )
