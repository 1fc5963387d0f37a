"""Fixtures for the sidecar tests: loopback OpenAI fakes as upstreams and the real app served on 127.0.0.1:0.

`serve(yaml_text)` writes the routing file to a temp dir, builds the Router from it exactly as `turnout serve`
does, and serves `create_app(...)` with `make_runner` (handler cancellation on, as in production). Retries are
off and breakers lenient in the default file so no test ever waits on a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from turnout.router import Router
from turnout.schema import load_file
from turnout.server.app import SIDECAR_KEY, Sidecar, create_app, make_runner
from turnout.testing import OpenAIFake

PRIMARY_KEY = "sk-primary-SECRET-0001"
BACKUP_KEY = "sk-backup-SECRET-0002"
CLIENT_KEY = "client-key-SECRET-0003"
ADMIN_KEY = "admin-key-SECRET-0004"

ROUTES = """\
version: 1
defaults:
  retry: {attempts: 0}
  breaker: {failure_threshold: 50}
  first_token_timeout: 5s
  stall_timeout: 5s
providers:
  primary: {driver: openai, base_url: "@PRIMARY@/v1", api_key: "@PRIMARY_KEY@"}
  backup: {driver: openai, base_url: "@BACKUP@/v1", api_key: "@BACKUP_KEY@"}
  nokey: {driver: openai, api_key: "{{ env.TURNOUT_TEST_MISSING_KEY | default('') }}"}
models:
  p1:
    provider: primary
    name: gpt-test
    price: {input: 1.0, output: 2.0}
  b1:
    provider: backup
    name: gpt-backup
    price: {input: 1.0, output: 2.0}
  dead: {provider: nokey, name: gpt-none}
routes:
  chat:
    description: primary then backup
    chain: [p1, b1]
  solo:
    chain: [p1]
  strict:
    chain: [p1, b1]
    on_error: {content_policy: fail}
@EXTRA_ROUTES@
server:
  watch: false
