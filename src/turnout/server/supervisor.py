"""The parent of `turnout serve --workers N`: starts the workers, restarts crashed ones, and stops them exactly.

- **Start.** Each worker gets a store name in a private metrics directory (`/dev/shm` when there is one), whose
  `.live` marker exists while it runs (see `aggregate.py`). Workers are spawned with SIGTERM, SIGINT and SIGHUP
  *blocked*, and unblock them once their event loop handles them (`serve_process`): a signal that arrives while
  a worker starts waits for it instead of killing it half-started.
- **Crash.** A worker that exits while the supervisor is not stopping is restarted (at most `MAX_RESTARTS` a
  minute; beyond that the supervisor stops everything and exits 1). Its metric totals stay in the directory.
- **Stop.** SIGTERM or SIGINT (the same) asks every running worker to drain (it exits 0 when its drain is done,
  within `server.drain_timeout`). The supervisor exits 0 when every worker that was running then drained
  cleanly, 1 otherwise. A second SIGTERM/SIGINT kills the workers at once (exit 1). SIGHUP is forwarded (reload).
- **Supervisor gone.** Workers die with it: they are spawned with `PR_SET_PDEATHSIG` (Linux) and also watch the
  pipe multiprocessing keeps to their parent, so even a SIGKILLed supervisor leaves no orphan holding the port
  (each worker drains and exits).

Signal handlers only record what arrived; the loop in `run()` acts on it (woken through a wakeup pipe), so no
work happens inside a handler.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from turnout.server.aggregate import live_marker

log = logging.getLogger("turnout.server")
MAX_RESTARTS = 5
READY_TIMEOUT = 60.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# blocked in a worker until it handles them (SIGHUP is POSIX only)
WORKER_SIGNALS = {getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)}


@dataclass(frozen=True, slots=True)
class WorkerLink:
    """What a worker needs to know about its supervisor: its slot, its metrics store and the parent's pid."""

    index: int
    metrics_dir: str
    store: str
    parent_pid: int


def metrics_directory() -> str:
    """A private (0700) directory for the workers' metric cells; in /dev/shm (memory) when it is usable."""
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None
    return tempfile.mkdtemp(prefix="turnout-metrics-", dir=base)


class Supervisor:
    """Owns the worker processes and their lifecycle; `target(*args, link)` is a worker's entry point."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.ready = self.ctx.Queue()
        self.target, self.args = target, args
        self.metrics_dir = metrics_directory()
        self.procs: dict[int, Any] = {}
        self.stores: dict[int, str] = {}
        self.generation = 0
        self.restarts: list[float] = []
        self.stop_signal: int | None = None  # set by a handler; acted on by the loop
        self.kill_requested = False
        self.hup_pending = False
        self.stopping = False
        self.failed = False
        self.draining: dict[int, Any] = {}  # the workers that were running when the stop began
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

    # -- signals (handlers record; the loop acts) ------------------------------------------------------------
    def install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_w)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        else:
            self.kill_requested = True

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.hup_pending = True

    def request_stop(self) -> None:
        """Stop as if SIGTERM had arrived (used when startup fails)."""
        if self.stop_signal is None:
            self.stop_signal = signal.SIGTERM

    # -- workers -----------------------------------------------------------------------------------------------
    def spawn(self, index: int) -> None:
        self.generation += 1
        store = f"w{index}-{self.generation}"
        open(live_marker(self.metrics_dir, store), "x").close()
        link = WorkerLink(index, self.metrics_dir, store, os.getpid())
        proc = self.ctx.Process(target=self.target, args=(*self.args, self.ready, link), name=f"turnout-worker-{index}")
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        try:
            proc.start()  # the child inherits the blocked mask through fork and exec
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.procs[index] = proc
        self.stores[index] = store

    def wait_ready(self, workers: int) -> Mapping[str, Any] | None:
        """The readiness report once every worker listens; None if one died, time ran out or a stop arrived."""
        deadline = time.monotonic() + READY_TIMEOUT
        readiness: Mapping[str, Any] = {}
        started = 0
        while started < workers:
            try:
                _, _, readiness = self.ready.get(timeout=0.1)
                started += 1
            except queue.Empty:
                failed = any(p.exitcode is not None for p in self.procs.values())
                if failed or self.stop_signal is not None or time.monotonic() > deadline:
                    return None
        return readiness

    def run(self) -> int:
        """Supervise until every worker has exited; 0 when the stop found them all running and they drained
        cleanly, 1 after a kill, a crash loop or a failed drain."""
        try:
            while True:
                if self.stop_signal is not None and not self.stopping:
                    self._begin_stop()
                if self.hup_pending:
                    self.hup_pending = False
                    _signal_all(self.procs, signal.SIGHUP)
                if self.kill_requested:
                    self.kill_requested = False
                    log.warning("second stop signal: killing the workers")
                    self.failed = True
                    _signal_all(self.procs, signal.SIGKILL)
                self._reap()
                if not any(p.exitcode is None for p in self.procs.values()):
                    break
                self._wait()
        finally:
            self.cleanup()
        if self.failed:
            return 1
        return 0 if all(p.exitcode == 0 for p in self.draining.values()) else 1

    def _begin_stop(self) -> None:
        self.stopping = True
        self._reap()  # a worker that died before the stop is not part of the drain (nor restarted)
        self.draining = {i: p for i, p in self.procs.items() if p.exitcode is None}
        name = signal.Signals(self.stop_signal or signal.SIGTERM).name
        log.info("%s: draining %d workers", name, len(self.draining))
        _signal_all(self.draining, signal.SIGTERM)

    def _reap(self) -> None:
        """Notice exited workers: retire their metrics store; restart them unless stopping."""
        self._drain_ready_queue()
        for index, proc in list(self.procs.items()):
            if proc.exitcode is None or self._retired(index):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(live_marker(self.metrics_dir, self.stores[index]))
            if self.stopping:
                continue
            if self._may_restart(index, proc):
                self.spawn(index)
            else:
                self.failed = True
                self.request_stop()

    def _retired(self, index: int) -> bool:
        return not os.path.exists(live_marker(self.metrics_dir, self.stores[index]))

    def _may_restart(self, index: int, proc: Any) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60] + [now]
        if len(self.restarts) > MAX_RESTARTS:
            log.error("workers keep crashing (%d restarts in a minute); stopping", len(self.restarts))
            return False
        log.error("worker %d (pid %s) exited with %s; restarting it", index, proc.pid, proc.exitcode)
        return True

    def _wait(self) -> None:
        """Sleep until a worker exits, a signal arrives (wakeup pipe) or 0.5 s pass."""
        waitables = [p.sentinel for p in self.procs.values() if p.exitcode is None] + [self._wake_r]
        multiprocessing.connection.wait(waitables, timeout=0.5)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    def _drain_ready_queue(self) -> None:
        """Read the readiness reports of restarted workers (an unread queue would block their exit)."""
        with contextlib.suppress(queue.Empty, OSError, ValueError):
            while True:
                index, pid, _ = self.ready.get_nowait()
                log.info("worker %d (pid %d) is serving", index, pid)

    def cleanup(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


def _signal_all(procs: Mapping[int, Any], sig: int) -> None:
    for proc in procs.values():
        if proc.exitcode is None and proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
