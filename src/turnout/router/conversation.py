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
        """Stream a reply; the assistant turn joins the history once the stream completed."""
        turn = [*self.messages, {"role": "user", "content": content}]
        parts: list[str] = []
        async with self.router.stream(model=self.model, messages=turn, **{**self.params, **openai_params}) as stream:
            async for chunk in stream:
                if chunk.is_content and chunk.content:
                    parts.append(chunk.content)
                yield chunk
        self.messages[:] = [*turn, {"role": "assistant", "content": "".join(parts)}]
        self._updated(len(turn) - 1, stream.served_by)

    def _updated(self, before: int, served_by: str | None) -> None:
        """Tell the Router's observers that the messages after the first `before` joined the history."""
        router = self.router
        if ConversationUpdated not in router._rt.wanted:  # no observer takes it: do not build it
            return
        messages = tuple(self.messages[before:])
        router._emit(ConversationUpdated(router._clock(), self.id, self.model, served_by, len(self.messages), messages))
