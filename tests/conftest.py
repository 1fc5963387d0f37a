"""Session-wide test provisioning: external binaries the tests run for real (redis-server; chromium later).

`require_binary(name, apt_package)` (as the `binaries` fixture) returns the binary's path. When it is missing it
is installed once per test session through the system package manager (`apt-get install -y PACKAGE`, when
running as root with apt available), under a file lock so parallel xdist workers install it once. When it is
still missing the test is skipped with the reason, except under `CI=true`, where that is a failure: CI must
never pass by quietly skipping what it was meant to test. `TURNOUT_TEST_NO_INSTALL=1` turns installing off.

Fixtures for Redis: `redis_server` (a started `turnout.testing.redis_server.RedisServer`, stopped afterwards)
and `redis_factory` (start several, or with `persist=True`); `redis_cluster`, a 3-master Redis Cluster shared by
one test module (tests use their own key prefixes). For tracing: `spans`, an OpenTelemetry SDK provider
(pass it as `Router(..., tracer_provider=spans.provider)`) whose finished spans are kept in memory.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from turnout.testing.redis_server import RedisCluster, RedisServer

pytest_plugins = ["pytester"]  # tests/test_provisioning.py runs this file's provisioning in a scratch session
INSTALL_TIMEOUT = 600  # seconds for one apt-get run

# Hypothesis keeps its example database (failures it replays next run) and caches in ./.hypothesis by default: in
# the checkout. A run leaves nothing there: they go to a directory of this checkout's own under the system temp dir
# (kept between runs, so a found failure is still replayed first), unless HYPOTHESIS_STORAGE_DIRECTORY says where.
_CHECKOUT = hashlib.sha256(str(Path(__file__).resolve().parent).encode()).hexdigest()[:12]
_HYPOTHESIS_HOME = Path(tempfile.gettempdir()) / f"turnout-hypothesis-{_CHECKOUT}"
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(_HYPOTHESIS_HOME))


@dataclass(frozen=True)
class Provision:
    """What provisioning found: the binary's path, or why it is missing (and what was tried)."""

    path: str | None
    reason: str = ""


def provision(name: str, apt_package: str, lock_dir: Path, *, install: bool = True) -> Provision:
    """Find `name`, installing `apt_package` once (across xdist workers: a lock and a marker file) if allowed."""
    found = shutil.which(name)
    if found or not install:
        return Provision(found, "" if found else f"{name} is not installed")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return Provision(None, f"{name} is not installed (install {apt_package}; no root or no apt-get to do it)")
    lock_dir.mkdir(parents=True, exist_ok=True)
    marker = lock_dir / f"install-{apt_package}.tried"
    with open(lock_dir / f"install-{apt_package}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists() and shutil.which(name) is None:
            marker.write_text(_apt_install(apt_package))
        found = shutil.which(name)
    if found:
        return Provision(found)
    return Provision(
        None, f"{name} is not installed and `apt-get install -y {apt_package}` failed: {marker.read_text()}"
    )


def _apt_install(package: str) -> str:
    """Run apt-get (update first: a fresh machine has no package lists); returns the tail of its output."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    output = ""
    for args in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", package]):
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=env, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(args)}: {exc}"
        output = (done.stdout + done.stderr)[-500:]
        if done.returncode != 0 and args[1] == "install":
            return f"exit {done.returncode}: {output}"
    return output


def missing(reason: str) -> None:
    """Skip with the reason; fail instead under CI=true (a missing dependency must not pass as a green run)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and a required binary is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], str]:
    """`binaries(name, apt_package)` -> path of an installed binary (installed on demand; see the module doc)."""
    lock_dir = tmp_path_factory.getbasetemp().parent / "turnout-provision"  # shared by xdist workers
    cache: dict[str, Provision] = {}

    install = os.environ.get("TURNOUT_TEST_NO_INSTALL", "") not in ("1", "true")

    def require(name: str, apt_package: str) -> str:
        if name not in cache:
            cache[name] = provision(name, apt_package, lock_dir, install=install)
        found = cache[name]
        if found.path is None:
            missing(found.reason)
        assert found.path is not None
        return found.path

    return require


@pytest.fixture
def redis_factory(binaries: Callable[[str, str], str]) -> Iterator[Callable[..., RedisServer]]:
    """`redis_factory(persist=False, password="")` starts a redis-server on a free port in a temp dir; all of them
    stop at the end."""
    binary = binaries("redis-server", "redis-server")
    started: list[RedisServer] = []

    def start(*, persist: bool = False, password: str = "") -> RedisServer:
        server = RedisServer(binary=binary, persist=persist, password=password).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A started redis-server (no persistence) for one test."""
    return redis_factory()


@pytest.fixture(scope="module")
def redis_cluster(binaries: Callable[[str, str], str]) -> Iterator[RedisCluster]:
    """A Redis Cluster of 3 masters on free ports (every slot served), shared by the test module, stopped after."""
    with RedisCluster(masters=3, binary=binaries("redis-server", "redis-server")) as cluster:
        yield cluster


class Spans:
    """The finished spans of one test, with helpers to walk the tree."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    @property
    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def roots(self) -> list[ReadableSpan]:
        ids = {s.context.span_id for s in self.all}
        return [s for s in self.all if s.parent is None or s.parent.span_id not in ids]

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        kids = [s for s in self.all if s.parent is not None and s.parent.span_id == span.context.span_id]
        return sorted(kids, key=lambda s: s.start_time or 0)

    def events(self, span: ReadableSpan, name: str) -> list[dict[str, Any]]:
        return [dict(e.attributes or {}) for e in span.events if e.name == name]

    def clear(self) -> None:
        self.exporter.clear()


@pytest.fixture
def spans() -> Iterator[Spans]:
    recorded = Spans()
    yield recorded
    recorded.provider.shutdown()
