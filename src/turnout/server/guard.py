"""`server.client_timeout` for request headers: a connection whose request does not arrive in time is closed.

aiohttp (3.9-3.14) has no header read timeout of its own: its `keepalive_timeout` closes a connection that waits
for a request, but it is one timer for two things, the idle time between requests (which must stay long: a load
balancer that reuses a connection the server just closed turns it into a 502) and a request that is being sent.
So each connection's request handler (aiohttp's `RequestHandler`, subclassed here) arms a deadline when a request
is due and has not fully arrived: at accept, and when bytes of a later request arrive on a kept-alive connection
that waits for one (body bytes of a request being handled do not count). The deadline is cleared once aiohttp
has parsed a request's headers (its request count moved). A sweeper task
closes connections past their deadline every `tick` (a quarter of the timeout, at most a second), so the hot path
pays one comparison per chunk received and no timer per request. The body is the handler's business
(`turnout.server.body` reads it under the same timeout).

This module is the only one that touches aiohttp's protocol internals (`RequestHandler._request_count` and
`._waiter`, and the `web.Server` attributes a subclass needs to build handlers); the tests in
`tests/server/test_backpressure.py` fail if an aiohttp release changes them. A request whose first bytes arrive
pipelined behind a complete one, and then nothing more, is left to aiohttp's keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("turnout.server")


class ClientGuard:
    """Deadlines of the connections now receiving a request; `sweep()` closes the late ones."""

    def __init__(self, timeout: float, *, on_close: Callable[[], None] | None = None) -> None:
        self.timeout = timeout
        self.on_close = on_close
        self.receiving: dict[GuardedHandler, float] = {}
        self.closed = 0
        self._task: asyncio.Task[None] | None = None

    def arm(self, handler: GuardedHandler, now: float) -> None:
        self.receiving[handler] = now + self.timeout

    def disarm(self, handler: GuardedHandler) -> None:
        self.receiving.pop(handler, None)

    def sweep(self, now: float) -> int:
        """Close every connection whose request is overdue; returns how many."""
        late = [handler for handler, deadline in self.receiving.items() if deadline <= now]
        for handler in late:
            self.receiving.pop(handler, None)
            handler.force_close()
            if self.on_close is not None:
                self.on_close()
        self.closed += len(late)
        return len(late)

    @property
    def tick(self) -> float:
        return min(1.0, max(0.01, self.timeout / 4))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="turnout-client-guard")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            closed = self.sweep(loop.time())
            if closed:
                log.info("closed %d connections that did not send a request within %.3gs", closed, self.timeout)


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol, reporting to a `ClientGuard` while a request is being received."""

    __slots__ = ("_guard", "_parsed")

    def __init__(self, manager: web.Server, *, guard: ClientGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._parsed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._guard.arm(self, self._loop.time())  # the first request is due from the accept on

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        parsed = self._request_count
        if parsed != self._parsed:  # a request's headers are complete: its handler reads the body
            self._parsed = parsed
            self._guard.disarm(self)
        elif self._waiter is not None and self not in self._guard.receiving:
            # waiting for a request and part of one came (not body bytes of a request being handled)
            self._guard.arm(self, self._loop.time())

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.disarm(self)
        super().connection_lost(exc)


class GuardedServer(web.Server):
    """aiohttp's low-level server, building `GuardedHandler`s."""

    guard: ClientGuard

    @classmethod
    def adopt(cls, server: web.Server, guard: ClientGuard) -> GuardedServer:
        """A GuardedServer with everything `server` (made by the app) was built with."""
        adopted = cls(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
        adopted.guard = guard
        return adopted

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, guard=self.guard, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections are watched by `guard` (the Sidecar's)."""

    def __init__(self, app: web.Application, *, guard: ClientGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._guard = guard

    async def _make_server(self) -> web.Server:
        return GuardedServer.adopt(await super()._make_server(), self._guard)
