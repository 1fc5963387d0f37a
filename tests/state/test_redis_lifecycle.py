"""The Redis backend's lifecycle in a library Router: lazy start, clean close, reuse across event loops, reload."""

from __future__ import annotations

import asyncio
import logging

import pytest

from turnout import Router
from turnout.schema import load_text
from turnout.testing.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)
HI = [{"role": "user", "content": "hello"}]

FILE = """\
version: 1
providers: {{a: {{driver: mock}}, b: {{driver: mock}}}}
models:
  m: {{provider: a, limits: {{rpm: 3}}}}
  spare: {{provider: b}}
routes: {{chat: {{chain: [m, spare]}}}}
state: {{backend: redis, url: "{url}", sync_interval: 100ms, op_timeout: {op_timeout}, key_prefix: "{prefix}"}}
"""


def _file(url: str, *, op_timeout: str = "2s", prefix: str = "turnout:") -> str:
    return FILE.format(url=url, op_timeout=op_timeout, prefix=prefix)


def _turnout_clients(redis: RedisServer) -> list[str]:
    listing = redis.command("CLIENT", "LIST")
    return [line for line in listing.splitlines() if "name=turnout-" in line]


def _turnout_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(("turnout-state", "turnout-redis"))]


async def test_close_leaves_no_task_and_no_connection(redis_server):
    """After `async with` the Router's background tasks are gone and Redis lists none of its connections."""
    async with Router(load_text(_file(redis_server.url), env={})) as router:
        await router.chat(model="chat", messages=HI)
        assert len(_turnout_clients(redis_server)) == 3  # gate, background, pub/sub
        assert _turnout_tasks()
    await asyncio.sleep(0.05)
    assert _turnout_tasks() == []
    assert _turnout_clients(redis_server) == []


async def test_a_router_used_without_start_connects_by_itself(redis_server):
    """A library user who never calls start(): the first requests go local, then the state connects and shares;
    the admissions made before it connected are written to the shared window."""
    router = Router(load_text(_file(redis_server.url), env={}))
    try:
        first = await router.chat(model="chat", messages=HI)
        for _ in range(200):  # a bound, not a speed: a loaded machine may take seconds to connect
            if router.readiness()["state"] == "ok":
                break
            await asyncio.sleep(0.05)
        assert router.readiness()["state"] == "ok"
        other = Router(load_text(_file(redis_server.url), env={}))
        async with other:
            served = [(await other.chat(model="chat", messages=HI)).served_by for _ in range(3)]
    finally:
        await router.aclose()
    assert first.served_by == "a/m"
    assert served == ["a/m", "a/m", "b/spare"]  # 3 rpm shared: this process's first request counts


def test_a_router_reused_across_event_loops_reconnects(redis_server):
    """asyncio.run() twice with one Router: the second loop gets fresh connections, not the dead loop's."""
    router = Router(load_text(_file(redis_server.url), env={}))

    async def once() -> str:
        async with router:
            reply = await router.chat(model="chat", messages=HI)
            assert router.readiness()["state"] == "ok"
            return reply.served_by or ""

    assert asyncio.run(once()) == "a/m"
    assert asyncio.run(once()) == "a/m"
    assert _turnout_clients(redis_server) == []


async def test_a_reload_applies_timeouts_and_refuses_to_switch_redis(redis_server, caplog):
    """op_timeout and sync_interval apply on reload; a new url or key_prefix needs a restart, and says so."""
    caplog.set_level(logging.WARNING, logger="turnout.state")
    async with Router(load_text(_file(redis_server.url), env={})) as router:
        router.swap(load_text(_file(redis_server.url, op_timeout="80ms"), env={}))
        assert router.state.spec.op_timeout == 0.08  # type: ignore[attr-defined]
        assert router.readiness()["state_restart_required"] is False
        router.swap(load_text(_file(redis_server.url, prefix="other:"), env={}))
        assert router.state.spec.key_prefix == "turnout:"  # type: ignore[attr-defined]
        assert router.readiness()["state_restart_required"] is True
        assert (await router.chat(model="chat", messages=HI)).served_by == "a/m"
    assert "restart to apply" in caplog.text


async def test_two_routers_in_one_process_are_two_replicas(redis_server):
    """Two Routers on one Redis share limits like two processes would, and each has its own connections."""
    async with (
        Router(load_text(_file(redis_server.url), env={})) as a,
        Router(load_text(_file(redis_server.url), env={})) as b,
    ):
        served = [(await r.chat(model="chat", messages=HI)).served_by for r in (a, b, a, b)]
        assert a.state.replica != b.state.replica  # type: ignore[attr-defined]
        assert len(_turnout_clients(redis_server)) == 6
    assert served == ["a/m", "a/m", "a/m", "b/spare"]


async def test_a_lost_pubsub_connection_is_noticed_and_replaced(redis_server):
    """When only the breaker-news connection is cut (CLIENT KILL), the backend notices at once, reconnects, and
    breaker news flows again."""
    async with (
        Router(load_text(_file(redis_server.url), env={})) as a,
        Router(load_text(_file(redis_server.url), env={})) as b,
    ):
        assert redis_server.command("CLIENT", "KILL", "TYPE", "pubsub") == 2
        for _ in range(100):
            if b.readiness()["state"] == "ok" and b.state.degradations == 1:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.05)
        assert b.state.degradations == 1  # type: ignore[attr-defined]
        assert b.readiness()["state"] == "ok"
        a.health["b/spare"].breaker.trip()
        for _ in range(100):
            if b.health["b/spare"].breaker.state == "open":
                break
            await asyncio.sleep(0.02)
        assert b.health["b/spare"].breaker.state == "open"
