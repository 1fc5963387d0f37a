"""Relay a router stream to the client in OpenAI's exact SSE framing.

The client sees: a role chunk (`delta.role = "assistant"`; synthesised when the upstream's first committed
chunk has none), the content/tool-call deltas, the finish chunk, a usage chunk (`choices: []`) only when it asked
for `stream_options.include_usage`, then `data: [DONE]`. Chunk bytes from OpenAI-compatible upstreams are
forwarded untouched.

A failure after the first chunk ends the stream with one `data: {"error": {...}}` event, which the `openai` SDK
raises as APIError, and never with `[DONE]`: a cut answer must not look like a complete one. A `trailer` (the
rescue trail comment, `turnout.server.trail`) goes out just before either ending.

Backpressure: at most `RELAY_BUFFER` bytes wait for a slow client (plus the one write in flight). Past that the
relay waits for the client to drain before it reads the next upstream chunk, which also stops the upstream read,
so the upstream's TCP window closes and a client that never reads holds a bounded amount of memory. It does not
hold the stream for ever either: a write that finds no room for `server.client_timeout` (the response's
`stall_timeout`) ends the stream as `ClientStalled`, the connection is dropped and the upstream closed. A client that
goes away leaves no reference cycle behind: the writer keeps only a flag, never the exception (whose traceback
would point back at the writer and its buffer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from turnout.errors import ProviderError, UpstreamConnectionError
from turnout.server.errors import Scrub, failure
from turnout.types import ChatChunk, Usage, chunk_data, usage_chunk_data

DONE = b"data: [DONE]\n\n"
RELAY_BUFFER = 256 * 1024  # bytes of events that may wait for a slow client before the relay stops reading
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

log = logging.getLogger("turnout.server")


@dataclass(slots=True)
class RelayOutcome:
    """How the relay ended: `error_class` is None on a clean `[DONE]`; `text` only when content is logged."""

    chunks: int = 0
    error_class: str | None = None
    error_message: str = ""
    text: str | None = None


_ROLE_SET = (b'"role":"assistant"', b'"role": "assistant"')


def role_chunk(first: ChatChunk) -> bytes | None:
    """The opening `delta.role` chunk, or None when the first committed chunk already carries the role."""
    raw = first._raw  # the upstream's bytes when forwarded as is: a byte check spares a parse per stream
    if raw is not None and (_ROLE_SET[0] in raw or _ROLE_SET[1] in raw) and raw.count(b'"role"') == 1:
        return None
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


class SSEResponse(web.StreamResponse):
    """A streaming response whose headers leave in the same write as the first event (one syscall, not two).

    aiohttp buffers headers when `_send_headers_immediately` is false (as its plain `Response` does); if a future
    aiohttp drops that attribute, headers are simply sent at `prepare()` as before.
    """

    _send_headers_immediately = False
    stall_timeout: float | None = None  # seconds a write may wait for a client that reads nothing (None: no limit)
    transport: asyncio.Transport | None = None  # the client's connection (set with stall_timeout)


class ClientGone(ConnectionResetError):
    """The client went away while events were being written to it (a fresh instance each time it is raised)."""


class ClientStalled(ClientGone):
    """The client stopped reading: a write found no room for the response's `stall_timeout` seconds."""


