"""Redis misbehaving (the point of the feature): down, killed under load, restarted empty, slow, or refusing us.

A request never fails and never waits longer than op_timeout because of Redis; the state degrades to local
(logged and evented once), reconnects by itself and resynchronises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from turnout import Router, StateDegraded, StateRecovered
from turnout.explain import explain, render_text
from turnout.schema import load_text
from turnout.testing.redis_server import DelayProxy, RedisServer, free_port

pytestmark = pytest.mark.timeout(90)
HI = [{"role": "user", "content": "hello"}]

FILE = """\
version: 1
defaults: {{retry: {{attempts: 0}}}}
providers: {{a: {{driver: mock, options: {{request_directives: true}}}}, b: {{driver: mock}}}}
models:
  limited: {{provider: a, limits: {{rpm: {rpm}, tpm: 10000000}}, price: {{input: 1.0, output: 1.0}}}}
  spare: {{provider: b}}
  fresh: {{provider: a, limits: {{rpm: 6}}}}
routes:
  chat: {{chain: [limited, spare]}}
  fresh: {{chain: [fresh, spare]}}
state:
  backend: redis
  url: "{url}"
  op_timeout: {op_timeout}
  sync_interval: 100ms
"""


class Events:
    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.event_types = (StateDegraded, StateRecovered)

    def __call__(self, event: Any) -> None:
        self.seen.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind)]


@pytest.fixture
async def routers() -> AsyncIterator[Callable[..., Any]]:
    """`await routers(url, rpm=..., op_timeout=...)` -> (started Router, its Events); all closed at the end."""
    made: list[Router] = []

    async def make(url: str, *, rpm: int = 100000, op_timeout: str = "2s") -> tuple[Router, Events]:
        events = Events()
        router = Router(load_text(FILE.format(url=url, rpm=rpm, op_timeout=op_timeout), env={}), observers=[events])
        await router.start()
        made.append(router)
        return router, events

    yield make
    for router in made:
        await router.aclose()


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_redis_that_is_down_at_start_degrades_then_recovers_by_itself(routers, redis_factory):
    """Down at start: requests are served locally, /readyz says degraded but ready; once Redis is up the state
    recovers by itself, with one StateDegraded and one StateRecovered."""
    port = free_port()
    router, events = await routers(f"redis://127.0.0.1:{port}/0")
    readiness = router.readiness()
    assert readiness["ready"] is True and readiness["state"] == "degraded"
    assert "connect" in readiness["state_error"]
    for _ in range(3):
        assert (await router.chat(model="chat", messages=HI)).served_by == "a/limited"
    await asyncio.sleep(0.3)  # several failed reconnections: still one event
    assert len(events.of(StateDegraded)) == 1
    server = RedisServer(binary=redis_factory().binary, port=port).start()
    try:
        await _until(lambda: router.readiness()["state"] == "ok")
        assert len(events.of(StateRecovered)) == 1
        assert events.of(StateRecovered)[0].data_lost is False
    finally:
        server.close()


async def test_killing_redis_under_load_fails_no_request_and_sharing_resumes(routers, redis_server):
    """Two replicas under concurrent load; Redis is killed, then restarted: every request succeeds, and within
    seconds both share limits again (together they admit exactly a fresh deployment's limit)."""
    (a, events_a), (b, _) = await routers(redis_server.url), await routers(redis_server.url)
    failures: list[BaseException] = []
    served = 0
    stop = asyncio.Event()

    async def client(router: Router) -> None:
        nonlocal served
        while not stop.is_set():
            try:
                await router.chat(model="chat", messages=HI)
                served += 1
            except Exception as exc:  # the assertion below reports it
                failures.append(exc)
            await asyncio.sleep(0.002)

    load = [asyncio.create_task(client(r)) for r in (a, b) for _ in range(4)]
    await asyncio.sleep(0.4)
    redis_server.stop(kill=True)
    await _until(lambda: a.readiness()["state"] == "degraded" and b.readiness()["state"] == "degraded")
    await asyncio.sleep(0.3)
    redis_server.start()
    await _until(lambda: a.readiness()["state"] == "ok" and b.readiness()["state"] == "ok")
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*load)
    assert failures == []
    assert served > 50
    assert len(events_a.of(StateDegraded)) == 1 and len(events_a.of(StateRecovered)) == 1
    replies = [await (a if i % 2 else b).chat(model="fresh", messages=HI) for i in range(10)]
    assert [r.served_by for r in replies].count("a/fresh") == 6


