"""The Responses API side of `OpenAIFake` (`/responses`): canonical scenarios as exact Responses wire bytes.

Answers are Response objects (`object: response`, output items, usage with its details); streams are OpenAI's named
events, each with its `sequence_number` from 0: response.created, response.in_progress, per output item
output_item.added, (reasoning: reasoning_summary_part.added, reasoning_summary_text.delta/.done,
reasoning_summary_part.done), (message: content_part.added, output_text.delta..., output_text.done,
content_part.done), (function call: function_call_arguments.delta..., .done), output_item.done, and
response.completed. `reasoning` adds a reasoning item first, with a summary and `encrypted_content`, as OpenAI
returns it with `include: ["reasoning.encrypted_content"]`, so tests can check it survives a round trip untouched.

Requests are checked as strictly as the real API checks them (`responses_rules.problems`): a body it would refuse is
answered 400 `invalid_request_error` instead of the scripted answer, and the reasons are kept in `refused`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from turnout.errors import ErrorClass
from turnout.testing.fake import Behaviour, Framing, ToolCall, reply_json, reply_sse, sse_frame
from turnout.testing.format_fake import DEFAULT_USAGE, NO_FRAMING
from turnout.types import Usage

CREATED_AT = 1741476542
ENCRYPTED = "gAAAAABo-encrypted-reasoning-0001=="  # what OpenAI returns as reasoning.encrypted_content


def wire_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def reasoning_item(summary: str, index: int = 0) -> dict[str, Any]:
    return {
        "id": f"rs_fake{index:04d}",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": summary}],
        "encrypted_content": ENCRYPTED,
    }


def message_item(text: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"id": "msg_fake0001", "type": "message", "status": "completed", "role": "assistant", "content": [part]}


def call_item(call: ToolCall, index: int) -> dict[str, Any]:
    return {
        "id": f"fc_fake{index:04d}",
        "type": "function_call",
        "status": "completed",
        "arguments": json.dumps(call.arguments),
        "call_id": call.id or f"call_fake{index:04d}",
        "name": call.name,
    }


class _Events:
    """Numbers events as they are written."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.sequence = 0
        self.response_id = ""

    def add(self, kind: str, **fields: Any) -> None:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        self.frames.append(sse_frame(json.dumps(data), event=kind))


