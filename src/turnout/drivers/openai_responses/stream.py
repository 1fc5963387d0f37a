"""A Responses upstream's event stream -> canonical ChatChunks carrying the upstream's events. A pure state machine.

Feed it every SSE event (`feed(event, data)`) and call `finish()` at EOF. Every chunk carries the upstream's own
events it stands for (`NativeFrames`, re-framed byte for byte), so a Responses client gets exactly the upstream's
stream; events that produce no chunk (`response.in_progress`, `content_part.added`, `output_text.done`,
`output_item.done`, reasoning and built-in tool events, event types added later) ride on the next chunk. The
canonical side is what the router and the sidecar read:

| event                                         | canonical chunk                                              |
|-----------------------------------------------|--------------------------------------------------------------|
| response.created                              | the role chunk                                               |
| response.output_text.delta / refusal.delta    | content / refusal (the commit point)                         |
| output_item.added of a function or custom call| a tool-call delta {index, id (call_id), name, arguments: ""} |
| function_call_arguments.delta                 | an arguments fragment                                        |
| custom_tool_call_input.done                   | the custom tool's whole input, as `{"input": "..."}`         |
| reasoning_summary_text.delta, reasoning_text  | `reasoning_content` (not content)                            |
| response.completed / response.incomplete      | the finish chunk (frames) and the usage-only final chunk     |
| response.failed, error                        | raises the classified error (`wire.failure_of`)              |

EOF before a terminal event raises ProtocolError, so a cut answer is never taken for a complete one. `Position`
(`NativeFrames.state`) tells the ingress where the stream stands after the frames it forwarded: the last sequence
number, the Response, the finished output items and the message still being written, so it can end a failed stream
(or carry on with a continuation from another deployment) in the same sequence.
"""

from __future__ import annotations

import json
from json.decoder import scanstring
from typing import Any

from turnout.drivers._framing import sse_frame
from turnout.drivers._http import loads
from turnout.drivers._stream import ChunkTranslator
from turnout.drivers.openai_responses.tools import NAMESPACE_SEPARATOR
from turnout.drivers.openai_responses.wire import failure_of, finish_of, usage_of
from turnout.types import ChatChunk, NativeFrames

_CALLS = ("function_call", "custom_tool_call")
_REASONING = ("response.reasoning_summary_text.delta", "response.reasoning_text.delta")
_TERMINAL = ("response.completed", "response.incomplete")


class Position:
    """Where a Responses stream stands after the events parsed so far (see the module docstring)."""

    __slots__ = ("done", "message", "next_output", "output", "part", "parts", "response", "sequence", "text")

    def __init__(self) -> None:
        self.sequence = -1  # the last sequence_number among the events attached to chunks so far
        self.response: dict[str, Any] | None = None  # as response.created gave it; the final one once done
        self.output: dict[int, Any] = {}  # finished output items by output_index
        self.next_output = 0  # the next free output_index
        self.message: tuple[str, int] | None = None  # (item id, output_index) of the message being written
        self.parts: list[Any] = []  # its finished content parts
        self.part: int | None = None  # the content_index of its output_text part being written
        self.text: list[str] = []  # that part's text so far
        self.done = False  # a terminal event arrived: the stream is whole


