"""Shared helpers for the hostile-client suite: a routing file on the mock driver served on 127.0.0.1:0.

Every test here plays a client that tries to break the sidecar for everyone else, and checks that the next
innocent request is still served. Everything runs on loopback and is bounded in requests and time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
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


def mock_routes(*, providers: str = "", models: str = "", routes: str = "", server: str = "") -> str:
    """The mock-only routing file; each argument is raw YAML indented for its section."""
    return (
        MOCK_ROUTES.replace("@PROVIDERS@", providers)
        .replace("@MODELS@", models)
        .replace("@ROUTES@", routes)
        .replace("@SERVER@", server)
    )


@pytest.fixture
def serve_mock(tmp_path: Path, server_kit: Any) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
    """`async with serve_mock(providers=..., models=..., routes=..., server=...) as s:` serves `mock_routes`."""

    def start(**sections: str) -> Any:
        path = tmp_path / "routes.yaml"
        path.write_text(mock_routes(**sections))
        return server_kit.serving(path)

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
