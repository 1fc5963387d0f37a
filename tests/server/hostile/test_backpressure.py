"""Finding 3: a client that never reads holds a bounded amount of memory (the upstream is paused, not drained into
the sidecar), and streams abandoned mid-way leave nothing behind, without waiting for a garbage collection.

Both run a real `turnout serve` child, so its resident memory is measured alone, against a loopback upstream that
can send far more than the bounds below.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import struct
import types

from aiohttp import web

from turnout.testing import FakeUpstream

ROUTES = """\
version: 1
defaults:
  retry: {attempts: 0}
  first_token_timeout: 10s
  stall_timeout: 60s
  deadline: 120s
providers:
  up: {driver: openai, base_url: "@UP@/v1", api_key: sk-test}
models:
  m: {provider: up, name: gpt-test}
routes:
  chat: {chain: [m]}
server:
  watch: false
"""
MB = 1024 * 1024
EVENT = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,'
    b'"delta":{"content":"' + b"x" * 900 + b'"},"finish_reason":null}]}\n\n'
)
BLOCK = EVENT * (64 * 1024 // len(EVENT))  # ~64 KB of events per write
TAIL = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,'
    b'"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


class Firehose:
    """An OpenAI-compatible upstream whose streamed answer is `size` bytes, written as fast as it is taken."""

    def __init__(self, upstream: FakeUpstream, size: int) -> None:
        self.size = size
        self.sent = 0  # bytes the upstream managed to hand to the connection, over every request
        self.finished = 0  # answers sent completely
        self.cut = 0  # answers the sidecar stopped taking (it closed the upstream connection)
        upstream.default("/v1/chat/completions", self.behave)

    async def behave(self, request: web.Request, upstream: FakeUpstream) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        first = EVENT.replace(b'"delta":{', b'"delta":{"role":"assistant",', 1)
        await resp.write(first)
        written = len(first)
        try:
            while written < self.size:
                await resp.write(BLOCK)  # returns once the connection took it (aiohttp drains)
                written += len(BLOCK)
                self.sent += len(BLOCK)
        except (ConnectionError, asyncio.CancelledError):  # the sidecar closed this upstream connection mid-answer
            self.cut += 1
            raise
        await resp.write(TAIL)
        await resp.write_eof()
        self.finished += 1
        return resp


async def open_stream(
    port: int, *, receive_buffer: int = 16 * 1024
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a streamed chat request from a socket with a small receive buffer; return once the headers arrived."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=64 * 1024)
    body = json.dumps({"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    writer.write(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    assert b" 200 " in status, status
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0): the client vanishes without reading what is still on its way."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def settled(counter, *, quiet: float = 0.5, within: float = 20.0) -> int:
    """Wait until `counter()` stops growing for `quiet` seconds (or `within` passes); return its value."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    last = counter()
    calm_since = loop.time()
    while loop.time() < end:
        await asyncio.sleep(0.05)
        now = counter()
        if now != last:
            last, calm_since = now, loop.time()
        elif loop.time() - calm_since >= quiet:
            break
    return last


async def test_a_client_that_never_reads_holds_bounded_memory(tmp_path, serve_process):
    """A 256 MB answer to a client that reads nothing: the sidecar grows by < 32 MB and the upstream is paused."""
    async with FakeUpstream() as upstream:
        hose = Firehose(upstream, size=MB)
        path = tmp_path / "routes.yaml"
        path.write_text(ROUTES.replace("@UP@", upstream.url))
        async with serve_process(path) as server:
            reader, writer = await open_stream(server.port)  # warm-up: one small stream, read to its end
            seen = b""
            while not seen.endswith(b"0\r\n\r\n"):  # the chunked body's end
                piece = await asyncio.wait_for(reader.read(1 << 20), 10)
                assert piece, "the server closed the warm-up stream"
                seen = seen[-16:] + piece
            writer.close()
            hose.size = 256 * MB
            baseline = server.rss()
            sent_before = hose.sent
            _, writer = await open_stream(server.port)  # ...and this one is never read
            sent = await settled(lambda: hose.sent) - sent_before
            grown = server.rss() - baseline
            reset(writer)
    assert hose.finished == 1  # only the warm-up answer was sent completely
    assert sent < 64 * MB, f"the upstream was not paused: it sent {sent / MB:.0f} MB to a client reading nothing"
    assert grown < 32 * MB, f"the sidecar grew by {grown / MB:.0f} MB for one stalled client"


