"""FakeUpstream: a scripted aiohttp server on 127.0.0.1:0 that records every request.

A *behaviour* is an async callable `(request, upstream) -> web.StreamResponse | None` that answers one request;
the factories below (`reply_json`, `reply_sse`, `drop`, `hang`, ...) build them. Requests are sorted into named
*endpoints* by `endpoint()` (the request path by default; per-format fakes map e.g. every chat path to "chat"),
and each endpoint answers from its queue of scripted behaviours, then its default, then a 404.

    async with FakeUpstream() as up:
        up.script("/v1/chat/completions", reply_json({"ok": True}), drop())   # first request, second request
        up.default("/v1/models", reply_json({"data": []}))
        ... up.url ... up.requests[0].json ...
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

Behaviour = Callable[[web.Request, "FakeUpstream"], Awaitable[web.StreamResponse | None]]

__all__ = [
    "Behaviour",
    "FakeUpstream",
    "Framing",
    "RecordedRequest",
    "ToolCall",
    "cut_body",
    "drop",
    "hang",
    "reply_json",
    "reply_ndjson",
    "reply_raw",
    "reply_sse",
    "reply_stream",
    "slow",
    "sse_frame",
    "stall_body",
]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it. `json` is the parsed body (None if empty or not JSON)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    json: Any
    endpoint: str

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        lower = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lower), None)


class FakeUpstream:
    """Scripted loopback upstream. Subclasses override `endpoint()` to name endpoints by meaning."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0  # responses the client abandoned before they were complete
        self._queues: dict[str, deque[Behaviour]] = {}
        self._defaults: dict[str, Behaviour] = {}
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._disconnected: asyncio.Event | None = None
        self._port = 0

    # -- lifecycle

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self._closing = asyncio.Event()
        self._disconnected = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:54321` (no trailing slash)."""
        return f"http://127.0.0.1:{self._port}"

    # -- scripting

    def endpoint(self, method: str, path: str) -> str:
        """The endpoint name a request is scripted under; the path itself unless a subclass knows better."""
        return path

    def refusal(self, endpoint: str, body: Any) -> Behaviour | None:
        """How to answer a request the real upstream would refuse (checked before the script), or None to answer
        from the script. Per-format fakes check request bodies here; this one accepts everything."""
        return None

    def script(self, endpoint: str, *behaviours: Behaviour) -> FakeUpstream:
        """Queue behaviours for the next requests to `endpoint`, one each, in order."""
        self._queues.setdefault(endpoint, deque()).extend(behaviours)
        return self

    def default(self, endpoint: str, behaviour: Behaviour) -> FakeUpstream:
        """Answer `endpoint` with `behaviour` whenever its queue is empty."""
        self._defaults[endpoint] = behaviour
        return self

    def reset(self) -> None:
        """Forget recorded requests, queues and defaults (the server keeps running)."""
        self.requests.clear()
        self._queues.clear()
        self._defaults.clear()
        self.disconnects = 0
        if self._disconnected is not None:
            self._disconnected.clear()

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.endpoint == endpoint]

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    async def wait_disconnect(self, within: float = 2.0) -> bool:
        """True once some client abandoned a response before it was complete (waiting up to `within` seconds)."""
        assert self._disconnected is not None
        try:
            await asyncio.wait_for(self._disconnected.wait(), within)
        except TimeoutError:
            return False
        return True

    async def sleep(self, seconds: float) -> None:
        """Sleep inside a behaviour, cut short when the fake closes (so tests never wait on a hung handler)."""
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return

    def note_disconnect(self) -> None:
        self.disconnects += 1
        if self._disconnected is not None:
            self._disconnected.set()

    # -- serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        name = self.endpoint(request.method, request.path)
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
                json=parsed,
                endpoint=name,
            )
        )
        behaviour = self.refusal(name, parsed)  # a request the real API would refuse uses up no scripted answer
        if behaviour is None:
            queue = self._queues.get(name)
            behaviour = queue.popleft() if queue else self._defaults.get(name)
        if behaviour is None:
            return web.json_response({"error": {"message": f"fake has no script for {name}"}}, status=404)
        try:
            response = await behaviour(request, self)
        except (ConnectionResetError, asyncio.CancelledError):
            self.note_disconnect()
            raise
        if response is None:  # the behaviour dropped the connection
            raise _Dropped
        return response


class _Dropped(web.HTTPException):
    """Raised after a behaviour aborted the transport; aiohttp then has nothing left to write."""

    status_code = 500


# ------------------------------------------------------------------------------------------------------ behaviours


def reply_json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Behaviour:
    """Answer with a JSON body (any JSON-serialisable value)."""
    payload = json.dumps(body).encode()
    return reply_raw(payload, status=status, content_type="application/json", headers=headers)


def reply_raw(
    body: bytes,
    status: int = 200,
    content_type: str = "application/octet-stream",
    headers: Mapping[str, str] | None = None,
) -> Behaviour:
    """Answer with exact bytes (garbage, HTML error pages, truncated JSON...)."""

    async def behave(request: web.Request, upstream: FakeUpstream) -> web.StreamResponse:
        return web.Response(
            body=body, status=status, content_type=None, headers={"Content-Type": content_type, **(headers or {})}
        )

    return behave


def reply_stream(
    frames: Sequence[bytes],
    *,
    content_type: str,
    status: int = 200,
    delay: float = 0.0,
    split_every: int | None = None,
    crlf: bool = False,
    cut_after: int | None = None,
    headers: Mapping[str, str] | None = None,
    cut_after_text: str | None = None,
    stall_after_text: str | None = None,
    stall: float = 0.0,
) -> Behaviour:
    """Stream `frames` (chunked transfer encoding), optionally paced, split or cut.

    `split_every=n` writes every frame in n-byte pieces with a flush between them, so lines straddle TCP reads;
    `crlf` turns each `\\n` into `\\r\\n`; `cut_after=n` aborts the connection after n frames (the client sees
    a broken body); `delay` sleeps before each frame. `cut_after_text` aborts right after the first frame that
    contains that text, and `stall_after_text` pauses `stall` seconds after it: a fault placed after a given piece of
    content whatever the wire format's framing around it.
    """

    async def behave(request: web.Request, upstream: FakeUpstream) -> web.StreamResponse | None:
        resp = web.StreamResponse(status=status, headers={"Content-Type": content_type, **(headers or {})})
        await resp.prepare(request)
        stalled = False
        for index, frame in enumerate(frames):
            if cut_after is not None and index >= cut_after:
                _abort(request)
                return None
            if delay:
                await upstream.sleep(delay)
            data = frame.replace(b"\n", b"\r\n") if crlf else frame
            if split_every:
                for start in range(0, len(data), split_every):
                    await resp.write(data[start : start + split_every])
                    await asyncio.sleep(0)
            else:
                await resp.write(data)
            if cut_after_text is not None and cut_after_text.encode() in frame:
                _abort(request)
                return None
            if stall_after_text is not None and not stalled and stall_after_text.encode() in frame:
                stalled = True  # once
                await upstream.sleep(stall)
        if cut_after is not None and cut_after >= len(frames):
            _abort(request)
            return None
        await resp.write_eof()
        return resp

    return behave


def reply_sse(frames: Sequence[bytes], **options: Any) -> Behaviour:
    """Stream server-sent events; `frames` are whole events (see `sse_frame`). Options as `reply_stream`."""
    return reply_stream(frames, content_type="text/event-stream", **options)


def reply_ndjson(lines: Sequence[bytes | Mapping[str, Any]], **options: Any) -> Behaviour:
    """Stream newline-delimited JSON; dict lines are encoded, bytes lines sent as given (plus `\\n`)."""
    frames = [(json.dumps(line).encode() if isinstance(line, Mapping) else line) + b"\n" for line in lines]
    return reply_stream(frames, content_type="application/x-ndjson", **options)


def sse_frame(data: bytes | str | Mapping[str, Any], event: str | None = None) -> bytes:
    """One SSE event: optional `event:` line, a `data:` line, and the blank line."""
    if isinstance(data, Mapping):
        data = json.dumps(data)
    payload = data.encode() if isinstance(data, str) else data
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def drop() -> Behaviour:
    """Close the connection without answering (the client sees a reset / server disconnect)."""

    async def behave(request: web.Request, upstream: FakeUpstream) -> None:
        _abort(request)
        return None

    return behave


def hang() -> Behaviour:
    """Never answer (until the client gives up or the fake closes)."""

    async def behave(request: web.Request, upstream: FakeUpstream) -> None:
        await upstream.sleep(3600)
        _abort(request)
        return None

    return behave


def slow(seconds: float, then: Behaviour) -> Behaviour:
    """Wait `seconds` before behaving as `then`."""

    async def behave(request: web.Request, upstream: FakeUpstream) -> web.StreamResponse | None:
        await upstream.sleep(seconds)
        return await then(request, upstream)

    return behave


def cut_body(then: Behaviour) -> Behaviour:
    """Answer as `then` would (status, headers), but abort the connection halfway through its body."""
    return _partial_body(then, stall=None)


def stall_body(then: Behaviour, seconds: float) -> Behaviour:
    """Answer as `then` would, but pause `seconds` halfway through its body before sending the rest."""
    return _partial_body(then, stall=seconds)


def _partial_body(then: Behaviour, stall: float | None) -> Behaviour:
    async def behave(request: web.Request, upstream: FakeUpstream) -> web.StreamResponse | None:
        response = await then(request, upstream)
        if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
            return response  # nothing whole to break (a stream, or a dropped connection)
        body = response.body
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "transfer-encoding")
        }
        resp = web.StreamResponse(status=response.status, headers=headers)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        if stall is None:
            _abort(request)
            return None
        await upstream.sleep(stall)
        await resp.write(body[len(body) // 2 :])
        await resp.write_eof()
        return resp

    return behave


# ------------------------------------------------------------------------------------------- canonical scenarios


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call in a scripted answer; per-format fakes render it in their wire shape."""

    name: str
    arguments: Mapping[str, Any]
    id: str = ""


@dataclass(frozen=True, slots=True)
class Framing:
    """How a per-format fake frames a scripted stream (edge cases for framing tests).

    `split_every` bytes per write (lines straddle TCP reads), `crlf` line endings, `comments` keep-alive
    comments/pings between events (where the format has them), `delay` seconds before each frame, `cut_after`
    frames before the connection is aborted; `cut_after_text` / `stall_after_text` abort / pause `stall` seconds
    right after the frame carrying that text (e.g. the second piece of content, whatever the framing before it).
    """

    split_every: int | None = None
    crlf: bool = False
    comments: bool = False
    delay: float = 0.0
    cut_after: int | None = None
    cut_after_text: str | None = None
    stall_after_text: str | None = None
    stall: float = 0.0

    def options(self) -> dict[str, Any]:
        return {
            "split_every": self.split_every,
            "crlf": self.crlf,
            "delay": self.delay,
            "cut_after": self.cut_after,
            "cut_after_text": self.cut_after_text,
            "stall_after_text": self.stall_after_text,
            "stall": self.stall,
        }
