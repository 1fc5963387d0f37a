"""The redis backend's three connections, and which node they go to.

`gate` carries the request path's gate batches, `bg` the heartbeat, flushes, publishes and reads, `sub` the breaker
news (see `turnout.state.shared`). They all go to one node: the url's, or on a Redis Cluster the node that serves
the key prefix's slot. Every turnout key shares that one slot (`turnout.state.keys`), so there is one owner to find,
not a topology to track: the url may name any node of the cluster, and the MOVED reply to the first heartbeat names
the owner (a `Moved` error from `turnout.state.redis`). After a failover or a resharding the owner answers MOVED in
turn and the backend reconnects to the new one. An owner that cannot be reached any more (it died and a replica
took over) is forgotten, and the url's node is asked again who serves the slot now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from turnout.config import Secret
from turnout.state.base import StoreError
from turnout.state.redis import Address, Link, Moved

MAX_HOPS = 3  # redirects (MOVED, or an unreachable owner) one connection attempt follows before it gives up


class Links:
    """The gate, bg and sub links (None until `open`), and the cluster node they go to (see the module docstring)."""

    __slots__ = ("_on_lost", "_on_moved", "_url", "bg", "connect_timeout", "gate", "owner", "sub")

    def __init__(
        self,
        url: Secret,
        *,
        connect_timeout: float,
        on_lost: Callable[[str], None],
        on_moved: Callable[[Address], None],
    ) -> None:
        """`on_lost(reason)`: a connection ended by itself; `on_moved(address)`: a MOVED reply (the owner is noted
        here first)."""
        self._url = url
        self._on_lost = on_lost
        self._on_moved = on_moved
        self.connect_timeout = connect_timeout
        self.gate: Link | None = None
        self.bg: Link | None = None
        self.sub: Link | None = None
        self.owner: Address | None = None  # the cluster node serving our key slot (None: the url's node)

    async def open(self, heartbeat: Callable[[], Awaitable[list[Any]]], log: Callable[..., None]) -> list[Any]:
        """Connect `bg`, take `heartbeat()` on it, following MOVED to the owner, then connect `gate` and `sub` there.
        Returns the heartbeat. Raises StoreError (or TimeoutError from the heartbeat)."""
        for hop in range(MAX_HOPS + 1):
            await self.close()
            owner = self.owner
            url = self._url.reveal()
            self.gate, self.bg, self.sub = links = [
                Link(
                    url,
                    name=f"turnout-{kind}",
                    connect_timeout=self.connect_timeout,
                    on_lost=self._on_lost,
                    address=owner,
                    on_moved=self._moved,
                )
                for kind in ("gate", "bg", "sub")
            ]  # owned now: a cancelled connect still closes them
            try:
                await links[1].open()
                beat = await heartbeat()
            except Moved as moved:
                if hop == MAX_HOPS:
                    raise
                log("state: %s; connecting there", moved)
                continue
            except StoreError:
                if owner is None or hop == MAX_HOPS:
                    raise
                self.owner = None  # gone (failed over?): ask the url's node who serves the slot now
                continue
            await links[0].open()
            await links[2].open()
            return beat
        raise StoreError("too many Redis Cluster redirects")  # not reached: the last hop raises

    def _moved(self, address: Address) -> None:
        self.owner = address
        self._on_moved(address)

    def abort(self, reason: str) -> None:
        for link in (self.gate, self.bg, self.sub):
            if link is not None:
                link.abort(reason)

    async def close(self) -> None:
        links = [link for link in (self.gate, self.bg, self.sub) if link is not None]
        self.gate = self.bg = self.sub = None
        for link in links:
            await link.close()
