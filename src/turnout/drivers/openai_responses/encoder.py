"""Canonical stream chunks -> the Responses SSE events a client reads. A pure state machine: no I/O.

The inverse of `stream.py`, for the sidecar's `/v1/responses` with `stream: true`. Feed it every chunk of the
router's stream (`feed`), then `finish(usage)` at the end, or `error(...)` when the stream fails after its first
event. Every event is a named SSE event whose data carries its `type` and a `sequence_number` counting from 0:

    response.created, response.in_progress, then per output item: response.output_item.added,
    for a message response.content_part.added, response.output_text.delta (or response.refusal.delta) ...,
    response.output_text.done, response.content_part.done; for a function call
    response.function_call_arguments.delta ..., response.function_call_arguments.done (a custom tool:
    response.custom_tool_call_input.delta, .done); response.output_item.done; and response.completed
    (response.incomplete when the answer was cut at max_output_tokens or filtered) with the whole Response and usage.

After a failure the stream ends with `response.failed` (the Response so far, `status: failed`, its `error`) and an
`error` event, and never with response.completed: a cut answer never ends like a complete one. The `error` event
carries the error both flat (`code`, `message`, `param`, as the API documents it) and as an `error` object, which
the `openai` SDK raises as APIError.

Chunks a Responses upstream produced for the client's own body carry its events (`NativeFrames`): those are written
byte for byte. Their `state` (`stream.Position`) says where the upstream's stream stood, so a failure after them is
reported with the next sequence numbers and the output so far, and a continuation from another deployment
(`mid_stream: continue`) carries on in the same message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from json.encoder import encode_basestring
from typing import Any

from turnout.drivers.openai_responses.answer import call_item, custom_input, skeleton
from turnout.drivers.openai_responses.tools import ToolTable
from turnout.drivers.openai_responses.wire import new_id, status_of, wire_usage
from turnout.types import ChatChunk, Usage

# The per-token events, formatted directly (a generic json.dumps of the dict costs ~3x more per delta).
_TEXT_DELTA = (
    'event: response.output_text.delta\ndata: {{"type":"response.output_text.delta","sequence_number":{},'
    '"item_id":"{}","output_index":{},"content_index":{},"delta":{},"logprobs":[]}}\n\n'
)
_ARGUMENTS_DELTA = (
    'event: response.function_call_arguments.delta\ndata: {{"type":"response.function_call_arguments.delta",'
    '"sequence_number":{},"item_id":"{}","output_index":{},"delta":{}}}\n\n'
)


def event(kind: str, sequence: int, fields: Mapping[str, Any]) -> bytes:
    """One named event: its data's `type` equals its name, then its sequence number, then its fields."""
    data = json.dumps({"type": kind, "sequence_number": sequence, **fields}, separators=(",", ":"), ensure_ascii=False)
    return _utf8(f"event: {kind}\ndata: {data}\n\n")


def _utf8(text: str) -> bytes:
    """UTF-8, a lone surrogate (which a JSON `\\ud800` escape upstream can produce) written back as that escape."""
    return text.encode("utf-8", "backslashreplace")


class _Message:
    """The message item being written: its finished content parts and the part still open."""

    __slots__ = ("id", "index", "kind", "part", "parts", "text")

    def __init__(self, item_id: str, index: int, parts: list[Any] | None = None) -> None:
        self.id = item_id
        self.index = index
        self.parts: list[Any] = parts if parts is not None else []
        self.part: int | None = None  # content index of the open part
        self.kind = "output_text"  # its type: output_text or refusal
        self.text: list[str] = []


class _Call:
    """A tool call being written (canonical tool index -> its item)."""

    __slots__ = ("arguments", "item")

    def __init__(self, item: dict[str, Any]) -> None:
        self.item = item
        self.arguments: list[str] = []


