"""Shared rate limits and probe leases on a real redis-server: exact across replicas, atomic, on the server's clock."""

from __future__ import annotations

import asyncio
import binascii
import time
from collections.abc import AsyncIterator, Callable

import pytest

from turnout.config import Limits, Secret, StateSpec
from turnout.state import window as window_module
from turnout.state.shared import RedisState
from turnout.testing.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[Callable[..., RedisState]]:
    """`await replicas(**options)` -> a started RedisState on the test's Redis (each one a separate "replica")."""
    started: list[RedisState] = []

    async def make(**options) -> RedisState:
        prefix = options.pop("key_prefix", "turnout:")
        spec = StateSpec(backend="redis", url=Secret(redis_server.url), key_prefix=prefix, op_timeout=5.0)
        state = RedisState(spec, **options)
        await state.start()
        started.append(state)
        return state

    yield make  # type: ignore[misc]
    for state in started:
        await state.aclose()


def _admitted(results: list[int | str]) -> int:
    return sum(1 for r in results if isinstance(r, int))


async def test_an_rpm_limit_is_exact_across_replicas(replicas):
    """Three replicas racing 90 admissions for a 30 rpm deployment admit exactly 30; the rest hear why not."""
    states = [await replicas() for _ in range(3)]
    gates = [s.gate("p/m", Limits(rpm=30), 1) for s in states]
    results = await asyncio.gather(*(gates[i % 3].admit(10, None) for i in range(90)))
    assert _admitted(results) == 30
    refusals = {r for r in results if isinstance(r, str)}
    assert refusals == {"at rpm limit (30/min across replicas)"}
    assert all(s.mode == "ok" for s in states)


async def test_a_tpm_limit_is_shared_and_a_refund_frees_tokens_everywhere(replicas):
    """Tokens admitted on one replica count on the other; a refund there frees them for both."""
    a, b = await replicas(), await replicas()
    gate_a, gate_b = a.gate("p/m", Limits(tpm=1000), 1), b.gate("p/m", Limits(tpm=1000), 1)
    grant = await gate_a.admit(900, None)
    assert isinstance(grant, int)
    assert await gate_b.admit(200, None) == "at tpm limit (1000/min across replicas)"
    gate_a.refund(grant)
    await asyncio.sleep(0.05)  # the refund travels with the next batch, without a waiter
    assert isinstance(await gate_b.admit(200, None), int)


async def test_a_forgotten_admission_frees_its_request_and_tokens_everywhere(replicas):
    """An attempt the client caused to fail is uncounted on Redis too: another replica may use its slot."""
    a, b = await replicas(), await replicas()
    gate_a, gate_b = a.gate("p/m", Limits(rpm=1, tpm=1000), 1), b.gate("p/m", Limits(rpm=1, tpm=1000), 1)
    grant = await gate_a.admit(600, None)
    assert isinstance(grant, int)
    assert await gate_b.admit(1, None) == "at rpm limit (1/min across replicas)"
    gate_a.forget(grant)
    await asyncio.sleep(0.05)
    assert isinstance(await gate_b.admit(1000, None), int)


async def test_refunds_of_admissions_redis_lost_never_go_below_zero(replicas, redis_server):
    """After Redis lost its data (FLUSHALL), refunding or forgetting admissions it no longer has leaves every
    counter at zero or above."""
    state = await replicas()
    gate = state.gate("p/m", Limits(rpm=10, tpm=10000), 1)
    grants = [await gate.admit(500, None) for _ in range(3)]
    redis_server.command("FLUSHALL")
    await gate.admit(100, None)  # re-creates the window with this one admission only
    gate.refund(grants[0])  # type: ignore[arg-type]
    gate.forget(grants[1])  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert int(redis_server.command("GET", "{turnout:}wt:p/m")) >= 0
    assert redis_server.command("ZCARD", "{turnout:}w:p/m") == 1


async def test_the_window_slides_on_the_servers_clock(replicas, monkeypatch):
    """With a 1 s window, a full limit frees up again after the window, not before (server time, not ours)."""
    monkeypatch.setattr(window_module, "WINDOW", 1.0)
    a = await replicas(clock=lambda: time.monotonic() + 10_000)  # a replica whose clock is far off
    b = await replicas()
    gate_a, gate_b = a.gate("p/m", Limits(rpm=3), 1), b.gate("p/m", Limits(rpm=3), 1)
    assert _admitted([await gate_a.admit(1, None) for _ in range(3)]) == 3
    assert isinstance(await gate_b.admit(1, None), str)
    await asyncio.sleep(1.1)
    assert _admitted([await gate_b.admit(1, None) for _ in range(4)]) == 3


