"""The real `turnout serve` subprocess: startup banner, SIGTERM drain with requests in flight, SIGHUP, workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys

from turnout.testing import Framing, slow

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"
SERVE = [sys.executable, "-c", "import sys; from turnout.cli import main; sys.exit(main())", "serve"]


class Process:
    """A `turnout serve` child: its listening URL (parsed from the banner) and everything it printed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.url = ""
        self.banner: list[str] = []
        self.stderr: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def wait_listening(self, within: float = 20.0) -> None:
        async def read_banner() -> None:
            assert self.proc.stderr is not None
            while True:
                line = (await self.proc.stderr.readline()).decode()
                if not line:
                    raise AssertionError(f"serve exited early: {''.join(self.stderr)}")
                self.stderr.append(line)
                match = re.search(r"listening on (http://[\d.]+:\d+)", line)
                if match:
                    self.url = match.group(1)
                    break
            # the rest of the banner follows at once
            for _ in range(10):
                try:
                    line = (await asyncio.wait_for(self.proc.stderr.readline(), 0.3)).decode()
                except TimeoutError:
                    break
                self.banner.append(line)
                self.stderr.append(line)

        await asyncio.wait_for(read_banner(), within)
        self._reader = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr.append(line.decode())

    async def finish(self, within: float = 15.0) -> int:
        code = await asyncio.wait_for(self.proc.wait(), within)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code


@contextlib.asynccontextmanager
async def turnout_serve(path, *args: str):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        *SERVE, str(path), "--port", "0", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    child = Process(proc)
    try:
        yield child
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def post(http, url: str, model: str = "solo", **extra):
    async with http.post(url + CHAT, json={"model": model, "messages": MESSAGES, **extra}) as resp:
        return resp.status, await resp.read()


async def test_startup_banner_lists_routes_and_disabled_providers(write_routes, http):
    """Startup prints where it listens, the live routes and each disabled provider with its reason."""
    async with turnout_serve(write_routes()) as child:
        await child.wait_listening()
        child.proc.send_signal(signal.SIGTERM)
        assert await child.finish() == 0
    text = "".join(child.stderr)
    assert "live routes" in text and "chat (2/2)" in text and "solo (1/1)" in text
    assert "disabled providers" in text and "nokey:" in text
    assert "SECRET" not in text


async def test_invalid_file_does_not_start(tmp_path):
    """An invalid routing file prints FILE:LINE:COL problems and exits 1 without a traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nproviders:\n  a: {driver: openai, api_key: x}\nroutes:\n  r: {chain: [nope]}\n")
    async with turnout_serve(path) as child:
        _, err = await asyncio.wait_for(child.proc.communicate(), 20)
    assert child.proc.returncode == 1
    assert re.search(r"bad\.yaml:\d+:\d+: ", err.decode())
    assert "Traceback" not in err.decode()


async def test_driver_options_rejected_at_compile_time_do_not_start(tmp_path):
    """Options a driver rejects (found when the graph is compiled) exit 1 with a located problem, not an internal
    error."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\nproviders:\n  echo: {driver: mock, options: {bogus: 1}}\nmodels:\n  echo: {provider: echo}\n"
        "routes:\n  chat: {chain: [echo]}\n"
    )
    async with turnout_serve(path) as child:
        _, err = await asyncio.wait_for(child.proc.communicate(), 20)
    text = err.decode()
    assert child.proc.returncode == 1, text
    assert re.search(r"bad\.yaml:3:\d+: providers\.echo: .*bogus", text), text
    assert "internal error" not in text and "Traceback" not in text


async def test_sigterm_drains_in_flight_requests(write_routes, http, primary):
    """SIGTERM during a request lets it complete, refuses new connections, and the process exits 0."""
    primary.script("chat", slow(0.8, primary.text("finished during drain")))
    primary.script("chat", primary.stream_text([f"w{i} " for i in range(10)], framing=Framing(delay=0.08)))
    async with turnout_serve(write_routes()) as child:
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


async def test_sighup_reloads_the_file(write_routes, http, primary):
    """SIGHUP makes the running server load the changed file and serve its new routes."""
    primary.default("chat", primary.text("ok"))
    path = write_routes()
    async with turnout_serve(path) as child:
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


def worker_pids(parent: int) -> list[int]:
    pids = []
    for task in os.listdir(f"/proc/{parent}/task"):
        with open(f"/proc/{parent}/task/{task}/children") as f:
            pids += [int(p) for p in f.read().split()]
    return pids


async def test_workers_share_one_port_and_restart(write_routes, http, primary):
    """`--workers 2` serves from two processes on one port, replaces a killed worker, and exits 0 on SIGTERM."""
    primary.default("chat", primary.text("ok"))
    async with turnout_serve(write_routes(), "--workers", "2") as child:
        await child.wait_listening(within=40)
        results = await asyncio.gather(*(post(http, child.url) for _ in range(20)))
        workers = [p for p in worker_pids(child.proc.pid) if p not in (child.proc.pid,)]
        serving = []
        for pid in workers:  # the spawn context adds a resource tracker; real workers hold the listening port
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"resource_tracker" not in f.read():
                    serving.append(pid)
        assert len(serving) == 2
        os.kill(serving[0], signal.SIGKILL)
        for _ in range(150):
            alive = [p for p in worker_pids(child.proc.pid) if p not in workers]
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
