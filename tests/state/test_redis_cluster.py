"""The redis backend on a Redis Cluster: `state.url` may name any node, and turnout follows the key prefix's slot
to the node that serves it, at start and after a resharding or a failover, with requests never waiting on it.

Every test uses its own key prefix (its own slot) on one cluster shared by the module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from turnout import AllUpstreamsFailed, Router, StateDegraded, StateRecovered
from turnout.config import Limits, Secret, StateSpec
from turnout.schema import load_text
from turnout.state.shared import RedisState
from turnout.testing.redis_server import RedisCluster, RedisServer

pytestmark = pytest.mark.timeout(90)
HI = [{"role": "user", "content": "hello"}]
FAIL = {"turnout_mock": {"faults": [{"kind": "status", "status": 500}]}}

FILE = """\
version: 1
defaults:
  retry: {{attempts: 0}}
  breaker: {{failure_threshold: 2, recovery_timeout: 30s, half_open_probes: 1}}
providers: {{a: {{driver: mock, options: {{request_directives: true}}}}, b: {{driver: mock}}}}
models:
  flaky: {{provider: a, price: {{input: 1.0, output: 1.0}}}}
  limited: {{provider: a, limits: {{rpm: {rpm}}}}}
  spare: {{provider: b}}
routes:
  chat: {{chain: [limited, spare]}}
  direct: {{chain: [flaky]}}
  priced: {{chain: [flaky]}}
state:
  backend: redis
  url: "{url}"
  key_prefix: "{prefix}"
  op_timeout: {op_timeout}
  sync_interval: 100ms
"""


class Events:
    event_types = (StateDegraded, StateRecovered)

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.seen.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind)]


def _owner(cluster: RedisCluster, prefix: str) -> RedisServer:
    return cluster.owner_of("{" + prefix + "}epoch")


def _others(cluster: RedisCluster, prefix: str) -> list[RedisServer]:
    owner = _owner(cluster, prefix)
    return [server for server in cluster.masters() if server is not owner]


@pytest.fixture
async def states() -> AsyncIterator[Callable[..., Any]]:
    """`await states(url, prefix)` -> a started RedisState (one "replica"); all closed at the end."""
    started: list[RedisState] = []

    async def make(url: str, prefix: str, op_timeout: float = 5.0) -> RedisState:
        spec = StateSpec(backend="redis", url=Secret(url), key_prefix=prefix, op_timeout=op_timeout, sync_interval=0.1)
        state = RedisState(spec)
        await state.start()
        started.append(state)
        return state

    yield make
    for state in started:
        await state.aclose()


@pytest.fixture
async def routers() -> AsyncIterator[Callable[..., Any]]:
    """`await routers(url, prefix, rpm=..., op_timeout=...)` -> (started Router, its Events); closed at the end."""
    made: list[Router] = []

    async def make(url: str, prefix: str, *, rpm: int = 100000, op_timeout: str = "2s") -> tuple[Router, Events]:
        events = Events()
        text = FILE.format(url=url, prefix=prefix, rpm=rpm, op_timeout=op_timeout)
        router = Router(load_text(text, env={}), observers=[events])
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


def _admitted(results: list[int | str]) -> int:
    return sum(1 for r in results if isinstance(r, int))


async def test_a_url_naming_a_node_that_does_not_serve_the_slot_still_shares_limits_exactly(redis_cluster, states):
    """Three replicas whose url names nodes that do not serve the prefix's slot follow MOVED to the one that does
    and, racing 90 admissions for a 30 rpm deployment, admit exactly 30; none of them ever degraded."""
    prefix = "cluster-a:"
    others = _others(redis_cluster, prefix)
    replicas = [await states(others[i % 2].url, prefix) for i in range(3)]
    assert all(s.mode == "ok" and s.degradations == 0 for s in replicas)
    gates = [s.gate("p/m", Limits(rpm=30), 1) for s in replicas]
    results = await asyncio.gather(*(gates[i % 3].admit(10, None) for i in range(90)))
    assert _admitted(results) == 30
    assert {r for r in results if isinstance(r, str)} == {"at rpm limit (30/min across replicas)"}
    owner = _owner(redis_cluster, prefix)
    assert owner.command("EXISTS", "{" + prefix + "}w:p/m") == 1


async def test_breaker_news_and_usage_flushes_travel_through_a_non_owner_url(redis_cluster, routers):
    """Routers whose urls name two different non-owner nodes: a breaker opened by one is skipped by the other
    within a second, and usage recorded by one is read back by the other from the owner's counters."""
    prefix = "cluster-b:"
    first, second = _others(redis_cluster, prefix)
    (a, _), (b, _) = await routers(first.url, prefix), await routers(second.url, prefix)
    assert a.readiness()["state"] == "ok" and b.readiness()["state"] == "ok"
    for _ in range(2):
        with pytest.raises(AllUpstreamsFailed):
            await a.chat(model="direct", messages=HI, **FAIL)
    assert a.health["a/flaky"].breaker.state == "open"
    await _until(lambda: b.health["a/flaky"].breaker.state == "open", within=1.0)
    for _ in range(3):
        await a.chat(model="chat", messages=HI)
    deadline = time.monotonic() + 5.0
    while sum(t.requests for key, t in (await b.usage()).items() if key.route == "chat") < 3:
        assert time.monotonic() < deadline, "a's usage never reached Redis"
        await asyncio.sleep(0.05)
    assert _owner(redis_cluster, prefix).command("EXISTS", "{" + prefix + "}u:t") == 1


