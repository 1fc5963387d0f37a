"""Shared helpers for the hostile-client suite: a routing file on the mock driver served on 127.0.0.1:0.

Every test here plays a client that tries to break the sidecar for everyone else, and checks that the next
innocent request is still served. Everything runs on loopback and is bounded in requests and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

MOCK_ROUTES = """\
version: 1
defaults:
  retry: {attempts: 0}
  breaker: {failure_threshold: 3, recovery_timeout: 10m}
providers:
  echo:
    driver: mock
    options: {reply: echo}
@PROVIDERS@
models:
  echo: {provider: echo, name: echo-1}
@MODELS@
routes:
  echo: {chain: [echo]}
  chat: {chain: [echo]}
@ROUTES@
server:
  watch: false
@SERVER@
"""


def mock_routes(*, providers: str = "", models: str = "", routes: str = "", server: str = "", clients: str = "") -> str:
    """The mock-only routing file; each argument is raw YAML indented for its section (`clients`: a whole
    `clients:` section)."""
    return (
        MOCK_ROUTES.replace("@PROVIDERS@", providers)
        .replace("@MODELS@", models)
        .replace("@ROUTES@", routes)
        .replace("@SERVER@", server)
        + clients
    )


@pytest.fixture
def serve_mock(tmp_path: Path, server_kit: Any) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
    """`async with serve_mock(providers=..., models=..., routes=..., server=...) as s:` serves `mock_routes`."""

    def start(**sections: str) -> Any:
        path = tmp_path / "routes.yaml"
        path.write_text(mock_routes(**sections))
        return server_kit.serving(path)  # the Served object has `.path`: tests may rewrite it and reload

    return start


class LoopWatch:
    """Measures the longest time the event loop went without running a ticker task (a blocked loop)."""

    def __init__(self, tick: float = 0.005) -> None:
        self.tick = tick
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            self.longest = max(self.longest, now - last - self.tick)
            last = now

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
def loop_watch() -> Callable[[], LoopWatch]:
    return LoopWatch


# -- upstreams that behave like the real ones towards odd client content ------------------------------------------

# The parameters OpenAI's chat endpoint knows; any other top-level key is answered with a 400 that echoes its name.
OPENAI_PARAMS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "temperature", "top_p", "n", "stop", "max_tokens",
        "max_completion_tokens", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
        "user", "seed", "tools", "tool_choice", "parallel_tool_calls", "response_format", "metadata", "store",
    }
)  # fmt: skip


def echoing_openai(fake: Any) -> Any:
    """An OpenAIFake behaviour that answers like OpenAI: a 400 naming an unknown parameter (client text, echoed
    verbatim in the error message), otherwise a normal answer, streamed when asked."""
    from aiohttp import web

    async def behave(request: web.Request, upstream: Any) -> web.StreamResponse | None:
        body = json.loads(await request.read())
        unknown = sorted(k for k in body if k not in OPENAI_PARAMS)
        if unknown:
            error = {
                "message": f"Unrecognized request argument supplied: {unknown[0]}",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
            return web.json_response({"error": error}, status=400)
        if body.get("stream"):
            return await fake.stream_text(["healthy ", "answer"])(request, upstream)
        return await fake.text("healthy answer")(request, upstream)

    return behave


@pytest.fixture
def echoing() -> Callable[[Any], Any]:
    return echoing_openai


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def image_host() -> Any:
    """A loopback web server with the image URLs a hostile client might send, plus `closed`, a dead port's URL."""
    from turnout.testing import FakeUpstream, reply_raw

    async with FakeUpstream() as host:
        host.default("/ok.png", reply_raw(PNG, content_type="image/png"))
        host.default("/page.html", reply_raw(b"<html>hi</html>", content_type="text/html"))
        host.default("/missing.png", reply_raw(b"nope", status=404, content_type="text/plain"))
        host.default("/loop", reply_raw(b"", status=302, headers={"Location": "/loop"}))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        host.closed = f"http://127.0.0.1:{sock.getsockname()[1]}/gone.png"  # type: ignore[attr-defined]
        sock.close()  # nothing listens there any more
        yield host


# -- a real `turnout serve` child process ----------------------------------------------------------------------------

SERVE = [sys.executable, "-c", "import sys; from turnout.cli import main; sys.exit(main())", "serve"]


class ServeProcess:
    """A `turnout serve` child on 127.0.0.1:0: its URL (from the banner), pid, RSS and everything it printed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.url = ""
        self.stderr: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def rss(self) -> int:
        """Resident memory of the server process in bytes (from /proc)."""
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    async def wait_listening(self, within: float = 30.0) -> None:
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
                    return

        await asyncio.wait_for(read_banner(), within)
        self._reader = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))

    async def finish(self, within: float) -> int:
        """The exit code, waiting at most `within` seconds (TimeoutError otherwise)."""
        code = await asyncio.wait_for(self.proc.wait(), within)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code


@contextlib.asynccontextmanager
async def turnout_serve(path: Path, *args: str) -> AsyncIterator[ServeProcess]:
    """Run `turnout serve PATH --port 0 ARGS...`; killed on exit if it is still running."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        *SERVE, str(path), "--port", "0", "--access-log", "off", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    child = ServeProcess(proc)
    try:
        await child.wait_listening()
        yield child
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
def serve_process() -> Callable[..., contextlib.AbstractAsyncContextManager[ServeProcess]]:
    return turnout_serve
