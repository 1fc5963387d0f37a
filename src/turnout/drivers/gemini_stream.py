"""Gemini's `streamGenerateContent?alt=sse` -> OpenAI-shaped ChatChunks. A pure state machine: no I/O.

The stream is `data:` lines only, each a whole GenerateContentResponse with *incremental* parts, and no
terminator: the body simply ends. So:
- text parts -> content chunks; thought summaries -> `reasoning_content` deltas (not content); a `functionCall`
  part arrives whole -> one tool-call delta carrying id, name and the complete arguments (ids synthesised as in
  `gemini_response`, so both paths agree);
- `usageMetadata` rides on many chunks: the last one wins;
- EOF after some candidate reported a `finishReason` is the normal end and produces the finish chunk(s) and a
  final usage-only chunk (`choices: []`); EOF without any finishReason is a truncated stream -> ProtocolError;
- a chunk `{"error": {...}}` is a mid-stream failure -> the classified error; a chunk with no candidates but a
  `promptFeedback.blockReason` -> content_policy.
With `n > 1` each candidate keeps its own choice index.
"""

from __future__ import annotations

from typing import Any

from turnout.drivers._http import loads
from turnout.drivers._stream import ChunkTranslator
from turnout.drivers.gemini_response import (
    FAILED_FINISH,
    error_from_status,
    failed_finish,
    finish_reason,
    is_answer_part,
    is_thought_part,
    no_candidates,
    tool_call,
    usage_from,
)
from turnout.types import ChatChunk


class GeminiStream(ChunkTranslator):
    """Translate one Gemini SSE stream. `emitted_content` tells whether content already reached the caller."""

    def __init__(self, *, provider: str, model: str, created: int | None = None) -> None:
        super().__init__(provider=provider, model=model, created=created)
        self._started = False
        self._usage: Any = None
        self._finish: dict[int, str] = {}  # choice index -> raw finishReason
        self._calls: dict[int, int] = {}  # choice index -> tool calls so far

    def feed(self, data: bytes | str) -> list[ChatChunk]:
        """One `data:` payload -> the chunks it produces."""
        if not data.strip():
            return []
        payload = loads(data, provider=self.provider, model=self.model, after_first_token=self.emitted_content)
        if not isinstance(payload, dict):
            raise self._protocol("stream chunk is not a JSON object")
        if isinstance(payload.get("error"), dict):
            raise error_from_status(
                payload, status=None, provider=self.provider, model=self.model, after_first_token=self.emitted_content
            )
        chunks: list[ChatChunk] = []
        if not self._started:
            self._started = True
            self.id = str(payload.get("responseId") or "")
            self.model = str(payload.get("modelVersion") or self.model)
            chunks.append(self._chunk({"role": "assistant", "content": ""}))
        if payload.get("usageMetadata") is not None:
            self._usage = payload["usageMetadata"]
        candidates = payload.get("candidates")
        if not candidates:
            if isinstance(payload.get("promptFeedback"), dict) and payload["promptFeedback"].get("blockReason"):
                raise no_candidates(payload, provider=self.provider, model=self.model, after=self.emitted_content)
            return chunks
        if not isinstance(candidates, list):
            raise self._protocol("'candidates' is not a list")
        for position, candidate in enumerate(candidates):
            chunks.extend(self._candidate(candidate, position))
        return chunks

    def finish(self) -> list[ChatChunk]:
        """End of the HTTP body: the finish and usage chunks, or ProtocolError if no candidate finished."""
        if not self._finish:
            raise self._protocol("stream ended without a finishReason")
        reasons = {
            i: finish_reason(raw, has_calls=self._calls.get(i, 0) > 0) for i, raw in sorted(self._finish.items())
        }
        chunks = [
            ChatChunk(data=self._data({}, reason, index=i), finish_reason=reason) for i, reason in reasons.items()
        ]
        chunks.append(self._usage_chunk(usage_from(self._usage), reasons[min(reasons)]))
        return chunks

    def _candidate(self, candidate: Any, position: int) -> list[ChatChunk]:
        if not isinstance(candidate, dict):
            raise self._protocol("candidate is not an object")
        index = candidate.get("index") if isinstance(candidate.get("index"), int) else position
        chunks = []
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            if is_answer_part(part):
                if part["text"]:
                    chunks.append(self._content({"content": part["text"]}, index))
            elif is_thought_part(part):
                if part["text"]:
                    chunks.append(self._chunk({"reasoning_content": part["text"]}, index))
            elif isinstance(part, dict) and isinstance(part.get("functionCall"), dict):
                n = self._calls.get(index, 0)
                self._calls[index] = n + 1
                call = tool_call(part, response_id=self.id, n=n)
                chunks.append(self._content({"tool_calls": [{"index": n, **call}]}, index))
        raw = candidate.get("finishReason")
        if isinstance(raw, str) and raw in FAILED_FINISH:
            raise failed_finish(raw, provider=self.provider, model=self.model, after=self.emitted_content)
        if isinstance(raw, str) and raw:
            self._finish[index] = raw
        return chunks