@SERVER@
@CLIENTS@
"""


def routes_yaml(primary: str, backup: str, *, extra_routes: str = "", server: str = "", clients: str = "") -> str:
    """The default test routing file, pointing at two fakes; `extra_routes`/`server` are raw indented YAML,
    `clients` a whole `clients:` section."""
    return (
        ROUTES.replace("@PRIMARY@", primary)
        .replace("@BACKUP@", backup)
        .replace("@PRIMARY_KEY@", PRIMARY_KEY)
        .replace("@BACKUP_KEY@", BACKUP_KEY)
        .replace("@EXTRA_ROUTES@", extra_routes)
        .replace("@SERVER@", server)
        .replace("@CLIENTS@", clients)
    )


@dataclass
class Served:
    """A running sidecar: base URL, its shared state, the routing file and the captured access log."""

    url: str
    sidecar: Sidecar
    path: Path
    access: io.StringIO
    app: web.Application

    def client(self, api_key: str = "unused", **options: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=10, **options)

    def access_lines(self) -> list[str]:
        return [line for line in self.access.getvalue().splitlines() if line]


@contextlib.asynccontextmanager
async def serving(path: Path, **app_options: Any) -> AsyncIterator[Served]:
    access = io.StringIO()
    router = Router(load_file(path))
    app = create_app(router, config_path=str(path), access_log=access, **app_options)
    runner = make_runner(app, drain_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Served(f"http://127.0.0.1:{port}", app[SIDECAR_KEY], path, access, app)
    finally:
        await runner.cleanup()


@pytest.fixture
async def primary() -> AsyncIterator[OpenAIFake]:
    async with OpenAIFake(model="gpt-test") as fake:
        yield fake


@pytest.fixture
async def backup() -> AsyncIterator[OpenAIFake]:
    async with OpenAIFake(model="gpt-backup") as fake:
        yield fake


@pytest.fixture
def write_routes(tmp_path: Path, primary: OpenAIFake, backup: OpenAIFake) -> Callable[..., Path]:
    """`write_routes(extra_routes=..., server=...)` writes the default routing file on the two fakes."""

    def write(*, extra_routes: str = "", server: str = "", clients: str = "") -> Path:
        path = tmp_path / "routes.yaml"
        path.write_text(routes_yaml(primary.url, backup.url, extra_routes=extra_routes, server=server, clients=clients))
        return path

    return write


@pytest.fixture
def serve(write_routes: Callable[..., Path]) -> Callable[..., contextlib.AbstractAsyncContextManager[Served]]:
    """`async with serve(extra_routes=..., server=..., clients=..., **app_options) as s:` runs the sidecar on the two
    fakes."""

    def start(*, extra_routes: str = "", server: str = "", clients: str = "", **app_options: Any) -> Any:
        return serving(write_routes(extra_routes=extra_routes, server=server, clients=clients), **app_options)

    return start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass(frozen=True)
class Keys:
    primary: str = PRIMARY_KEY
    backup: str = BACKUP_KEY
    client: str = CLIENT_KEY
    admin: str = ADMIN_KEY

    @property
    def clients(self) -> str:
        """A `clients:` section with one client ("default", every route) holding the client key."""
        return f'clients:\n  default: {{keys: ["{self.client}"]}}\n'

    @property
    def admin_server(self) -> str:
        """The `server:` lines that set the admin key."""
        return f'  admin_keys: ["{self.admin}"]\n'


@pytest.fixture
def keys() -> Keys:
    """The credentials the test files use (to check they never leak)."""
    return Keys()


def assert_openai_error(payload: Any, status: int) -> dict[str, Any]:
    """`payload` is OpenAI's error shape; returns the inner error object."""
    assert isinstance(payload, dict) and set(payload) == {"error"}, payload
    error = payload["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert "param" in error and "code" in error
    if status >= 500:
        assert error["type"] == "server_error"
    return error


@pytest.fixture
def openai_error() -> Callable[[Any, int], dict[str, Any]]:
    return assert_openai_error


@pytest.fixture(scope="session")
def server_kit() -> Any:
    """The helpers above for module-scoped fixtures (test modules cannot import conftest under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(serving=serving, routes_yaml=routes_yaml, assert_openai_error=assert_openai_error)


# -- the real `turnout serve` as a child process ----------------------------------------------------------------
SERVE = [sys.executable, "-c", "import sys; from turnout.cli import main; sys.exit(main())", "serve"]


class Process:
    """A `turnout serve` child: its listening URL (parsed from the banner) and everything it printed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.url = ""
        self.port = 0
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
                match = re.search(r"listening on (http://[\d.]+:(\d+))", line)
                if match:
                    self.url, self.port = match.group(1), int(match.group(2))
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

    def log(self) -> str:
        return "".join(self.stderr)


@contextlib.asynccontextmanager
async def turnout_serve(path: Path, *args: str) -> AsyncIterator[Process]:
    """`turnout serve PATH --port 0 ARGS...`; killed (with any workers left) if the test does not stop it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        *SERVE, str(path), "--port", "0", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    child = Process(proc)
    try:
        yield child
    finally:
        if proc.returncode is None:
            leftovers = children(proc.pid)  # its workers, if any: they die with it, this only makes it immediate
            proc.kill()
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            await proc.wait()


def children(parent: int) -> list[int]:
    """The child pids of `parent` (workers and the spawn context's resource tracker)."""
    pids = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in os.listdir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    return pids


def serving_workers(parent: int) -> list[int]:
    """The worker processes of a `--workers` supervisor (not the resource tracker the spawn context adds)."""
    serving = []
    for pid in children(parent):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError), open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"resource_tracker" not in f.read():
                serving.append(pid)
    return serving


@pytest.fixture(scope="session")
def cli() -> Any:
    """Run the real `turnout serve`: `async with cli.serve(path, *args) as child`, plus process helpers."""
    from types import SimpleNamespace

    return SimpleNamespace(serve=turnout_serve, children=children, serving_workers=serving_workers)
