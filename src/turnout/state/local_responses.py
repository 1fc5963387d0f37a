"""Stored responses in sqlite (stdlib `sqlite3`): the local backend's ledger file, or memory.

One table in the ledger file (`state.ledger`), beside the spend ledger's tables:

```
responses(id PRIMARY KEY, chain, client, created, expires, size, rendered, response, input)   one row per response
```

Several processes may share the file (`turnout serve --workers N`): sqlite serialises the writers (a writer waits up
to `BUSY_TIMEOUT` for another) and every reader sees whole rows. Every `PRUNE_EVERY` writes the expired rows are
deleted and the table's size is checked against `max_size`, the rows that expire soonest going first until it fits
(reads never return an expired row meanwhile). Nothing touches the file on the event loop: every operation runs on
one dedicated thread, which opens the file on first use (a sidecar whose clients never store a response never creates
it). The puts that arrive while a write is under way are written together, in one transaction, by the next one: a
busy sidecar pays one thread hand-off and one commit for many answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from turnout.state.base import StoreError
from turnout.state.responses import StoredResponse

log = logging.getLogger("turnout.state")
T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's write to finish
PRUNE_EVERY = 16  # puts between two checks of the table's size
_IN_BATCH = 500  # ids per `IN (...)` (sqlite's variable limit is 999 on old builds)
_COLUMNS = "id, chain, client, created, expires, size, rendered, response, input"
_CREATE = (
    "CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, chain TEXT NOT NULL, client TEXT NOT NULL, "
    "created REAL NOT NULL, expires REAL NOT NULL, size INTEGER NOT NULL, rendered INTEGER NOT NULL, "
    "response BLOB NOT NULL, input BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS responses_by_expiry ON responses (expires)",
)


class LocalResponses:
    """A `ResponseStore` in sqlite at `path` (None: in memory, this process only), bounded by `max_size` bytes."""

    kind = "local"

    def __init__(self, path: str | None, *, max_size: int, wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self.max_size = max_size
        self._wall = wall
        self._db: sqlite3.Connection | None = None  # opened and used on the executor's thread only
        self._executor: ThreadPoolExecutor | None = None
        self._writes = 0
        self._pending: list[tuple[StoredResponse, float, asyncio.Future[None]]] = []  # puts waiting for a write
        self._writer: asyncio.Task[None] | None = None  # writes them, batch by batch, while there are any

    @property
    def where(self) -> str:
        return self.path or "memory"

    # -- ResponseStore ---------------------------------------------------------------------------------------

    async def put(self, record: StoredResponse, ttl: float) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((record, ttl, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_pending(), name="turnout-responses-writer")
        await done

    async def _write_pending(self) -> None:
        """Write what is pending, and what arrives meanwhile, a batch per transaction (a task of its own, so no
        caller waits for other callers' writes)."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._run(self._put_many, [(record, ttl) for record, ttl, _ in batch])
            except StoreError as exc:
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            except BaseException:  # cancelled: the batch's other writers must not wait for ever
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(StoreError("the write was cancelled"))
                raise
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def get(self, response_id: str) -> StoredResponse | None:
        found = await self._run(self._select, [response_id])
        return found.get(response_id)

    async def get_many(self, ids: Sequence[str]) -> list[StoredResponse | None]:
        found = await self._run(self._select, list(ids))
        return [found.get(i) for i in ids]

    async def delete(self, response_id: str) -> bool:
        return await self._run(self._delete, response_id)

    async def aclose(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            with contextlib.suppress(BaseException):
                await writer  # the answers it writes were promised to their clients
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=False)

    # -- on the store's thread --------------------------------------------------------------------------------

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="turnout-responses")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"stored responses in {self.where}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"stored responses in {self.where}: {exc.strerror or exc}") from None

    def _connection(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if self.path is None:
            db = sqlite3.connect(":memory:", isolation_level=None)
        else:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
        for statement in _CREATE:
            db.execute(statement)
        self._db = db
        return db

    def _put_many(self, puts: list[tuple[StoredResponse, float]]) -> None:
        db = self._connection()
        now = self._wall()
        large = False
        db.execute("BEGIN IMMEDIATE")
        try:
            for record, ttl in puts:
                expires = now + ttl
                size = len(record.response) + len(record.input)
                large = large or size > self.max_size // PRUNE_EVERY
                row = (record.id, json.dumps(record.chain), record.client, record.created or now, expires, size)
                db.execute(f"INSERT OR REPLACE INTO responses ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (*row, int(record.rendered), record.response, record.input))  # fmt: skip
                for batch in _batches(record.chain):
                    marks = ", ".join("?" for _ in batch)
                    query = f"UPDATE responses SET expires = max(expires, ?) WHERE id IN ({marks})"
                    db.execute(query, (expires, *batch))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._writes += 1
        if self._writes % PRUNE_EVERY == 1 or large:
            self._prune(db, now)

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        """Drop the expired rows, then the rows that expire soonest until the table holds at most `max_size` bytes."""
        db.execute("DELETE FROM responses WHERE expires <= ?", (now,))
        total = db.execute("SELECT COALESCE(SUM(size), 0) FROM responses").fetchone()[0]
        excess = total - self.max_size
        if excess <= 0:
            return
        doomed: list[str] = []
        for rid, size in db.execute("SELECT id, size FROM responses ORDER BY expires"):
            doomed.append(rid)
            excess -= size
            if excess <= 0:
                break
        for batch in _batches(doomed):
            db.execute(f"DELETE FROM responses WHERE id IN ({', '.join('?' for _ in batch)})", batch)
        log.info("stored responses: dropped %d (state.responses.max_size %d bytes reached)", len(doomed), self.max_size)

    def _select(self, ids: list[str]) -> dict[str, StoredResponse]:
        db = self._connection()
        now = self._wall()
        found: dict[str, StoredResponse] = {}
        for batch in _batches(ids):
            marks = ", ".join("?" for _ in batch)
            query = f"SELECT {_COLUMNS} FROM responses WHERE id IN ({marks}) AND expires > ?"
            for rid, chain, client, created, _expires, _size, rendered, response, data in db.execute(
                query, (*batch, now)
            ):
                chained = tuple(json.loads(chain))
                found[rid] = StoredResponse(rid, bytes(response), bytes(data), chained, client, created, bool(rendered))
        return found

    def _delete(self, response_id: str) -> bool:
        cursor = self._connection().execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return cursor.rowcount > 0

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def __repr__(self) -> str:
        return f"<LocalResponses {self.where}>"


def _batches(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + _IN_BATCH] for i in range(0, len(ids), _IN_BATCH)]