async def test_a_resharding_that_moves_the_slot_is_followed_and_the_window_moves_with_it(redis_cluster, states):
    """The slot moves to another node (keys and all): both replicas hear MOVED, degrade once, reconnect to the new
    owner at once and share the limit again, counting what was admitted before the move."""
    prefix = "cluster-c:"
    owner = _owner(redis_cluster, prefix)
    a, b = await states(owner.url, prefix), await states(owner.url, prefix)
    gate_a, gate_b = a.gate("p/m", Limits(rpm=20), 1), b.gate("p/m", Limits(rpm=20), 1)
    assert _admitted(await asyncio.gather(*(gate_a.admit(1, None) for _ in range(8)))) == 8
    target = _others(redis_cluster, prefix)[0]
    redis_cluster.move_slot(redis_cluster.slot_of("{" + prefix + "}"), target)
    await gate_a.admit(1, None)  # the first operation after the move hears MOVED (b hears it on its heartbeat)
    await _until(lambda: a.mode == "ok" and b.mode == "ok" and a.degradations == b.degradations == 1)
    assert a.links.owner == b.links.owner == ("127.0.0.1", target.port)
    results = await asyncio.gather(*((gate_a, gate_b)[i % 2].admit(1, None) for i in range(30)))
    assert _admitted(results) == 20 - 8 - 1
    assert target.command("ZCARD", "{" + prefix + "}w:p/m") == 20


@pytest.mark.parametrize("url_names", ["another node", "the owner"])
async def test_an_owner_that_dies_is_replaced_by_its_replica_and_found_again(redis_cluster, states, url_names):
    """The owner is killed and its replica takes over (CLUSTER FAILOVER TAKEOVER): the replicas lose the owner's
    connection, find the new owner (asking the url's node, or when the url named the dead owner, the other nodes
    they saw), recover with the replicated window and share the limit again."""
    prefix = f"cluster-d-{url_names.replace(' ', '-')}:"
    owner = _owner(redis_cluster, prefix)
    url_node = owner if url_names == "the owner" else _others(redis_cluster, prefix)[0]
    replica = redis_cluster.add_replica(owner)
    try:
        a, b = await states(url_node.url, prefix), await states(url_node.url, prefix)
        gate_a, gate_b = a.gate("p/m", Limits(rpm=20), 1), b.gate("p/m", Limits(rpm=20), 1)
        assert _admitted(await asyncio.gather(*(gate_a.admit(1, None) for _ in range(8)))) == 8
        assert owner.command("WAIT", 1, 5000) == 1  # the window reached the replica
        owner.stop(kill=True)
        replica.command("CLUSTER", "FAILOVER", "TAKEOVER")
        await _until(lambda: a.mode == "degraded" and b.mode == "degraded")
        new_owner = ("127.0.0.1", replica.port)
        await _until(lambda: a.mode == b.mode == "ok" and a.links.owner == b.links.owner == new_owner, within=15)
        results = await asyncio.gather(*((gate_a, gate_b)[i % 2].admit(1, None) for i in range(30)))
        assert _admitted(results) == 20 - 8
    finally:
        if owner.proc is None:
            owner.start()  # back as a replica of the new owner: the module's cluster is whole again
        redis_cluster.wait_until_stable()


async def test_requests_never_wait_longer_than_op_timeout_while_the_slot_moves(redis_cluster, routers):
    """Two routers under concurrent load while the slot moves to another node: no request fails or waits longer
    than op_timeout (300 ms, plus a margin for a loaded machine); both recover, with one StateDegraded naming
    the move and one StateRecovered each."""
    prefix = "cluster-e:"
    owner = _owner(redis_cluster, prefix)
    (a, events_a), (b, events_b) = [await routers(owner.url, prefix, op_timeout="300ms") for _ in range(2)]
    failures: list[BaseException] = []
    latencies: list[float] = []
    stop = asyncio.Event()

    async def client(router: Router) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                await router.chat(model="chat", messages=HI)
            except Exception as exc:  # the assertion below reports it
                failures.append(exc)
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.002)

    load = [asyncio.create_task(client(r)) for r in (a, b) for _ in range(4)]
    await asyncio.sleep(0.3)
    slot, target = redis_cluster.slot_of("{" + prefix + "}"), _others(redis_cluster, prefix)[0]
    await asyncio.to_thread(redis_cluster.move_slot, slot, target)
    await _until(lambda: len(events_a.of(StateRecovered)) == 1 and len(events_b.of(StateRecovered)) == 1)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*load)
    assert failures == []
    assert len(latencies) > 50
    assert max(latencies) < 0.3 + 0.5
    for events in (events_a, events_b):
        assert len(events.of(StateDegraded)) == 1
        assert "key slot" in events.of(StateDegraded)[0].reason  # MOVED, or ASK/TRYAGAIN mid-migration
    assert a.readiness()["state"] == "ok" and b.readiness()["state"] == "ok"