class ResponsesStream(ChunkTranslator):
    """Translate one upstream Responses stream (see the module docstring)."""

    def __init__(self, *, provider: str, model: str, created: int | None = None) -> None:
        super().__init__(provider=provider, model=model, created=created)
        self.position = Position()
        self._frames: list[bytes] = []  # upstream events not yet attached to a chunk
        self._sequence = -1  # the last sequence number among them
        self._tools: dict[str, int] = {}  # item id -> canonical tool index
        self._handlers = {
            "response.created": self._created,
            "response.output_item.added": self._item_added,
            "response.content_part.added": self._part_added,
            "response.output_text.delta": self._text,
            "response.refusal.delta": self._refusal,
            "response.function_call_arguments.delta": self._arguments,
            "response.custom_tool_call_input.done": self._custom_input,
            "response.content_part.done": self._part_done,
            "response.output_item.done": self._item_done,
            "response.completed": self._terminal,
            "response.incomplete": self._terminal,
            "response.failed": self._failed,
            "error": self._failed,
        }

    @property
    def done(self) -> bool:
        return self.position.done

    def feed(self, event: str | None, data: bytes | str) -> list[ChatChunk]:
        """One SSE event -> the chunks it produces (often none)."""
        if self.position.done:
            return []
        self._frames.append(sse_frame(event, data))
        if not data.strip():
            return []
        if event is not None and self.position.response is not None:
            quick = self._quick(event, data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data)
            if quick is not None:
                return quick
        payload = loads(data, provider=self.provider, model=self.model, after_first_token=self.emitted_content)
        if not isinstance(payload, dict):
            raise self._protocol(f"'{event or 'message'}' event data is not an object")
        kind = payload.get("type")
        kind = kind if isinstance(kind, str) and kind else event
        sequence = payload.get("sequence_number")
        if isinstance(sequence, int):
            self._sequence = sequence
        if kind in _REASONING:
            delta = payload.get("delta")
            return [self._chunk({"reasoning_content": delta})] if isinstance(delta, str) and delta else []
        handler = self._handlers.get(kind) if kind else None
        if handler is None:
            return []  # in_progress, reasoning and built-in tool events, and types added after this was written
        if self.position.response is None and kind not in ("response.created", "error"):
            raise self._protocol(f"'{kind}' event before response.created")
        return handler(payload)

    def _quick(self, event: str, text: str) -> list[ChatChunk] | None:
        """The per-token events and the ones turnout does not read, without a JSON parse of the whole event (most of
        a stream's events): a delta's text is read from its `delta` string, an unread event only for its sequence
        number. None when the event needs the full parse (or does not look as expected: the parse then judges)."""
        if event in self._handlers or event in _REASONING:
            if event == "response.output_text.delta":
                delta = _string_at(text, '"delta":')
                if delta is None:
                    return None
                self._note_sequence(text)
                return self._text({"delta": delta})
            if event == "response.function_call_arguments.delta":
                delta, item = _string_at(text, '"delta":'), _string_at(text, '"item_id":')
                if delta is None or item is None:
                    return None
                self._note_sequence(text)
                return self._arguments({"delta": delta, "item_id": item})
            return None
        stripped = text.strip()
        if not (stripped.startswith("{") and stripped.endswith("}")):
            return None
        self._note_sequence(text)
        return []  # in_progress, text done, reasoning parts, built-in tool events, types added later

    def _note_sequence(self, text: str) -> None:
        at = text.find('"sequence_number":')
        if at < 0:
            return
        end = at + 18
        while end < len(text) and text[end] == " ":
            end += 1
        start = end
        while end < len(text) and text[end].isdigit():
            end += 1
        if end > start:
            self._sequence = int(text[start:end])

    def finish(self) -> list[ChatChunk]:
        """End of the HTTP body: fine after response.completed, a ProtocolError otherwise."""
        if not self.position.done:
            raise self._protocol("stream ended before response.completed")
        return []

    def _native(self) -> NativeFrames:
        data = b"".join(self._frames)
        self._frames.clear()
        self.position.sequence = self._sequence  # numbered on from the last event the client gets
        return NativeFrames(data, state=self.position)

    # -- events ---------------------------------------------------------------------------------------------

    def _created(self, payload: dict[str, Any]) -> list[ChatChunk]:
        response = payload.get("response")
        if not isinstance(response, dict):
            raise self._protocol("response.created without a response")
        self.position.response = response
        self.id = str(response.get("id") or "")
        self.model = str(response.get("model") or self.model)
        return [self._chunk({"role": "assistant", "content": ""})]

    def _item_added(self, payload: dict[str, Any]) -> list[ChatChunk]:
        item, index = payload.get("item"), payload.get("output_index")
        if not isinstance(item, dict) or not isinstance(index, int):
            raise self._protocol("output_item.added without an item and its output_index")
        position = self.position
        position.next_output = max(position.next_output, index + 1)
        if item.get("type") == "message":
            position.message, position.parts, position.part = (str(item.get("id") or ""), index), [], None
            return []
        if item.get("type") not in _CALLS:
            return []
        tool = self._tools[str(item.get("id") or index)] = len(self._tools)
        name = str(item.get("name") or "")
        if isinstance(item.get("namespace"), str) and item["namespace"]:
            name = f"{item['namespace']}{NAMESPACE_SEPARATOR}{name}"
        start = {"index": tool, "id": str(item.get("call_id") or ""), "type": "function"}
        start["function"] = {"name": name, "arguments": ""}
        chunks = [self._content({"tool_calls": [start]})]
        arguments = item.get("arguments")  # normally "" with the arguments streamed; honour a pre-filled one
        if isinstance(arguments, str) and arguments and item.get("type") == "function_call":
            chunks.append(self._fragment(tool, arguments))
        return chunks

    def _part_added(self, payload: dict[str, Any]) -> list[ChatChunk]:
        part, message = payload.get("part"), self.position.message
        opens_text = isinstance(part, dict) and part.get("type") == "output_text" and message is not None
        if opens_text and payload.get("item_id") == message[0] and isinstance(payload.get("content_index"), int):
            self.position.part, self.position.text = payload["content_index"], []
        return []

    def _text(self, payload: dict[str, Any]) -> list[ChatChunk]:
        delta = payload.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        if self.position.part is not None:
            self.position.text.append(delta)
        return [self._content({"content": delta})]

    def _refusal(self, payload: dict[str, Any]) -> list[ChatChunk]:
        delta = payload.get("delta")
        return [self._content({"refusal": delta})] if isinstance(delta, str) and delta else []

    def _arguments(self, payload: dict[str, Any]) -> list[ChatChunk]:
        delta = payload.get("delta")
        tool = self._tools.get(str(payload.get("item_id")))
        if tool is None:
            raise self._protocol("function_call_arguments.delta for an item that is not a started function call")
        return [self._fragment(tool, delta)] if isinstance(delta, str) and delta else []

    def _custom_input(self, payload: dict[str, Any]) -> list[ChatChunk]:
        tool = self._tools.get(str(payload.get("item_id")))
        text = payload.get("input")
        if tool is None or not isinstance(text, str):
            return []
        return [self._fragment(tool, json.dumps({"input": text}, ensure_ascii=False))]

    def _part_done(self, payload: dict[str, Any]) -> list[ChatChunk]:
        position = self.position
        if position.message is not None and payload.get("item_id") == position.message[0]:
            position.parts.append(payload.get("part"))
            if payload.get("content_index") == position.part:
                position.part, position.text = None, []
        return []

    def _item_done(self, payload: dict[str, Any]) -> list[ChatChunk]:
        item, index = payload.get("item"), payload.get("output_index")
        if isinstance(index, int):
            self.position.output[index] = item
            if self.position.message is not None and self.position.message[1] == index:
                self.position.message, self.position.parts, self.position.part = None, [], None
        return []

    def _terminal(self, payload: dict[str, Any]) -> list[ChatChunk]:
        response = payload.get("response")
        if not isinstance(response, dict):
            raise self._protocol(f"{payload.get('type')} without a response")
        position = self.position
        position.done = True
        position.response = response
        reason = finish_of(response, bool(self._tools))
        final = ChatChunk(data=self._data({}, reason), finish_reason=reason, native=self._native())
        return [final, self._usage_chunk(usage_of(response.get("usage")), reason)]

    def _failed(self, payload: dict[str, Any]) -> list[ChatChunk]:
        response = payload.get("response")
        error = response.get("error") if isinstance(response, dict) else payload.get("error", payload)
        raise failure_of(
            error,
            provider=self.provider,
            model=self.model,
            after_first_token=self.emitted_content,
            body=json.dumps(payload).encode(),
        )

    def _fragment(self, tool: int, fragment: str) -> ChatChunk:
        return self._content({"tool_calls": [{"index": tool, "function": {"arguments": fragment}}]})


def _string_at(text: str, key: str) -> str | None:
    """The JSON string value after `key` (e.g. '"delta":'), or None. A key cannot match inside a JSON string (there
    its closing quote would be escaped), so the first match is the key itself."""
    at = text.find(key)
    if at < 0:
        return None
    start = at + len(key)
    while start < len(text) and text[start] == " ":
        start += 1
    if start >= len(text) or text[start] != '"':
        return None
    try:
        return scanstring(text, start + 1)[0]
    except ValueError:
        return None
