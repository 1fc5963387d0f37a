"""Rescuing a broken stream: the seam a continuation joins at (`continue`), the answer held back (`restart`).

`continue`: the caller already has the answer so far, every character of it (a delivered word cannot be taken
back). The continuation is asked to extend that text with its trailing whitespace removed (a prefix ending in
whitespace prompts badly, and Anthropic refuses one), so that whitespace, already delivered, is the seam's `gap`.
The first characters of the continuation are reconciled with what the caller has, before they are handed over:
- an echo of the prefix (a server that repeats it before continuing) is dropped whole;
- leading whitespace is dropped up to the length of the gap: a space is never doubled, and a continuation that
  starts without one gets none invented.
`restart`: the answer is held back, chunk by chunk, until it is complete or outgrows its byte limit.

A cut attempt never reports its usage, yet it was billed. When its text is part of a rescued answer (`continue`)
or was held and discarded (`restart`), its usage is estimated (`estimate`) from the request's prompt estimate and
one completion token per content chunk received (how OpenAI-compatible servers stream), flagged as estimated on
its Attempt, so the answer's usage and cost are the sums over its attempts. Under `error` a cut attempt's usage
stays unknown (and so does the request's cost): nothing is rescued there, and the per-chunk path counts nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from turnout.types import Attempt, ChatChunk, ChatRequest, ChunkBatch, Usage

Item = ChatChunk | ChunkBatch


class Answer:
    """The text the caller has received so far (under `mid_stream: continue`)."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def seam(self) -> Seam:
        """Where a continuation joins: the prefix it is asked to extend, and the whitespace delivered after it."""
        delivered = self.text
        prefix = delivered.rstrip()
        return Seam(prefix, len(delivered) - len(prefix))


class Seam:
    """Reconciles the start of one continuation with the text already delivered (see the module docstring)."""

    __slots__ = ("_held", "_held_text", "echoed", "gap", "prefix", "settled")

    def __init__(self, prefix: str, gap: int) -> None:
        self.prefix = prefix
        self.gap = gap
        self.echoed = False
        self.settled = not prefix and not gap
        self._held: list[ChatChunk] = []  # chunks that may be an echo of the prefix, so far
        self._held_text = ""

    def join(self, item: Item) -> list[ChatChunk] | tuple[Item]:
        """What to hand over for one continuation chunk: adjusted chunks; nothing while it may still be an echo."""
        if self.settled or not item.is_content:
            return (item,)
        if isinstance(item, ChunkBatch):
            return [out for chunk in item for out in self.join(chunk)]
        text = item.content
        if not isinstance(text, str):  # a tool call or a refusal: nothing left to reconcile
            self.settled = True
            return [*self.release(), item]
        template = self._held[0] if self._held else item
        if self.prefix and not self.echoed:
            pending = self._held_text + text
            if len(pending) < len(self.prefix) and self.prefix.startswith(pending):
                self._held.append(item)
                self._held_text = pending
                return []
            self._held, self._held_text = [], ""
            self.echoed = pending.startswith(self.prefix)
            text = pending[len(self.prefix) :] if self.echoed else pending
            self.prefix = ""  # the echo question is answered
        text = self._trim(text)
        if template is item and text == item.content:
            return (item,)  # nothing to reconcile: the chunk goes on untouched
        return [with_content(template, text)] if text else []

    def release(self) -> list[ChatChunk]:
        """The text held as a possible echo, when the continuation ends or turns to something else (not an echo)."""
        if not self._held:
            return []
        template, text = self._held[0], self._held_text
        self._held, self._held_text, self.prefix = [], "", ""
        text = self._trim(text)
        return [with_content(template, text)] if text else []

    def _trim(self, text: str) -> str:
        start = 0
        while self.gap and start < len(text) and text[start].isspace():
            start += 1
            self.gap -= 1
        text = text[start:]
        if text or not self.gap:
            self.settled = not self._held
        return text


def with_content(chunk: ChatChunk, text: str) -> ChatChunk:
    """`chunk` with its first choice's content replaced (everything else kept, `model` included)."""
    data = chunk.data
    choices = data.get("choices") or []
    if not choices:
        return chunk
    first = dict(choices[0])
    first["delta"] = {**(first.get("delta") or {}), "content": text}
    body = {**data, "choices": [first, *choices[1:]]}
    return ChatChunk(data=body, is_content=True, finish_reason=chunk.finish_reason)


class Holdback:
    """The answer held back under `mid_stream: restart`, until it is complete or exceeds `limit` bytes."""

    __slots__ = ("items", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[Item] = []
        self.size = 0

    def add(self, item: Item) -> bool:
        """Hold one item; True once the held bytes exceed the limit (the stream must commit now)."""
        self.items.append(item)
        self.size += sum(map(len, item.raws)) if isinstance(item, ChunkBatch) else len(item.raw)
        return self.size > self.limit

    def extend(self, items: Iterable[Item]) -> None:
        for item in items:
            self.add(item)

    def release(self) -> list[Item]:
        items, self.items, self.size = self.items, [], 0
        return items


def estimate(request: ChatRequest, content_chunks: int) -> Usage:
    """Usage of an attempt cut before it reported any: the prompt as estimated for routing, one token per chunk."""
    prefix = request.assistant_prefix or ""
    return Usage(request.estimated_prompt_tokens + math.ceil(len(prefix) / 4), content_chunks)


def total_usage(attempts: Sequence[Attempt]) -> Usage:
    """The sum of every attempt's usage (unknown as soon as one is unknown); attempts without usage add nothing,
    and none with usage at all is unknown too, never a made-up zero."""
    total: Usage | None = None
    for attempt in attempts:
        if attempt.usage is not None:
            total = attempt.usage if total is None else total + attempt.usage
    return Usage.UNKNOWN if total is None else total


def final_chunk(chunk: ChatChunk, usage: Usage) -> ChatChunk:
    """The stream's last chunk carrying `usage` (the rescued answer's total) instead of its own attempt's."""
    if chunk.usage == usage or not chunk.usage_only:
        return chunk
    body = {**chunk.data, "usage": usage.to_openai()}
    return ChatChunk(data=body, finish_reason=chunk.finish_reason, usage=usage, usage_only=True, native=chunk.native)
