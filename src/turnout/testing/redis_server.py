"""A real `redis-server` for tests, and a TCP proxy that delays traffic ("a slow Redis"). No Redis client needed.

```python
with RedisServer() as redis:                 # a free port on 127.0.0.1, a temporary directory, no persistence
    url = redis.url                            # redis://127.0.0.1:PORT/0
    redis.command("SET", "k", "v")             # a tiny RESP client for assertions
    redis.restart()                            # same port; keeps the dataset only with persist=True
    redis.restart(keep_data=False)             # an empty restart
    redis.stop(); redis.start()                # down, then up again

async with DelayProxy(redis.port, delay=0.2) as proxy:   # every chunk forwarded 200 ms late, both ways
    url = proxy.url

with RedisCluster(masters=3) as cluster:       # a Redis Cluster: every slot served, cluster_state:ok everywhere
    owner = cluster.owner_of("{turnout:}epoch") # the RedisServer that serves the key's slot
    cluster.move_slot(cluster.slot_of("{turnout:}x"), other)  # a resharding of one slot, keys and all
```
`RedisServer(binary=...)` runs another binary (e.g. `valkey-server`); `password=` sets `requirepass` (and puts it
in `url`). Everything binds to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process in its own temporary directory (see the module docstring)."""

    def __init__(
        self,
        *,
        binary: str = "redis-server",
        persist: bool = False,
        port: int | None = None,
        password: str = "",
        cluster: bool = False,
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise FileNotFoundError(f"{binary} is not installed")
        self.binary = path
        self.persist = persist
        self.password = password
        self.cluster = cluster
        self.port = port or free_port()
        self.bus_port = free_port() if cluster else 0
        self.dir = Path(tempfile.mkdtemp(prefix="turnout-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--save", "", "--appendonly", "yes" if self.persist else "no", "--protected-mode", "no"]
        args += ["--daemonize", "no", "--logfile", str(self.dir / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-node-timeout", "2000"]
            args += ["--cluster-require-full-coverage", "no"]  # a stopped node leaves the other slots served
            args += ["--repl-diskless-sync-delay", "0"]  # a new replica syncs at once (the default waits 5 s)
            args += ["--cluster-port", str(self.bus_port)]  # not port + 10000: a free port may be above 55535
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                if self.command("PING") == "PONG":
                    return self
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGKILL with `kill=True`: no shutdown save, like a crash)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill() if kill else proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def restart(self, *, keep_data: bool | None = None) -> None:
        """Stop and start on the same port. The dataset survives when `keep_data` (default: `persist`) and the
        server persists; `keep_data=False` always starts empty."""
        self.stop(kill=not (keep_data if keep_data is not None else self.persist))
        if keep_data is False:
            for path in self.dir.iterdir():
                if path.name != "redis.log":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.start()

    def command(self, *args: Any, timeout: float = 5.0) -> Any:
        """Send one command and return its reply (str, int, list, None); an error reply raises RuntimeError."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            reader = sock.makefile("rb")
            if self.password:
                sock.sendall(_encode(("AUTH", self.password)))
                _read(reader)
            sock.sendall(_encode(args))
            return _read(reader)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster:
    """A Redis Cluster of `masters` redis-servers (no replicas) on free ports, every slot assigned, set up with
    CLUSTER commands (no redis-cli needed). `servers` are `RedisServer`s; `url` names the first node."""

    SLOTS = 16384

    def __init__(self, *, masters: int = 3, binary: str = "redis-server") -> None:
        self.binary = binary
        self.servers = [RedisServer(binary=binary, cluster=True) for _ in range(masters)]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 20.0) -> RedisCluster:
        for server in self.servers:
            server.start()
        step = -(-self.SLOTS // len(self.servers))
        for i, server in enumerate(self.servers):
            server.command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            server.command("CLUSTER", "ADDSLOTSRANGE", i * step, min(self.SLOTS, (i + 1) * step) - 1)
        for server in self.servers[1:]:
            self._meet(server)
        self.wait_until_stable(timeout)
        return self

    def add_replica(self, of: RedisServer, timeout: float = 20.0) -> RedisServer:
        """Start a node that replicates `of` (for a failover: `replica.command("CLUSTER", "FAILOVER", ...)`)."""
        replica = RedisServer(binary=self.binary, cluster=True).start()
        self.servers.append(replica)
        self._meet(replica)
        master = self.node_id(of)
        deadline = time.monotonic() + timeout
        while True:  # the replica must have heard of the master from the cluster bus before it can follow it
            try:
                replica.command("CLUSTER", "REPLICATE", master)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        while "master_link_status:up" not in str(replica.command("INFO", "replication")):
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not sync in time")
            time.sleep(0.05)
        self.wait_until_stable(timeout)
        return replica

    def _meet(self, server: RedisServer) -> None:
        first = self.servers[0]
        server.command("CLUSTER", "MEET", "127.0.0.1", first.port, first.bus_port)

    def wait_until_stable(self, timeout: float = 20.0) -> None:
        """Until every running node says cluster_state:ok, knows every node and agrees on who serves every slot."""
        deadline = time.monotonic() + timeout
        while True:
            running = [server for server in self.servers if server.proc is not None]
            views = [self._slot_view(server) for server in running]
            states = [server.command("CLUSTER", "INFO") for server in running]
            known = f"cluster_known_nodes:{len(self.servers)}"
            if all("cluster_state:ok" in s and known in s for s in states) and all(v == views[0] for v in views):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not become stable in time: {states}")
            time.sleep(0.05)

    def masters(self) -> list[RedisServer]:
        """The running nodes that are masters now (a failover swaps a master and its replica)."""
        running = [server for server in self.servers if server.proc is not None]
        return [server for server in running if "role:master" in str(server.command("INFO", "replication"))]

    def node_id(self, server: RedisServer) -> str:
        return str(server.command("CLUSTER", "MYID"))

    def slot_of(self, key: str) -> int:
        asked = next(server for server in self.servers if server.proc is not None)
        return int(asked.command("CLUSTER", "KEYSLOT", key))

    def owner_of(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot now (as the first live node sees it)."""
        slot = self.slot_of(key)
        asked = next(server for server in self.servers if server.proc is not None)
        for first, last, master, *_ in asked.command("CLUSTER", "SLOTS"):
            if int(first) <= slot <= int(last):
                return next(s for s in self.servers if s.port == int(master[1]))
        raise LookupError(f"no node serves slot {slot}")

    def move_slot(self, slot: int, to: RedisServer) -> None:
        """Reshard one slot to `to`, keys and all (the steps redis-cli --cluster reshard takes), then wait until
        every node agrees."""
        source = next(s for s in self.servers if any(_serves(r, slot, s.port) for r in s.command("CLUSTER", "SLOTS")))
        if source is to:
            return
        to.command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(to))
        while keys := source.command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            source.command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "REPLACE", "KEYS", *keys)
        for server in [to, source, *(s for s in self.masters() if s not in (to, source))]:
            server.command("CLUSTER", "SETSLOT", slot, "NODE", self.node_id(to))
        self.wait_until_stable()

    def _slot_view(self, server: RedisServer) -> list[tuple[int, int, int]]:
        return sorted((int(a), int(b), int(m[1])) for a, b, m, *_ in server.command("CLUSTER", "SLOTS"))

    def __enter__(self) -> RedisCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for server in self.servers:
            server.close()


def _serves(row: list[Any], slot: int, port: int) -> bool:
    return int(row[0]) <= slot <= int(row[1]) and int(row[2][1]) == port


def _encode(args: tuple[Any, ...]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(out)


def _read(reader: Any) -> Any:
    line = reader.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2].decode("utf-8", "replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read(reader) for _ in range(size)]
    raise ConnectionError(f"unexpected reply {line!r}")


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that forwards each chunk `delay` seconds late, in both directions, in order.
    `delay` may be changed while it runs (new chunks use the new value)."""

    def __init__(self, target_port: int, *, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def __aenter__(self) -> DelayProxy:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        for reader, writer in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.get_running_loop().create_task(self._pump(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read chunks as they come; deliver each at its arrival time + delay (so order and pacing are kept)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = loop.create_task(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()
        finally:
            with contextlib.suppress(Exception):
                writer.close()
