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


def sse_frame(event: str | None, data: bytes | str) -> bytes:
    """One parsed event framed again as it was received (each line of a multi-line `data` its own `data:` line):
    the inverse of `SSEParser`, for native frames relayed to a client of the same API."""
    payload = data.encode() if isinstance(data, str) else data
    if b"\n" in payload:
        payload = payload.replace(b"\n", b"\ndata: ")
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"


def _chunks(stream: Any) -> AsyncIterable[bytes]:
    """Raw byte pieces from an aiohttp StreamReader (as they arrive) or from any async iterable of bytes."""
    iter_any = getattr(stream, "iter_any", None)
    return iter_any() if iter_any is not None else stream


class SSEParser:
    """Incremental text/event-stream parser: feed it bytes as they arrive, get back the events they complete.

    Handles lines split across reads, `\\r\\n` endings, `:` comments (keep-alive pings), multi-line `data:` and a
    final event without its blank line (`end()`). `id:` and `retry:` fields are ignored; a lone `\\r` is not
    treated as a line end. A plain function call per read rather than an async generator per event: streaming
    costs are per event, and a generator hop per event is a measurable part of them.
    """

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, piece: bytes) -> list[SSEEvent]:
        """The events completed by `piece` (possibly none)."""
        piece = self._joined(piece)
        payloads = self._plain(piece)
        if payloads is not None:
            return [SSEEvent(None, payload) for payload in payloads]
        return self._lines(piece)

    def feed_payloads(self, piece: bytes) -> list[bytes]:
        """The `data` payloads of the events completed by `piece`, for formats whose events are unnamed."""
        piece = self._joined(piece)
        payloads = self._plain(piece)
        if payloads is not None:
            return payloads
        return [event.data for event in self._lines(piece)]

    def _joined(self, piece: bytes) -> bytes:
        if self._buf:
            piece, self._buf = self._buf + piece, b""
        return piece

    def _plain(self, piece: bytes) -> list[bytes] | None:
        """Fast path: the payloads when `piece` holds whole single-line `data:` events only (the usual token
        stream), else None. Every boundary is then exactly "\n\ndata: ", and no payload holds a newline (which
        would mean another field, a comment or a blank line inside)."""
        if self._data or self._event is not None or piece[-2:] != b"\n\n" or piece[:6] != b"data: ":
            return None
        if b"\r" in piece:
            return None
        payloads = piece[6:-2].split(b"\n\ndata: ")
        for payload in payloads:
            if b"\n" in payload:
                return None
        return payloads

    def _lines(self, piece: bytes) -> list[SSEEvent]:
        """The general line parser (fields, comments, multi-line data, CRLF, a line split across reads)."""
        if b"\n" not in piece:
            self._buf = piece
            return []
        lines = piece.split(b"\n")
        self._buf = lines.pop()
        out: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    out.append(SSEEvent(self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data = self._data = []
                self._event = None
                continue
            if line[0] == 58:  # b":" comment / keep-alive
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        return out

    def end(self) -> list[SSEEvent]:
        """At EOF: the last event when the body ended without its blank line."""
        line, self._buf = self._buf.rstrip(b"\r"), b""
        if line:
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        if not self._data:
            return []
        event = SSEEvent(self._event, b"\n".join(self._data))
        self._data, self._event = [], None
        return [event]


async def iter_sse_payloads(stream: Any) -> AsyncIterator[list[bytes]]:
    """The `data` payloads of a text/event-stream body, one list per TCP read (one await per read, not per
    event); event names are dropped, for formats that do not use them (OpenAI's)."""
    parser = SSEParser()
    async for piece in _chunks(stream):
        payloads = parser.feed_payloads(piece)
        if payloads:
            yield payloads
    events = parser.end()
    if events:
        yield [event.data for event in events]


async def iter_sse(stream: Any) -> AsyncIterator[SSEEvent]:
    """Parse a text/event-stream body into events, as bytes arrive (see SSEParser for what is handled)."""
    parser = SSEParser()
    async for piece in _chunks(stream):
        for event in parser.feed(piece):
            yield event
    for event in parser.end():
        yield event


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
