"""The local backend's spend ledger on disk: one sqlite file (stdlib `sqlite3`, WAL mode).

Two tables, written together in one transaction per flush, so the file never holds half a flush:

```
usage(day, route, deployment, client, requests, input_tokens, ..., estimated_nusd)   one row per key and UTC day
spend(period, scope, nusd)            budget totals per period id (d:2025-06-04, w:2025-W23, m:2025-06, t) and
                                      scope (c:<client>, r:<route>, d:<deployment>): what budgets read
```

Counters only grow (`INSERT ... ON CONFLICT DO UPDATE SET x = x + excluded.x`), so several processes may flush
into the same file (`turnout serve --workers N`): each adds its own deltas, sqlite serialises the writers (a
writer waits up to `BUSY_TIMEOUT` for another), and every reader sees whole flushes. This class is synchronous:
the backend calls it from one dedicated thread, never on the event loop.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from turnout.state.ledger import COST, METRICS, Rows, UsageKey, add_row
from turnout.state.meter import spend_increments

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000  # how long a flush waits for another process's flush to finish
_COLUMNS = ", ".join(METRICS)
_UPSERT_USAGE = (
    f"INSERT INTO usage (day, route, deployment, client, {_COLUMNS}) "
    f"VALUES (?, ?, ?, ?, {', '.join('?' for _ in METRICS)}) "
    "ON CONFLICT (day, route, deployment, client) DO UPDATE SET "
    + ", ".join(f"{m} = {m} + excluded.{m}" for m in METRICS)
)
_UPSERT_SPEND = (
    "INSERT INTO spend (period, scope, nusd) VALUES (?, ?, ?) "
    "ON CONFLICT (period, scope) DO UPDATE SET nusd = nusd + excluded.nusd"
)
_CREATE = [
    "CREATE TABLE IF NOT EXISTS usage (day TEXT NOT NULL, route TEXT NOT NULL, deployment TEXT NOT NULL, "
    "client TEXT NOT NULL, "
    + ", ".join(f"{m} INTEGER NOT NULL DEFAULT 0" for m in METRICS)
    + ", PRIMARY KEY (day, route, deployment, client)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS spend (period TEXT NOT NULL, scope TEXT NOT NULL, nusd INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (period, scope)) WITHOUT ROWID",
]


class LedgerFileError(Exception):
    """The ledger file cannot be opened, read or written; the message names the file and the reason."""


class SqliteLedger:
    """One connection to a ledger file (see the module docstring). Use it from a single thread."""

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open (creating the file and its directory unless read-only) and check the schema version."""
        if self._db is not None:
            return
        try:
            if self.readonly:
                db = sqlite3.connect(Path(self.path).as_uri() + "?mode=ro", uri=True, isolation_level=None)
            else:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise LedgerFileError(
                    f"{self.path} was written by a newer turnout (ledger format {version}; this one reads "
                    f"{SCHEMA_VERSION})"
                )
            if not self.readonly:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")  # durable at every commit against a process crash
                for statement in _CREATE:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise LedgerFileError(f"cannot open the ledger {self.path}: {_reason(exc)}") from None
        self._db = db

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def cycle(self, rows: Rows, period_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """Add `rows` (one transaction), then read the spend totals of `period_ids`: the meter's new base."""
        self.write(rows)
        return self.spend(period_ids)

    def write(self, rows: Rows) -> None:
        if not rows:
            return
        db = self._connection()
        increments = spend_increments(rows, COST)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT_USAGE, [(*key, *counters) for key, counters in rows.items()])
                db.executemany(
                    _UPSERT_SPEND,
                    [(pid, scope, nusd) for pid, scopes in increments.items() for scope, nusd in scopes.items()],
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LedgerFileError(f"cannot write the ledger {self.path}: {_reason(exc)}") from None

    def spend(self, period_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """Every scope's spend in each of `period_ids`."""
        ids = list(period_ids)
        out: dict[str, dict[str, int]] = {pid: {} for pid in ids}
        try:
            query = f"SELECT period, scope, nusd FROM spend WHERE period IN ({', '.join('?' for _ in ids)})"
            for pid, scope, nusd in self._connection().execute(query, ids):
                out[pid][scope] = nusd
        except sqlite3.Error as exc:
            raise LedgerFileError(f"cannot read the ledger {self.path}: {_reason(exc)}") from None
        return out

    def usage(self, days: tuple[str, ...] | None) -> dict[UsageKey, list[int]]:
        """The usage rows of `days` (None: every day), summed per (route, deployment, client)."""
        query = f"SELECT route, deployment, client, {', '.join(f'SUM({m})' for m in METRICS)} FROM usage"
        args: list[str] = []
        if days is not None:
            query += f" WHERE day IN ({', '.join('?' for _ in days)})"
            args = list(days)
        out: dict[UsageKey, list[int]] = {}
        try:
            for route, deployment, client, *counters in self._connection().execute(
                query + " GROUP BY route, deployment, client", args
            ):
                add_row(out, UsageKey(route, deployment, client), counters)
        except sqlite3.Error as exc:
            raise LedgerFileError(f"cannot read the ledger {self.path}: {_reason(exc)}") from None
        return out

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
