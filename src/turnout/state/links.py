"""The redis backend's three connections, and which node they go to.

`gate` carries the request path's gate batches, `bg` the heartbeat, flushes, publishes and reads, `sub` the breaker
news (see `turnout.state.shared`). They all go to one node: the url's, or on a Redis Cluster the node that serves
the key prefix's slot. Every turnout key shares that one slot (`turnout.state.keys`), so there is one owner to find,
not a topology to track: the url may name any node of the cluster, and the MOVED reply to the first heartbeat names
the owner (a `Moved` error from `turnout.state.redis`). After a failover or a resharding the owner answers MOVED in
turn and the backend reconnects to the new one. When the owner cannot be reached any more (it died and a replica
took over), the url's node is asked who serves the slot now, then every other node of the cluster as last seen
(CLUSTER SLOTS, read once per connection, in the background): so even a url naming the node that died finds the
replica that took over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from turnout.config import Secret
from turnout.state.base import StoreError
from turnout.state.redis import Address, Link, Moved

MAX_HOPS = 3  # MOVED redirects one connection attempt follows before it gives up


class Links:
    """The gate, bg and sub links (None until `open`), and the cluster node they go to (see the module docstring)."""

    __slots__ = ("_on_lost", "_on_moved", "_url", "bg", "connect_timeout", "gate", "known", "owner", "sub")

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
        self.known: tuple[Address, ...] = ()  # every node of the cluster, as last seen (CLUSTER SLOTS)

    async def open(self, heartbeat: Callable[[], Awaitable[list[Any]]], log: Callable[..., None]) -> list[Any]:
        """Connect `bg` and take `heartbeat()` on it where the slot was last served, following MOVED; when that node
        cannot be reached, try the url's node, then every other cluster node known. Then connect `gate` and `sub`
        there. Returns the heartbeat; raises StoreError (TimeoutError from a slow heartbeat)."""
        address, tried, hops = self.owner, set[Address | None](), 0
        while True:
            await self.close()
            links = self._make(address)
            try:
                await links[1].open()
                beat = await heartbeat()
            except Moved as moved:
                hops += 1
                if hops > MAX_HOPS:
                    raise
                log("state: %s; connecting there", moved)
                address = moved.address
                continue
            except StoreError:
                tried.add(address)
                untried = [node for node in (None, *self.known) if node not in tried]
                if not untried:
                    raise
                address = untried[0]  # the owner is gone (failed over?): ask another node who serves the slot now
                continue
            self.owner = address
            await links[0].open()
            await links[2].open()
            await self._learn(links[1])
            return beat

    def _make(self, address: Address | None) -> list[Link]:
        url = self._url.reveal()
        self.gate, self.bg, self.sub = links = [
            Link(
                url,
                name=f"turnout-{kind}",
                connect_timeout=self.connect_timeout,
                on_lost=self._on_lost,
                address=address,
                on_moved=self._moved,
            )
            for kind in ("gate", "bg", "sub")
        ]  # owned now: a cancelled connect still closes them
        return links

    async def _learn(self, bg: Link) -> None:
        """Note every node of the cluster (CLUSTER SLOTS), to find the slot's owner when both the last owner and the
        url's node are gone. A Redis that is not a cluster refuses the command: nothing to note."""
        try:
            reply = await asyncio.wait_for(bg.call("CLUSTER", "SLOTS"), self.connect_timeout)
        except (StoreError, TimeoutError):
            return  # not a cluster (or the link just failed: what was seen before still holds)
        nodes: dict[Address, None] = {}
        for row in reply or ():
            for node in row[2:]:
                host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
                nodes[(host or bg.address[0], int(node[1]))] = None
        self.known = tuple(nodes)

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
