"""The Redis transport: the only module that imports redis-py (`pip install 'turnout[redis]'`).

It offers two things, and translates every redis-py failure into `StoreError` at this boundary:

- `Link`: one connection used as a pipeline. `call()` writes a command at once (no await, no pool) and returns
  a future; one reader task answers the futures in order. A request's rate-limit check costs one write and
  one parsed reply, shared by every check of the same event-loop iteration (see `turnout.state.shared`).
  `script()` runs a Lua script by its SHA and falls back to sending the source when the server lost its
  script cache (a restart). redis-py's own pool and command layer cost ~2x the CPU per call on this path.
- `Link.subscribe()`: the same kind of connection in pub/sub mode, handing every message to a callback.

On a Redis Cluster a node that does not own the slot of a command's keys answers `MOVED <slot> <host>:<port>`:
that reply fails its call with `Moved` and tells `on_moved` the owner's address, and a link made with `address`
connects there instead of the URL's host and port (same scheme, credentials and options). Every turnout key shares
one slot (`turnout.state.keys`), so one owner serves them all. `ASK`/`TRYAGAIN` (a slot being migrated) fail the
call like any error reply.

Connections never retry by themselves and have no socket timeout: the caller bounds every wait (op_timeout)
and decides what a failure means. Messages never contain the URL's password.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.connection import Connection, ConnectionPool, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, MovedError, NoScriptError, RedisError, ResponseError, TryAgainError

from turnout.state.base import StoreError

Reply = Any  # a decoded RESP value: bytes, int, list, None
Address = tuple[str, int]  # a Redis Cluster node's host and port


class _NoScript(StoreError):
    """The server does not have the script (its cache was emptied by a restart): send the source."""


class Moved(StoreError):
    """A Redis Cluster node answered MOVED: the keys' slot is served by the node at `address`."""

    def __init__(self, message: str, address: Address) -> None:
        super().__init__(message)
        self.address = address


