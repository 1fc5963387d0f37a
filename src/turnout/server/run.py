"""`turnout serve`: run the sidecar in one process, or in N worker processes sharing one port.

One process: load the file (problems are printed as `FILE:LINE:COL: ...`, exit 1), build a Router, listen, print
where and what is served, then serve until SIGTERM/SIGINT (the same). Shutdown (`drain.py`) marks /readyz as
draining, stops accepting, lets in-flight requests finish for up to `server.drain_timeout` (0: not at all),
cuts the rest, closes the upstream session and exits 0. SIGHUP reloads the file.

`--workers N`: a supervisor (`supervisor.py`) spawns N processes; each binds the port with SO_REUSEPORT (the
kernel spreads connections over them) and owns its own Router, so breakers and limits are per worker (each
Router is told N: with the local state backend it enforces 1/N of every rate limit; with Redis the workers share
limits and breakers exactly), while /metrics on any worker shows the sum over all of them (`aggregate.py`). The
supervisor forwards signals, restarts a worker that crashes, and exits 0 when every worker drained cleanly;
workers die with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from aiohttp import web

from turnout.config import Config
from turnout.errors import ConfigError
from turnout.server.app import SIDECAR_KEY, create_app, make_runner
from turnout.server.drain import UNWIND, drain
from turnout.server.hosts import is_loopback_host
from turnout.server.metrics import Metrics
from turnout.server.supervisor import WORKER_SIGNALS, Supervisor, WorkerLink

log = logging.getLogger("turnout.server")
GC_THRESHOLD = 10_000  # allocations (net) between young-generation collections; CPython's default is 700
PR_SET_PDEATHSIG = 1


def tune_gc() -> None:
    """Let the youngest GC generation grow to GC_THRESHOLD allocations before a collection (CPython's default is
    700). A request allocates hundreds of short-lived containers, nearly all freed by reference counting, so the
    default collected every couple of requests and found next to nothing: 7% of the sidecar's CPU per request
    (A/B in bench/sidecar). Cycles are still collected, just less often; memory stays flat (see the soak)."""
    first, second, third = gc.get_threshold()
    if first:  # 0: automatic collection was switched off on purpose; leave it so
        gc.set_threshold(max(GC_THRESHOLD, first), second, third)


def raise_open_files_limit(ceiling: int = 1 << 20) -> int:
    """Lift the soft limit on open files to the hard limit (as Go's runtime does): every client connection and
    every upstream one is a file, and a shell's usual soft limit of 1024 would make accept() fail under load.
    Workers inherit it. Returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not POSIX
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return wanted
    return soft


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
    lines.append(f"  status page: http://{host}:{port}/status; tracing: {readiness.get('tracing', 'off')}")
    clients = len(config.clients)
    auth = f"on ({clients} client{'s' if clients != 1 else ''})" if clients else "off (no clients declared)"
    admin = "admin keys" if config.server.admin_keys else ("closed" if clients else "loopback Hosts")
    lines.append(
        f"  client auth: {auth}; admin endpoints: {admin}; endpoints: /v1/chat/completions /v1/messages "
        "/v1/responses /v1/embeddings /v1/models /healthz /readyz /metrics"
    )
    if not clients and not config.server.allowed_hosts and not is_loopback_host(host):
        lines.append(
            f"  warning: listening on {host} with client auth off: only loopback Host names are answered (DNS "
            "rebinding guard); declare clients or set server.allowed_hosts (README: Exposing turnout)"
        )
    return "\n".join(lines)


async def serve_process(
    path: str,
    config: Config,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    metrics: Metrics | None = None,
    access_log: TextIO | None = None,
    on_ready: Callable[[int, Mapping[str, Any]], None] | None = None,
    env: Mapping[str, str] | None = None,
    stop: asyncio.Event | None = None,
    workers: int = 1,
) -> int:
    """Serve one process until `stop` is set or SIGTERM/SIGINT arrives; then drain and return 0.

    `metrics`: a shared store for `--workers` (default: this process's own). `workers`: how many processes on this
    host serve the file (the Router's share of local rate limits)."""
    from turnout.router import Router

    try:
        # Compiling: drivers validate their options here, after the loader's checks.
        router = Router(config, workers=workers)
    except ConfigError as exc:
        return report_invalid(path, exc)
    app = create_app(router, config_path=path, env=env, access_log=access_log, metrics=metrics)
    sidecar = app[SIDECAR_KEY]
    runner = make_runner(app, drain_timeout=UNWIND)  # `drain()` does the waiting; the runner only tidies up
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
    if hasattr(signal, "pthread_sigmask"):  # a worker starts with them blocked: handled from now on
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
    if on_ready is not None:
        tracing = router.tracing
        on_ready(bound, {**router.readiness(), "tracing": tracing.description if tracing is not None else "off"})
    tune_gc()
    await stop.wait()
    await drain(runner, sidecar)
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
    raise_open_files_limit()
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
def _worker(path: str, host: str, port: int, access_log: str, workers: int, ready: Any, link: WorkerLink) -> None:
    """One worker process: load the file itself, serve with SO_REUSEPORT, report readiness to the supervisor.

    Started with SIGTERM/SIGINT/SIGHUP blocked (`serve_process` unblocks them once handled); exits with its
    supervisor (parent-death signal, and the parent pipe watched by the loop)."""
    _die_with_parent(link.parent_pid)
    setup_logging()
    config = load_or_report(path)
    if isinstance(config, int):
        sys.exit(config)
    stream = open_access_log(access_log)
    from turnout.server.cells import CellStore

    metrics = Metrics(CellStore.in_directory(link.metrics_dir, link.store), directory=link.metrics_dir)

    def on_ready(bound: int, readiness: Mapping[str, Any]) -> None:
        ready.put((link.index, os.getpid(), readiness))

    async def serve_until_stopped() -> int:
        stop = asyncio.Event()
        orphaned = _watch_parent(stop)
        code = await serve_process(
            path,
            config,
            host,
            port,
            reuse_port=True,
            metrics=metrics,
            access_log=stream,
            on_ready=on_ready,
            stop=stop,
            workers=workers,
        )
        if orphaned.is_set() or os.getppid() != link.parent_pid:  # nobody will remove the metrics directory
            shutil.rmtree(link.metrics_dir, ignore_errors=True)
        return code

    try:
        code = asyncio.run(serve_until_stopped())
    except OSError as exc:
        reason = exc.strerror or exc
        print(f"turnout serve: worker {link.index} cannot listen on {host}:{port}: {reason}", file=sys.stderr)
        code = 1
    sys.exit(code)


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM when the supervisor dies (Linux), and exit now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:
        sys.exit(0)


def _watch_parent(stop: asyncio.Event) -> asyncio.Event:
    """Set `stop` when the pipe multiprocessing keeps to the parent reaches EOF (the parent is gone): the portable
    half of "workers exit when the supervisor dies". Returns an event that tells whether that happened."""
    orphaned = asyncio.Event()
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None) if parent is not None else None
    if sentinel is None:
        return orphaned
    loop = asyncio.get_running_loop()

    def parent_gone() -> None:
        loop.remove_reader(sentinel)
        log.warning("the supervisor is gone; draining and exiting")
        orphaned.set()
        stop.set()

    loop.add_reader(sentinel, parent_gone)
    return orphaned


def _reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) with SO_REUSEPORT so port 0 becomes one concrete port every worker can share."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def supervise(path: str, config: Config, host: str, port: int, workers: int, access_log: str) -> int:
    """Run `workers` processes on one port until SIGTERM/SIGINT; see `supervisor.py` for the exact lifecycle."""
    reserved = _reserve_port(host, port)
    bound = reserved.getsockname()[1]
    supervisor = Supervisor(_worker, (path, host, bound, access_log, workers))
    supervisor.install_signals()
    for index in range(workers):
        supervisor.spawn(index)
    readiness = supervisor.wait_ready(workers)
    reserved.close()
    if readiness is not None:
        print(banner(path, config, readiness, host, bound, workers), file=sys.stderr, flush=True)
    elif supervisor.stop_signal is None:  # not stopped on purpose: a worker died or never became ready
        print("turnout serve: a worker failed to start; stopping.", file=sys.stderr)
        supervisor.failed = True
        supervisor.request_stop()
    return supervisor.run()