async def test_an_empty_restart_crashes_nothing_and_leaves_no_negative_counter(routers, redis_server):
    """Redis restarted without its data: requests go on, the loss is noticed (data_lost), this process's window
    is written back (a request the client caused to fail is not in it), no counter is ever below zero, usage
    starts again at 0."""
    router, events = await routers(redis_server.url, rpm=5)
    for _ in range(3):
        await router.chat(model="chat", messages=HI)
    fault = {"turnout_mock": {"faults": [{"kind": "status", "status": 400}]}}
    redis_server.restart(keep_data=False)
    with pytest.raises(Exception):  # noqa: B017 - a 400 from the provider: the client's fault, not counted
        await router.chat(model="chat", messages=HI, **fault)
    await _until(lambda: router.readiness()["state"] == "ok" and bool(events.of(StateRecovered)))
    assert events.of(StateRecovered)[-1].data_lost is True
    replies = [await router.chat(model="chat", messages=HI) for _ in range(3)]
    assert [r.served_by for r in replies].count("a/limited") == 2  # 3 before + 2 = 5 (the 400 is forgotten)
    await asyncio.sleep(0.3)  # a flush
    for key in redis_server.command("KEYS", "*"):
        kind = redis_server.command("TYPE", key)
        if kind == "string" and "wt:" in key:
            assert int(redis_server.command("GET", key)) >= 0
        elif kind == "hash" and "}u:" in key:
            values = redis_server.command("HGETALL", key)[1::2]
            assert all(int(v) >= 0 for v in values)
    usage = await router.usage()
    assert all(v >= 0 for totals in usage.values() for v in (totals.requests, totals.input_tokens, totals.cost_usd))


async def test_a_slow_redis_adds_at_most_op_timeout_then_is_bypassed(routers, redis_server):
    """Behind a proxy that delays every packet by 1.5 s, a limited request waits at most op_timeout (300 ms, plus a
    generous margin for a loaded machine), later ones do not wait at all; when Redis is fast again, it recovers."""
    async with DelayProxy(redis_server.port, delay=0.0) as proxy:
        router, events = await routers(proxy.url, op_timeout="300ms")
        await router.chat(model="chat", messages=HI)
        assert router.readiness()["state"] == "ok"
        proxy.delay = 1.5
        latencies = []
        for _ in range(5):
            started = time.perf_counter()
            reply = await router.chat(model="chat", messages=HI)
            latencies.append(time.perf_counter() - started)
            assert reply.served_by == "a/limited"
        assert max(latencies) < 0.3 + 0.5  # bounded by op_timeout, far below the 1.5 s delay
        assert router.readiness()["state"] == "degraded"
        assert events.of(StateDegraded)[0].reason == "no answer within op_timeout (300ms)"
        await asyncio.sleep(0.5)
        assert router.readiness()["state"] == "degraded"  # still slow: stays bypassed
        proxy.delay = 0.0
        await _until(lambda: router.readiness()["state"] == "ok", within=15)


async def test_the_url_password_never_shows_in_logs_errors_readiness_or_reprs(routers, redis_factory, caplog):
    """With a password-protected Redis, the password is in no log line, event, readiness field, repr or explain
    output, whether authentication succeeds or fails."""
    secret = "s3cret-REDIS-pass"
    server = redis_factory(password=secret)
    caplog.set_level(logging.DEBUG, logger="turnout")
    good, _ = await routers(server.url)
    await good.chat(model="chat", messages=HI)
    assert good.readiness()["state"] == "ok"
    wrong = server.url.replace(secret, secret + "-wrong")
    bad, events = await routers(wrong)
    await bad.chat(model="chat", messages=HI)
    assert bad.readiness()["state"] == "degraded"
    shown = [
        caplog.text,
        repr(events.seen),
        repr(good.readiness()),
        repr(bad.readiness()),
        repr(good.state),
        repr(bad.state),
        repr(good.config),
        render_text(explain(bad.config)),
    ]
    for text in shown:
        assert secret not in text


async def test_a_breaker_opened_while_redis_was_away_reaches_the_others_after(routers, redis_server):
    """A breaker change made during an outage is published when Redis is back, so the other replica learns it."""
    (a, _), (b, _) = await routers(redis_server.url), await routers(redis_server.url)
    redis_server.stop(kill=True)
    await _until(lambda: a.readiness()["state"] == "degraded")
    a.health["b/spare"].breaker.trip()
    assert b.health["b/spare"].breaker.state == "closed"
    redis_server.start()
    await _until(lambda: b.health["b/spare"].breaker.state == "open")
