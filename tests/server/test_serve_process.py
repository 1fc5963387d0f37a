"""The real `turnout serve` subprocess: startup banner, SIGTERM drain with requests in flight, SIGHUP, workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal

from turnout.testing import Framing, slow

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"


async def post(http, url: str, model: str = "solo", **extra):
    async with http.post(url + CHAT, json={"model": model, "messages": MESSAGES, **extra}) as resp:
        return resp.status, await resp.read()


async def test_startup_banner_lists_routes_and_disabled_providers(write_routes, http, cli):
    """Startup prints where it listens, the live routes and each disabled provider with its reason."""
    async with cli.serve(write_routes()) as child:
        await child.wait_listening()
        child.proc.send_signal(signal.SIGTERM)
        assert await child.finish() == 0
    text = "".join(child.stderr)
    assert "live routes" in text and "chat (2/2)" in text and "solo (1/1)" in text
    assert "disabled providers" in text and "nokey:" in text
    assert "SECRET" not in text


async def test_invalid_file_does_not_start(tmp_path, cli):
    """An invalid routing file prints FILE:LINE:COL problems and exits 1 without a traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nproviders:\n  a: {driver: openai, api_key: x}\nroutes:\n  r: {chain: [nope]}\n")
    async with cli.serve(path) as child:
        _, err = await asyncio.wait_for(child.proc.communicate(), 20)
    assert child.proc.returncode == 1
    assert re.search(r"bad\.yaml:\d+:\d+: ", err.decode())
    assert "Traceback" not in err.decode()


async def test_driver_options_rejected_at_compile_time_do_not_start(tmp_path, cli):
    """Options a driver rejects (found when the graph is compiled) exit 1 with a located problem, not an internal
    error."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\nproviders:\n  echo: {driver: azure, base_url: 'https://x'}\nmodels:\n  echo: {provider: echo}\n"
        "routes:\n  chat: {chain: [echo]}\n"
    )
    async with cli.serve(path) as child:
        _, err = await asyncio.wait_for(child.proc.communicate(), 20)
    text = err.decode()
    assert child.proc.returncode == 1, text
    assert re.search(r"bad\.yaml:3:\d+: providers\.echo: .*api_version is required", text), text
    assert "internal error" not in text and "Traceback" not in text


async def test_sigterm_drains_in_flight_requests(write_routes, http, primary, cli):
    """SIGTERM during a request lets it complete, refuses new connections, and the process exits 0."""
    primary.script("chat", slow(0.8, primary.text("finished during drain")))
    primary.script("chat", primary.stream_text([f"w{i} " for i in range(10)], framing=Framing(delay=0.08)))
    async with cli.serve(write_routes()) as child:
        await child.wait_listening()
        plain = asyncio.create_task(post(http, child.url))
        streamed = asyncio.create_task(post(http, child.url, stream=True))
        for _ in range(100):
            if len(primary.requests) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(primary.requests) == 2
        child.proc.send_signal(signal.SIGTERM)
        status, body = await plain
        stream_status, stream_body = await streamed
        code = await child.finish()
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "finished during drain"
    assert stream_status == 200 and stream_body.endswith(b"data: [DONE]\n\n")
    assert code == 0
    assert any("draining" in line for line in child.stderr)
    access = (await child.proc.stdout.read()).decode().splitlines()  # type: ignore[union-attr]
    assert [json.loads(line)["status"] for line in access] == [200, 200]


async def test_sighup_reloads_the_file(write_routes, http, primary, cli):
    """SIGHUP makes the running server load the changed file and serve its new routes."""
    primary.default("chat", primary.text("ok"))
    path = write_routes()
    async with cli.serve(path) as child:
        await child.wait_listening()
        assert (await post(http, child.url, model="later"))[0] == 404
        path.write_text(path.read_text().replace("routes:\n", "routes:\n  later:\n    chain: [p1]\n", 1))
        child.proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            if (await post(http, child.url, model="later"))[0] == 200:
                break
            await asyncio.sleep(0.05)
        assert (await post(http, child.url, model="later"))[0] == 200
        child.proc.send_signal(signal.SIGTERM)
        assert await child.finish() == 0


async def test_workers_share_one_port_and_restart(write_routes, http, primary, cli):
    """`--workers 2` serves from two processes on one port, replaces a killed worker, and exits 0 on SIGTERM."""
    primary.default("chat", primary.text("ok"))
    async with cli.serve(write_routes(), "--workers", "2") as child:
        await child.wait_listening(within=40)
        results = await asyncio.gather(*(post(http, child.url) for _ in range(20)))
        workers = cli.children(child.proc.pid)
        serving = cli.serving_workers(child.proc.pid)
        assert len(serving) == 2
        os.kill(serving[0], signal.SIGKILL)
        for _ in range(150):
            alive = [p for p in cli.children(child.proc.pid) if p not in workers]
            if alive:
                break
            await asyncio.sleep(0.1)
        assert alive, "the supervisor did not start a replacement worker"
        await asyncio.sleep(1.5)  # let the replacement bind
        after = await asyncio.gather(*(post(http, child.url) for _ in range(20)))
        child.proc.send_signal(signal.SIGTERM)
        code = await child.finish(within=30)
    assert {status for status, _ in results + after} == {200}
    assert code == 0
    assert "2 workers" in "".join(child.stderr)
    assert any("restarting it" in line for line in child.stderr)