class Script:
    """A Lua script shipped beside this module (`scripts/<name>.lua`)."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = files("turnout.state").joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


class Link:
    """One pipelined Redis connection (see the module docstring). `name` shows in CLIENT LIST."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        connect_timeout: float,
        on_lost: Callable[[str], None] | None = None,
        address: Address | None = None,
        on_moved: Callable[[Address], None] | None = None,
    ) -> None:
        """`on_lost(reason)` is called when the connection ends by itself (not by `abort`/`close`); `address`
        replaces the URL's host and port (a cluster node); `on_moved(address)` hears every MOVED reply."""
        self._secrets = _passwords(url)
        self._on_lost = on_lost
        self._on_moved = on_moved
        self._pool = ConnectionPool.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=None,
            socket_keepalive=True,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0),
            client_name=name,
            protocol=2,  # RESP2 on every redis-py version: pub/sub messages arrive as replies, not pushes
        )
        if address is not None:
            if self._pool.connection_class is UnixDomainSocketConnection:  # a cluster node is reached over TCP
                self._pool.connection_class = Connection
                self._pool.connection_kwargs.pop("path", None)
            self._pool.connection_kwargs.update(host=address[0], port=address[1])
        self.address: Address = (
            self._pool.connection_kwargs.get("host", "localhost"),
            int(self._pool.connection_kwargs.get("port", 6379)),
        )
        self._conn: Any = None
        self._writer: Any = None
        self._waiting: deque[asyncio.Future[Reply]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._on_message: Callable[[bytes], None] | None = None
        self._dropped = False  # abort()/close() was called: a connect still under way must not come alive
        self.closed_reason: str | None = "not connected"

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def open(self) -> None:
        """Connect (bounded by the connect timeout). Raises StoreError."""
        conn = self._pool.make_connection()
        try:
            await conn.connect()
        except (RedisError, OSError) as exc:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise StoreError(self._safe(f"cannot connect: {exc}")) from None
        if self._dropped:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise StoreError(self.closed_reason or "closed")
        self._conn = conn
        self._writer = conn._writer  # written directly: one syscall per call, no await (see the module docstring)
        self.closed_reason = None
        self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"turnout-redis-{conn.client_name}")

    def call(self, *args: Any) -> asyncio.Future[Reply]:
        """Send one command now; the future gets its reply, or StoreError (also for an error reply)."""
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            raise StoreError(self.closed_reason or "connection closed")
        writer.writelines(self._conn.pack_command(*args))
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        return future

    def script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Reply]:
        """EVALSHA, or EVAL when the server does not know the script (a restarted server): one future either way."""
        result: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        first = self.call("EVALSHA", script.sha, len(keys), *keys, *args)

        def answered(done: asyncio.Future[Reply]) -> None:
            if result.done():
                return
            error = done.exception() if not done.cancelled() else StoreError("cancelled")
            if error is None:
                result.set_result(done.result())
            elif isinstance(error, _NoScript):
                try:
                    again = self.call("EVAL", script.source, len(keys), *keys, *args)
                except StoreError as exc:
                    result.set_exception(exc)
                    return
                again.add_done_callback(lambda f: _copy(f, result))
            else:
                result.set_exception(error)

        first.add_done_callback(answered)
        return result

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> None:
        """Put this (open) link in pub/sub mode on `channel`; every message's data goes to `on_message`."""
        self._on_message = on_message
        confirmed = self.call("SUBSCRIBE", channel)
        await confirmed

    async def _read(self) -> None:
        conn = self._conn
        try:
            while True:
                try:
                    reply = await conn.read_response()
                except NoScriptError:
                    self._answer(None, _NoScript("no such script"))
                    continue
                except MovedError as exc:
                    self._moved(exc)
                    continue
                except (AskError, TryAgainError) as exc:
                    self._answer(None, StoreError(f"the key slot is being migrated between cluster nodes ({exc})"))
                    continue
                except ResponseError as exc:
                    self._answer(None, StoreError(self._safe(f"error reply: {exc}")))
                    continue
                if self._on_message is not None and _is_message(reply):
                    self._on_message(reply[2])
                    continue
                self._answer(reply, None)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError, Exception) as exc:  # anything that ends the connection ends the link
            reason = self._safe(f"connection lost: {exc}")
            self._fail(reason)
            if self._on_lost is not None:
                self._on_lost(reason)

    def _moved(self, error: MovedError) -> None:
        # An endpoint the node does not know comes as ":port": the same host, then.
        address = (error.host or self.address[0], error.port)
        where = f"{address[0]}:{address[1]}"
        self._answer(None, Moved(f"Redis Cluster: key slot {error.slot_id} is served by {where}", address))
        if self._on_moved is not None:
            self._on_moved(address)

    def _answer(self, reply: Reply, error: StoreError | None) -> None:
        if not self._waiting:
            return  # a reply nobody waits for (its waiter gave up): nothing to do
        future = self._waiting.popleft()
        if future.done():
            return
        if error is None:
            future.set_result(reply)
        else:
            future.set_exception(error)

    def _fail(self, reason: str) -> None:
        """Close the connection and fail every waiting call (their replies can no longer be matched)."""
        self.closed_reason = reason
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.transport.abort()
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(StoreError(reason))
                future.exception()  # retrieved: nobody may be waiting any more

    def abort(self, reason: str) -> None:
        """Drop the connection now (a late reply must not answer the wrong call); the reader ends."""
        self._dropped = True
        self._fail(reason)
        reader, self._reader = self._reader, None
        if reader is not None and reader is not _current_task():
            reader.cancel()

    async def close(self) -> None:
        self._dropped = True
        self._fail("closed")
        reader, self._reader = self._reader, None
        if reader is not None and reader is not _current_task():
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
        await self._pool.aclose()

    def _safe(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message


def _copy(source: asyncio.Future[Reply], target: asyncio.Future[Reply]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.set_exception(StoreError("cancelled"))
    elif source.exception() is not None:
        target.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        target.set_result(source.result())


def _is_message(reply: Reply) -> bool:
    return isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message"


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _passwords(url: str) -> tuple[str, ...]:
    """The URL's password as written and decoded (either may show up in a driver's message)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return ()
    return tuple({password, unquote(password)}) if password else ()


def version_of(reply: Reply) -> str:
    """The server's version from an INFO server reply (for logs)."""
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    for line in text.splitlines():
        if line.startswith(("redis_version:", "valkey_version:")):
            return line.split(":", 1)[1].strip()
    return "unknown"
