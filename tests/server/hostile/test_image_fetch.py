"""Finding 5: an image URL's body is read to its end up to the cap (never truncated to what happened to be
buffered), and all the images of one request share a byte budget."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from turnout.config import ProviderSpec
from turnout.drivers.base import CallContext
from turnout.drivers.gemini import GeminiDriver
from turnout.errors import BadRequest
from turnout.testing import FakeUpstream, GeminiFake, reply_stream
from turnout.types import ChatRequest

MB = 1024 * 1024
PIECE = b"\x89PNG" + bytes(range(256)) * 255  # ~64 KB


def trickled(size: int) -> object:
    """An image written in ~64 KB pieces with a pause between them, so no single read sees it all."""
    pieces = [PIECE] * (size // len(PIECE)) + [PIECE[: size % len(PIECE)]]
    return reply_stream([p for p in pieces if p], content_type="image/png", delay=0.001)


def ask(*urls: str) -> ChatRequest:
    parts = [{"type": "text", "text": "what are these?"}] + [
        {"type": "image_url", "image_url": {"url": u}} for u in urls
    ]
    return ChatRequest.create(model="route", messages=[{"role": "user", "content": parts}])


@pytest.fixture
async def gemini():
    async with GeminiFake() as fake, FakeUpstream() as images, aiohttp.ClientSession() as session:
        fake.default("chat", fake.text("images seen"))
        driver = GeminiDriver(
            ProviderSpec(name="gem", driver="gemini", base_url=fake.url, options={"image_urls": "any"})
        )
        ctx = CallContext(session=session, model="gemini-test", attempt_timeout=30)
        yield driver, ctx, fake, images


async def test_a_5_mb_image_arrives_whole(gemini):
    """A 5 MB image written in pieces is inlined complete, byte for byte."""
    driver, ctx, fake, images = gemini
    size = 5 * MB
    images.default("/big.png", trickled(size))
    await driver.send(ask(f"{images.url}/big.png"), ctx)
    inline = fake.last.json["contents"][0]["parts"][1]["inlineData"]
    data = base64.b64decode(inline["data"])
    assert len(data) == size
    assert data[: len(PIECE)] == PIECE


async def test_images_of_one_request_share_a_byte_budget(gemini):
    """Three 8 MB images (each under the 20 MB per-image cap) exceed the 20 MB per-request default: refused."""
    driver, ctx, fake, images = gemini
    for name in ("a", "b", "c"):
        images.default(f"/{name}.png", trickled(8 * MB))
    with pytest.raises(BadRequest) as info:
        await driver.send(ask(*(f"{images.url}/{n}.png" for n in "abc")), ctx)
    assert info.value.code == "image_fetch_failed"
    assert fake.requests_to("chat") == []


async def test_an_image_one_byte_over_the_cap_is_refused_not_cut(gemini):
    """An image larger than max_image_bytes is refused, never sent truncated."""
    _, ctx, fake, images = gemini
    images.default("/big.png", trickled(MB + 1))
    options = {"image_urls": "any", "max_image_bytes": MB}
    driver = GeminiDriver(ProviderSpec(name="gem", driver="gemini", base_url=fake.url, options=options))
    with pytest.raises(BadRequest, match=f"at most {MB} bytes"):
        await driver.send(ask(f"{images.url}/big.png"), ctx)
    assert fake.requests_to("chat") == []
