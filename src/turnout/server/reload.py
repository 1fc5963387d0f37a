"""Hot reload of the routing file: watched by polling, or triggered by SIGHUP or `POST /admin/reload`.

A reload loads and validates the file in a worker thread (YAML, schema and templates never run on the event
loop), then `router.swap(config)` compiles and installs the new graph atomically. In-flight requests finish on
the graph they started with; health of unchanged deployments survives (the Router's job). An invalid file never
takes the server down: the old graph keeps serving, every problem is logged as `FILE:LINE:COL: ...`, counted in
metrics and shown in `/readyz` as `last_reload_error` until a good file arrives.

Polling compares (mtime_ns, size, inode) once per `interval`: portable, no new dependency, and it also sees
editors that save by renaming a new file over the old one.

A reload is time-limited (`server.reload_timeout`): the file is loaded in a daemon thread of its own, and when
that thread has not answered in time the reload fails like an invalid file (the old graph keeps serving, the lock
is released, so the next reload and `/admin/reload` are not blocked). A Python thread cannot be killed, so a load
stuck for good (reading a FIFO, a hung network filesystem) is left behind; as a daemon thread it never keeps the
process from exiting on SIGTERM. At most `MAX_STUCK_LOADS` are left behind before reloads are refused outright.
Templates cannot get stuck: their renders have step and size budgets (`turnout.schema.templates`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from turnout.config import Config
from turnout.errors import ConfigError, Problem

log = logging.getLogger("turnout.server")

Loader = Callable[[str], Config]
DEFAULT_TIMEOUT = 30.0
MAX_STUCK_LOADS = 4
HISTORY = 20  # reloads remembered for the status page (newest last)


def default_loader(env: Mapping[str, str] | None) -> Loader:
    def load(path: str) -> Config:
        from turnout.schema import load_file

        return load_file(path, env=env)

    return load


def file_signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Reloader:
    """Owns reloads of one file for one Router; `status()` feeds /readyz."""

    def __init__(
        self,
        router: Any,
        path: str | os.PathLike[str],
        *,
        loader: Loader,
        on_config: Callable[[Config], None] = lambda config: None,
        on_result: Callable[[bool, int], None] = lambda ok, problems: None,
        interval: float = 1.0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.router = router
        self.path = str(Path(path))
        self._loader = loader
        self._on_config = on_config
        self._on_result = on_result
        self._interval = interval
        self.timeout = timeout  # seconds a load may take (the sidecar updates it from each new config)
        self._stuck: set[threading.Thread] = set()  # loads that overran their time and may still be running
        self._lock = asyncio.Lock()
        self._signature = file_signature(self.path)
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[bool]] = set()
        self.reloads = 0
        self.failures = 0
        self.last_error: dict[str, Any] | None = None
        self.last_reload_at: float | None = None
        # The latest reloads, ok or not: {"at", "trigger", "ok", "routes" (ok) | "problems" (failed, located)}.
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)

    def status(self) -> dict[str, Any]:
        return {
            "config": self.path,
            "reloads": self.reloads,
            "reload_failures": self.failures,
            "last_reload_at": self.last_reload_at,
            "last_reload_error": self.last_error,
        }

    async def reload(self, trigger: str = "manual") -> bool:
        """Load, validate and swap in the file now. True on success; on failure the old graph stays."""
        async with self._lock:
            signature = file_signature(self.path)
            try:
                config = await self._load()
                self.router.swap(config)
            except ConfigError as exc:
                problems = [str(p) for p in self._located(exc.problems) if p.severity != "warning"]
                self._failed(trigger, problems or [str(exc)])
                return False
            except TimeoutError:
                message = f"reading and validating the file took longer than {self.timeout:g}s (server.reload_timeout)"
                self._failed(trigger, [f"{self.path}:0:0: {message}"])
                return False
            except OSError as exc:
                self._failed(trigger, [f"{self.path}:0:0: cannot read the file: {exc.strerror or exc}"])
                return False
            except Exception as exc:
                log.exception("reload of %s failed unexpectedly", self.path)
                self._failed(trigger, [f"{self.path}:0:0: {type(exc).__name__}: {exc}"])
                return False
            finally:
                self._signature = signature
            self.reloads += 1
            self.last_error = None
            self.last_reload_at = time.time()
            self.history.append(
                {"at": self.last_reload_at, "trigger": trigger, "ok": True, "routes": len(config.routes)}
            )
            self._on_config(config)
            self._on_result(True, 0)
            log.info("reloaded %s (%s): %d routes", self.path, trigger, len(config.routes))
            return True

    async def _load(self) -> Config:
        """Run the loader in a daemon thread of its own and wait for it at most `timeout` seconds."""
        self._stuck = {t for t in self._stuck if t.is_alive()}
        if len(self._stuck) >= MAX_STUCK_LOADS:
            raise OSError(f"{len(self._stuck)} earlier reloads are still stuck reading the file")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Config] = loop.create_future()

        def settle(result: Config | None, error: BaseException | None) -> None:
            if done.done():
                return  # timed out or cancelled meanwhile
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)  # type: ignore[arg-type]

        def work() -> None:
            try:
                result, error = self._loader(self.path), None
            except BaseException as exc:  # handed to the event loop, raised there
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: the process is shutting down
                loop.call_soon_threadsafe(settle, result, error)

        thread = threading.Thread(target=work, name="turnout-reload", daemon=True)
        thread.start()
        try:
            async with asyncio.timeout(self.timeout):
                return await done
        except TimeoutError:
            self._stuck.add(thread)
            log.warning("reload of %s is stuck (over %gs); it is abandoned", self.path, self.timeout)
            raise

    def _located(self, problems: tuple[Problem, ...]) -> tuple[Problem, ...]:
        """Compile problems (a driver rejecting its options) come without a line: find it in the file."""
        if all(p.line for p in problems):
            return problems
        from turnout.schema import locate_problems

        try:
            return locate_problems(Path(self.path).read_bytes(), problems)
        except OSError:
            return problems

    def _failed(self, trigger: str, problems: list[str]) -> None:
        self.failures += 1
        self.last_error = {"at": time.time(), "trigger": trigger, "problems": problems}
        self.history.append({**self.last_error, "ok": False})
        self._on_result(False, len(problems))
        log.error("reload of %s (%s) failed; still serving the previous config:", self.path, trigger)
        for problem in problems:
            log.error("  %s", problem)

    def trigger(self, reason: str) -> None:
        """Schedule a reload from a signal handler or other sync context."""
        task = asyncio.get_running_loop().create_task(self.reload(reason))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def start_watching(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="turnout-reload-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._pending):
            task.cancel()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            current = file_signature(self.path)
            if current is None or current == self._signature or self._lock.locked():
                continue
            await asyncio.sleep(min(0.1, self._interval / 2))  # let a writer finish before reading
            if file_signature(self.path) != current:
                continue  # still being written: look again on the next tick
            await self.reload("file changed")
