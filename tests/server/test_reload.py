"""Hot reload: file watching under load, invalid files keep the old graph, POST /admin/reload, in-flight safety."""

from __future__ import annotations

import asyncio
import json
import re
import time

from turnout.errors import ErrorClass
from turnout.testing import slow

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"
INVALID_CHAIN = "  broken:\n    chain: [ghost-model]\n"


async def wait_for(predicate, within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def rewrite(path, text: str) -> None:
    """Replace the file the way editors do: write a new file and rename it over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


async def status_of(http, url: str, model: str) -> int:
    async with http.post(url + CHAT, json={"model": model, "messages": MESSAGES}) as resp:
        await resp.read()
        return resp.status


async def test_reload_under_load_drops_nothing(serve, http, primary, tmp_path):
    """While the file is rewritten valid, invalid, valid under concurrent load, no request fails or is dropped."""
    primary.default("chat", primary.text("ok"))
    async with serve(watch=True, watch_interval=0.05) as s:
        original = s.path.read_text()
        reloader = s.sidecar.reloader
        outcomes: list[int] = []
        stop = asyncio.Event()

        async def client() -> None:
            deadline = time.monotonic() + 20  # hard bound even if the reload sequence misbehaves
            while not stop.is_set() and time.monotonic() < deadline:
                outcomes.append(await status_of(http, s.url, "chat"))

        load = [asyncio.create_task(client()) for _ in range(6)]
        try:
            await asyncio.sleep(0.1)
            rewrite(s.path, original.replace("routes:\n", "routes:\n  r1:\n    chain: [p1]\n", 1))
            assert await wait_for(lambda: reloader.reloads == 1)
            assert await status_of(http, s.url, "r1") == 200

            rewrite(s.path, original.replace("routes:\n", "routes:\n" + INVALID_CHAIN, 1))
            assert await wait_for(lambda: reloader.failures == 1)
            assert await status_of(http, s.url, "r1") == 200  # the old graph keeps serving
            async with http.get(f"{s.url}/readyz") as resp:
                detail = await resp.json()
            problems = detail["last_reload_error"]["problems"]
            assert any(re.match(r".*routes\.yaml:\d+:\d+: ", p) and "ghost-model" in p for p in problems)

            rewrite(s.path, original.replace("routes:\n", "routes:\n  r2:\n    chain: [p1]\n", 1))
            assert await wait_for(lambda: reloader.reloads == 2)
            assert await status_of(http, s.url, "r2") == 200
            assert await status_of(http, s.url, "r1") == 404
            await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*load)
        async with http.get(f"{s.url}/metrics") as resp:
            metrics = await resp.text()
        async with http.get(f"{s.url}/readyz") as resp:
            assert (await resp.json())["last_reload_error"] is None
    assert len(outcomes) > 30
    assert set(outcomes) == {200}, f"{len([o for o in outcomes if o != 200])} of {len(outcomes)} failed"
    assert 'turnout_config_reloads_total{result="success"} 2.0' in metrics
    assert 'turnout_config_reloads_total{result="failure"} 1.0' in metrics


async def test_admin_reload_endpoint(serve, http, keys):
    """POST /admin/reload needs the admin key (a client key is refused), swaps in a valid file and answers 422 with
    the problems otherwise."""
    async with serve(server=keys.admin_server, clients=keys.clients) as s:
        original = s.path.read_text()
        auth = {"Authorization": f"Bearer {keys.admin}"}
        async with http.post(f"{s.url}/admin/reload") as resp:
            assert resp.status == 401
        async with http.post(f"{s.url}/admin/reload", headers={"Authorization": f"Bearer {keys.client}"}) as resp:
            assert resp.status == 401
        s.path.write_text(original.replace("routes:\n", "routes:\n  added:\n    chain: [p1]\n", 1))
        async with http.post(f"{s.url}/admin/reload", headers=auth) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["ok"] is True and "added" in body["routes"]
        s.path.write_text(original.replace("routes:\n", "routes:\n" + INVALID_CHAIN, 1))
        async with http.post(f"{s.url}/admin/reload", headers=auth) as resp:
            assert resp.status == 422
            failed = await resp.json()
        assert failed["ok"] is False
        assert "ghost-model" in json.dumps(failed["last_reload_error"])
        assert "added" in s.sidecar.router.routes()  # still the last good graph


async def test_in_flight_request_finishes_on_its_graph(serve, http, primary):
    """A request running when its route is removed by a reload still completes successfully."""
    primary.script("chat", slow(0.3, primary.text("late but fine")))
    async with serve() as s:
        original = s.path.read_text()
        pending = asyncio.create_task(status_of(http, s.url, "solo"))
        assert await wait_for(lambda: len(primary.requests) == 1)
        s.path.write_text(original.replace("  solo:\n    chain: [p1]\n", ""))
        assert await s.sidecar.reloader.reload("test")
        assert "solo" not in s.sidecar.router.routes()
        assert await pending == 200
        assert await status_of(http, s.url, "solo") == 404


async def test_reload_applies_new_server_settings(serve, http, keys):
    """A reload that declares clients turns client auth on without a restart."""
    async with serve() as s:
        assert await status_of(http, s.url, "nope") == 404
        s.path.write_text(s.path.read_text() + keys.clients)
        assert await s.sidecar.reloader.reload("test")
        assert await status_of(http, s.url, "nope") == 401


async def breaker_metric(http, url: str, deployment: str) -> str | None:
    async with http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    found = re.search(rf'^turnout_breaker_state\{{deployment="{re.escape(deployment)}"\}} (\S+)$', text, re.M)
    return found.group(1) if found else None


async def test_reload_keeps_breakers_of_unchanged_deployments_and_resets_fixed_ones(serve, http, primary, keys):
    """A reload keeps an open breaker when its deployment is unchanged; a new provider key gives it a fresh one."""
    primary.default("chat", primary.error(ErrorClass.AUTH))
    async with serve() as s:
        original = s.path.read_text()
        assert await status_of(http, s.url, "solo") == 502  # 401 upstream: auth trips the breaker at once
        assert await status_of(http, s.url, "solo") == 503  # breaker open: not even tried
        assert await breaker_metric(http, s.url, "primary/p1") == "2.0"

        s.path.write_text(original.replace("routes:\n", "routes:\n  added:\n    chain: [b1]\n", 1))
        assert await s.sidecar.reloader.reload("unrelated edit")
        assert s.sidecar.router.health["primary/p1"].breaker.state == "open"
        assert await breaker_metric(http, s.url, "primary/p1") == "2.0"

        primary.default("chat", primary.text("fixed"))
        s.path.write_text(original.replace(keys.primary, keys.primary + "-rotated"))
        assert await s.sidecar.reloader.reload("new key")
        assert await breaker_metric(http, s.url, "primary/p1") == "0.0"
        assert await status_of(http, s.url, "solo") == 200
        async with http.get(f"{s.url}/readyz") as resp:
            assert (await resp.json())["open_breakers"] == []


async def test_reload_with_options_a_driver_rejects_is_located_and_keeps_serving(serve, http, primary):
    """A reload whose file only fails at compile time (driver options) reports FILE:LINE:COL; the old graph serves."""
    primary.default("chat", primary.text("ok"))
    async with serve() as s:
        original = s.path.read_text()
        s.path.write_text(
            original.replace("  backup: {driver: openai,", "  backup: {driver: openai, options: {bogus: 1},")
        )
        assert not await s.sidecar.reloader.reload("test")
        problems = s.sidecar.reloader.last_error["problems"]
        assert await status_of(http, s.url, "solo") == 200
    assert any(re.match(r".*routes\.yaml:\d+:\d+: providers\.backup", p) and ":0:0:" not in p for p in problems), (
        problems
    )
