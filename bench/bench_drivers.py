"""CPU cost of each driver's translate + parse work, non-streaming and streaming (a 1,000-chunk stream).

How it measures: each driver first talks to its loopback fake upstream once, through a session that records the
exact response bytes; then the same call is replayed N times from memory (the recorded body is handed to the
driver in one piece per event, as TCP reads deliver a token stream). What is timed with `time.process_time()` is
therefore only the driver: building the upstream body, JSON encoding, and parsing/classifying the answer or every
streamed event into ChatChunks, plus turnout's `_http` framing. No network, no fake server in the measured loop.

    python bench/bench_drivers.py            # all drivers
    python bench/bench_drivers.py openai     # some

To add a driver, add an Entry to ENTRIES: a driver factory (base_url -> Driver), the fake's class and a model.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from turnout import _json
from turnout.config import ProviderSpec, Secret
from turnout.drivers.anthropic import AnthropicDriver
from turnout.drivers.base import CallContext, Driver
from turnout.drivers.gemini import GeminiDriver
from turnout.drivers.mock import MockDriver
from turnout.drivers.ollama import OllamaDriver
from turnout.drivers.openai import OpenAIDriver
from turnout.testing import AnthropicFake, FakeUpstream, GeminiFake, OllamaFake, OpenAIFake
from turnout.types import ChatRequest, Usage

STREAM_CHUNKS = 1000
SEND_CALLS = 2000
STREAM_CALLS = 20


@dataclass(frozen=True)
class Entry:
    driver: Callable[[str], Driver]
    fake: Callable[[], FakeUpstream] | None  # None: in-process driver, nothing to record
    model: str


def _spec(driver: str, base_url: str | None, **fields: Any) -> ProviderSpec:
    return ProviderSpec(name=driver, driver=driver, base_url=base_url, api_key=Secret("sk-bench"), **fields)


ENTRIES: dict[str, Entry] = {
    "openai": Entry(lambda url: OpenAIDriver(_spec("openai", f"{url}/v1")), OpenAIFake, "gpt-test"),
    "ollama": Entry(lambda url: OllamaDriver(_spec("ollama", url)), OllamaFake, "llama-test"),
    "anthropic": Entry(lambda url: AnthropicDriver(_spec("anthropic", url)), AnthropicFake, "claude-test"),
    "gemini": Entry(lambda url: GeminiDriver(_spec("gemini", url)), GeminiFake, "gemini-test"),
    "mock": Entry(lambda url: MockDriver(_spec("mock", None, options={"reply": "tok " * STREAM_CHUNKS})), None, "m"),
}

REQUEST_BODY: Mapping[str, Any] = {
    "model": "route",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. " * 10},
        {"role": "user", "content": "What is the capital of France? " * 5},
        {"role": "assistant", "content": "Paris is the capital of France. " * 5},
        {"role": "user", "content": "And what is its population, roughly? Answer in one sentence."},
    ],
    "temperature": 0.3,
    "max_tokens": 256,
}


# ---------------------------------------------------------------------------------------------- replay transport


class _CannedBody:
    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces
        self._eof = False

    async def iter_any(self) -> Any:
        for piece in self._pieces:
            yield piece
        self._eof = True

    def is_eof(self) -> bool:
        return self._eof


class _CannedResponse:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self._body = body
        framing = b"\n\n" if "event-stream" in headers.get("Content-Type", "") else b"\n"
        pieces = [p + framing for p in body.split(framing) if p]
        self.content = _CannedBody(pieces)

    async def read(self) -> bytes:
        self.content._eof = True
        return self._body

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class ReplaySession:
    """Performs the first request for real (recording status, headers, body), then replays it from memory."""

    def __init__(self, real: aiohttp.ClientSession | None) -> None:
        self._real = real
        self.recorded: tuple[int, dict[str, str], bytes] | None = None

    async def request(self, method: str, url: str, **kwargs: Any) -> _CannedResponse:
        if self.recorded is None:
            assert self._real is not None
            async with self._real.request(method, url, **kwargs) as resp:
                self.recorded = (resp.status, dict(resp.headers), await resp.read())
        return _CannedResponse(*self.recorded)


# ---------------------------------------------------------------------------------------------- measuring


async def _measure(driver: Driver, session: Any, model: str, *, stream: bool, calls: int) -> tuple[float, int]:
    """(CPU seconds per call, chunks per call) over `calls` replayed calls (after one warm-up call)."""
    request = ChatRequest.from_openai({**REQUEST_BODY, "stream": stream})
    ctx = CallContext(session=session, model=model, attempt_timeout=60)

    async def once() -> int:
        if not stream:
            await driver.send(request, ctx)
            return 0
        count = 0
        async for _ in driver.stream(request, ctx):
            count += 1
        return count

    await once()
    started = time.process_time()
    chunks = 0
    for _ in range(calls):
        chunks = await once()
    return (time.process_time() - started) / calls, chunks


async def bench(name: str, entry: Entry) -> None:
    if entry.fake is None:
        driver = entry.driver("")
        send, _ = await _measure(driver, None, entry.model, stream=False, calls=SEND_CALLS)
        per_stream, chunks = await _measure(driver, None, entry.model, stream=True, calls=STREAM_CALLS)
    else:
        async with entry.fake() as fake, aiohttp.ClientSession() as real:
            driver = entry.driver(fake.url)
            fake.default("chat", fake.text("Paris has about two million inhabitants.", usage=Usage(80, 9)))  # type: ignore[attr-defined]
            send, _ = await _measure(driver, ReplaySession(real), entry.model, stream=False, calls=SEND_CALLS)
            pieces = ["tok "] * STREAM_CHUNKS
            fake.default("chat", fake.stream_text(pieces, usage=Usage(80, STREAM_CHUNKS)))  # type: ignore[attr-defined]
            per_stream, chunks = await _measure(
                driver, ReplaySession(real), entry.model, stream=True, calls=STREAM_CALLS
            )
    print(
        f"{name:<10} send {send * 1e6:8.1f} µs/request   "
        f"stream {per_stream * 1e6:9.1f} µs/request  {per_stream / max(chunks, 1) * 1e6:6.2f} µs/chunk "
        f"({chunks} chunks)"
    )


async def main(names: list[str]) -> None:
    backend = "orjson" if _json.FAST else "stdlib json"
    print(
        f"python {sys.version.split()[0]}, {backend}; send: {SEND_CALLS} calls; "
        f"stream: {STREAM_CALLS} x {STREAM_CHUNKS} chunks"
    )
    for name in names or list(ENTRIES):
        await bench(name, ENTRIES[name])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
