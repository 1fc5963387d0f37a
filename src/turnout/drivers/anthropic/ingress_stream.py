"""Canonical stream chunks -> the Messages SSE events a client reads. A pure state machine: no I/O.

The inverse of `stream.py`, for the sidecar's `/v1/messages` with `stream: true`. Feed it every chunk of the
router's stream (`feed`), then `finish(usage)` at the end, or `error(...)` when the stream fails after its first
event. The client gets exactly the event sequence of the Messages API (wire-formats.md 3.4):

    message_start, then per content block: content_block_start, content_block_delta (text_delta,
    input_json_delta, thinking_delta / signature_delta), content_block_stop; one `ping` after the first block
    starts; message_delta (stop_reason, stop_sequence, usage); message_stop

and, after a failure, `event: error` (`{"type": "error", "error": {...}}`) with no `message_stop` after it: a
cut answer never ends like a complete one.

Chunks an Anthropic upstream produced for the client's own body carry its events (`NativeFrames`): those are
written byte for byte, so the client sees the upstream's stream unchanged (stop_sequence, server tool blocks,
citations...). The encoder follows their block indices, so a continuation from another deployment (`mid_stream:
continue`) carries on in the same message: in the open text block, or in a new block after the last one.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any

from turnout.drivers.anthropic.ingress_response import (
    estimate_tokens,
    message_id,
    stop_reason,
    tool_use_id,
    wire_usage,
)
from turnout.drivers.anthropic.thinking import thinking_blocks
from turnout.types import ChatChunk, Usage

PING = b'event: ping\ndata: {"type": "ping"}\n\n'
# The per-token events, formatted directly (a generic json.dumps of the dict costs ~3x more per delta).
_TEXT_DELTA = (
    'event: content_block_delta\ndata: {{"type":"content_block_delta","index":{},'
    '"delta":{{"type":"text_delta","text":{}}}}}\n\n'
)
_JSON_DELTA = (
    'event: content_block_delta\ndata: {{"type":"content_block_delta","index":{},'
    '"delta":{{"type":"input_json_delta","partial_json":{}}}}}\n\n'
)


def event(kind: str, payload: dict[str, Any]) -> bytes:
    """One named event whose data `type` equals its name, as the Messages API sends them."""
    data = json.dumps({"type": kind, **payload}, separators=(",", ":"), ensure_ascii=False)
    return _utf8(f"event: {kind}\ndata: {data}\n\n")


def _utf8(text: str) -> bytes:
    """UTF-8, a lone surrogate (which a JSON `\\ud800` escape upstream can produce) written back as that escape."""
    return text.encode("utf-8", "backslashreplace")


class MessagesEncoder:
    """Translate one stream. `input_estimate` stands in for input tokens until the upstream reports them."""

    __slots__ = (
        "_chars",
        "_finish",
        "_id",
        "_model",
        "_next",
        "_open",
        "_open_type",
        "_pinged",
        "_tools",
        "input_estimate",
        "started",
        "stopped",
    )

    def __init__(self, *, model: str, input_estimate: int) -> None:
        self.input_estimate = input_estimate
        self.started = False  # message_start written
        self.stopped = False  # message_stop written: nothing more goes out
        self._model = model
        self._id = ""
        self._next = 0  # the next free block index
        self._open: int | None = None  # the block still open, and its type
        self._open_type: str | None = None
        self._tools: dict[int, int] = {}  # OpenAI tool-call index -> block index
        self._finish: str | None = None
        self._chars = 0  # answer characters, for an output estimate
        self._pinged = False

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
        data = chunk.data
        out: list[bytes] = []
        if not self.started:
            out.append(self._start(data))
        choices = data.get("choices") or ()
        delta = choices[0].get("delta") if choices and isinstance(choices[0], dict) else None
        if isinstance(delta, dict):
            if "thinking_blocks" in delta:
                self._thinking(delta["thinking_blocks"], out)
            text = delta.get("content")
            if isinstance(text, str) and text:
                self._text(text, out)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._tool_call(call, out)
        return b"".join(out)

    def finish(self, usage: Usage | None) -> bytes:
        """The closing events: the open block's stop, message_delta with the stop reason and usage, message_stop."""
        if self.stopped:
            return b""
        out = [] if self.started else [self._start({})]
        self._close(out)
        counts = wire_usage(
            usage or Usage.UNKNOWN, input_estimate=self.input_estimate, output_estimate=estimate_tokens(self._chars)
        )
        delta = {"stop_reason": stop_reason(self._finish), "stop_sequence": None}
        out.append(event("message_delta", {"delta": delta, "usage": counts}))
        out.append(event("message_stop", {}))
        self.stopped = True
        return b"".join(out)

    def error(self, error_type: str, message: str, **extra: Any) -> bytes:
        """The `error` event that ends a failed stream (nothing is written after it)."""
        self.stopped = True
        return event("error", {"error": {"type": error_type, "message": message, **extra}})

    # -- native frames ---------------------------------------------------------------------------------------

    def _native(self, chunk: ChatChunk, native: Any) -> bytes:
        self.started = True
        self._next, self._open, self._open_type = native.next_block, native.open_block, native.open_type
        self._pinged = True
        self._tools.clear()  # a continuation's tool calls start new blocks
        if chunk.finish_reason is not None or chunk.usage is not None:  # its frames ended with message_stop
            self.stopped = True
        content = chunk.content if chunk.is_content else None
        if isinstance(content, str):
            self._chars += len(content)
        return native.data

    # -- translation -----------------------------------------------------------------------------------------

    def _start(self, data: Any) -> bytes:
        self.started = True
        self._id = message_id(str(data.get("id") or "")) if isinstance(data, dict) else message_id("")
        model = data.get("model") if isinstance(data, dict) else None
        if isinstance(model, str) and model:
            self._model = model
        usage = {
            "input_tokens": self.input_estimate,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        }
        message = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self._model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return event("message_start", {"message": message})

    def _open_block(self, block: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        index = self._next
        self._next += 1
        self._open, self._open_type = index, block["type"]
        out.append(event("content_block_start", {"index": index, "content_block": block}))
        if not self._pinged:
            self._pinged = True
            out.append(PING)
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(event("content_block_stop", {"index": self._open}))
            self._open = self._open_type = None

    def _text(self, text: str, out: list[bytes]) -> None:
        self._chars += len(text)
        index = self._open if self._open_type == "text" else None
        if index is None:
            index = self._open_block({"type": "text", "text": ""}, out)
        out.append(_utf8(_TEXT_DELTA.format(index, encode_basestring(text))))

    def _tool_call(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index") if isinstance(call.get("index"), int) else 0
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        index = self._tools.get(position)
        if index is None:
            fallback = f"toolu_{self._id[4:]}_{position}"
            block = {
                "type": "tool_use",
                "id": tool_use_id(call.get("id"), fallback),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            index = self._tools[position] = self._open_block(block, out)
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            self._chars += len(fragment)
            out.append(_utf8(_JSON_DELTA.format(index, encode_basestring(fragment))))

    def _thinking(self, blocks: Any, out: list[bytes]) -> None:
        """Whole thinking blocks (an Anthropic upstream's, signature included) as one block each."""
        for block in thinking_blocks(blocks):
            if block["type"] == "redacted_thinking":
                index = self._open_block(dict(block), out)
            else:
                index = self._open_block({"type": "thinking", "thinking": "", "signature": ""}, out)
                thought = {"type": "thinking_delta", "thinking": block["thinking"]}
                out.append(event("content_block_delta", {"index": index, "delta": thought}))
                signature = {"type": "signature_delta", "signature": block["signature"]}
                out.append(event("content_block_delta", {"index": index, "delta": signature}))
            self._close(out)
