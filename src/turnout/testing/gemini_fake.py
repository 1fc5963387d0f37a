"""GeminiFake: canonical scenarios rendered as exact Gemini generateContent wire bytes (wire-formats.md section 4).

Streams are `data:` lines only, each a whole GenerateContentResponse with incremental parts, `usageMetadata` on
every chunk (growing; the last is final), `finishReason` on the last candidate chunk and no terminator: the body
just ends. Function calls arrive whole, without ids. Errors are google.rpc.Status bodies; rate limits carry
QuotaFailure details (per-minute quota ids, or per-day for quota_exceeded) and optionally RetryInfo.

Gemini reports a blocked prompt as HTTP 200 with `promptFeedback.blockReason` and no candidates (`blocked()`);
`error(CONTENT_POLICY)` instead renders a 400 whose message names the safety block, for suites that need an
HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from turnout.errors import ErrorClass
from turnout.testing.embeddings_fake import GeminiEmbeddings
from turnout.testing.fake import Behaviour, Framing, ToolCall, reply_json, reply_sse, sse_frame
from turnout.testing.format_fake import DEFAULT_USAGE, NO_FRAMING, FormatFake
from turnout.types import Usage

FINISH_REASONS: Mapping[str, str] = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "tool_calls": "STOP",
}
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
_PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"

# class -> (HTTP status, google.rpc status, message, details)
ERRORS: Mapping[ErrorClass, tuple[int, str, str, list[dict[str, Any]]]] = {
    ErrorClass.RATE_LIMIT: (
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        [{"@type": _QUOTA_FAILURE, "violations": [{"quotaMetric": "generate_requests", "quotaId": _PER_MINUTE}]}],
    ),
    ErrorClass.QUOTA_EXCEEDED: (
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        [{"@type": _QUOTA_FAILURE, "violations": [{"quotaMetric": "generate_requests", "quotaId": _PER_DAY}]}],
    ),
    ErrorClass.OVERLOADED: (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", []),
    ErrorClass.SERVER_ERROR: (500, "INTERNAL", "An internal error has occurred. Please retry.", []),
    ErrorClass.TIMEOUT: (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", []),
    ErrorClass.AUTH: (
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ],
    ),
    ErrorClass.NOT_FOUND: (
        404,
        "NOT_FOUND",
        "models/gemini-nope is not found for API version v1beta, or is not supported for generateContent.",
        [],
    ),
    ErrorClass.CONTEXT_WINDOW: (
        400,
        "INVALID_ARGUMENT",
        "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
        [],
    ),
    ErrorClass.CONTENT_POLICY: (400, "INVALID_ARGUMENT", "The request was blocked for safety reasons.", []),
    ErrorClass.BAD_REQUEST: (400, "INVALID_ARGUMENT", 'Invalid JSON payload received. Unknown name "foo".', []),
}


def wire_usage(usage: Usage) -> dict[str, int]:
    """A canonical Usage as Gemini reports it (thoughts outside candidates; prompt includes cached)."""
    prompt = usage.prompt_tokens or 0
    candidates = (usage.completion_tokens or 0) - usage.reasoning_tokens
    out = {"promptTokenCount": prompt, "candidatesTokenCount": candidates, "totalTokenCount": prompt + candidates}
    if usage.reasoning_tokens:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
        out["totalTokenCount"] += usage.reasoning_tokens
    if usage.cached_tokens:
        out["cachedContentTokenCount"] = usage.cached_tokens
    return out


class GeminiFake(GeminiEmbeddings, FormatFake):
    """A loopback Gemini API. Endpoints: "chat" (`:generateContent` and `:streamGenerateContent`), "models"."""

    chat_paths = (":generateContent", ":streamGenerateContent")
    models_path = "/models"

    def __init__(self, *, model: str = "gemini-test") -> None:
        super().__init__(model=model)

    # -- non-streaming

    def response(
        self, parts: Sequence[Mapping[str, Any]], *, finish: str | None, usage: Usage | None, **extra: Any
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        body: dict[str, Any] = {"candidates": [candidate], "modelVersion": self.model, "responseId": "resp-fake01"}
        if usage is not None:
            body["usageMetadata"] = wire_usage(usage)
        body.update(extra)
        return body

    def text(self, reply: str, *, usage: Usage | None = DEFAULT_USAGE, finish_reason: str = "stop") -> Behaviour:
        return reply_json(self.response([{"text": reply}], finish=FINISH_REASONS[finish_reason], usage=usage))

    def tool_calls(self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE) -> Behaviour:
        parts = [{"functionCall": {"name": c.name, "args": dict(c.arguments)}} for c in calls]
        return reply_json(self.response(parts, finish="STOP", usage=usage))

    def blocked(self, reason: str = "SAFETY") -> Behaviour:
        """A prompt refused before generation: 200, no candidates, promptFeedback.blockReason."""
        body = {
            "promptFeedback": {"blockReason": reason},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        }
        return reply_json({**body, "modelVersion": self.model, "responseId": "resp-fake01"})

    def models(self, ids: Sequence[str]) -> Behaviour:
        models = [
            {
                "name": f"models/{i}",
                "version": "001",
                "displayName": i,
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 65536,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for i in ids
        ]
        return reply_json({"models": models})

    # -- streaming

    def _chunk(
        self, parts: Sequence[Mapping[str, Any]], usage: dict[str, int] | None, finish: str | None = None
    ) -> bytes:
        body = self.response(parts, finish=finish, usage=None)
        if usage is not None:
            body["usageMetadata"] = usage
        return sse_frame(json.dumps(body))

    def _frames(self, parts: Sequence[Mapping[str, Any]], finish: str, usage: Usage | None) -> list[bytes]:
        """One chunk per part, usage growing on each, finishReason and final usage on the last."""
        frames = []
        final = wire_usage(usage) if usage is not None else None
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            partial = None if final is None else {"promptTokenCount": final["promptTokenCount"], "totalTokenCount": 0}
            frames.append(self._chunk([part], final if last else partial, finish if last else None))
        if not parts:
            frames.append(self._chunk([], final, finish))
        return frames

    def stream_text(
        self,
        pieces: Sequence[str],
        *,
        usage: Usage | None = DEFAULT_USAGE,
        finish_reason: str = "stop",
        framing: Framing = NO_FRAMING,
    ) -> Behaviour:
        parts = [{"text": p} for p in pieces]
        return self.send_sse(self._frames(parts, FINISH_REASONS[finish_reason], usage), framing)

    def stream_tool_calls(
        self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE, framing: Framing = NO_FRAMING
    ) -> Behaviour:
        parts = [{"functionCall": {"name": c.name, "args": dict(c.arguments)}} for c in calls]
        return self.send_sse(self._frames(parts, "STOP", usage), framing)

    def stream_error(self, pieces: Sequence[str], error_class: ErrorClass, *, message: str | None = None) -> Behaviour:
        """Content chunks, then a `data: {"error": ...}` chunk after the 200."""
        frames = [self._chunk([{"text": p}], None) for p in pieces]
        _, body = self.error_body(ErrorClass(error_class), message)
        return reply_sse([*frames, sse_frame(json.dumps(body))])

    def stream_malformed(self, pieces: Sequence[str]) -> Behaviour:
        """Content chunks, then a chunk whose JSON is cut off."""
        frames = [self._chunk([{"text": p}], None) for p in pieces]
        return reply_sse([*frames, b'data: {"candidates": [{"content": {"parts": [{"te\n\n'])

    def stream_unterminated(self, pieces: Sequence[str]) -> Behaviour:
        """Content chunks and a clean end of body, but no finishReason anywhere."""
        return reply_sse([self._chunk([{"text": p}], None) for p in pieces])

    # -- errors

    def error_body(self, error_class: ErrorClass, message: str | None = None) -> tuple[int, dict[str, Any]]:
        status, rpc_status, text, details = ERRORS[ErrorClass(error_class)]
        error = {"code": status, "message": message or text, "status": rpc_status}
        if details:
            error["details"] = details
        return status, {"error": error}

    def error(
        self,
        error_class: ErrorClass,
        *,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_delay: str | None = None,
    ) -> Behaviour:
        """An HTTP error; `retry_delay` (e.g. "15s") adds a google.rpc.RetryInfo detail."""
        status, body = self.error_body(ErrorClass(error_class), message)
        if retry_delay is not None:
            retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
            body["error"]["details"] = [*body["error"].get("details", []), retry]
        return reply_json(body, status=status, headers=headers)