async def test_abandoned_streams_leave_memory_flat_without_a_collection(tmp_path, serve_process):
    """100 streams abandoned mid-answer (client reset while the upstream still sends) leave RSS flat."""
    async with FakeUpstream() as upstream:
        hose = Firehose(upstream, size=8 * MB)
        path = tmp_path / "routes.yaml"
        path.write_text(ROUTES.replace("@UP@", upstream.url))
        async with serve_process(path) as server:

            async def abandon() -> None:
                sent = hose.sent
                _, writer = await open_stream(server.port)
                loop = asyncio.get_running_loop()
                end = loop.time() + 0.5
                while hose.sent - sent < 2 * MB and loop.time() < end:  # let the sidecar take a few MB
                    await asyncio.sleep(0.01)
                reset(writer)

            async def batch(n: int) -> None:
                for _ in range(n // 5):
                    await asyncio.gather(*(abandon() for _ in range(5)))

            await batch(20)  # warm-up: allocator arenas, connection pools, first-use caches
            await asyncio.sleep(0.5)
            baseline = server.rss()
            await batch(100)
            await asyncio.sleep(0.5)
            grown = server.rss() - baseline
    assert grown < 24 * MB, f"RSS grew by {grown / MB:.0f} MB over 100 abandoned streams"


async def test_an_abandoned_stream_leaves_no_reference_cycle(tmp_path, server_kit):
    """With the collector off, streams whose client vanished leave no cycle holding turnout frames or buffers."""
    async with FakeUpstream() as upstream:
        Firehose(upstream, size=8 * MB)
        path = tmp_path / "routes.yaml"
        path.write_text(ROUTES.replace("@UP@", upstream.url))
        async with server_kit.serving(path) as served:
            port = int(served.url.rsplit(":", 1)[1])
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                for _ in range(3):
                    _, writer = await open_stream(port, receive_buffer=4096)
                    await asyncio.sleep(0.2)  # the relay fills its buffer and waits for this client
                    reset(writer)
                    await asyncio.sleep(0.2)  # the sidecar notices and cleans up
                gc.collect()
                leftovers = list(gc.garbage)
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
    ours = [
        o
        for o in leftovers
        if (isinstance(o, types.FrameType) and "/turnout/" in o.f_code.co_filename)
        or type(o).__name__ == "CoalescingWriter"
        or (isinstance(o, bytes | bytearray) and len(o) > 64 * 1024)
    ]
    assert ours == [], [getattr(o, "f_code", o) for o in ours][:10]


async def test_a_client_that_stops_reading_is_cut_after_the_client_timeout(tmp_path, server_kit):
    """A streamed answer nobody reads: after server.client_timeout the connection is dropped, the upstream closed, and
    the access log says why (the stream does not hold a connection and an in-flight slot for ever)."""
    async with FakeUpstream() as upstream:
        hose = Firehose(upstream, size=256 * MB)
        path = tmp_path / "routes.yaml"
        path.write_text(ROUTES.replace("@UP@", upstream.url) + "  client_timeout: 1s\n")
        async with server_kit.serving(path) as served:
            port = int(served.url.rsplit(":", 1)[1])
            reader, writer = await open_stream(port, receive_buffer=4096)
            loop = asyncio.get_running_loop()
            end = loop.time() + 20
            while hose.cut == 0 and loop.time() < end:  # nothing is read meanwhile
                await asyncio.sleep(0.05)
            assert hose.cut == 1, "the upstream stream is still open 20 s after the client stopped reading"
            taken = 0
            while piece := await asyncio.wait_for(reader.read(1 << 20), 10):  # what was in flight, then the end
                taken += len(piece)
            writer.close()
            assert taken < 32 * MB
            line = json.loads(served.access_lines()[-1])
            assert served.sidecar.in_flight == 0
    assert hose.finished == 0
    assert line["status"] == 499 and line["stream"] is True
    assert line["error"] == "the client read nothing for 1 s (server.client_timeout)"
