"""`turnout serve`: run the sidecar in one process, or in N worker processes sharing one port.

One process: load the file (problems are printed as `FILE:LINE:COL: ...`, exit 1), build a Router, listen, print
where and what is served, then serve until SIGTERM/SIGINT. Shutdown stops accepting, marks /readyz as draining,
lets in-flight requests finish for up to `server.drain_timeout`, closes the upstream session and exits 0.
SIGHUP reloads the file.

`--workers N`: a supervisor spawns N processes; each binds the port with SO_REUSEPORT (the kernel spreads
connections over them) and owns its own Router, so breakers, limits and metrics are per worker. The supervisor
forwards SIGTERM/SIGINT/SIGHUP, restarts a worker that crashes (at most `MAX_RESTARTS` a minute) and exits 0
when every worker drained cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from aiohttp import web

from turnout.config import Config
from turnout.errors import ConfigError
from turnout.server.app import SIDECAR_KEY, create_app, make_runner

log = logging.getLogger("turnout.server")
MAX_RESTARTS = 5
GC_THRESHOLD = 10_000  # allocations (net) between young-generation collections; CPython's default is 700
READY_TIMEOUT = 60.0


def tune_gc() -> None:
    """Let the youngest GC generation grow to GC_THRESHOLD allocations before a collection (CPython's default is
    700). A request allocates hundreds of short-lived containers, nearly all freed by reference counting, so the
    default collected every couple of requests and found next to nothing: 7% of the sidecar's CPU per request
    (A/B in bench/sidecar). Cycles are still collected, just less often; memory stays flat (see the soak)."""
    first, second, third = gc.get_threshold()
    if first:  # 0: automatic collection was switched off on purpose; leave it so
        gc.set_threshold(max(GC_THRESHOLD, first), second, third)


def load_or_report(path: str, env: Mapping[str, str] | None = None) -> Config | int:
    """The config, or the exit code (1 invalid, 2 unreadable) after printing why to stderr (never a traceback)."""
    from turnout.schema import load_file

    try:
        return load_file(path, env=env)
    except ConfigError as exc:
        return report_invalid(path, exc)
    except OSError as exc:
        print(f"turnout serve: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2


def report_invalid(path: str, exc: ConfigError) -> int:
    """Print every problem as FILE:LINE:COL (compile problems located from their path too); returns exit code 1."""
    from turnout.schema import locate_problems

    problems = exc.problems
    try:
        with open(path, "rb") as fh:
            problems = locate_problems(fh.read(), problems)
    except OSError:
        pass
    for problem in problems:
        print(str(problem), file=sys.stderr)
    print(f"turnout serve: {path} is invalid ({len(problems)} problems); not starting.", file=sys.stderr)
    return 1


def setup_logging(level: int = logging.INFO) -> None:
    logger = logging.getLogger("turnout")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)


def open_access_log(target: str) -> TextIO | None:
    if target in ("off", "none", ""):
        return None
    if target == "-":
        return sys.stdout
    if target == "stderr":
        return sys.stderr
    return open(target, "a", encoding="utf-8")  # lives as long as the process


def banner(path: str, config: Config, readiness: Mapping[str, Any], host: str, port: int, workers: int) -> str:
    """What startup prints: where it listens, which routes are live, which providers are disabled and why."""
    plural = "s" if workers != 1 else ""
    lines = [f"turnout serve: listening on http://{host}:{port} ({workers} worker{plural}, pid {os.getpid()})"]
    watching = " (watching for changes)" if config.server.watch else ""
    lines.append(f"  config: {path}{watching}; SIGHUP or POST /admin/reload reloads it")
    routes = readiness.get("routes", {})
    live = [f"{name} ({r['usable']}/{r['total']})" for name, r in routes.items() if r["usable"] > 0]
    dead = [name for name, r in routes.items() if r["usable"] == 0]
    lines.append(f"  live routes (usable/total deployments): {', '.join(live) or 'none'}")
    if dead:
        lines.append(f"  routes with no usable deployment: {', '.join(dead)}")
    disabled = readiness.get("disabled_providers", {})
    if disabled:
        lines.append("  disabled providers:")
        lines += [f"    {name}: {reason}" for name, reason in disabled.items()]
    auth = "on" if config.server.api_keys else "off (no server.api_keys)"
    lines.append(f"  client auth: {auth}; endpoints: /v1/chat/completions /v1/models /healthz /readyz /metrics")
    return "\n".join(lines)


async def serve_process(
    path: str,
    config: Config,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    access_log: TextIO | None = None,
    on_ready: Callable[[int, Mapping[str, Any]], None] | None = None,
    env: Mapping[str, str] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve one process until `stop` is set or SIGTERM/SIGINT arrives; then drain and return 0."""
    from turnout.router import Router

    try:
        router = Router(config)  # compiles: drivers validate their options here, after the loader's checks
    except ConfigError as exc:
        return report_invalid(path, exc)
    app = create_app(router, config_path=path, env=env, access_log=access_log)
    sidecar = app[SIDECAR_KEY]
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=2048)
    await site.start()
    bound = _bound_port(runner, port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    if sidecar.reloader is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, sidecar.reloader.trigger, "SIGHUP")
    if on_ready is not None:
        on_ready(bound, router.readiness())
    tune_gc()
    await stop.wait()
    sidecar.draining = True
    log.info(
        "shutting down: draining %d in-flight requests (up to %.0fs)", sidecar.in_flight, sidecar.settings.drain_timeout
    )
    await runner.cleanup()
    log.info("stopped")
    return 0


