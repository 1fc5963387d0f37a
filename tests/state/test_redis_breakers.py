"""Shared breakers through Redis: one replica's open or close reaches the others at once; probes are cluster-wide."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from turnout import AllUpstreamsFailed, BreakerClosed, BreakerOpened, Router
from turnout.schema import load_text

pytestmark = pytest.mark.timeout(60)
HI = [{"role": "user", "content": "hello"}]
FAIL = {"turnout_mock": {"faults": [{"kind": "status", "status": 500}]}}

FILE = """\
version: 1
defaults:
  retry: {{attempts: 0}}
  breaker: {{failure_threshold: 2, recovery_timeout: {recovery}, half_open_probes: 1}}
providers: {{a: {{driver: mock, options: {{latency: {latency}, request_directives: true}}}}, b: {{driver: mock}}}}
models: {{flaky: {{provider: a}}, spare: {{provider: b}}}}
routes: {{chat: {{chain: [flaky, spare]}}, direct: {{chain: [flaky]}}}}
state: {{backend: redis, url: "{url}", sync_interval: 200ms, op_timeout: 5s}}
"""


class Breakers:
    """Records breaker events (with their origin)."""

    event_types = (BreakerOpened, BreakerClosed)

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.seen.append(event)


@pytest.fixture
async def replicas(redis_server) -> AsyncIterator[Callable[..., Any]]:
    made: list[Router] = []

    async def make(*, recovery: str = "30s", latency: str = "0s") -> tuple[Router, Breakers]:
        seen = Breakers()
        text = FILE.format(url=redis_server.url, recovery=recovery, latency=latency)
        router = Router(load_text(text, env={}), observers=[seen])
        await router.start()
        made.append(router)
        return router, seen

    yield make
    for router in made:
        await router.aclose()


async def _open_by_failures(router: Router) -> float:
    """Fail `flaky` twice through `router`; returns when its breaker opened (perf_counter)."""
    for _ in range(2):
        with pytest.raises(AllUpstreamsFailed):
            await router.chat(model="direct", messages=HI, **FAIL)
    assert router.health["a/flaky"].breaker.state == "open"
    return time.perf_counter()


async def _within(condition: Callable[[], bool], seconds: float) -> float:
    started = time.perf_counter()
    while not condition():
        assert time.perf_counter() - started < seconds, f"not within {seconds}s"
        await asyncio.sleep(0.01)
    return time.perf_counter() - started


async def test_a_breaker_opened_by_one_replica_is_skipped_by_the_others_within_a_second(replicas):
    """Replica A's breaker opens after its own failures; B and C skip the deployment within 1 s, never having
    failed on it themselves; the event they emit names A as its origin and is not sent back out."""
    (a, seen_a), (b, seen_b), (c, _) = [await replicas() for _ in range(3)]
    await _open_by_failures(a)
    await _within(lambda: b.health["a/flaky"].breaker.state == "open" == c.health["a/flaky"].breaker.state, 1.0)
    reply = await b.chat(model="chat", messages=HI)
    assert reply.served_by == "b/spare"
    assert reply.attempts[0].detail == "breaker open"
    assert [e.origin for e in seen_b.seen] == [a.state.replica]  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)
    assert [type(e) for e in seen_a.seen] == [BreakerOpened]  # B's copy did not echo back to A


async def test_closing_propagates_the_same_way(replicas):
    """When A's probe succeeds after the recovery period, B closes too, without probing itself."""
    (a, _), (b, seen_b) = await replicas(recovery="300ms"), await replicas(recovery="300ms")
    await _open_by_failures(a)
    await _within(lambda: b.health["a/flaky"].breaker.state == "open", 1.0)
    await asyncio.sleep(0.35)
    assert (await a.chat(model="chat", messages=HI)).served_by == "a/flaky"  # the probe
    await _within(lambda: b.health["a/flaky"].breaker.state == "closed", 1.0)
    assert [type(e) for e in seen_b.seen] == [BreakerOpened, BreakerClosed]


async def test_half_open_probes_are_limited_cluster_wide(replicas):
    """With half_open_probes 1, when both replicas are half-open and get traffic at once, exactly one request
    probes the deployment; the other replica's request is routed on with the reason."""
    (a, _), (b, _) = await replicas(recovery="300ms", latency="300ms"), await replicas(recovery="300ms")
    await _open_by_failures(a)
    await _within(lambda: b.health["a/flaky"].breaker.state == "open", 1.0)
    await asyncio.sleep(0.35)
    replies = await asyncio.gather(*(r.chat(model="chat", messages=HI) for r in (a, b, a, b)))
    served = [r.served_by for r in replies]
    assert (a.readiness()["state"], b.readiness()["state"]) == ("ok", "ok")
    assert served.count("a/flaky") == 1
    details = {r.attempts[0].detail for r in replies if r.served_by == "b/spare"}
    assert "half-open: another replica holds the probe" in details


async def test_a_replica_that_starts_later_learns_open_breakers_from_the_hash(replicas):
    """A replica that was not subscribed when a breaker opened reads it at connect time (reconcile)."""
    a, _ = await replicas()
    await _open_by_failures(a)
    await asyncio.sleep(0.1)
    late, _ = await replicas()
    await _within(lambda: late.health["a/flaky"].breaker.state == "open", 2.0)