class CoalescingWriter:
    """Writes SSE events to the response, batching the events that arrive in one burst into one write.

    An upstream often delivers several events per TCP read, and the router hands them over without suspending.
    Writing each one costs a send syscall (and a wake-up of the client); instead `add()` buffers and schedules a
    flush for the next loop iteration, which comes as soon as the relay waits on the upstream. The client sees
    every event as early as before, in order, with one write per burst. When the stream ends within the burst
    (a short answer read in one piece), `close()` takes what is buffered and sends it with the end of the body:
    headers, events, `[DONE]` and the chunked terminator in a single write. A failed write (the client went
    away) is reported as `ClientGone` by the next `add()`, `room()` or `close()`.

    `add()` answers True once more than `RELAY_BUFFER` bytes wait; the relay then awaits `room()` before it reads
    on (see the module docstring). A fast client never gets there, so the hot path pays one addition per event.
    """

    __slots__ = ("_buffer", "_gone", "_loop", "_pending", "_response", "_scheduled", "_stall", "_task")

    def __init__(self, response: web.StreamResponse) -> None:
        self._response = response
        self._stall: float | None = getattr(response, "stall_timeout", None)
        self._loop = asyncio.get_running_loop()
        self._buffer: list[bytes] = []
        self._pending = 0  # bytes in `_buffer`
        self._scheduled = False  # a flush is due at the next loop iteration
        self._task: asyncio.Task[None] | None = None  # a flush that is writing (it may wait for the client)
        self._gone = False  # a write failed: the client went away (a flag, never the exception: no cycle)

    def add(self, event: bytes) -> bool:
        """Buffer `event` for the next flush; True when the buffer is over its bound (await `room()` next)."""
        if self._gone:
            raise ClientGone("the client went away")
        self._buffer.append(event)
        self._pending += len(event)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._kick)
        return self._pending > RELAY_BUFFER

    async def room(self) -> None:
        """Wait until the client has drained the buffer back under its bound (the upstream waits meanwhile)."""
        while self._pending > RELAY_BUFFER and not self._gone:
            task = self._task
            if task is None or task.done():
                task = self._task = self._loop.create_task(self._write())
            await self._until_written(task)
        if self._gone:
            raise ClientGone("the client went away")

    async def _until_written(self, task: asyncio.Task[None]) -> None:
        """Wait for a write, at most `stall_timeout` seconds: a client that takes nothing for that long is cut."""
        if self._stall is None:
            await task
            return
        try:
            done, _ = await asyncio.wait((task,), timeout=self._stall)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            self._gone = True
            self._buffer.clear()
            self._pending = 0
            raise self._stalled()

    def _kick(self) -> None:
        """The relay is waiting on the upstream: write what was buffered (a task, as a write may wait)."""
        self._scheduled = False
        if not self._buffer or self._gone:
            return  # close() already took it
        if self._task is not None and not self._task.done():
            return  # the previous write is waiting for the client; it writes this buffer next
        self._task = self._loop.create_task(self._write())

    async def _write(self) -> None:
        buffer = self._buffer
        try:
            while buffer:
                data = b"".join(buffer)
                buffer.clear()
                self._pending = 0
                await self._response.write(data)
        except (ConnectionError, asyncio.CancelledError) as exc:
            # aiohttp's failed drain future keeps this exception: its traceback must not keep this frame (and
            # through it the writer, its buffer and the response) in a cycle that only a full collection frees.
            exc.__traceback__ = None
            self._gone = True
            buffer.clear()
            self._pending = 0

    async def close(self, last: bytes) -> None:
        """Write what is buffered plus `last`, and end the body, in one write."""
        if self._task is not None:
            await self._until_written(self._task)
        if self._gone:
            raise ClientGone("the client went away")
        self._buffer.append(last)
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._pending = 0
        if self._stall is None or self._fits(len(data)):
            await self._response.write_eof(data)  # cannot wait for the client: no timer needed
            return
        try:
            async with asyncio.timeout(self._stall):  # the end waits only while the client's window is full
                await self._response.write_eof(data)
        except TimeoutError:
            self._gone = True
            raise self._stalled() from None

    def _stalled(self) -> ClientStalled:
        return ClientStalled(f"the client read nothing for {self._stall:g} s (server.client_timeout)")

    def _fits(self, size: int) -> bool:
        """Whether `size` more bytes stay under the connection's high-water mark, so that writing them never waits."""
        transport = getattr(self._response, "transport", None)
        if transport is None:
            return False
        return transport.get_write_buffer_size() + size <= transport.get_write_buffer_limits()[1]

    def abort(self) -> None:
        """Stop any pending write (the relay is being cancelled)."""
        self._buffer.clear()
        self._pending = 0
        if self._task is not None and not self._task.done():
            self._task.cancel()


async def relay(
    response: web.StreamResponse,
    stream: Any,
    first: ChatChunk,
    *,
    include_usage: bool,
    keep_text: bool = False,
    trailer: Callable[[], bytes] | None = None,
    scrub: Scrub | None = None,
) -> RelayOutcome:
    """Write `first` and everything after it from `stream`; end with [DONE] or with an error event (its text
    passed through `scrub`, as every error a client sees)."""
    outcome = RelayOutcome(chunks=1)
    texts: list[str] | None = [] if keep_text else None
    opening = role_chunk(first)
    # The first event goes out at once (with the headers, see SSEResponse): time to first token is what a
    # streaming client feels. Later events are coalesced per burst.
    await response.write(first.to_sse() if opening is None else opening + first.to_sse())
    out = CoalescingWriter(response)
    add = out.add
    if texts is not None:
        texts.append(first.content or "")
    usage_sent = False
    try:
        async for chunk in stream:
            if chunk.usage_only:
                if include_usage:
                    if add(chunk.to_sse()):
                        await out.room()
                    usage_sent = True
                continue
            if add(chunk.to_sse()):
                await out.room()  # a slow client: wait for it (the upstream read waits too)
            outcome.chunks += chunk.count
            if texts is not None:
                texts.append(chunk.content or "")
    except ProviderError as exc:  # first: UpstreamConnectionError is also a builtin ConnectionError
        return await _failed(out, exc, outcome, texts, trailer, scrub)
    except (asyncio.CancelledError, ConnectionError):  # the client went away: nothing left to tell it
        out.abort()
        raise
    except Exception as exc:  # after the commit point every failure becomes an error event, never [DONE]
        log.exception("stream failed after the first chunk")
        error = UpstreamConnectionError(f"stream failed: {type(exc).__name__}", after_first_token=True)
        return await _failed(out, error, outcome, texts, trailer, scrub)
    if include_usage and not usage_sent:
        extra = usage_event(first, getattr(stream, "usage", None))
        if extra is not None:
            add(extra)
    await out.close(DONE if trailer is None else trailer() + DONE)
    outcome.text = "".join(texts) if texts is not None else None
    return outcome


async def _failed(
    out: CoalescingWriter,
    exc: ProviderError,
    outcome: RelayOutcome,
    texts: list[str] | None,
    trailer: Callable[[], bytes] | None = None,
    scrub: Scrub | None = None,
) -> RelayOutcome:
    """End the stream with the error event (never [DONE]) and record why."""
    fail = failure(exc) if scrub is None else failure(exc, scrub)
    outcome.error_class = fail.error_class or "server_error"
    outcome.error_message = str(fail.error.get("message", ""))
    await out.close(fail.event() if trailer is None else trailer() + fail.event())
    outcome.text = "".join(texts) if texts is not None else None
    return outcome
