"""Gemini GenerateContentResponse JSON and google.rpc.Status error bodies -> canonical values. Pure: no I/O.

- Usage (wire-formats.md 9.2): prompt = `promptTokenCount` (already includes cached content) +
  `toolUsePromptTokenCount`; completion = `candidatesTokenCount + thoughtsTokenCount` (thoughts are *not* inside
  candidates); cached = `cachedContentTokenCount`; reasoning = `thoughtsTokenCount`.
- Finish reasons (9.1): `STOP` with functionCall parts -> tool_calls; safety-type reasons -> content_filter;
  `MALFORMED_FUNCTION_CALL`/`UNEXPECTED_TOOL_CALL`/`TOO_MANY_TOOL_CALLS` are failures, not answers: they raise a
  server_error (a retry may well succeed) instead of passing off an empty reply as a successful stop.
- Gemini may omit function-call ids: they are synthesised as `call_<n>_<hash>`, n the call's position in the
  response and hash a digest of the response id, position, name and arguments (stable for the same answer, so a
  streamed and a non-streamed copy agree). A part's `thoughtSignature` rides on the tool call as
  `extra_content.google.thought_signature` (see gemini_request). Thought summaries (`thought: true` parts) are
  reasoning, not answer: they become the message's `reasoning_content`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from turnout.drivers._http import error_class_for
from turnout.errors import ErrorClass, ProviderError, provider_error
from turnout.types import ChatResponse, Usage

FINISH_REASONS: Mapping[str, str] = {
    "STOP": "stop",
    "OTHER": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
    "RECITATION": "stop",
    "NO_IMAGE": "stop",
    "IMAGE_OTHER": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "LANGUAGE": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
FAILED_FINISH = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})

# google.rpc.Status `status` -> class when the HTTP status alone would say less (see `classify`).
_STATUS_CLASSES: Mapping[str, ErrorClass] = {
    "UNAUTHENTICATED": ErrorClass.AUTH,
    "PERMISSION_DENIED": ErrorClass.AUTH,
    "NOT_FOUND": ErrorClass.NOT_FOUND,
    "UNAVAILABLE": ErrorClass.OVERLOADED,
    "INTERNAL": ErrorClass.SERVER_ERROR,
    "DEADLINE_EXCEEDED": ErrorClass.TIMEOUT,
    "FAILED_PRECONDITION": ErrorClass.AUTH,  # e.g. free tier unavailable in the region: this account can't serve
}
_BAD_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})
_TYPE = "@type"


def finish_reason(raw: Any, *, has_calls: bool) -> str:
    reason = FINISH_REASONS.get(raw, "stop") if isinstance(raw, str) else "stop"
    return "tool_calls" if has_calls and reason == "stop" else reason


def usage_from(raw: Any) -> Usage:
    """`usageMetadata` -> Usage; unknown (never zero) without a prompt count."""
    if not isinstance(raw, Mapping):
        return Usage.UNKNOWN
    prompt = _count(raw.get("promptTokenCount"))
    if prompt is None:
        return Usage.UNKNOWN
    thoughts = _count(raw.get("thoughtsTokenCount")) or 0
    return Usage(
        prompt_tokens=prompt + (_count(raw.get("toolUsePromptTokenCount")) or 0),
        completion_tokens=(_count(raw.get("candidatesTokenCount")) or 0) + thoughts,
        cached_tokens=_count(raw.get("cachedContentTokenCount")) or 0,
        reasoning_tokens=thoughts,
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def call_id(response_id: str, n: int, name: str, args: Any) -> str:
    """A synthesised tool-call id, `call_<n>_<12 hex>` (valid for every provider's id rules)."""
    digest = hashlib.sha256(f"{response_id}\x00{n}\x00{name}\x00{json.dumps(args, sort_keys=True)}".encode())
    return f"call_{n}_{digest.hexdigest()[:12]}"


def tool_call(part: Mapping[str, Any], *, response_id: str, n: int) -> dict[str, Any]:
    """A `functionCall` part -> an OpenAI tool call (JSON-string arguments, id kept or synthesised)."""
    call = part["functionCall"]
    name = str(call.get("name") or "")
    args = call.get("args") or {}
    given = call.get("id")
    out: dict[str, Any] = {
        "id": given if isinstance(given, str) and given else call_id(response_id, n, name, args),
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }
    if isinstance(part.get("thoughtSignature"), str):
        out["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return out


def is_answer_part(part: Any) -> bool:
    """A part that belongs in the answer text (thought summaries do not)."""
    return isinstance(part, Mapping) and isinstance(part.get("text"), str) and not part.get("thought")


def is_thought_part(part: Any) -> bool:
    """A thought summary (`thought: true`, sent with `includeThoughts`): reasoning, not answer."""
    return isinstance(part, Mapping) and isinstance(part.get("text"), str) and part.get("thought") is True


def parse_response(data: Any, *, provider: str, model: str, created: int | None = None) -> ChatResponse:
    """A generateContent response body -> ChatResponse (or the classified error it really is)."""
    if not isinstance(data, Mapping):
        raise provider_error(ErrorClass.PROTOCOL, "response is not a JSON object", provider=provider, model=model)
    if isinstance(data.get("error"), Mapping):
        raise error_from_status(data, status=None, provider=provider, model=model)
    candidates = data.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise no_candidates(data, provider=provider, model=model)
    response_id = str(data.get("responseId") or "")
    choices = tuple(_choice(c, i, response_id, provider, model) for i, c in enumerate(candidates))
    return ChatResponse(
        id=response_id,
        model=str(data.get("modelVersion") or model),
        choices=choices,
        usage=usage_from(data.get("usageMetadata")),
        created=int(time.time()) if created is None else created,
    )


def no_candidates(data: Mapping[str, Any], *, provider: str, model: str, after: bool = False) -> ProviderError:
    """A response without candidates: a blocked prompt (content_policy) or a protocol error."""
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
    if isinstance(reason, str) and reason:
        message = feedback.get("blockReasonMessage") or f"the prompt was blocked ({reason})"
        return provider_error(
            ErrorClass.CONTENT_POLICY,
            str(message),
            provider=provider,
            model=model,
            code=reason,
            after_first_token=after,
            body=dict(data),
        )
    return provider_error(
        ErrorClass.PROTOCOL, "response has no candidates", provider=provider, model=model, after_first_token=after
    )


def failed_finish(reason: str, *, provider: str, model: str, after: bool = False) -> ProviderError:
    return provider_error(
        ErrorClass.SERVER_ERROR,
        f"the model ended with {reason}",
        provider=provider,
        model=model,
        code=reason,
        after_first_token=after,
    )


def _choice(candidate: Any, i: int, response_id: str, provider: str, model: str) -> dict[str, Any]:
    if not isinstance(candidate, Mapping):
        raise provider_error(ErrorClass.PROTOCOL, "candidate is not an object", provider=provider, model=model)
    raw_reason = candidate.get("finishReason")
    if isinstance(raw_reason, str) and raw_reason in FAILED_FINISH:  # a list or a dict is unhashable
        raise failed_finish(raw_reason, provider=provider, model=model)
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thoughts: list[str] = []
    for part in parts if isinstance(parts, list) else ():
        if is_answer_part(part):
            texts.append(part["text"])
        elif is_thought_part(part):
            thoughts.append(part["text"])
        elif isinstance(part, Mapping) and isinstance(part.get("functionCall"), Mapping):
            calls.append(tool_call(part, response_id=response_id, n=len(calls)))
    reason = finish_reason(raw_reason, has_calls=bool(calls))
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    index = candidate.get("index")
    return {
        "index": index if isinstance(index, int) else i,
        "message": message,
        "logprobs": None,
        "finish_reason": reason,
    }


def parse_duration(value: Any) -> float | None:
    """A protobuf Duration string ("15s", "1.5s", "0.250s") -> seconds."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        seconds = float(value[:-1])
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _details(error: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, Mapping) and str(d.get(_TYPE, "")).endswith(kind)]


def classify(status: int | None, error: Mapping[str, Any]) -> ErrorClass | None:
    """The class a google.rpc.Status body says, or None to fall back to status-based classification."""
    rpc_status = error.get("status")
    message = str(error.get("message") or "").lower()
    reasons = {str(d.get("reason")) for d in _details(error, "google.rpc.ErrorInfo")}
    if reasons & _BAD_KEY_REASONS:  # Google's own ErrorInfo reason, never a phrase (messages quote client text)
        return ErrorClass.AUTH
    if status == 429 or rpc_status == "RESOURCE_EXHAUSTED":
        quota_ids = [
            str(v.get("quotaId", ""))
            for d in _details(error, "google.rpc.QuotaFailure")
            for v in (d.get("violations") if isinstance(d.get("violations"), list) else ())
            if isinstance(v, Mapping)
        ]
        return ErrorClass.QUOTA_EXCEEDED if any("PerDay" in q for q in quota_ids) else ErrorClass.RATE_LIMIT
    if isinstance(rpc_status, str) and rpc_status in _STATUS_CLASSES:
        return _STATUS_CLASSES[rpc_status]
    if "input token count" in message and "exceed" in message:
        return ErrorClass.CONTEXT_WINDOW
    return None


def retry_delay(error: Mapping[str, Any]) -> float | None:
    for detail in _details(error, "google.rpc.RetryInfo"):
        delay = parse_duration(detail.get("retryDelay"))
        if delay is not None:
            return delay
    return None


def error_from_status(
    body: Mapping[str, Any],
    *,
    status: int | None,
    provider: str,
    model: str,
    retry_after: float | None = None,
    after_first_token: bool = False,
) -> ProviderError:
    """A `{"error": google.rpc.Status}` body (HTTP error or mid-stream chunk) -> classified ProviderError.

    Mid-stream (`status` None: the response itself was a 200) the class is judged from `error.code`, and the error
    carries no HTTP status. RetryInfo's delay wins over a Retry-After header.
    """
    error = body["error"]
    code = error.get("code")
    judged = status if status is not None else (code if isinstance(code, int) and 400 <= code < 600 else 500)
    rpc_status = error.get("status") if isinstance(error.get("status"), str) else None
    message = str(error.get("message") or rpc_status or "upstream error")
    error_class = classify(judged, error) or error_class_for(judged, message, rpc_status)
    delay = retry_delay(error)
    return provider_error(
        error_class,
        message[:1000],
        provider=provider,
        model=model,
        status=status,
        code=rpc_status,
        retry_after=delay if delay is not None else retry_after,
        after_first_token=after_first_token,
        body=dict(body),
    )
