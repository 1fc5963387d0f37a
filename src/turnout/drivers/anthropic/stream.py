"""Anthropic's named-event SSE stream -> OpenAI-shaped ChatChunks. A pure state machine: no I/O.

Feed it every SSE event (`feed(event, data)`) and call `finish()` at EOF. It emits:
- a role chunk at `message_start` (not content);
- a content chunk per non-empty `text_delta`;
- for each `tool_use` block, a tool-call delta `{index, id, type, function: {name, arguments: ""}}` and then one
  delta per non-empty `input_json_delta` fragment, exactly as OpenAI streams tool calls (by tool index);
- for extended thinking, `reasoning_content` deltas as the thinking streams and, when a thinking block ends, a
  `thinking_blocks` delta with the whole block and its signature (neither counts as content: see ChatChunk);
- at `message_stop`, a finish chunk (`delta: {}`, finish_reason) and a final usage-only chunk (`choices: []`)
  that carries the stream's usage and finish reason.
Usage: input counts come from `message_start`, `message_delta.usage` is cumulative and overrides them.
`ping`, `content_block_stop` of other blocks and unknown events are ignored (Anthropic's versioning policy);
`event: error` after HTTP 200 raises the classified error; EOF without `message_stop` raises ProtocolError.

With `native=True` (the request came in as a Messages request: `ChatRequest.native`) every chunk also carries
the upstream's own events it stands for (`NativeFrames`), re-framed byte for byte: events that produce no chunk
(`ping`, `content_block_stop`, `message_delta`, event types added later) ride on the next chunk, so a Messages
client gets exactly the upstream's stream.
"""

from __future__ import annotations

import json
from typing import Any

from turnout.drivers._framing import sse_frame
from turnout.drivers._http import loads
from turnout.drivers._stream import ChunkTranslator
from turnout.drivers.anthropic.response import finish_reason, stream_error, usage_from
from turnout.types import ChatChunk, NativeFrames


