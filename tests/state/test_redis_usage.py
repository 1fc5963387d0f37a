"""Usage and spend counters in Redis: flushed in the background, summed across replicas, kept across restarts."""

from __future__ import annotations

import asyncio

import pytest

from turnout import Router
from turnout.schema import load_text
from turnout.state import UsageKey
from turnout.state.base import StoreError
from turnout.state.keys import Keys
from turnout.state.ledger import Ledger
from turnout.state.redis import Link
from turnout.state.usage_store import UsageStore
from turnout.types import Usage

pytestmark = pytest.mark.timeout(60)
HI = [{"role": "user", "content": "hello"}]
KEY = UsageKey("chat", "a/m", "")

FILE = """\
version: 1
providers: {{a: {{driver: mock}}}}
models: {{m: {{provider: a, price: {{input: 2.0, output: 4.0}}}}}}
routes: {{chat: {{chain: [m]}}}}
state: {{backend: redis, url: "{url}", sync_interval: 100ms}}
"""


def _router(url: str) -> Router:
    return Router(load_text(FILE.format(url=url), env={}))


async def test_counters_survive_a_router_restart(redis_server):
    """A router's counters are flushed when it closes; a new router on the same Redis reads them back."""
    async with _router(redis_server.url) as first:
        replies = [await first.chat(model="chat", messages=HI) for _ in range(3)]
    async with _router(redis_server.url) as second:
        await second.chat(model="chat", messages=HI)
        day, month, total = await second.usage(), await second.usage("month"), await second.usage("total")
    assert day[KEY].requests == 4
    assert day[KEY].input_tokens == 4 * replies[0].usage.prompt_tokens
    assert day[KEY].cost_usd == pytest.approx(4 * replies[0].cost_usd)
    assert month == day == total


async def test_replicas_counters_add_up(redis_server):
    """Two replicas' requests appear in one total once flushed (the background flush, not a close)."""
    async with _router(redis_server.url) as a, _router(redis_server.url) as b:
        for router in (a, b, b):
            await router.chat(model="chat", messages=HI)
        seen = [(0, 0)]
        while seen[-1] != (3, 3) and len(seen) < 100:  # a bound, not a speed: sync_interval is 100 ms
            await asyncio.sleep(0.05)
            seen.append(((await a.usage())[KEY].requests, (await b.usage("week"))[KEY].requests))
        assert seen[-1] == (3, 3)
        assert max(max(pair) for pair in seen) == 3  # never counted twice while a flush was in flight


async def test_a_flush_sent_twice_counts_once(redis_server):
    """A flush whose reply was lost is resent with the same id; Redis applies it once."""
    keys = Keys("turnout:")
    store = UsageStore(keys, "replica-1")
    ledger = Ledger()
    ledger.record("chat", "a/m", "", Usage(10, 5), 0.25)
    link = Link(redis_server.url, name="test", connect_timeout=2)
    await link.open()
    try:
        await store.flush(link, ledger, 2.0)
        store.unacked = ("replica-1:1", {(ledger.today(), "chat", "a/m", ""): [1, 10, 5, 0, 250_000_000, 0, 0]})
        await store.flush(link, ledger, 2.0)
        assert store.unacked is None
        rows = await store.read(link, "total", None, 2.0)
    finally:
        await link.close()
    assert rows[KEY] == [1, 10, 5, 0, 250_000_000, 0, 0]


async def test_reading_usage_while_redis_is_down_is_an_error_not_a_partial_total(redis_server):
    """A budget must never mistake this process's share for everyone's: the read raises StoreError."""
    async with _router(redis_server.url) as router:
        await router.chat(model="chat", messages=HI)
        redis_server.stop(kill=True)
        await router.chat(model="chat", messages=HI)  # still served
        for _ in range(200):  # a bound, not a speed: the lost connections are noticed at once, if not delayed
            if router.readiness()["state"] == "degraded":
                break
            await asyncio.sleep(0.05)
        with pytest.raises(StoreError, match="Redis is unavailable"):
            await router.usage()


async def test_spend_totals_are_shared_and_read_back_by_every_replica(redis_server):
    """Each replica's meter reads every replica's flushed spend (the base its budgets are checked against)."""
    async with _router(redis_server.url) as a, _router(redis_server.url) as b:
        reply = await a.chat(model="chat", messages=HI)
        await b.chat(model="chat", messages=HI)
        expected = round(2 * reply.cost_usd * 1e9)
        for _ in range(50):
            await asyncio.sleep(0.05)
            if a.state.meter.spent("r:chat", 0) == b.state.meter.spent("r:chat", 0) == expected:
                break
        assert a.state.meter.spent("r:chat", 0) == b.state.meter.spent("r:chat", 0) == expected
        assert a.state.meter.spent("d:a/m", 3) == expected
