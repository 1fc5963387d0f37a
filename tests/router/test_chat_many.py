"""Router.chat_many (bounded concurrency, order, classified errors, progress) and Conversation's events."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from turnout import (
    AllUpstreamsFailed,
    ChatRequest,
    ChatResponse,
    Conversation,
    ConversationUpdated,
    LoggingObserver,
    RouteNotFound,
)
from turnout.testing import FakeUpstream, OpenAIFake

HI = [{"role": "user", "content": "hello there"}]
MOCK = "version: 1\nproviders:\n  q: {driver: mock}\nmodels:\n  n: {provider: q}\nroutes:\n  r: {chain: [n]}\n"


def openai_routes(url: str) -> str:
    return (
        "version: 1\ndefaults:\n  retry: {attempts: 0}\n"
        f"providers:\n  up: {{driver: openai, base_url: '{url}/v1', api_key: sk-test}}\n"
        "  echo: {driver: mock}\n"
        "models:\n  m: {provider: up, name: gpt-test}\n  e: {provider: echo}\n"
        "routes:\n  r: {chain: [m]}\n  e: {chain: [e]}\n"
    )


class Gauge:
    """A fake-upstream behaviour that answers after a short pause and records the peak number of requests in it."""

    def __init__(self, fake: OpenAIFake, pause: float = 0.02) -> None:
        self.fake = fake
        self.pause = pause
        self.inside = 0
        self.peak = 0

    async def __call__(self, request: web.Request, upstream: FakeUpstream) -> web.StreamResponse | None:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        try:
            await upstream.sleep(self.pause)
            body = await request.json()
            return await self.fake.text(body["messages"][-1]["content"])(request, upstream)
        finally:
            self.inside -= 1


async def test_results_come_in_request_order_with_bounded_concurrency(build, fakes):
    """Twelve requests at concurrency 3: never more than 3 upstream at once, answers in the order asked."""
    fake = await fakes()
    gauge = Gauge(fake)
    fake.default("chat", gauge)
    requests = [{"model": "r", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(12)]
    async with build(openai_routes(fake.url), real_time=True) as router:
        results = await router.chat_many(requests, concurrency=3)
    assert [r.text for r in results] == [f"q{i}" for i in range(12)]
    assert gauge.peak == 3


async def test_failures_take_their_place_as_classified_errors(build, fakes):
    """A failed request yields its classified error in its slot (route errors too); the others are answered."""
    fake = await fakes()
    fake.script("chat", fake.text("one"), fake.error("server_error"), fake.text("three"))
    requests = [
        {"model": "r", "messages": HI},
        {"model": "r", "messages": HI},
        ChatRequest.create(model="r", messages=HI),
        {"model": "nope", "messages": HI},
    ]
    async with build(openai_routes(fake.url)) as router:
        results = await router.chat_many(requests, concurrency=1)
    assert isinstance(results[0], ChatResponse) and results[0].text == "one"
    assert isinstance(results[1], AllUpstreamsFailed)
    assert results[1].__cause__.error_class == "server_error"
    assert isinstance(results[2], ChatResponse) and results[2].text == "three"
    assert isinstance(results[3], RouteNotFound)


async def test_without_return_exceptions_the_first_failure_is_raised_and_the_rest_cancelled(build, fakes):
    """return_exceptions=False raises the first error and stops the requests still queued."""
    fake = await fakes()
    fake.script("chat", fake.error("bad_request"))
    fake.default("chat", fake.text("fine"))
    requests = [{"model": "r", "messages": HI}] * 5
    async with build(openai_routes(fake.url)) as router:
        with pytest.raises(Exception) as caught:
            await router.chat_many(requests, concurrency=1, return_exceptions=False)
    assert caught.value.error_class == "bad_request"
    assert len(fake.requests_to("chat")) == 1  # nothing after the failure was sent


async def test_progress_reports_each_completion_and_a_raising_callback_is_ignored(build, caplog):
    """progress(done, total) sees 1..n of n; a callback that raises is logged and the batch still completes."""
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 2:
            raise RuntimeError("progress bar broke")

    async with build(MOCK) as router:
        with caplog.at_level(logging.ERROR, logger="turnout.router"):
            results = await router.chat_many([{"model": "r", "messages": HI}] * 4, concurrency=2, progress=progress)
    assert sorted(seen) == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(isinstance(r, ChatResponse) for r in results)
    assert "progress callback failed" in caplog.text


async def test_empty_batch_and_bad_arguments(build):
    """No requests gives an empty list; concurrency below 1 and a non-request item are refused clearly."""
    async with build(MOCK) as router:
        assert await router.chat_many([]) == []
        with pytest.raises(ValueError, match="concurrency must be at least 1"):
            await router.chat_many([{"model": "r", "messages": HI}], concurrency=0)
        [result] = await router.chat_many(["not a request"])
    assert "takes ChatRequests or mappings" in str(result)


async def test_cancelling_chat_many_cancels_the_requests_in_flight(build, fakes):
    """Cancelling the batch cancels the upstream calls in flight (the fake sees the client go away)."""
    fake = await fakes()
    fake.default("chat", Gauge(fake, pause=30))
    async with build(openai_routes(fake.url), real_time=True) as router:
        task = asyncio.ensure_future(router.chat_many([{"model": "r", "messages": HI}] * 3, concurrency=3))
        while len(fake.requests_to("chat")) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await fake.wait_disconnect(within=5.0)


async def test_conversation_announces_each_turn_to_the_observers(build, recorder, caplog):
    """Each completed turn (sent or streamed) emits ConversationUpdated with what it added; content stays out of
    the event's repr, so a logging observer never prints it."""
    async with build(MOCK) as router:
        router.add_observer(LoggingObserver())
        conv = Conversation(router, model="r", system="be brief", conversation_id="c-1")
        await conv.send("secret one")
        async for _ in conv.stream("secret two"):
            pass
        with caplog.at_level(logging.DEBUG, logger="turnout.events"):
            await conv.send("secret three")
    updates = recorder.of(ConversationUpdated)
    assert [(u.conversation_id, u.route, u.served_by, u.length) for u in updates] == [
        ("c-1", "r", "q/n", 3),
        ("c-1", "r", "q/n", 5),
        ("c-1", "r", "q/n", 7),
    ]
    assert [[m["role"] for m in u.added] for u in updates] == [["user", "assistant"]] * 3
    assert [u.added[1]["content"] for u in updates] == ["secret one", "secret two", "secret three"]
    assert "ConversationUpdated" in caplog.text and "secret" not in caplog.text


async def test_a_failed_turn_announces_nothing(build, recorder):
    """A turn that fails leaves the history alone and emits no ConversationUpdated."""
    yaml = (
        "version: 1\ndefaults:\n  retry: {attempts: 0}\n"
        "providers:\n  q: {driver: mock, options: {faults: [{kind: status, status: 500}]}}\n"
        "models:\n  n: {provider: q}\nroutes:\n  r: {chain: [n]}\n"
    )
    async with build(yaml) as router:
        conv = Conversation(router, model="r")
        with pytest.raises(AllUpstreamsFailed):
            await conv.send("hi")
    assert recorder.of(ConversationUpdated) == [] and conv.messages == []
    assert conv.id.startswith("conv-")