class ResponsesEndpoint:
    """Mixed into OpenAIFake: its "responses" endpoint. Needs `self.model`."""

    model: str
    _responses_made: int = 0

    def next_response_id(self) -> str:
        """A new Response id, as every real Response has its own."""
        self._responses_made += 1
        return f"resp_fake{self._responses_made:04d}"

    def response_object(
        self, output: Sequence[Any], *, usage: Usage | None, status: str = "completed", response_id: str = ""
    ) -> dict[str, Any]:
        return {
            "id": response_id or self.next_response_id(),
            "object": "response",
            "created_at": CREATED_AT,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": None,
            "max_output_tokens": None,
            "model": self.model,
            "output": list(output),
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": "medium", "summary": "auto"},
            "store": False,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": wire_usage(usage) if usage is not None else None,
            "user": None,
            "metadata": {},
        }

    # -- non-streaming

    def response_text(
        self, reply: str, *, usage: Usage | None = DEFAULT_USAGE, reasoning: str | None = None
    ) -> Behaviour:
        output = ([reasoning_item(reasoning)] if reasoning is not None else []) + [message_item(reply)]
        return reply_json(self.response_object(output, usage=usage))

    def response_calls(self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE) -> Behaviour:
        return reply_json(self.response_object([call_item(c, i) for i, c in enumerate(calls)], usage=usage))

    def response_failed(self, error_class: ErrorClass) -> Behaviour:
        """A 200 whose Response has `status: failed` and an `error` (a background-style failure)."""
        body = self.response_object([], usage=None, status="failed")
        body["error"] = {"code": _code(error_class), "message": "The model failed to produce a response."}
        return reply_json(body)

    # -- streaming

    def _opening(self, events: _Events) -> dict[str, Any]:
        events.response_id = self.next_response_id()
        response = self.response_object([], usage=None, status="in_progress", response_id=events.response_id)
        events.add("response.created", response=response)
        events.add("response.in_progress", response=response)
        return response

    def _reasoning(self, events: _Events, summary: str, index: int) -> dict[str, Any]:
        item = reasoning_item(summary, index)
        events.add("response.output_item.added", output_index=index, item={**item, "summary": []})
        base = {"item_id": item["id"], "output_index": index, "summary_index": 0}
        events.add("response.reasoning_summary_part.added", **base, part={"type": "summary_text", "text": ""})
        for cut in range(0, len(summary), 8):
            events.add("response.reasoning_summary_text.delta", **base, delta=summary[cut : cut + 8])
        events.add("response.reasoning_summary_text.done", **base, text=summary)
        events.add("response.reasoning_summary_part.done", **base, part={"type": "summary_text", "text": summary})
        events.add("response.output_item.done", output_index=index, item=item)
        return item

    def _message(self, events: _Events, pieces: Sequence[str], index: int, *, close: bool = True) -> dict[str, Any]:
        item = message_item("".join(pieces))
        opened = {**item, "status": "in_progress", "content": []}
        events.add("response.output_item.added", output_index=index, item=opened)
        base = {"item_id": item["id"], "output_index": index, "content_index": 0}
        events.add("response.content_part.added", **base, part={**item["content"][0], "text": ""})
        for piece in pieces:
            events.add("response.output_text.delta", **base, delta=piece, logprobs=[])
        if close:
            events.add("response.output_text.done", **base, text=item["content"][0]["text"], logprobs=[])
            events.add("response.content_part.done", **base, part=item["content"][0])
            events.add("response.output_item.done", output_index=index, item=item)
        return item

    def _completed(self, events: _Events, output: list[Any], usage: Usage | None, status: str = "completed") -> None:
        kind = "response.completed" if status == "completed" else "response.incomplete"
        response = self.response_object(output, usage=usage, status=status, response_id=events.response_id)
        events.add(kind, response=response)

    def response_events(
        self,
        pieces: Sequence[str],
        *,
        usage: Usage | None = DEFAULT_USAGE,
        reasoning: str | None = None,
        status: str = "completed",
    ) -> list[bytes]:
        """The frames of a streamed text answer (with a reasoning item first when `reasoning` is given)."""
        events = _Events()
        self._opening(events)
        output = [self._reasoning(events, reasoning, 0)] if reasoning is not None else []
        output.append(self._message(events, pieces, len(output)))
        self._completed(events, output, usage, status)
        return events.frames

    def stream_response_text(
        self,
        pieces: Sequence[str],
        *,
        usage: Usage | None = DEFAULT_USAGE,
        reasoning: str | None = None,
        status: str = "completed",
        framing: Framing = NO_FRAMING,
    ) -> Behaviour:
        frames = self.response_events(pieces, usage=usage, reasoning=reasoning, status=status)
        return self.send_sse(frames, framing)  # type: ignore[attr-defined]

    def stream_response_calls(
        self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE, framing: Framing = NO_FRAMING
    ) -> Behaviour:
        return self.send_sse(self.call_events(calls, usage=usage), framing)  # type: ignore[attr-defined]

    def call_events(self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE) -> list[bytes]:
        """The frames of streamed function calls (arguments in 7-character fragments)."""
        events = _Events()
        self._opening(events)
        output = []
        for index, call in enumerate(calls):
            item = call_item(call, index)
            opened = {**item, "arguments": "", "status": "in_progress"}
            events.add("response.output_item.added", output_index=index, item=opened)
            base = {"item_id": item["id"], "output_index": index}
            for cut in range(0, len(item["arguments"]), 7):  # fragments split mid-token, as OpenAI does
                events.add("response.function_call_arguments.delta", **base, delta=item["arguments"][cut : cut + 7])
            events.add("response.function_call_arguments.done", **base, arguments=item["arguments"])
            events.add("response.output_item.done", output_index=index, item=item)
            output.append(item)
        self._completed(events, output, usage)
        return events.frames

    def stream_response_failed(
        self, pieces: Sequence[str], error_class: ErrorClass, *, as_error_event: bool = False
    ) -> Behaviour:
        """Text (none: before the first token), then `response.failed` (or an `error` event), and the end."""
        return reply_sse(self.failed_events(pieces, error_class, as_error_event=as_error_event))

    def failed_events(
        self, pieces: Sequence[str], error_class: ErrorClass, *, as_error_event: bool = False
    ) -> list[bytes]:
        events = _Events()
        self._opening(events)
        if pieces:
            self._message(events, pieces, 0, close=False)
        error = {"code": _code(error_class), "message": "The server had an error while processing your request."}
        if as_error_event:
            events.add("error", **error, param=None)
        else:
            failed = self.response_object([], usage=None, status="failed", response_id=events.response_id)
            events.add("response.failed", response={**failed, "error": error})
        return events.frames

    def stream_response_cut(self, pieces: Sequence[str]) -> Behaviour:
        """Text, then the connection is cut before response.completed."""
        events = _Events()
        self._opening(events)
        self._message(events, pieces, 0, close=False)
        return reply_sse(events.frames, cut_after=len(events.frames))


def _code(error_class: ErrorClass) -> str:
    return {
        ErrorClass.RATE_LIMIT: "rate_limit_exceeded",
        ErrorClass.QUOTA_EXCEEDED: "insufficient_quota",
        ErrorClass.CONTEXT_WINDOW: "context_length_exceeded",
        ErrorClass.CONTENT_POLICY: "invalid_prompt",
    }.get(ErrorClass(error_class), "server_error")
