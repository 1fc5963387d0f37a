"""Streamed-body framing for drivers: server-sent events and newline-delimited JSON, read as bytes arrive."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, NamedTuple


class SSEEvent(NamedTuple):
    """One server-sent event: `event` is the `event:` field (None when absent), `data` the joined data lines.

    A named tuple rather than a frozen dataclass: one is built per streamed event, and tuples build fastest.
    """

    event: str | None
    data: bytes


def _chunks(stream: Any) -> AsyncIterable[bytes]:
    """Raw byte pieces from an aiohttp StreamReader (as they arrive) or from any async iterable of bytes."""
    iter_any = getattr(stream, "iter_any", None)
    return iter_any() if iter_any is not None else stream


async def iter_sse(stream: Any) -> AsyncIterator[SSEEvent]:
    """Parse a text/event-stream body into events.

    Reads whatever bytes are available (one await per TCP read, not per line), so lines split across reads, `\\r\\n`
    endings, `:` comments (keep-alive pings), multi-line `data:` and a final event without its blank line at EOF
    are all handled. `id:` and `retry:` fields are ignored; a lone `\\r` is not treated as a line end.
    """
    buf = b""
    event: str | None = None
    data: list[bytes] = []
    async for piece in _chunks(stream):
        if buf:
            piece, buf = buf + piece, b""
        # Fast path: the read holds exactly one plain `data: ...` event (the common case for token streams).
        if piece[:6] == b"data: " and piece[-2:] == b"\n\n" and piece.count(b"\n") == 2 and not data:
            yield SSEEvent(event, piece[6:-2])
            event = None
            continue
        buf = piece
        if b"\n" not in piece:
            continue
        lines = buf.split(b"\n")
        buf = lines.pop()
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    yield SSEEvent(event, data[0] if len(data) == 1 else b"\n".join(data))
                    data = []
                event = None
                continue
            if line[0] == 58:  # b":" comment / keep-alive
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
    if buf.rstrip(b"\r"):
        line = buf.rstrip(b"\r")
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
    if data:
        yield SSEEvent(event, b"\n".join(data))


async def iter_ndjson(stream: Any) -> AsyncIterator[bytes]:
    """Yield each non-blank line of a newline-delimited JSON body (tolerates split reads, CRLF, no final newline)."""
    buf = b""
    async for piece in _chunks(stream):
        buf += piece
        if b"\n" not in piece:
            continue
        lines = buf.split(b"\n")
        buf = lines.pop()
        for line in lines:
            line = line.strip()
            if line:
                yield line
    buf = buf.strip()
    if buf:
        yield buf
