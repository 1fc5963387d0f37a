"""The virtual-time loop: idle waits are skipped, ordering and real loopback I/O are exactly as in real time."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from turnout.testing import OpenAIFake, hang, slow
from turnout.testing.virtual_time import VirtualTimeLoop, run_virtual


def test_an_hour_of_sleeping_takes_no_real_time():
    """asyncio.sleep(3600) returns at once in real terms, with the loop clock an hour later."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - start, loop.skipped

    began = time.monotonic()
    elapsed, skipped = run_virtual(main())
    assert 3600 <= elapsed < 3601 and skipped >= 3599
    assert time.monotonic() - began < 30  # generous: only the skipping itself costs real time


def test_timers_fire_in_order_and_timeouts_cancel_at_their_time():
    """Concurrent sleeps finish in deadline order at their virtual times; asyncio.timeout fires at its limit."""

    async def main() -> tuple[list[tuple[str, int]], float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        finished: list[tuple[str, int]] = []

        async def nap(name: str, seconds: float) -> None:
            await asyncio.sleep(seconds)
            finished.append((name, round(loop.time() - start)))

        await asyncio.gather(nap("c", 300), nap("a", 5), nap("b", 60))
        before = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.sleep(3600)
        return finished, loop.time() - before

    finished, timed_out_after = run_virtual(main())
    assert finished == [("a", 5), ("b", 60), ("c", 300)]
    assert 30 <= timed_out_after < 31


def test_loopback_http_keeps_real_answers_and_skips_only_the_waiting():
    """A fake that answers after 45 s (virtual) is answered at 45 s; one that never answers hits the client's
    20 s timeout at 20 s; a prompt answer is never skipped past."""

    async def main() -> tuple[str, float, float, float]:
        loop = asyncio.get_running_loop()
        async with OpenAIFake() as fake, aiohttp.ClientSession() as session:
            fake.script("chat", fake.text("prompt"), slow(45, fake.text("late")), hang())
            url = f"{fake.url}/v1/chat/completions"
            t0 = loop.time()
            async with session.post(url, json={}) as resp:
                first = (await resp.json())["choices"][0]["message"]["content"]
            t1 = loop.time()
            async with session.post(url, json={}) as resp:
                await resp.json()
            t2 = loop.time()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(20), session.post(url, json={}) as resp:
                    await resp.read()
            t3 = loop.time()
        return first, t1 - t0, t2 - t1, t3 - t2

    first, prompt, late, silent = run_virtual(main())
    assert first == "prompt" and prompt < 1.0
    assert 45 <= late < 46
    assert 20 <= silent < 21


def test_the_loop_is_a_selector_loop_with_its_own_clock():
    """VirtualTimeLoop starts at the real monotonic clock and only ever moves ahead of it."""
    loop = VirtualTimeLoop()
    try:
        assert abs(loop.time() - time.monotonic()) < 0.5
        loop.advance(10)
        assert loop.time() - time.monotonic() >= 9.5 and loop.skipped == 10
    finally:
        loop.close()
