"""Relay a router stream to the client in OpenAI's exact SSE framing.

The client sees: a role chunk (`delta.role = "assistant"`; synthesised when the upstream's first committed
chunk has none), the content/tool-call deltas, the finish chunk, a usage chunk (`choices: []`) only when it asked
for `stream_options.include_usage`, then `data: [DONE]`. Chunk bytes from OpenAI-compatible upstreams are
forwarded untouched.

A failure after the first chunk ends the stream with one `data: {"error": {...}}` event, which the `openai` SDK
raises as APIError, and never with `[DONE]`: a cut answer must not look like a complete one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from turnout.errors import ProviderError, UpstreamConnectionError
from turnout.server.errors import failure
from turnout.types import ChatChunk, Usage, chunk_data, usage_chunk_data

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

log = logging.getLogger("turnout.server")


@dataclass(slots=True)
class RelayOutcome:
    """How the relay ended: `error_class` is None on a clean `[DONE]`; `text` only when content is logged."""

    chunks: int = 0
    error_class: str | None = None
    error_message: str = ""
    text: str | None = None


def role_chunk(first: ChatChunk) -> bytes | None:
    """The opening `delta.role` chunk, or None when the first committed chunk already carries the role."""
    data = first.data
    choices = data.get("choices") or ()
    if choices and isinstance(choices[0], dict) and (choices[0].get("delta") or {}).get("role"):
        return None
    body = chunk_data(
        id=data.get("id", ""),
        model=data.get("model", ""),
        created=data.get("created", 0),
        delta={"role": "assistant", "content": ""},
    )
    return ChatChunk(data=body).to_sse()


def usage_event(first: ChatChunk, usage: Usage) -> bytes | None:
    """A synthesised OpenAI usage chunk, for a client that asked for usage when the upstream sent none."""
    if usage is None or not usage.known:
        return None
    data = first.data
    body = usage_chunk_data(
        id=data.get("id", ""), model=data.get("model", ""), created=data.get("created", 0), usage=usage
    )
    return ChatChunk(data=body).to_sse()


async def relay(
    response: web.StreamResponse,
    stream: Any,
    first: ChatChunk,
    *,
    include_usage: bool,
    keep_text: bool = False,
) -> RelayOutcome:
    """Write `first` and everything after it from `stream`; end with [DONE] or with an error event."""
    outcome = RelayOutcome(chunks=1)
    texts: list[str] | None = [] if keep_text else None
    write = response.write
    opening = role_chunk(first)
    if opening is not None:
        await write(opening)
    await write(first.to_sse())
    if texts is not None:
        texts.append(first.content or "")
    usage_sent = False
    try:
        async for chunk in stream:
            if chunk.usage_only:
                if include_usage:
                    await write(chunk.to_sse())
                    usage_sent = True
                continue
            await write(chunk.to_sse())
            outcome.chunks += 1
            if texts is not None:
                texts.append(chunk.content or "")
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # after the commit point every failure becomes an error event, never [DONE]
        if not isinstance(exc, ProviderError):
            log.exception("stream failed after the first chunk")
            exc = UpstreamConnectionError(f"stream failed: {type(exc).__name__}", after_first_token=True)
        fail = failure(exc)
        outcome.error_class = fail.error_class or "server_error"
        outcome.error_message = str(fail.error.get("message", ""))
        await write(fail.event())
        await response.write_eof()
        outcome.text = "".join(texts) if texts is not None else None
        return outcome
    if include_usage and not usage_sent:
        extra = usage_event(first, getattr(stream, "usage", None))
        if extra is not None:
            await write(extra)
    await write(DONE)
    await response.write_eof()
    outcome.text = "".join(texts) if texts is not None else None
    return outcome