class ResponsesEncoder:
    """Translate one stream for the request `body` (its tools in `table`); `store` is echoed as the Response's."""

    def __init__(self, body: Mapping[str, Any], table: ToolTable, *, model: str, store: bool | None = None) -> None:
        self.body = body
        self.table = table
        self.store = store
        self.model = model
        self.started = False  # response.created written
        self.stopped = False  # a terminal event written: nothing more goes out
        self.final: Mapping[str, Any] | None = None  # the finished Response (for the store)
        self.final_is_native = False  # `final` is the upstream's own (its terminal event was forwarded)
        self.response: dict[str, Any] | None = None
        self._sequence = 0  # the next sequence number
        self._output: dict[int, Any] = {}  # finished output items by index
        self._next = 0  # the next free output index
        self._message: _Message | None = None
        self._calls: dict[int, _Call] = {}  # open calls by canonical tool index
        self._finish: str | None = None
        self._position: Any = None  # an upstream's stream position not adopted yet (after native frames)

    # -- feeding ---------------------------------------------------------------------------------------------

    def feed(self, chunk: ChatChunk) -> bytes:
        """The events for one chunk (often b"")."""
        if self.stopped:
            return b""
        native = chunk.native
        if native is not None:
            return self._native(chunk, native)
        if chunk.finish_reason is not None:
            self._finish = chunk.finish_reason
        if chunk.usage_only:
            return b""
        out: list[bytes] = []
        if self._position is not None:
            self._adopt()
        if not self.started:
            self._start(chunk.data, out)
        delta = chunk.delta
        text = delta.get("content")
        if isinstance(text, str) and text:
            self._text(text, "output_text", out)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._text(refusal, "refusal", out)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._call(call, out)
        return b"".join(out)

    def finish(self, usage: Usage | None) -> bytes:
        """The closing events: open items done, then response.completed (or .incomplete) with usage."""
        if self.stopped:
            return b""
        if self._position is not None:
            self._adopt()
        out: list[bytes] = []
        if not self.started:
            self._start({}, out)
        status, details = status_of(self._finish)
        self._close_all(out, "completed" if status == "completed" else "incomplete")
        assert self.response is not None
        final = {**self.response, "status": status, "incomplete_details": details, "output": self._items()}
        final["usage"] = wire_usage(usage or Usage.UNKNOWN)
        out.append(self._event(f"response.{status}", {"response": final}))
        self.final = final
        self.stopped = True
        return b"".join(out)

    def error(self, code: str, message: str, **extra: Any) -> bytes:
        """`response.failed` (the Response so far) and the `error` event that end a failed stream."""
        if self._position is not None:
            self._adopt()
        out: list[bytes] = []
        if not self.started:
            self._start({}, out)
        assert self.response is not None
        failed = {**self.response, "status": "failed", "error": {"code": code, "message": message}}
        failed["output"] = self._items(open_too=True)
        out.append(self._event("response.failed", {"response": failed}))
        error = {"type": extra.pop("type", "server_error"), "code": code, "message": message, "param": None, **extra}
        out.append(self._event("error", {"code": code, "message": message, "param": None, "error": error}))
        self.stopped = True
        return b"".join(out)

    # -- native frames ---------------------------------------------------------------------------------------

    def _native(self, chunk: ChatChunk, native: Any) -> bytes:
        self.started = True
        self._position = native.state
        if chunk.finish_reason is not None or chunk.usage is not None:  # its frames ended with the terminal event
            self.stopped = True
            self.final = getattr(native.state, "response", None)
            self.final_is_native = True
        return native.data

    def _adopt(self) -> None:
        """Carry on after an upstream's own events: its Response, sequence, output and open message."""
        position, self._position = self._position, None
        if position is None or position.response is None:
            return
        self.started = True
        self.response = {**position.response, "output": []}
        self._sequence = max(self._sequence, position.sequence + 1)
        self._output.update(position.output)
        self._next = max(self._next, position.next_output)
        self._calls.clear()  # a continuation's tool calls are new items
        if position.message is not None:
            message = _Message(position.message[0], position.message[1], list(position.parts))
            if position.part is not None:
                message.part, message.text = position.part, list(position.text)
            self._message = message

    # -- translation -----------------------------------------------------------------------------------------

    def _event(self, kind: str, fields: Mapping[str, Any]) -> bytes:
        sequence, self._sequence = self._sequence, self._sequence + 1
        return event(kind, sequence, fields)

    def _start(self, data: Any, out: list[bytes]) -> None:
        self.started = True
        model = data.get("model") if isinstance(data, dict) else None
        if isinstance(model, str) and model:
            self.model = model
        self.response = skeleton(
            self.body, response_id=new_id("resp"), model=self.model, created_at=int(time.time()), store=self.store
        )
        encoded = json.dumps(self.response, separators=(",", ":"), ensure_ascii=False)  # once for both events
        for kind in ("response.created", "response.in_progress"):
            sequence, self._sequence = self._sequence, self._sequence + 1
            data = f'{{"type":"{kind}","sequence_number":{sequence},"response":{encoded}}}'
            out.append(_utf8(f"event: {kind}\ndata: {data}\n\n"))

    def _open_item(self, item: dict[str, Any], out: list[bytes]) -> int:
        index = self._next
        self._next += 1
        out.append(self._event("response.output_item.added", {"output_index": index, "item": item}))
        return index

    def _text(self, text: str, kind: str, out: list[bytes]) -> None:
        message = self._message
        if message is None:
            self._close_calls(out, "completed")
            item_id = new_id("msg")
            item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
            message = self._message = _Message(item_id, self._open_item(item, out))
        if message.part is not None and message.kind != kind:
            self._close_part(message, out)
        if message.part is None:
            message.part, message.kind, message.text = len(message.parts), kind, []
            part = _part(kind, "")
            fields = {"item_id": message.id, "output_index": message.index, "content_index": message.part}
            out.append(self._event("response.content_part.added", {**fields, "part": part}))
        message.text.append(text)
        if kind == "refusal":
            fields = {"item_id": message.id, "output_index": message.index, "content_index": message.part}
            out.append(self._event("response.refusal.delta", {**fields, "delta": text}))
            return
        sequence, self._sequence = self._sequence, self._sequence + 1
        out.append(
            _utf8(_TEXT_DELTA.format(sequence, message.id, message.index, message.part, encode_basestring(text)))
        )

    def _call(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index") if isinstance(call.get("index"), int) else 0
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        state = self._calls.get(position)
        if state is None:
            self._close_message(out, "completed")
            item = call_item(
                {"id": call.get("id"), "function": {"name": function.get("name"), "arguments": ""}},
                self.table,
                item_id=new_id("ctc" if self._is_custom(function) else "fc"),
                status="in_progress",
            )
            if item["type"] == "custom_tool_call":
                item.pop("status")
            state = self._calls[position] = _Call(item)
            item["output_index"] = self._open_item(dict(item), out)
        fragment = function.get("arguments")
        if not isinstance(fragment, str) or not fragment:
            return
        state.arguments.append(fragment)
        item = state.item
        if item["type"] == "function_call":
            sequence, self._sequence = self._sequence, self._sequence + 1
            args = (sequence, item["id"], item["output_index"], encode_basestring(fragment))
            out.append(_utf8(_ARGUMENTS_DELTA.format(*args)))

    def _is_custom(self, function: Mapping[str, Any]) -> bool:
        return str(function.get("name") or "") in self.table.custom

    # -- closing ---------------------------------------------------------------------------------------------

    def _close_part(self, message: _Message, out: list[bytes]) -> None:
        text = "".join(message.text)
        fields = {"item_id": message.id, "output_index": message.index, "content_index": message.part}
        if message.kind == "refusal":
            out.append(self._event("response.refusal.done", {**fields, "refusal": text}))
        else:
            out.append(self._event("response.output_text.done", {**fields, "text": text, "logprobs": []}))
        part = _part(message.kind, text)
        out.append(self._event("response.content_part.done", {**fields, "part": part}))
        message.parts.append(part)
        message.part, message.text = None, []

    def _close_message(self, out: list[bytes], status: str) -> None:
        message, self._message = self._message, None
        if message is None:
            return
        if message.part is not None:
            self._close_part(message, out)
        item = {"id": message.id, "type": "message", "status": status, "role": "assistant", "content": message.parts}
        self._output[message.index] = item
        out.append(self._event("response.output_item.done", {"output_index": message.index, "item": item}))

    def _close_calls(self, out: list[bytes], status: str) -> None:
        calls = sorted(self._calls.values(), key=lambda c: c.item["output_index"])
        self._calls.clear()
        for state in calls:
            item = dict(state.item)
            index = item.pop("output_index")
            arguments = "".join(state.arguments)
            if item["type"] == "custom_tool_call":
                item["input"] = custom_input(arguments)
                fields = {"item_id": item["id"], "output_index": index}
                out.append(self._event("response.custom_tool_call_input.delta", {**fields, "delta": item["input"]}))
                out.append(self._event("response.custom_tool_call_input.done", {**fields, "input": item["input"]}))
            else:
                item["arguments"], item["status"] = arguments or "{}", status
                fields = {"item_id": item["id"], "output_index": index, "arguments": item["arguments"]}
                out.append(self._event("response.function_call_arguments.done", fields))
            self._output[index] = item
            out.append(self._event("response.output_item.done", {"output_index": index, "item": item}))

    def _close_all(self, out: list[bytes], status: str) -> None:
        self._close_message(out, status)
        self._close_calls(out, status)

    def _items(self, *, open_too: bool = False) -> list[Any]:
        """The output so far, in order (with the items still being written, as they stand, when `open_too`)."""
        items = dict(self._output)
        if open_too:
            message = self._message
            if message is not None:
                parts = list(message.parts)
                if message.part is not None:
                    parts.append(_part(message.kind, "".join(message.text)))
                items[message.index] = {
                    "id": message.id,
                    "type": "message",
                    "status": "incomplete",
                    "role": "assistant",
                    "content": parts,
                }
            for state in self._calls.values():
                item = {k: v for k, v in state.item.items() if k != "output_index"}
                if item["type"] == "function_call":
                    item["arguments"], item["status"] = "".join(state.arguments), "incomplete"
                items[state.item["output_index"]] = item
        return [items[index] for index in sorted(items)]


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
