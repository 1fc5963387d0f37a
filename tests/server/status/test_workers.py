"""The status page of `turnout serve --workers 2`: any worker's answer covers both workers."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

ASK = {"model": "limit", "messages": [{"role": "user", "content": "hi"}]}


async def fresh(method: str, url: str, **kwargs) -> tuple[int, dict]:
    """One request on its own connection, so the kernel may hand it to either worker (SO_REUSEPORT)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http, http.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json()


def member(view: dict, route: str, key: str) -> dict:
    found = [d for r in view["routes"] if r["name"] == route for s in r["steps"] for d in s["deployments"]]
    return next(d for d in found if d["key"] == key)


async def until(url: str, check, within: float = 20.0) -> dict:
    """Poll /admin/status (any worker) until `check(view)` holds; the last view otherwise."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        _, view = await fresh("GET", url + "/admin/status")
        if check(view) or loop.time() > end:
            return view
        await asyncio.sleep(0.3)


async def test_figures_breakers_and_events_cover_every_worker(tmp_path: Path, cli, status_kit):
    """Requests spread over two workers are all counted; a breaker open in both says so; both workers' failovers
    are listed, each with its worker."""
    path = tmp_path / "routes.yaml"
    path.write_text(status_kit.routes())
    async with cli.serve(path, "--workers", "2", "--access-log", "off") as child:
        await child.wait_listening(within=40)
        url = child.url
        sent = 24
        for _ in range(sent):
            status, _ = await fresh("POST", url + "/v1/chat/completions", json={**ASK, "model": "shady"})
            assert status == 200
        view = await until(url, lambda v: member(v, "shady", "echo/echo")["stats"]["requests"] == sent)
        assert member(view, "shady", "echo/echo")["stats"]["requests"] == sent
        assert [w["live"] for w in view["workers"]] == [True, True]
        for _ in range(60):  # scripted 401s (each trips the breaker of the worker that gets it) until both have it
            status, _ = await fresh("POST", url + "/v1/chat/completions", json=status_kit.fault(401))
            assert status == 200
            view = await until(url, lambda v: True, within=0)
            if member(view, "drill", "drill/drill")["breaker"]["open_in"] == 2:
                break
        view = await until(url, lambda v: member(v, "drill", "drill/drill")["breaker"]["open_in"] == 2, within=5)
        child.proc.send_signal(signal.SIGTERM)
        assert await child.finish(within=30) == 0
    drill = member(view, "drill", "drill/drill")
    assert drill["state"] == "open" and drill["reason"] == "breaker open in 2 of 2 workers"
    failovers = [e for e in view["recent"] if e["kind"] == "failover" and e["from"] == "drill/drill"]
    assert len({e["worker"] for e in failovers}) == 2
