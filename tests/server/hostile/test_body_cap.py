"""Finding 4: the body cap is the configured `server.max_request_size`, enforced while the body is read (never
after buffering it), also after a hot reload that changes it."""

from __future__ import annotations

import asyncio

MB = 1024 * 1024
PIECE = b"x" * (64 * 1024)


async def send_chunked(port: int, total: int) -> tuple[int, int]:
    """POST a chunked body of up to `total` bytes, stopping as soon as an answer arrives or the server stops
    taking data. Returns (HTTP status, body bytes sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(head.encode())
    answer = asyncio.create_task(reader.readline())
    sent = 0
    try:
        while sent < total and not answer.done():
            writer.write(f"{len(PIECE):x}\r\n".encode() + PIECE + b"\r\n")
            sent += len(PIECE)
            try:
                await asyncio.wait_for(writer.drain(), 2)
            except TimeoutError:
                break  # the server stopped reading
        if not answer.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except ConnectionError:
        pass  # the server answered and closed while we were still sending
    status_line = await asyncio.wait_for(answer, 30)
    writer.transport.abort()
    return int(status_line.split()[1]), sent


async def test_an_oversized_chunked_body_is_refused_while_it_arrives(serve_mock):
    """With a 1 MB cap, a 60 MB chunked body is answered 413 long before the client has sent it all."""
    async with serve_mock(server="  max_request_size: 1MB\n") as s:
        status, sent = await send_chunked(int(s.url.rsplit(":", 1)[1]), 60 * MB)
    assert status == 413
    assert sent < 20 * MB, f"the sidecar read {sent / MB:.0f} MB before refusing a body over its 1 MB cap"


async def test_the_cap_follows_a_hot_reload(serve_mock, http):
    """Lowering max_request_size by a reload takes effect at once; raising it lets bigger bodies in."""
    async with serve_mock(server="  max_request_size: 8MB\n") as s:
        port = int(s.url.rsplit(":", 1)[1])
        text = s.path.read_text().replace("max_request_size: 8MB", "max_request_size: 1MB")
        s.path.write_text(text)
        async with http.post(s.url + "/admin/reload") as resp:
            assert resp.status == 200, await resp.text()
        status, sent = await send_chunked(port, 40 * MB)
        assert status == 413
        assert sent < 20 * MB, f"the sidecar read {sent / MB:.0f} MB after its cap was lowered to 1 MB"
        s.path.write_text(text.replace("max_request_size: 1MB", "max_request_size: 3MB"))
        async with http.post(s.url + "/admin/reload") as resp:
            assert resp.status == 200
        body = {"model": "echo", "messages": [{"role": "user", "content": "y" * (2 * MB)}]}
        async with http.post(s.url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
