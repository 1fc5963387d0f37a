"""AnthropicFake: canonical scenarios rendered as exact Anthropic Messages wire bytes (wire-formats.md section 3).

Streams use the named-event SSE framing (`event:` + `data:` pairs, `message_start` ... `message_stop`); tool
arguments stream as `input_json_delta` fragments split mid-token; `message_delta` usage is cumulative; keep-alives
(`Framing(comments=True)`) are `ping` events. Errors use `{"type": "error", "error": {"type", "message"}}` with
the status Anthropic documents for each error type (529 for overloaded).

Requests are checked as strictly as the real API checks them (`anthropic_rules.problems`: every message, content
block, tool and tool choice): a body it would refuse is answered 400 `invalid_request_error`, naming each problem,
instead of the scripted answer, and the reasons are kept in `refused`. `AnthropicFake(strict=False)` accepts
anything (for tests about what a driver does with an answer to a body the API would refuse).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from turnout.errors import ErrorClass
from turnout.testing.anthropic_rules import problems
from turnout.testing.fake import Behaviour, Framing, ToolCall, reply_json, reply_sse, sse_frame
from turnout.testing.format_fake import DEFAULT_USAGE, NO_FRAMING, FormatFake
from turnout.types import Usage

STOP_REASONS: Mapping[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}

# class -> (status, error.type, message): the documented status per type (section 3.5), observed messages.
ERRORS: Mapping[ErrorClass, tuple[int, str, str]] = {
    ErrorClass.RATE_LIMIT: (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
    ),
    ErrorClass.QUOTA_EXCEEDED: (402, "billing_error", "Your account has an outstanding balance."),
    ErrorClass.OVERLOADED: (529, "overloaded_error", "Overloaded"),
    ErrorClass.SERVER_ERROR: (500, "api_error", "Internal server error"),
    ErrorClass.TIMEOUT: (504, "timeout_error", "Request timed out"),
    ErrorClass.AUTH: (401, "authentication_error", "invalid x-api-key"),
    ErrorClass.NOT_FOUND: (404, "not_found_error", "model: claude-nope"),
    ErrorClass.CONTEXT_WINDOW: (
        400,
        "invalid_request_error",
        "prompt is too long: 208656 tokens > 200000 maximum",
    ),
    ErrorClass.CONTENT_POLICY: (400, "invalid_request_error", "Output blocked by content filtering policy"),
    ErrorClass.BAD_REQUEST: (400, "invalid_request_error", "messages: text content blocks must be non-empty"),
}


def wire_usage(usage: Usage) -> dict[str, int]:
    """A canonical Usage as Anthropic reports it (`input_tokens` excludes cache reads and writes)."""
    prompt = usage.prompt_tokens or 0
    return {
        "input_tokens": prompt - usage.cached_tokens - usage.cache_write_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens or 0,
    }


def event(kind: str, **fields: Any) -> bytes:
    """One named SSE event whose data `type` equals its name, as Anthropic sends them."""
    return sse_frame(json.dumps({"type": kind, **fields}), event=kind)


class AnthropicFake(FormatFake):
    """A loopback Anthropic Messages API. Endpoints: "chat" (`/v1/messages`), "models" (`/v1/models`)."""

    chat_paths = ("/v1/messages",)
    models_path = "/v1/models"
    keepalive = sse_frame('{"type": "ping"}', event="ping")

    def __init__(self, *, model: str = "claude-test", strict: bool = True) -> None:
        super().__init__(model=model)
        self.strict = strict
        self.refused: list[list[str]] = []  # the problems of each refused request, in order

    def refusal(self, endpoint: str, body: Any) -> Behaviour | None:
        if endpoint != "chat" or not self.strict:
            return None
        found = problems(body)
        if not found:
            return None
        self.refused.append(found)
        _, payload = self.error_body(ErrorClass.BAD_REQUEST, "; ".join(found))
        return reply_json(payload, status=400)

    # -- non-streaming

    def message(self, content: Sequence[Mapping[str, Any]], *, stop_reason: str, usage: Usage | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": "msg_fake01",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": list(content),
            "stop_reason": stop_reason,
            "stop_sequence": None,
        }
        if usage is not None:
            body["usage"] = wire_usage(usage)
        return body

    def text(self, reply: str, *, usage: Usage | None = DEFAULT_USAGE, finish_reason: str = "stop") -> Behaviour:
        content = [{"type": "text", "text": reply}]
        return reply_json(self.message(content, stop_reason=STOP_REASONS[finish_reason], usage=usage))

    def tool_calls(self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE) -> Behaviour:
        content = [
            {"type": "tool_use", "id": call.id or f"toolu_{i}", "name": call.name, "input": dict(call.arguments)}
            for i, call in enumerate(calls)
        ]
        return reply_json(self.message(content, stop_reason="tool_use", usage=usage))

    def models(self, ids: Sequence[str]) -> Behaviour:
        data = [
            {
                "type": "model",
                "id": i,
                "display_name": i,
                "created_at": "2025-02-19T00:00:00Z",
                "max_input_tokens": 200000,
            }
            for i in ids
        ]
        first, last = (ids[0], ids[-1]) if ids else (None, None)
        return reply_json({"data": data, "has_more": False, "first_id": first, "last_id": last})

    # -- streaming

    def _start(self, usage: Usage | None) -> list[bytes]:
        message: dict[str, Any] = {
            "id": "msg_fake01",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.model,
            "stop_reason": None,
            "stop_sequence": None,
        }
        if usage is not None:
            message["usage"] = {**wire_usage(usage), "output_tokens": 1}
        return [event("message_start", message=message)]

    def _text_block(self, pieces: Sequence[str], index: int = 0) -> list[bytes]:
        frames = [event("content_block_start", index=index, content_block={"type": "text", "text": ""})]
        frames += [event("content_block_delta", index=index, delta={"type": "text_delta", "text": p}) for p in pieces]
        return [*frames, event("content_block_stop", index=index)]

    def _end(self, stop_reason: str, usage: Usage | None) -> list[bytes]:
        delta: dict[str, Any] = {"delta": {"stop_reason": stop_reason, "stop_sequence": None}}
        if usage is not None:
            output = usage.completion_tokens or 0
            # cumulative counts: an early partial count, then the final one
            frames = [event("message_delta", delta={"stop_reason": None}, usage={"output_tokens": max(output - 1, 0)})]
            frames.append(event("message_delta", **delta, usage={"output_tokens": output}))
        else:
            frames = [event("message_delta", **delta)]
        return [*frames, event("message_stop")]

    def stream_text(
        self,
        pieces: Sequence[str],
        *,
        usage: Usage | None = DEFAULT_USAGE,
        finish_reason: str = "stop",
        framing: Framing = NO_FRAMING,
    ) -> Behaviour:
        frames = [*self._start(usage), *self._text_block(pieces), *self._end(STOP_REASONS[finish_reason], usage)]
        return self.send_sse(frames, framing)

    def stream_tool_calls(
        self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE, framing: Framing = NO_FRAMING
    ) -> Behaviour:
        frames = self._start(usage)
        for index, call in enumerate(calls):
            block = {"type": "tool_use", "id": call.id or f"toolu_{index}", "name": call.name, "input": {}}
            frames.append(event("content_block_start", index=index, content_block=block))
            args = json.dumps(call.arguments)
            fragments = ["", *(args[cut : cut + 5] for cut in range(0, len(args), 5))]  # first one empty, as observed
            frames += [
                event("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": f})
                for f in fragments
            ]
            frames.append(event("content_block_stop", index=index))
        return self.send_sse([*frames, *self._end("tool_use", usage)], framing)

    def stream_error(self, pieces: Sequence[str], error_class: ErrorClass, *, message: str | None = None) -> Behaviour:
        """Content, then `event: error` after the 200, and no message_stop."""
        _, kind, text = ERRORS[ErrorClass(error_class)]
        frames = self._start(DEFAULT_USAGE)
        if pieces:
            frames += self._text_block(pieces)[:-1]
        frames.append(event("error", error={"type": kind, "message": message or text}))
        return reply_sse(frames)

    def stream_malformed(self, pieces: Sequence[str]) -> Behaviour:
        """Content, then a content_block_delta whose JSON is cut off."""
        frames = [*self._start(DEFAULT_USAGE), *self._text_block(pieces)[:-1]]
        frames.append(b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"ty\n\n')
        return reply_sse([*frames, *self._end("end_turn", DEFAULT_USAGE)])

    def stream_unterminated(self, pieces: Sequence[str]) -> Behaviour:
        """Content, then a clean end of body without message_delta or message_stop."""
        return reply_sse([*self._start(DEFAULT_USAGE), *self._text_block(pieces)])

    # -- errors

    def error_body(self, error_class: ErrorClass, message: str | None = None) -> tuple[int, dict[str, Any]]:
        status, kind, text = ERRORS[ErrorClass(error_class)]
        return status, {"type": "error", "error": {"type": kind, "message": message or text}, "request_id": "req_fake"}
