"""Stored responses of the Responses API: the small store behind `previous_response_id` and `GET /v1/responses/{id}`.

```
ResponseStore ── put(record, ttl)        keep one response with the input it answered (and refresh its chain)
                 get(id) / get_many(ids)  read back (None: unknown or expired)
                 delete(id)
```

A record holds the Response object, the input items of the request it answered (its own, not the history) and
its `chain`: the ids of the responses it continues, oldest first. `rendered` marks a Response turnout wrote itself
(a translating deployment served it): its item ids mean nothing to an upstream, so they are left out when its items
go back into a later request. A conversation is rebuilt from the chain of its
latest response (`conversation`): every record's input followed by its output, oldest first. So each response is
stored once, however long the conversation grows, and reading one costs two round trips at most (its record, then
its chain's). Putting a response that continues a chain refreshes the chain's expiry: a conversation lives as long
as its latest response (`state.responses.ttl`).

Two implementations: `LocalResponses` (sqlite: the ledger file of the local backend, or memory; `local_responses.py`)
and `RedisResponses` (keys `{prefix}resp:<id>`, shared by every replica; `redis_responses.py`). A store that cannot
answer raises StoreError; the sidecar then says so (503), never pretends a response does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from turnout.state.base import StoreError

MAX_CHAIN = 1000  # responses one conversation may chain; a longer one is refused (send the whole input instead)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One kept response. `response` and `input` are JSON (the Response object; the array of the request's own input
    items), stored as the bytes they are served as. `client` is who stored it (only they may read it back)."""

    id: str
    response: bytes
    input: bytes
    chain: tuple[str, ...] = ()  # the responses it continues, oldest first (the previous one last)
    client: str = ""
    created: float = 0.0
    rendered: bool = False  # written by turnout (not an upstream's own Response)

    @property
    def previous(self) -> str | None:
        return self.chain[-1] if self.chain else None

    def items(self) -> list[Any]:
        """Its input items, then its output items: what a request that continues it sees before its own input."""
        inputs = json.loads(self.input)
        output = json.loads(self.response).get("output") or []
        if self.rendered:  # ids turnout made up: an upstream would look them up, and find nothing
            output = [
                {k: v for k, v in item.items() if k != "id"} if isinstance(item, dict) else item for item in output
            ]
        return [*inputs, *output]


class ResponseStore(Protocol):
    """Where stored responses live (see the module docstring). Every method raises StoreError when it cannot answer."""

    kind: str

    async def put(self, record: StoredResponse, ttl: float) -> None:
        """Keep `record` for `ttl` seconds, and keep the responses it continues at least as long."""
        ...

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def get_many(self, ids: Sequence[str]) -> list[StoredResponse | None]:
        """The records of `ids`, in order (None for each one unknown or expired)."""
        ...

    async def delete(self, response_id: str) -> bool:
        """Forget one response; False when there was none."""
        ...

    async def aclose(self) -> None: ...


class ChainBroken(LookupError):
    """A response the conversation continues has expired or was deleted; the message says which."""


async def conversation(store: ResponseStore, response_id: str) -> tuple[StoredResponse, list[Any]] | None:
    """The latest response of a conversation and the conversation's items up to and including it (oldest first);
    None when `response_id` is unknown. ChainBroken when an earlier response is gone; StoreError from the store."""
    head = await store.get(response_id)
    if head is None:
        return None
    records = await store.get_many(head.chain) if head.chain else []
    items: list[Any] = []
    for rid, record in zip(head.chain, records, strict=True):
        if record is None:
            raise ChainBroken(f"response '{rid}', which '{response_id}' continues, has expired or was deleted")
        items += record.items()
    return head, items + head.items()


__all__ = ["MAX_CHAIN", "ChainBroken", "ResponseStore", "StoreError", "StoredResponse", "conversation"]
