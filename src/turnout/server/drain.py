"""Graceful shutdown of one sidecar process, in this order (each step is observable, and the cap is exact):

1. `/readyz` answers 503 `"status": "draining"` from the first moment, and every answer carries
   `Connection: close`, so load balancers and keep-alive clients move on;
2. the listening sockets close: a new connection is refused (with `--workers`, the kernel stops giving this
   worker any);
3. requests in flight, and any request a client still sends on a connection it already had open, may finish
   until `server.drain_timeout` has passed since the start (0: no waiting at all);
4. at the cap, the connections still busy are closed, which cancels their handlers (the client sees the
   connection end, never a truncated answer passed off as complete: a stream gets no `[DONE]`);
5. idle connections are closed, the upstream session is closed, and the caller exits 0.

aiohttp's own `shutdown_timeout` reads 0 as "no limit" and waits up to twice its value (once for handlers, once
after cancelling them), so the waiting is done here and the runner is only left a short `UNWIND` to tidy up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from turnout.server.app import Sidecar

log = logging.getLogger("turnout.server")
UNWIND = 1.0  # seconds for cancelled handlers to finish their `finally` blocks
POLL = 0.02


async def drain(runner: web.AppRunner, sidecar: Sidecar) -> None:
    """Run the shutdown sequence above on a started runner serving `sidecar`'s app."""
    loop = asyncio.get_running_loop()
    cap = sidecar.settings.drain_timeout
    deadline = loop.time() + cap
    sidecar.draining = True
    log.info("shutting down: draining %d in-flight requests (up to %gs)", sidecar.in_flight, cap)
    for site in list(runner.sites):
        await site.stop()
    await _until(lambda: sidecar.in_flight == 0, deadline)
    if sidecar.in_flight and runner.server is not None:
        log.warning("drain_timeout (%gs) reached: cutting %d requests still in flight", cap, sidecar.in_flight)
        for connection in runner.server.connections:
            connection.force_close()  # with handler_cancellation, this cancels the request's handler
        await _until(lambda: sidecar.in_flight == 0, loop.time() + UNWIND)
    await runner.cleanup()
    log.info("stopped")


async def _until(done: Callable[[], bool], deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while not done() and loop.time() < deadline:  # noqa: ASYNC110 - the hot path bumps a counter, notifies nobody
        await asyncio.sleep(min(POLL, max(0.0, deadline - loop.time())))