class AnthropicStream(ChunkTranslator):
    """Translate one Anthropic stream. `emitted_content` tells whether content already reached the caller."""

    def __init__(self, *, provider: str, model: str, created: int | None = None, native: bool = False) -> None:
        super().__init__(provider=provider, model=model, created=created)
        self.started = False
        self.done = False
        self._frames: list[bytes] | None = [] if native else None  # upstream events not yet attached to a chunk
        self._next_block = 0  # content blocks: the next free index, and the one open (index, type), for NativeFrames
        self._open_block: tuple[int, str] | None = None
        self._usage: dict[str, Any] = {}
        self._stop_reason: Any = None
        self._tool_index: dict[int, int] = {}  # content block index -> OpenAI tool index
        self._thinking: dict[int, dict[str, Any]] = {}  # content block index -> thinking block being built
        self._handlers = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
        }

    def feed(self, event: str | None, data: bytes | str) -> list[ChatChunk]:
        """One SSE event -> the chunks it produces (often none)."""
        if self._frames is None:
            return self._feed(event, data)
        if self.done:
            return []
        self._frames.append(sse_frame(event, data))
        return self._feed(event, data)

    def _feed(self, event: str | None, data: bytes | str) -> list[ChatChunk]:
        if self.done or event == "ping" or not data.strip():
            return []
        payload = loads(data, provider=self.provider, model=self.model, after_first_token=self.emitted_content)
        if not isinstance(payload, dict):
            raise self._protocol(f"'{event or 'message'}' event data is not an object")
        kind = payload.get("type")
        kind = kind if isinstance(kind, str) and kind else event
        if kind == "error":
            raise stream_error(
                payload, provider=self.provider, model=self.model, after_first_token=self.emitted_content
            )
        handler = self._handlers.get(kind) if kind else None
        if handler is None:
            return []  # ping, content_block_stop, and event types added after this was written
        if not self.started and kind != "message_start":
            raise self._protocol(f"'{kind}' event before message_start")
        return handler(payload)

    def finish(self) -> list[ChatChunk]:
        """End of the HTTP body: fine after message_stop, a ProtocolError otherwise."""
        if not self.done:
            raise self._protocol("stream ended before message_stop")
        return []

    def _native(self) -> NativeFrames | None:
        """The events received since the last chunk (on the first chunk they produce; b"" on the others) and the
        content blocks as they stand after them."""
        frames = self._frames
        if frames is None:
            return None
        data = b"".join(frames)
        frames.clear()
        opened = self._open_block
        if opened is None:
            return NativeFrames(data, self._next_block)
        return NativeFrames(data, self._next_block, opened[0], opened[1])

    def _message_start(self, payload: dict[str, Any]) -> list[ChatChunk]:
        message = payload.get("message")
        if not isinstance(message, dict):
            raise self._protocol("message_start without a message")
        self.started = True
        self.id = str(message.get("id") or "")
        self.model = str(message.get("model") or self.model)
        if isinstance(message.get("usage"), dict):
            self._usage.update(message["usage"])
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, payload: dict[str, Any]) -> list[ChatChunk]:
        block = payload.get("content_block")
        if not isinstance(block, dict):
            raise self._protocol("content_block_start without a content_block")
        if isinstance(payload.get("index"), int):
            self._open_block = (payload["index"], str(block.get("type")))
            self._next_block = max(self._next_block, payload["index"] + 1)
        if block.get("type") == "text":
            text = block.get("text")
            return [self._content({"content": text})] if isinstance(text, str) and text else []
        if block.get("type") in ("thinking", "redacted_thinking") and isinstance(payload.get("index"), int):
            self._thinking[payload["index"]] = dict(block)
            text = block.get("thinking")
            return [self._chunk({"reasoning_content": text})] if isinstance(text, str) and text else []
        if block.get("type") != "tool_use":
            return []  # server tools and block types added later: nothing OpenAI chat can show
        if not isinstance(payload.get("index"), int):
            raise self._protocol("content_block_start without an integer index")
        index = len(self._tool_index)
        self._tool_index[payload["index"]] = index
        first = {"index": index, "id": str(block.get("id") or ""), "type": "function"}
        first["function"] = {"name": str(block.get("name") or ""), "arguments": ""}
        chunks = [self._content({"tool_calls": [first]})]
        if block.get("input"):  # normally {} with the input streamed as fragments; honour a pre-filled one
            chunks.append(self._arguments(index, json.dumps(block["input"])))
        return chunks

    def _block_delta(self, payload: dict[str, Any]) -> list[ChatChunk]:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            raise self._protocol("content_block_delta without a delta")
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._content({"content": text})] if isinstance(text, str) and text else []
        if kind == "input_json_delta":
            block_index = payload.get("index")
            index = self._tool_index.get(block_index) if isinstance(block_index, int) else None
            if index is None:
                raise self._protocol("input_json_delta for a block that is not a started tool_use")
            fragment = delta.get("partial_json")
            return [self._arguments(index, fragment)] if isinstance(fragment, str) and fragment else []
        thinking = self._thinking.get(payload.get("index")) if isinstance(payload.get("index"), int) else None
        if kind == "thinking_delta" and thinking is not None and isinstance(delta.get("thinking"), str):
            thinking["thinking"] = str(thinking.get("thinking") or "") + delta["thinking"]
            return [self._chunk({"reasoning_content": delta["thinking"]})] if delta["thinking"] else []
        if kind == "signature_delta" and thinking is not None and isinstance(delta.get("signature"), str):
            thinking["signature"] = str(thinking.get("signature") or "") + delta["signature"]
        return []  # citations_delta and delta types added later

    def _block_stop(self, payload: dict[str, Any]) -> list[ChatChunk]:
        """A finished thinking block goes out whole (signature included) so the client can send it back."""
        index = payload.get("index")
        if self._open_block is not None and self._open_block[0] == index:
            self._open_block = None
        block = self._thinking.pop(index, None) if isinstance(index, int) else None
        return [self._chunk({"thinking_blocks": [block]})] if block is not None else []

    def _message_delta(self, payload: dict[str, Any]) -> list[ChatChunk]:
        delta = payload.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason") is not None:
            self._stop_reason = delta["stop_reason"]
        usage = payload.get("usage")
        if isinstance(usage, dict):  # cumulative: later values replace earlier ones
            self._usage.update({key: value for key, value in usage.items() if value is not None})
        return []

    def _message_stop(self, payload: dict[str, Any]) -> list[ChatChunk]:
        self.done = True
        reason = finish_reason(self._stop_reason)
        return [
            ChatChunk(data=self._data({}, reason), finish_reason=reason, native=self._native()),
            self._usage_chunk(usage_from(self._usage), reason),
        ]

    def _arguments(self, index: int, fragment: str) -> ChatChunk:
        return self._content({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
