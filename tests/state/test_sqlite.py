"""The local backend's ledger file: written off the request path, shared by processes, kept across restarts."""

from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest

from turnout.config import StateSpec
from turnout.state import LocalState, UsageKey
from turnout.state.base import StoreError
from turnout.state.meter import KIND
from turnout.state.sqlite import SCHEMA_VERSION, LedgerFileError, SqliteLedger
from turnout.types import Usage

pytestmark = pytest.mark.timeout(60)
KEY = UsageKey("chat", "p/m", "team")


def _state(path: str, **options) -> LocalState:
    return LocalState(StateSpec(ledger=path, sync_interval=0.05), **options)


async def test_spend_survives_a_restart(tmp_path):
    """Spend recorded before a clean shutdown is read back by the next process, usage and budget totals alike."""
    path = str(tmp_path / "ledger.sqlite3")
    first = _state(path)
    await first.start()
    first.record("chat", "p/m", "team", Usage(10, 5), 0.25)
    await first.aclose()
    second = _state(path)
    await second.start()
    try:
        assert second.meter.spent("c:team", KIND["day"]) == 250_000_000
        assert (await second.usage("total"))[KEY].cost_usd == 0.25
    finally:
        await second.aclose()


async def test_the_file_is_written_in_the_background_within_a_second(tmp_path):
    """Nothing waits on the file: a record lands in it by itself within the flush interval."""
    path = str(tmp_path / "ledger.sqlite3")
    state = _state(path)
    await state.start()
    try:
        state.record("chat", "p/m", "team", Usage(1, 1), 0.5)
        for _ in range(100):
            await asyncio.sleep(0.02)
            rows = sqlite3.connect(path).execute("SELECT nusd FROM spend WHERE scope = 'c:team'").fetchall()
            if rows:
                break
        assert rows and all(nusd == 500_000_000 for (nusd,) in rows)
    finally:
        await state.aclose()


async def test_two_processes_add_into_one_file_and_see_each_other(tmp_path):
    """Two backends on one file (two workers): each flushes its deltas, each reads the sum back as its base."""
    path = str(tmp_path / "ledger.sqlite3")
    a, b = _state(path, workers=2), _state(path, workers=2)
    await a.start()
    await b.start()
    try:
        a.record("chat", "p/m", "team", Usage(1, 1), 0.1)
        b.record("chat", "p/m", "team", Usage(1, 1), 0.2)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if a.meter.spent("c:team", 0) == b.meter.spent("c:team", 0) == 300_000_000:
                break
        assert a.meter.spent("c:team", 0) == b.meter.spent("c:team", 0) == 300_000_000
        assert (await a.usage())[KEY].requests == 2
        assert a.budget_share == 1  # the file shares the budget: no 1/N split
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_unwritable_ledger_degrades_and_keeps_spend_in_memory(tmp_path):
    """A file that cannot be opened degrades the backend (readiness says why); spend is kept and flushed once it
    can be."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the ledger's directory should be")
    path = str(blocked / "ledger.sqlite3")
    state = _state(path)
    await state.start()
    try:
        state.record("chat", "p/m", "team", Usage(1, 1), 0.5)
        status = state.status()
        assert status["state"] == "degraded" and "cannot open the ledger" in status["state_error"]
        assert state.meter.spent("c:team", 0) == 500_000_000  # still counted for budgets
        with pytest.raises(StoreError):
            await state.usage()
        blocked.unlink()  # the operator fixes it
        for _ in range(100):
            await asyncio.sleep(0.02)
            if state.status()["state"] == "ok":
                break
        assert state.status()["state"] == "ok"
        assert (await state.usage())[KEY].cost_usd == 0.5
    finally:
        await state.aclose()


def test_a_file_from_a_newer_turnout_is_refused(tmp_path):
    """A ledger in a newer format is not written over: opening it says which formats are involved."""
    path = str(tmp_path / "ledger.sqlite3")
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(LedgerFileError, match="written by a newer turnout"):
        SqliteLedger(path).open()


def test_a_read_only_open_never_creates_the_file(tmp_path):
    """`turnout spend` opens read-only: a missing ledger is an error, not a new empty file."""
    path = str(tmp_path / "missing.sqlite3")
    with pytest.raises(LedgerFileError, match="cannot open the ledger"):
        SqliteLedger(path, readonly=True).open()
    assert not os.path.exists(path)


def test_written_rows_read_back_per_period(tmp_path):
    """Rows of two days: a day reads one, total reads both; spend totals are kept per period id."""
    ledger = SqliteLedger(str(tmp_path / "l.sqlite3"))
    ledger.write({("2025-06-03", "chat", "p/m", "team"): [1, 10, 5, 0, 100, 0, 0]})
    ledger.write(
        {
            ("2025-06-04", "chat", "p/m", "team"): [2, 20, 10, 0, 200, 0, 50],
            ("2025-06-03", "chat", "p/m", "team"): [1, 10, 5, 0, 100, 0, 0],
        }
    )
    assert ledger.usage(("2025-06-04",)) == {KEY: [2, 20, 10, 0, 200, 0, 50]}
    assert ledger.usage(None) == {KEY: [4, 40, 20, 0, 400, 0, 50]}
    base = ledger.spend(("d:2025-06-03", "w:2025-W23", "t", "m:1999-01"))
    assert base == {
        "d:2025-06-03": {"r:chat": 200, "d:p/m": 200, "c:team": 200},
        "w:2025-W23": {"r:chat": 400, "d:p/m": 400, "c:team": 400},
        "t": {"r:chat": 400, "d:p/m": 400, "c:team": 400},
        "m:1999-01": {},
    }
    ledger.close()
