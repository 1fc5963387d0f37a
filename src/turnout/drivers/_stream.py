"""The bookkeeping the structured stream translators (Anthropic events, Gemini chunks) share. Pure: no I/O.

Both turn a provider's own stream into OpenAI-shaped ChatChunks with one id, model and `created` for the whole
stream, remember whether content already reached the caller (`emitted_content`, for `after_first_token`), end
with a usage-only chunk and raise their protocol errors the same way; only the parsing differs.
"""

from __future__ import annotations

import time
from typing import Any

from turnout.errors import ErrorClass, ProviderError, provider_error
from turnout.types import ChatChunk, NativeFrames, Usage, chunk_data, usage_chunk_data


class ChunkTranslator:
    """Base of a stream translator. `emitted_content` tells whether content already reached the caller."""

    def __init__(self, *, provider: str, model: str, created: int | None = None) -> None:
        self.provider = provider
        self.model = model
        self.created = int(time.time()) if created is None else created
        self.id = ""
        self.emitted_content = False

    def _content(self, delta: dict[str, Any], index: int = 0) -> ChatChunk:
        """A chunk that counts as content (text or tool calls): from now on a failure is after the first token."""
        self.emitted_content = True
        data = chunk_data(id=self.id, model=self.model, created=self.created, delta=delta)  # `_data` inlined: per chunk
        if index:
            data["choices"][0]["index"] = index
        return ChatChunk(data=data, is_content=True, native=self._native())

    def _chunk(self, delta: dict[str, Any], index: int = 0) -> ChatChunk:
        """A chunk that is not content (the role, reasoning, thinking blocks)."""
        return ChatChunk(data=self._data(delta, index=index), native=self._native())

    def _native(self) -> NativeFrames | None:
        """The upstream's own events the next chunk stands for, when the client speaks the upstream's format."""
        return None

    def _data(self, delta: dict[str, Any], reason: str | None = None, *, index: int = 0) -> dict[str, Any]:
        data = chunk_data(id=self.id, model=self.model, created=self.created, delta=delta, finish_reason=reason)
        if index:
            data["choices"][0]["index"] = index
        return data

    def _usage_chunk(self, usage: Usage, reason: str) -> ChatChunk:
        """The final usage-only chunk (`choices: []`), carrying the stream's usage and finish reason."""
        final = usage_chunk_data(id=self.id, model=self.model, created=self.created, usage=usage)
        return ChatChunk(data=final, finish_reason=reason, usage=usage, usage_only=True, native=self._native())

    def _protocol(self, message: str) -> ProviderError:
        return provider_error(
            ErrorClass.PROTOCOL,
            message,
            provider=self.provider,
            model=self.model,
            after_first_token=self.emitted_content,
        )
