"""The real `turnout serve` (one process and `--workers`): one /metrics over all workers, the exact drain
(readyz, refused connections, the cap, 0 = no wait, SIGINT = SIGTERM) and the supervisor's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import time

import aiohttp
import pytest

from turnout.testing import Framing

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"
REQUESTS_SERIES = 'turnout_requests_total{route="solo",status="200"}'


def held(fake, gate: asyncio.Event):
    """An upstream answer that waits for `gate` (set by the test, or never)."""

    async def behave(request, upstream):
        await gate.wait()
        return await fake.text("released")(request, upstream)

    return behave


async def post(url: str, **extra) -> tuple[int, bytes]:
    """One chat request on a fresh connection (so SO_REUSEPORT spreads them over the workers)."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.post(url + CHAT, json={"model": "solo", "messages": MESSAGES, **extra}) as resp,
    ):
        return resp.status, await resp.read()


async def scrape(url: str, series: str) -> float | None:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def refused(port: int) -> bool:
    """True when nothing accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" in f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True


async def eventually(predicate, within: float = 15.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(every)
    return predicate()


async def replacement_of(cli, supervisor: int, before: list[int], within: float = 20.0) -> int:
    """The pid of the worker the supervisor started after one of `before` died."""
    found: list[int] = []

    def appeared() -> bool:
        found[:] = [p for p in cli.serving_workers(supervisor) if p not in before]
        return bool(found)

    assert await eventually(appeared, within), "the supervisor did not start a replacement worker"
    return found[0]


async def wait_ready(url: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise AssertionError("not ready")


# -- one /metrics ------------------------------------------------------------------------------------------------
async def test_every_scrape_shows_the_sum_over_workers_and_survives_a_crash(write_routes, cli, primary):
    """`--workers 2`, 20 requests, 4 scrapes: every scrape reads 20. After a worker is killed and replaced, the
    total still reads 20 (a dead worker's counts are kept) and keeps counting from there."""
    primary.default("chat", primary.text("ok"))
    async with cli.serve(write_routes(), "--workers", "2", "--access-log", "off") as child:
        await child.wait_listening(within=40)
        assert {status for status, _ in await asyncio.gather(*(post(child.url) for _ in range(20)))} == {200}
        assert [await scrape(child.url, REQUESTS_SERIES) for _ in range(4)] == [20, 20, 20, 20]

        workers = cli.serving_workers(child.proc.pid)
        os.kill(workers[0], signal.SIGKILL)
        await replacement_of(cli, child.proc.pid, workers)
        assert [await scrape(child.url, REQUESTS_SERIES) for _ in range(4)] == [20, 20, 20, 20]
        assert {status for status, _ in await asyncio.gather(*(post(child.url) for _ in range(10)))} == {200}
        assert [await scrape(child.url, REQUESTS_SERIES) for _ in range(4)] == [30, 30, 30, 30]
        child.proc.send_signal(signal.SIGTERM)
        assert await child.finish(within=30) == 0


# -- the drain ---------------------------------------------------------------------------------------------------
async def test_readyz_says_draining_and_new_connections_are_refused_while_requests_finish(write_routes, cli, primary):
    """From the moment a drain starts /readyz answers 503 "draining" (on a connection the balancer already has),
    new connections are refused, and the request in flight still completes before the process exits 0."""
    gate = asyncio.Event()
    primary.default("chat", held(primary, gate))
    async with cli.serve(write_routes(server="  drain_timeout: 20s\n")) as child:
        await child.wait_listening()
        reader, writer = await asyncio.open_connection("127.0.0.1", child.port)
        probe = b"GET /readyz HTTP/1.1\r\nHost: lb\r\n\r\n"
        writer.write(probe)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        await reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1)))
        assert head.startswith(b"HTTP/1.1 200")
        in_flight = asyncio.create_task(post(child.url))
        assert await eventually(lambda: len(primary.requests) == 1)

        child.proc.send_signal(signal.SIGTERM)
        assert await eventually(lambda: refused(child.port)), "still accepting connections during the drain"
        writer.write(probe)  # the balancer's kept-alive health check connection
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        body = await reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1)))
        assert head.startswith(b"HTTP/1.1 503") and b"Connection: close" in head
        detail = json.loads(body)  # a balancer's Host is not loopback: it gets the open answer, no detail
        assert detail == {"ready": False, "status": "draining", "draining": True}
        writer.close()
        assert not in_flight.done()
        gate.set()
        status, answer = await in_flight
        assert status == 200 and b"released" in answer
        assert await child.finish() == 0


