"""`Conversation`: a tiny helper that keeps the message history across turns of one chat.

Every completed turn is announced to the Router's observers as a `ConversationUpdated` event (with the messages
the turn added), so an observer can persist or audit conversations without wrapping this class.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from turnout.events import ConversationUpdated
from turnout.types import ChatChunk, ChatResponse

if TYPE_CHECKING:
    from turnout.router.client import Router


class Conversation:
    """History of one chat on one route. Each `send` appends the user turn and, on success, the reply.

    A failed turn leaves the history as it was, so the caller can simply send again. `conversation_id` names it
    in `ConversationUpdated` events (default: unique within the process).
    """

    _ids = itertools.count(1)
    _prefix = os.urandom(4).hex()

    def __init__(
        self,
        router: Router,
        *,
        model: str,
        system: str | None = None,
        messages: Sequence[Mapping[str, Any]] = (),
        conversation_id: str | None = None,
        **openai_params: Any,
    ) -> None:
        self.router = router
        self.id = conversation_id or f"conv-{self._prefix}-{next(self._ids)}"
        self.model = model
        self.params = openai_params
        self.messages: list[Mapping[str, Any]] = []
        if system is not None:
            self.messages.append({"role": "system", "content": system})
        self.messages.extend(messages)

    async def send(self, content: str, **openai_params: Any) -> ChatResponse:
        turn = [*self.messages, {"role": "user", "content": content}]
        response = await self.router.chat(model=self.model, messages=turn, **{**self.params, **openai_params})
        self.messages[:] = [*turn, dict(response.message)]
        self._updated(len(turn) - 1, response.served_by)
        return response

    async def stream(self, content: str, **openai_params: Any) -> AsyncIterator[ChatChunk]:
        """Stream a reply; the assistant turn (its text and its tool calls) joins the history once the stream
        completed, so the caller can answer the tool calls with `tool` messages next."""
        turn = [*self.messages, {"role": "user", "content": content}]
        reply = StreamedReply()
        async with self.router.stream(model=self.model, messages=turn, **{**self.params, **openai_params}) as stream:
            async for chunk in stream:
                if chunk.is_content:
                    reply.add(chunk)
                yield chunk
        self.messages[:] = [*turn, reply.message()]
        self._updated(len(turn) - 1, stream.served_by)

    def _updated(self, before: int, served_by: str | None) -> None:
        """Tell the Router's observers that the messages after the first `before` joined the history."""
        router = self.router
        if ConversationUpdated not in router._rt.wanted:  # no observer takes it: do not build it
            return
        messages = tuple(self.messages[before:])
        router._emit(ConversationUpdated(router._clock(), self.id, self.model, served_by, len(self.messages), messages))


class StreamedReply:
    """Reassembles a streamed assistant message: its text, and its tool calls from their per-index fragments (the
    first carries id, type and name; later ones only more of the arguments string)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}

    def add(self, chunk: ChatChunk) -> None:
        if chunk.content:
            self.parts.append(chunk.content)
        for fragment in chunk.tool_calls:
            if not isinstance(fragment, Mapping):
                continue
            index = fragment.get("index")
            index = index if isinstance(index, int) and not isinstance(index, bool) else 0
            call = self.calls.setdefault(
                index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if fragment.get("id"):
                call["id"] = fragment["id"]
            if fragment.get("type"):
                call["type"] = fragment["type"]
            function = fragment.get("function")
            if isinstance(function, Mapping):
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""

    def message(self) -> dict[str, Any]:
        """The assistant message as OpenAI's history expects it: content None when the reply is only tool calls."""
        text = "".join(self.parts)
        if not self.calls:
            return {"role": "assistant", "content": text}
        calls = [self.calls[index] for index in sorted(self.calls)]
        return {"role": "assistant", "content": text or None, "tool_calls": calls}
