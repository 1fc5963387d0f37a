"""The generic timeouts: enforced even when a driver ignores its budget, and never swallowing a real cancel."""

from __future__ import annotations

import asyncio
import time

import pytest

from turnout import ChatChunk, ChatResponse, ErrorClass, ProviderError, Router, Usage
from turnout.events import ResponseCompleted
from turnout.router.timeouts import TimeoutMonitor

HI = [{"role": "user", "content": "hello there"}]


class Oblivious:
    """A test double for a badly behaved driver: it ignores every time budget (the mock honours them)."""

    name = "oblivious"
    options_schema = {}
    capabilities = frozenset({"streaming"})

    def __init__(self, spec):
        self.spec = spec

    async def send(self, request, ctx):
        await asyncio.sleep(3600)
        return ChatResponse(id="x", model="m", choices=())

    async def stream(self, request, ctx):
        yield ChatChunk(data={"choices": [{"index": 0, "delta": {"content": "partial"}}]}, is_content=True)
        await asyncio.sleep(3600)
        yield ChatChunk(data={"choices": []}, usage=Usage.UNKNOWN)


YAML = """
version: 1
defaults:
  attempt_timeout: 100ms
  stall_timeout: 100ms
  retry: {attempts: 0}
providers:
  stuck: {driver: oblivious}
  fine: {driver: mock}
models:
  s: {provider: stuck}
  f: {provider: fine}
routes:
  r: {chain: [s, f]}
"""


def oblivious_router(**options) -> Router:
    """Built from YAML with an embedder's driver class: the loader and the compiler both know it."""
    return Router.from_yaml(YAML, drivers={"oblivious": Oblivious}, **options)


async def test_attempt_timeout_is_enforced_even_if_the_driver_ignores_it():
    """A driver that never returns is cut off at attempt_timeout and the next deployment serves."""
    async with oblivious_router() as router:
        started = time.monotonic()
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "fine/f"
    assert reply.attempts[0].error_class == "timeout"
    assert time.monotonic() - started < 2.5  # the driver never returns: only the 100 ms attempt timeout ends it


async def test_stall_timeout_is_enforced_even_if_the_driver_ignores_it():
    """A stream whose driver stalls forever after content ends with an explicit timeout error."""
    async with oblivious_router() as router:
        got = []
        with pytest.raises(ProviderError) as info:
            await _read(router.stream(model="r", messages=HI), got)
    assert got == ["partial"]
    assert info.value.error_class is ErrorClass.TIMEOUT
    assert info.value.after_first_token


async def _read(stream, got):
    async for chunk in stream:
        got.append(chunk.content)


async def test_a_callers_cancellation_is_not_mistaken_for_a_timeout():
    """Cancelling a request mid-attempt propagates CancelledError, frees the in-flight slot, ends as "cancelled"."""
    events = []
    async with oblivious_router(observers=[events.append]) as router:
        task = asyncio.create_task(router.chat(model="r", messages=HI))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert router.health["stuck/s"].in_flight == 0
    done = [e for e in events if isinstance(e, ResponseCompleted)]
    assert [(e.error_class, e.attempts[0].detail) for e in done] == [("cancelled", "cancelled by the caller")]


def test_timeouts_still_fire_when_the_router_moves_to_a_new_event_loop():
    """A loop that ended with the Router's one timer still armed leaves the next loop's attempts with timeouts."""
    router = oblivious_router()

    async def abandon() -> None:  # cancelled mid-attempt: the timer is armed when this loop closes
        task = asyncio.create_task(router.chat(model="r", messages=HI))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await router.aclose()

    async def ask() -> ChatResponse:
        try:
            async with asyncio.timeout(3):  # the bound of this test, far above attempt_timeout
                return await router.chat(model="r", messages=HI)
        finally:
            await router.aclose()

    asyncio.run(abandon())
    started = time.monotonic()
    reply = asyncio.run(ask())
    assert reply.served_by == "fine/f"
    assert reply.attempts[0].error_class == "timeout"
    assert time.monotonic() - started < 2.5  # the driver never returns: only the 100 ms attempt timeout ends it


async def test_monitor_cancels_only_overdue_waits_with_one_timer():
    """Three guarded waits: only the overdue one is cancelled; a later limit keeps the others alive."""
    monitor = TimeoutMonitor()
    loop = asyncio.get_running_loop()
    outcome = {}

    async def wait(name: str, limit: float, sleep: float) -> None:
        guard = monitor.guard(loop.time() + limit)
        try:
            await asyncio.sleep(sleep)
            outcome[name] = "done"
        except asyncio.CancelledError:
            outcome[name] = "timed out" if guard.expired() else "cancelled"
        finally:
            monitor.release(guard)

    await asyncio.gather(wait("short", 0.05, 1), wait("long", 1, 0.1), wait("none", 0.5, 0.01))
    assert outcome == {"short": "timed out", "long": "done", "none": "done"}


async def test_monitor_does_not_swallow_an_external_cancel_that_coincides():
    """When the guard fires and the caller cancels in the same loop turn, the CancelledError propagates."""
    monitor = TimeoutMonitor()
    loop = asyncio.get_running_loop()
    seen = {}

    async def work() -> None:
        guard = seen["guard"] = monitor.guard(loop.time() + 100)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen["expired"] = guard.expired()
            raise
        finally:
            monitor.release(guard)

    task = asyncio.create_task(work())
    await asyncio.sleep(0)
    seen["guard"].until = loop.time() - 1  # overdue: the monitor's timer, run by hand, cancels the task...
    monitor._fire()
    task.cancel()  # ...and so does the caller, before the task runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen["expired"] is False