def _bound_port(runner: web.AppRunner, fallback: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return fallback


def serve(
    path: str,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    access_log: str = "-",
    env: Mapping[str, str] | None = None,
) -> int:
    """Entry point of `turnout serve`; returns the process exit code."""
    setup_logging()
    config = load_or_report(path, env)
    if isinstance(config, int):
        return config
    host = host or config.server.host
    port = config.server.port if port is None else port
    if workers > 1:
        return supervise(path, config, host, port, workers, access_log)

    def ready(bound: int, readiness: Mapping[str, Any]) -> None:
        print(banner(path, config, readiness, host, bound, 1), file=sys.stderr, flush=True)

    stream = open_access_log(access_log)
    try:
        return asyncio.run(serve_process(path, config, host, port, access_log=stream, on_ready=ready, env=env))
    except OSError as exc:
        print(f"turnout serve: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1


# -- workers --------------------------------------------------------------------------------------------------
def _worker(path: str, host: str, port: int, access_log: str, ready: Any, index: int) -> None:
    """One worker process: load the file itself, serve with SO_REUSEPORT, report readiness to the supervisor."""
    setup_logging()
    config = load_or_report(path)
    if isinstance(config, int):
        sys.exit(config)
    stream = open_access_log(access_log)

    def on_ready(bound: int, readiness: Mapping[str, Any]) -> None:
        ready.put((index, os.getpid(), readiness))

    sys.exit(
        asyncio.run(serve_process(path, config, host, port, reuse_port=True, access_log=stream, on_ready=on_ready))
    )


def _reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) with SO_REUSEPORT so port 0 becomes one concrete port every worker can share."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def supervise(path: str, config: Config, host: str, port: int, workers: int, access_log: str) -> int:
    """Run `workers` processes on one port; forward signals; restart crashed workers; exit 0 after a clean drain."""
    reserved = _reserve_port(host, port)
    supervisor = _Supervisor(path, host, reserved.getsockname()[1], access_log)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    signal.signal(signal.SIGHUP, supervisor.forward_hup)
    for index in range(workers):
        supervisor.spawn(index)
    readiness = supervisor.wait_ready(workers)
    reserved.close()
    if readiness is None:
        print("turnout serve: a worker failed to start; stopping.", file=sys.stderr)
        supervisor.stop(signal.SIGTERM, None)
    else:
        print(banner(path, config, readiness, host, supervisor.port, workers), file=sys.stderr, flush=True)
    code = supervisor.run()
    return code if readiness is not None else 1


class _Supervisor:
    """The parent of `--workers N`: owns the worker processes and their lifecycle."""

    def __init__(self, path: str, host: str, port: int, access_log: str) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.ready = self.ctx.Queue()
        self.path, self.host, self.port, self.access_log = path, host, port, access_log
        self.procs: dict[int, Any] = {}
        self.stopping = False
        self.restarts: list[float] = []

    def spawn(self, index: int) -> None:
        args = (self.path, self.host, self.port, self.access_log, self.ready, index)
        proc = self.ctx.Process(target=_worker, args=args, name=f"turnout-worker-{index}")
        proc.start()
        self.procs[index] = proc

    def stop(self, signum: int, frame: Any) -> None:
        self.stopping = True
        _signal_all(self.procs, signal.SIGTERM)

    def forward_hup(self, signum: int, frame: Any) -> None:
        _signal_all(self.procs, signal.SIGHUP)

    def wait_ready(self, workers: int) -> Mapping[str, Any] | None:
        """The readiness report once every worker listens; None if one died, time ran out or we were stopped."""
        deadline = time.monotonic() + READY_TIMEOUT
        readiness: Mapping[str, Any] = {}
        started = 0
        while started < workers:
            try:
                _, _, readiness = self.ready.get(timeout=0.2)
                started += 1
            except queue.Empty:
                failed = any(p.exitcode is not None for p in self.procs.values())
                if failed or self.stopping or time.monotonic() > deadline:
                    return None
        return readiness

    def run(self) -> int:
        """Supervise until every worker has exited; 0 when all of them drained cleanly."""
        while True:
            alive = False
            for index, proc in list(self.procs.items()):
                proc.join(timeout=0.1)
                if proc.exitcode is None:
                    alive = True
                elif not self.stopping and self._may_restart(index, proc):
                    self.spawn(index)
                    alive = True
            if not alive:
                break
        return 0 if all(p.exitcode == 0 for p in self.procs.values()) else 1

    def _may_restart(self, index: int, proc: Any) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        if len(self.restarts) > MAX_RESTARTS:
            log.error("workers keep crashing (%d restarts in a minute); stopping", len(self.restarts))
            self.stop(signal.SIGTERM, None)
            return False
        log.error("worker %d (pid %s) exited with %s; restarting it", index, proc.pid, proc.exitcode)
        return True


def _signal_all(procs: Mapping[int, Any], sig: int) -> None:
    for proc in procs.values():
        if proc.exitcode is None and proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
