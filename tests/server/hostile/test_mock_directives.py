"""Finding 1: request-level mock directives are off unless a provider opts in, and never hurt the loop."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from turnout.config import ProviderSpec
from turnout.drivers.base import CallContext
from turnout.drivers.mock import MockDriver
from turnout.types import ChatRequest

CHAT = "/v1/chat/completions"
ASK = [{"role": "user", "content": "innocent question"}]
AUTH_FAULT = {"faults": [{"kind": "status", "status": 401}]}
DRILL = """\
  drill:
    driver: mock
    options: {reply: echo, request_directives: true}
"""
DRILL_MODEL = "  drill: {provider: drill, name: drill-1}\n"
DRILL_ROUTE = "  drill: {chain: [drill]}\n"


async def post(http: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, dict]:
    async with http.post(url + CHAT, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_directive_is_ignored_by_default_and_breaks_nothing(serve_mock, http):
    """A turnout_mock fault sent to a provider that did not opt in is ignored; the routes stay up for everyone."""
    async with serve_mock() as s:
        for _ in range(5):  # more than the breaker threshold, each an auth fault if it were honoured
            status, payload = await post(http, s.url, {"model": "echo", "messages": ASK, "turnout_mock": AUTH_FAULT})
            assert status == 200, payload
        for route in ("echo", "chat"):
            status, payload = await post(http, s.url, {"model": route, "messages": ASK})
            assert status == 200, payload
            assert payload["choices"][0]["message"]["content"] == "innocent question"
        assert s.sidecar.router.health.open_breakers() == []


async def test_opted_in_provider_honours_directives_and_only_its_route_feels_them(serve_mock, http):
    """With options.request_directives a drill provider takes faults; routes on other providers are unaffected."""
    async with serve_mock(providers=DRILL, models=DRILL_MODEL, routes=DRILL_ROUTE) as s:
        statuses = [
            (await post(http, s.url, {"model": "drill", "messages": ASK, "turnout_mock": AUTH_FAULT}))[0]
            for _ in range(3)
        ]
        assert statuses == [502, 503, 503]  # an auth fault opens the breaker at once: drills see real behaviour
        assert s.sidecar.router.health.open_breakers() == ["drill/drill"]
        status, payload = await post(http, s.url, {"model": "echo", "messages": ASK})
        assert status == 200, payload


def _mock(**options) -> MockDriver:
    return MockDriver(ProviderSpec(name="drill", driver="mock", options={"request_directives": True, **options}))


async def test_unpaced_stream_of_a_huge_prompt_yields_to_the_loop():
    """tokens_per_second 0 with a 2 MB prompt: the mock hands the loop back at least every 64 chunks."""
    prompt = "word " * 400_000  # 2 MB, 400,000 chunks when echoed
    request = ChatRequest.create(
        model="drill",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        turnout_mock={"tokens_per_second": 0},
    )
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    chunks = 0
    longest_run = 0
    seen = ticks
    run = 0
    stream = _mock().stream(request, CallContext(session=None, model="drill-1"))  # type: ignore[arg-type]
    async for _ in stream:
        chunks += 1
        if ticks == seen:
            run += 1
            longest_run = max(longest_run, run)
        else:
            seen, run = ticks, 0
        if chunks >= 20_000:
            break
    await stream.aclose()
    stop.set()
    await task
    assert chunks == 20_000
    assert longest_run <= 64


async def test_huge_paced_stream_keeps_the_sidecar_responsive(serve_mock, http, loop_watch):
    """While a client streams a 3 MB echo with no pacing, the event loop never stalls (healthz keeps answering)."""
    body = {
        "model": "drill",
        "stream": True,
        "messages": [{"role": "user", "content": "word " * 600_000}],
        "turnout_mock": {"tokens_per_second": 0},
    }
    async with serve_mock(providers=DRILL, models=DRILL_MODEL, routes=DRILL_ROUTE) as s, loop_watch() as watch:
        async with http.post(s.url + CHAT, json=body) as resp:
            assert resp.status == 200
            received = 0
            async for piece in resp.content.iter_any():
                received += len(piece)
                if received > 1_000_000:
                    break
            async with http.get(s.url + "/healthz") as health:
                assert health.status == 200
        # Unfixed, the loop stalled for the whole echo (seconds); a yielding mock stalls only to parse the body.
        assert watch.longest < 0.5, f"the event loop stalled for {watch.longest:.2f}s"


async def test_deeply_nested_directive_is_a_quiet_bad_request(serve_mock, http, caplog):
    """A directive nested 500 deep is a 400 naming the problem: no RecursionError, no breaker, no traceback."""
    nested: object = "x"
    for _ in range(500):
        nested = {"a": nested}
    body = {"model": "drill", "messages": ASK, "turnout_mock": {"faults": [{"kind": "status", "body": nested}]}}
    caplog.set_level(logging.DEBUG, logger="turnout")
    async with serve_mock(providers=DRILL, models=DRILL_MODEL, routes=DRILL_ROUTE) as s:
        for _ in range(4):  # more than the breaker threshold
            status, payload = await post(http, s.url, body)
            assert status == 400, payload
            assert payload["error"]["code"] == "invalid_turnout_mock"
            assert "nested" in payload["error"]["message"]
        assert s.sidecar.router.health.open_breakers() == []
        status, _ = await post(http, s.url, {"model": "drill", "messages": ASK})
        assert status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert sum(len(r.getMessage()) + len(r.exc_text or "") for r in caplog.records) < 4000