async def test_the_drain_cap_cuts_a_longer_request_and_the_process_exits_0(write_routes, cli, primary):
    """A stream that would outlive drain_timeout is cut at the cap (the client gets no [DONE]) and the process
    exits 0 right after, long before the request would have ended."""
    primary.default("chat", primary.stream_text([f"w{i} " for i in range(40)], framing=Framing(delay=0.25)))  # 10 s
    async with cli.serve(write_routes(server="  drain_timeout: 1s\n")) as child:
        await child.wait_listening()
        in_flight = asyncio.create_task(post(child.url, stream=True))
        assert await eventually(lambda: len(primary.requests) == 1)
        signalled = time.monotonic()
        child.proc.send_signal(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientError):  # the connection ends without an answer
            await asyncio.wait_for(in_flight, 15)
        cut_after = time.monotonic() - signalled
        code = await child.finish(within=15)
        exited_after = time.monotonic() - signalled
    assert code == 0
    assert cut_after >= 0.9, cut_after  # the cap was waited for
    assert exited_after < 10, exited_after  # and honoured (the request itself would never have ended)
    assert "drain_timeout (1s) reached: cutting 1 requests" in child.log()
    access = [json.loads(line) for line in (await child.proc.stdout.read()).decode().splitlines()]
    assert access[-1]["status"] == 499 and "drain_timeout" in access[-1]["error"]


async def test_drain_timeout_0_does_not_wait(write_routes, cli, primary):
    """`server.drain_timeout: 0` means "do not wait": in-flight requests are cut at once and the process exits 0
    (aiohttp alone would read 0 as "wait forever")."""
    primary.default("chat", held(primary, asyncio.Event()))
    async with cli.serve(write_routes(server="  drain_timeout: 0s\n")) as child:
        await child.wait_listening()
        in_flight = asyncio.create_task(post(child.url))
        assert await eventually(lambda: len(primary.requests) == 1)
        signalled = time.monotonic()
        child.proc.send_signal(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(in_flight, 15)
        code = await child.finish(within=15)
        exited_after = time.monotonic() - signalled
    assert code == 0
    assert exited_after < 5, exited_after


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sigint_drains_like_sigterm(write_routes, cli, primary, workers):
    """SIGINT (Ctrl-C) stops exactly as SIGTERM does: the request in flight completes and the exit code is 0."""
    gate = asyncio.Event()
    primary.default("chat", held(primary, gate))
    async with cli.serve(write_routes(), "--workers", workers) as child:
        await child.wait_listening(within=40)
        in_flight = asyncio.create_task(post(child.url))
        assert await eventually(lambda: len(primary.requests) == 1)
        child.proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.3)
        gate.set()
        assert (await in_flight)[0] == 200
        assert await child.finish(within=30) == 0
    assert "Traceback" not in child.log() and "KeyboardInterrupt" not in child.log()


# -- the supervisor ----------------------------------------------------------------------------------------------
async def test_sigterm_while_a_crashed_worker_restarts_still_drains_and_exits_0(write_routes, cli, primary):
    """A SIGTERM that arrives while the replacement of a crashed worker is still starting is held until that
    worker can drain: it is not killed half-started, and the supervisor exits 0."""
    primary.default("chat", primary.text("ok"))
    async with cli.serve(write_routes(), "--workers", "2") as child:
        await child.wait_listening(within=40)
        workers = cli.serving_workers(child.proc.pid)
        os.kill(workers[0], signal.SIGKILL)
        replacement = await replacement_of(cli, child.proc.pid, workers, within=20)
        child.proc.send_signal(signal.SIGTERM)  # the replacement is still importing turnout at this point
        code = await child.finish(within=30)
    assert code == 0, child.log()
    assert gone(replacement)
    assert "restarting it" in child.log()


async def test_workers_exit_when_the_supervisor_is_killed(write_routes, cli, primary):
    """A SIGKILLed supervisor leaves no orphans: its workers notice, drain and exit, the port is released and
    their metrics directory is removed."""
    primary.default("chat", primary.text("ok"))
    async with cli.serve(write_routes(), "--workers", "2") as child:
        await child.wait_listening(within=40)
        await wait_ready(child.url)
        workers = cli.serving_workers(child.proc.pid)
        assert len(workers) == 2
        metrics_dirs = {
            os.path.dirname(target)
            for target in (os.readlink(f"/proc/{workers[0]}/fd/{fd}") for fd in os.listdir(f"/proc/{workers[0]}/fd"))
            if "turnout-metrics-" in target
        }
        assert len(metrics_dirs) == 1
        child.proc.kill()  # (its pipes stay open while any worker lives, so the workers are checked first)
        try:
            assert await eventually(lambda: all(gone(pid) for pid in workers), within=20), "orphaned workers live on"
            assert refused(child.port)
            assert await eventually(lambda: not any(os.path.exists(d) for d in metrics_dirs), within=5)
            await asyncio.wait_for(child.proc.wait(), 10)
        finally:  # only if the test failed: never signal a pid that may have been reused
            for pid in workers:
                if not gone(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
