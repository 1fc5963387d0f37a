"""Stored responses in Redis, shared by every worker and replica on it (the `redis` backend).

One hash per response, `{prefix}resp:<id>` (in the key prefix's hash tag, like every turnout key), with the fields
r (the Response JSON), i (the input items JSON), c (the chain JSON), o (the client), t (created, seconds) and g ("1"
when turnout rendered the Response), and the ttl as its expiry. `scripts/responses.lua` writes one and extends its
chain's expiry in one atomic call; reads are one HMGET per record, pipelined on the backend's background connection
and bounded by `STORE_TIMEOUT`.

Redis trouble never fails the request that produced a response: while the backend is degraded (or a call fails)
responses are kept in this process's memory instead (`LocalResponses` in memory, bounded by max_size), and reads
look there after Redis. A read that finds nothing while Redis cannot be asked raises StoreError: "not found" would
be a lie when the response may well be in Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from turnout.state.base import StoreError
from turnout.state.local_responses import LocalResponses
from turnout.state.redis import Link, Script
from turnout.state.responses import StoredResponse

STORE_TIMEOUT = 2.0  # seconds a read or write of stored responses may take before Redis counts as unavailable
_FIELDS = ("r", "i", "c", "o", "t", "g")


class RedisResponses:
    """A `ResponseStore` on the `redis` backend's connection, with a memory fallback (see the module docstring)."""

    kind = "redis"

    def __init__(self, backend: Any, *, max_size: int) -> None:
        """`backend` is the RedisState: its `keys`, and `store_link()` (the background link while healthy)."""
        self.backend = backend
        self.script = Script("responses")
        self.fallback = LocalResponses(None, max_size=max_size)

    @property
    def max_size(self) -> int:
        return self.fallback.max_size

    @max_size.setter
    def max_size(self, value: int) -> None:
        self.fallback.max_size = value

    def _link(self) -> Link | None:
        return self.backend.store_link()

    async def put(self, record: StoredResponse, ttl: float) -> None:
        link = self._link()
        if link is not None:
            keys = [self.backend.keys.response(record.id), *(self.backend.keys.response(r) for r in record.chain)]
            chain = json.dumps(record.chain)
            fields = (record.response, record.input, chain, record.client, repr(record.created), int(record.rendered))
            try:
                await asyncio.wait_for(link.script(self.script, keys, (int(ttl * 1000), *fields)), STORE_TIMEOUT)
                return
            except (StoreError, TimeoutError):
                pass  # kept in memory instead: the answer it belongs to must not fail
        await self.fallback.put(record, ttl)

    async def get(self, response_id: str) -> StoredResponse | None:
        return (await self.get_many([response_id]))[0]

    async def get_many(self, ids: Sequence[str]) -> list[StoredResponse | None]:
        found: list[StoredResponse | None] = [None] * len(ids)
        asked = False
        link = self._link()
        if link is not None and ids:
            try:
                futures = [link.call("HMGET", self.backend.keys.response(rid), *_FIELDS) for rid in ids]
                replies = await asyncio.wait_for(asyncio.gather(*futures), STORE_TIMEOUT)
                found = [_record(rid, reply) for rid, reply in zip(ids, replies, strict=True)]
                asked = True
            except (StoreError, TimeoutError):
                pass
        if all(record is not None for record in found):
            return found
        local = await self.fallback.get_many(ids)
        found = [record or mine for record, mine in zip(found, local, strict=True)]
        if not asked and any(record is None for record in found):
            raise StoreError(f"Redis is unavailable ({self.backend.last_error or 'not connected'})")
        return found

    async def delete(self, response_id: str) -> bool:
        deleted = await self.fallback.delete(response_id)
        link = self._link()
        if link is None:
            if deleted:
                return True
            raise StoreError(f"Redis is unavailable ({self.backend.last_error or 'not connected'})")
        try:
            count = await asyncio.wait_for(link.call("DEL", self.backend.keys.response(response_id)), STORE_TIMEOUT)
        except TimeoutError:
            raise StoreError("no answer from Redis in time") from None
        return bool(count) or deleted

    async def aclose(self) -> None:
        await self.fallback.aclose()

    def __repr__(self) -> str:
        return f"<RedisResponses {self.backend.keys.tag}resp:*>"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(response_id: str, reply: Any) -> StoredResponse | None:
    if not isinstance(reply, list) or len(reply) != len(_FIELDS) or reply[0] is None:
        return None
    response, data, chain, client, created, rendered = reply
    try:
        return StoredResponse(
            response_id,
            bytes(response),
            bytes(data or b"[]"),
            tuple(json.loads(chain)) if chain else (),
            _text(client) if client is not None else "",
            float(_text(created)) if created is not None else 0.0,
            rendered is not None and _text(rendered) == "1",
        )
    except (ValueError, TypeError):
        return None  # a hash that is not one of ours: as good as absent