async def test_one_batch_carries_every_admission_of_a_loop_iteration(replicas, redis_server):
    """Fifty concurrent admissions cost one script call, not fifty (INFO commandstats)."""
    state = await replicas()
    gate = state.gate("p/m", Limits(rpm=1000), 1)
    await gate.admit(1, None)  # the script is loaded
    before = _evalsha_calls(redis_server)
    results = await asyncio.gather(*(gate.admit(1, None) for _ in range(50)))
    assert _admitted(results) == 50
    assert _evalsha_calls(redis_server) - before == 1


def _evalsha_calls(redis: RedisServer) -> int:
    stats = redis.command("INFO", "commandstats")
    for line in stats.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def test_half_open_probes_are_limited_across_replicas(replicas):
    """With half_open_probes 1 one replica holds the probe lease; the other is refused until it is released."""
    a, b = await replicas(), await replicas()
    gate_a, gate_b = a.gate("p/m", Limits(), 1), b.gate("p/m", Limits(), 1)
    assert not gate_a.limited
    probe = await gate_a.admit(1, 5.0)
    assert isinstance(probe, int)
    assert await gate_b.admit(1, 5.0) == "half-open: another replica holds the probe"
    assert isinstance(await gate_b.admit(1, None), int)  # ordinary traffic is not a probe
    gate_a.release_probe(probe)
    await asyncio.sleep(0.05)
    assert isinstance(await gate_b.admit(1, 5.0), int)


async def test_a_probe_lease_expires_by_itself(replicas):
    """A replica that dies holding a probe lease blocks probing only until the lease ends."""
    a, b = await replicas(), await replicas()
    gate_a, gate_b = a.gate("p/m", Limits(), 2), b.gate("p/m", Limits(), 2)
    # 1 s leases: they must outlast the next round trip even when a loaded machine stalls this process
    assert _admitted([await gate_a.admit(1, 1.0), await gate_a.admit(1, 1.0)]) == 2
    assert isinstance(await gate_b.admit(1, 1.0), str)
    await asyncio.sleep(1.1)
    assert isinstance(await gate_b.admit(1, 1.0), int)


async def test_a_probe_refused_by_the_rate_limit_gives_its_lease_back(replicas):
    """A probe admission that the rpm limit refuses does not keep the probe lease."""
    a, b = await replicas(), await replicas()
    gate_a, gate_b = a.gate("p/m", Limits(rpm=1), 1), b.gate("p/m", Limits(rpm=1), 1)
    assert isinstance(await gate_a.admit(1, None), int)
    assert await gate_a.admit(1, 5.0) == "at rpm limit (1/min across replicas)"
    assert await gate_b.admit(1, 5.0) == "at rpm limit (1/min across replicas)"  # not "probe held"


async def test_key_prefixes_keep_deployments_apart(replicas):
    """Two turnout deployments (prefixes) on one Redis do not share limits."""
    prod, staging = await replicas(key_prefix="prod:"), await replicas(key_prefix="staging:")
    gate_prod, gate_staging = prod.gate("p/m", Limits(rpm=1), 1), staging.gate("p/m", Limits(rpm=1), 1)
    assert isinstance(await gate_prod.admit(1, None), int)
    assert isinstance(await gate_staging.admit(1, None), int)


async def test_every_key_of_one_prefix_is_in_one_cluster_slot(replicas, redis_server):
    """All keys written share the `{prefix}` hash tag, so a script's keys always land in one Redis Cluster slot."""
    state = await replicas(key_prefix="team-a:prod:")
    await state.gate("p/m", Limits(rpm=5, tpm=100), 1).admit(1, 1.0)
    await state.gate("q/n", Limits(rpm=5), 1).admit(1, None)
    keys = redis_server.command("KEYS", "*")
    assert len(keys) >= 6
    assert {_slot(key) for key in keys} == {_slot("{team-a:prod:}")}
    assert all(key.startswith("{team-a:prod:}") for key in keys)


def _slot(key: str) -> int:
    """Redis Cluster's slot: CRC16/XMODEM of the hash tag (or the key) modulo 16384."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key.encode(), 0) % 16384
