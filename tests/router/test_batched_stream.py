"""`ChatStream.batched()`: the sidecar's byte-forwarding iteration gives the same stream, accounting and policies."""

from __future__ import annotations

import pytest
from aiohttp import web

from turnout.testing import reply_sse
from turnout.types import ChatChunk, ChunkBatch

from .test_streaming import HI, LONG, stream_yaml

WORDS = ["one ", "two ", "three ", "four ", "five ", "six"]


def burst(fake, pieces: list[str]):
    """The whole stream in one write: the client reads every event at once."""
    frames = fake._head() + [fake.chunk({"content": p}) for p in pieces]
    frames += [*fake._tail("stop", None), b"data: [DONE]\n\n"]
    return reply_sse([b"".join(frames)])


async def test_batched_and_plain_iteration_agree(fakes, build):
    """Same bytes and text, same usage, cost, served_by and attempts; only batched() ever yields a ChunkBatch."""
    a = await fakes()
    a.default("chat", burst(a, WORDS))
    seen = {}
    async with build(stream_yaml(a.url)) as router:
        for batched in (True, False):
            stream = router.stream(model="r", messages=HI)
            items = [item async for item in (stream.batched() if batched else stream)]
            seen[batched] = (items, stream.usage, stream.cost_usd, stream.served_by, stream.attempts)
    batched_items, plain_items = seen[True][0], seen[False][0]
    assert any(isinstance(item, ChunkBatch) for item in batched_items)
    assert all(isinstance(item, ChatChunk) for item in plain_items)
    assert b"".join(i.to_sse() for i in batched_items) == b"".join(i.to_sse() for i in plain_items)
    assert "".join(i.content or "" for i in batched_items) == "".join(WORDS)
    assert sum(i.count for i in batched_items) == len(plain_items)
    for got, want in zip(seen[True][1:4], seen[False][1:4], strict=True):
        assert got == want
    assert [a.outcome for a in seen[True][4]] == ["success"]


async def test_batched_must_come_before_iteration(fakes, build):
    a = await fakes()
    a.default("chat", burst(a, WORDS))
    async with build(stream_yaml(a.url)) as router:
        stream = router.stream(model="r", messages=HI)
        async with stream:
            await stream.__anext__()
            with pytest.raises(RuntimeError, match="before"):
                stream.batched()


async def test_continue_hands_over_the_text_of_batches(fakes, build):
    """A burst of content, then a cut: `continue` gives the next (prefill) deployment exactly the text so far,
    batched chunks included, and the caller sees one answer."""
    a = await fakes()

    async def cut_after_burst(request: web.Request, upstream) -> None:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"".join(a._head() + [a.chunk({"content": p}) for p in WORDS[:3]]))
        request.transport.abort()

    a.default("chat", cut_after_burst)
    yaml = f"""
version: 1
defaults:
  retry: {{attempts: 0}}
providers:
  p0: {{driver: openai, base_url: "{a.url}/v1", api_key: sk-test}}
  m1p: {{driver: mock, options: {{reply: echo}}}}
models:
  m0: {{provider: p0, price: {{input: 1, output: 1}}}}
  m1: {{provider: m1p, price: {{input: 1, output: 1}}}}
routes:
  r:
    chain: [m0, m1]
    mid_stream: continue
"""
    async with build(yaml) as router:
        stream = router.stream(model="r", messages=LONG)
        items = [item async for item in stream.batched()]
    assert any(isinstance(item, ChunkBatch) for item in items)
    assert "".join(item.content or "" for item in items) == "one two three four five six"
    assert [(x.deployment, x.outcome) for x in stream.attempts] == [("p0/m0", "error"), ("m1p/m1", "success")]
