"""Budgets across real `turnout serve` processes: shared by two sidecars on one Redis, shared by `--workers 2` on
one sqlite ledger, and never reset by a restart (sqlite and Redis). Overshoots are printed with their bound."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.timeout(180)
KEY = "team-key-for-process-tests-0001"
ADMIN = "admin-key-for-process-tests-01"
# A mock token costs $0.001 in and out; a request (prompt ~6, reply 2 words, max_tokens 10) costs ~$0.008 and
# reserves (6 + 10) * $0.001 = $0.016.
ROUTES = """\
version: 1
defaults: {{retry: {{attempts: 0}}}}
providers: {{up: {{driver: mock, options: {{latency: 30ms}}}}}}
models: {{m: {{provider: up, price: {{input: 1000, output: 1000}}}}}}
routes: {{chat: {{chain: [m]}}}}
clients:
  team: {{keys: ["{key}"], budget: {{usd: {usd}, per: day}}}}
server: {{watch: false, admin_keys: ["{admin}"]}}
state: {state}
"""
ASK = {"model": "chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 10}
RESERVATION = (6 + 10) * 0.001


def _write(tmp_path: Path, *, usd: float, state: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES.format(key=KEY, admin=ADMIN, usd=usd, state=state))
    return path


async def _ask(http: aiohttp.ClientSession, url: str, *, fresh: bool = False) -> int:
    headers = {"Authorization": f"Bearer {KEY}"}
    if fresh:  # a new connection each time: SO_REUSEPORT spreads them over the workers
        headers["Connection"] = "close"
    async with http.post(f"{url}/v1/chat/completions", json=ASK, headers=headers) as resp:
        await resp.read()
        return resp.status


async def _spent(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/admin/spend", headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["budgets"][0]


async def _stop(child: Any) -> None:
    child.proc.send_signal(signal.SIGTERM)
    assert await child.finish(30) == 0, child.log()


async def test_two_sidecars_on_one_redis_share_a_budget(tmp_path, cli, redis_server):
    """Spend on one sidecar counts on the other: once A has used the budget, B refuses too (within two sync
    intervals). Then both are driven at once: the overshoot stays within what the other process could spend and
    reserve between two refreshes (printed)."""
    state = f'{{backend: redis, url: "{redis_server.url}", sync_interval: 100ms, op_timeout: 2s}}'
    path = _write(tmp_path, usd=0.05, state=state)
    async with cli.serve(path) as a, cli.serve(path) as b, aiohttp.ClientSession() as http:
        await asyncio.gather(a.wait_listening(), b.wait_listening())
        served_a = 0
        while await _ask(http, a.url) == 200:
            served_a += 1
            assert served_a < 50
        await asyncio.sleep(0.5)  # B refreshes its view of the shared spend
        assert await _ask(http, b.url) == 429
        spent_a, spent_b = await _spent(http, a.url), await _spent(http, b.url)
        assert spent_a["spent_usd"] == pytest.approx(spent_b["spent_usd"])
        assert spent_a["spent_usd"] <= 0.05

        # a bigger budget, driven through both sidecars at once, 4 requests in flight on each
        path.write_text(path.read_text().replace("usd: 0.05", "usd: 0.5"))
        for child in (a, b):
            async with http.post(f"{child.url}/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
                assert resp.status == 200
        started = time.perf_counter()
        served = {a.url: 0, b.url: 0}

        async def drive(url: str) -> None:
            while await _ask(http, url) == 200:
                served[url] += 1

        await asyncio.gather(*(drive(url) for url in (a.url, b.url) for _ in range(4)))
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.5)
        final = (await _spent(http, a.url))["spent_usd"]
    rate = max(served.values()) / elapsed  # requests per second of the busier sidecar
    cost = final / (served_a + sum(served.values()))
    bound = 4 * RESERVATION + rate * 3 * 0.1 * cost  # its reservations in flight + its spend over ~3 sync intervals
    overshoot = max(0.0, final - 0.5)
    print(
        f"\n2 sidecars on one Redis, budget $0.50: served {served} in {elapsed:.2f}s, spent ${final:.4f}, "
        f"overshoot ${overshoot:.4f} (bound ${bound:.4f})"
    )
    assert all(served.values())
    assert overshoot <= bound


async def test_a_restart_never_resets_a_budget_sqlite(tmp_path, cli):
    """The local backend keeps the ledger in sqlite: a restarted sidecar still refuses an exhausted client."""
    path = _write(tmp_path, usd=0.03, state="{sync_interval: 100ms}")
    async with cli.serve(path) as first, aiohttp.ClientSession() as http:
        await first.wait_listening()
        while await _ask(http, first.url) == 200:
            pass
        before = (await _spent(http, first.url))["spent_usd"]
        await _stop(first)
    assert (tmp_path / "turnout-ledger.sqlite3").exists()
    async with cli.serve(path) as second, aiohttp.ClientSession() as http:
        await second.wait_listening()
        assert await _ask(http, second.url) == 429
        assert (await _spent(http, second.url))["spent_usd"] == pytest.approx(before)


async def test_a_restart_never_resets_a_budget_redis(tmp_path, cli, redis_server):
    """With Redis the ledger is in Redis: a restarted sidecar reads the spend back and still refuses."""
    path = _write(tmp_path, usd=0.03, state=f'{{backend: redis, url: "{redis_server.url}", sync_interval: 100ms}}')
    async with cli.serve(path) as first, aiohttp.ClientSession() as http:
        await first.wait_listening()
        while await _ask(http, first.url) == 200:
            pass
        before = (await _spent(http, first.url))["spent_usd"]
        await _stop(first)
    async with cli.serve(path) as second, aiohttp.ClientSession() as http:
        await second.wait_listening()
        assert await _ask(http, second.url) == 429
        assert (await _spent(http, second.url))["spent_usd"] == pytest.approx(before)


async def test_workers_share_one_sqlite_ledger_and_its_budget(tmp_path, cli):
    """`--workers 2` with the local backend: both workers flush into one sqlite file and read its totals, so the
    budget is the file's, not 2x. After exhaustion, requests spread over both workers are all refused; the
    overshoot (printed) stays within one worker's reservations and spend between two refreshes."""
    path = _write(tmp_path, usd=0.1, state="{sync_interval: 100ms}")
    async with cli.serve(path, "--workers", "2") as child, aiohttp.ClientSession() as http:
        await child.wait_listening(40)
        served = 0

        async def drive() -> None:
            nonlocal served
            while await _ask(http, child.url, fresh=True) == 200:
                served += 1

        started = time.perf_counter()
        await asyncio.gather(*(drive() for _ in range(4)))
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.5)
        refused = [await _ask(http, child.url, fresh=True) for _ in range(10)]
        spent = (await _spent(http, child.url))["spent_usd"]
    cost = spent / served
    bound = 4 * RESERVATION + served / elapsed * 3 * 0.1 * cost
    overshoot = max(0.0, spent - 0.1)
    print(
        f"\n--workers 2 on one sqlite ledger, budget $0.10: served {served} in {elapsed:.2f}s, spent ${spent:.4f}, "
        f"overshoot ${overshoot:.4f} (bound ${bound:.4f})"
    )
    assert refused == [429] * 10
    assert spent > 0.1 - 2 * RESERVATION  # the budget was used (not split in two halves)
    assert overshoot <= bound
