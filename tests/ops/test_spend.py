"""`turnout spend`: the ledger per client, route and deployment, and each budget's standing, from sqlite or Redis."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from turnout import Router
from turnout.cli import main

HI = [{"role": "user", "content": "hello there"}]
FILE = """\
version: 1
providers: {{a: {{driver: mock}}}}
models: {{m: {{provider: a, price: {{input: 10, output: 10}}}}}}
routes:
  chat: {{chain: [m], budget: {{usd: 10, per: week}}}}
  other: {{chain: [m]}}
clients:
  team: {{keys: [a-long-key-for-the-team-0001], budget: {{usd: 1, per: day}}}}
  batch: {{keys: [a-long-key-for-batch-0002]}}
{state}
"""


def _write(tmp_path: Path, state: str = "") -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(FILE.format(state=state))
    return path


async def _traffic(path: Path) -> None:
    async with Router.from_file(path, env={}) as router:
        for _ in range(2):
            await router.chat(model="chat", messages=HI, max_tokens=20, client="team")
        await router.chat(model="other", messages=HI, max_tokens=20, client="batch")
        await router.chat(model="other", messages=HI, max_tokens=20)


def _spend(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["spend", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def _spend_async(capsys, *argv: str) -> tuple[int, str, str]:
    """The command from a test that runs an event loop itself (the command runs its own, in a thread)."""
    code = await asyncio.to_thread(main, ["spend", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def test_spend_reads_the_sqlite_ledger_a_router_wrote(tmp_path, capsys):
    """After a router closed, spend shows every client's rows (anonymous included), a total and the budgets."""
    path = _write(tmp_path)
    await _traffic(path)
    code, out, err = await _spend_async(capsys, str(path))
    assert code == 0, err
    assert "team         chat   a/m" in out and "(anonymous)  other  a/m" in out and "batch" in out
    assert "client 'team': $" in out and "of $1.00 per day" in out and "resets " in out
    assert "route 'chat': $" in out and "of $10.00 per week" in out
    code, out, _ = await _spend_async(capsys, str(path), "--json", "--client", "team", "--period", "month")
    data = json.loads(out)
    assert code == 0 and data["period"] == "month" and data["client"] == "team"
    assert [(r["route"], r["requests"]) for r in data["rows"]] == [("chat", 2)]
    assert data["total"]["cost_usd"] == pytest.approx(data["budgets"][0]["spent_usd"])
    assert [b["budget"] for b in data["budgets"]] == ["client 'team'"]


async def test_another_day_is_empty_and_an_unknown_client_is_an_error(tmp_path, capsys):
    """--at selects the period of another day; --client must name a declared client (exit 1)."""
    path = _write(tmp_path)
    await _traffic(path)
    code, out, _ = await _spend_async(capsys, str(path), "--at", "2001-01-01", "--json")
    assert code == 0 and json.loads(out)["rows"] == []
    code, _, err = await _spend_async(capsys, str(path), "--client", "nobody")
    assert code == 1 and "no client named 'nobody'" in err and "team, batch" in err
    code, _, err = await _spend_async(capsys, str(path), "--at", "yesterday")
    assert code == 1 and "--at must be a date" in err


def test_no_ledger_yet_is_an_empty_report_and_a_memory_ledger_cannot_be_read(tmp_path, capsys):
    """A missing ledger file means nothing was recorded (exit 0, said on stderr, never created); a ledger kept
    in memory cannot be read from outside (exit 1)."""
    path = _write(tmp_path)
    code, out, err = _spend(capsys, str(path))
    assert code == 0 and "nothing spent" in out and "no spend recorded yet" in err
    assert not (tmp_path / "turnout-ledger.sqlite3").exists()
    path = _write(tmp_path, "state: {ledger: memory}")
    code, _, err = _spend(capsys, str(path))
    assert code == 1 and "kept in memory" in err


async def test_spend_reads_redis_and_survives_a_redis_restart(tmp_path, capsys, redis_factory):
    """With the redis backend the ledger is in Redis: persistent across a Redis restart (AOF), read by spend."""
    redis = redis_factory(persist=True)
    path = _write(tmp_path, f'state: {{backend: redis, url: "{redis.url}", sync_interval: 100ms}}')
    await _traffic(path)
    redis.restart()
    code, out, err = await _spend_async(capsys, str(path), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert sum(r["requests"] for r in data["rows"]) == 4
    assert data["source"] == "redis (key prefix 'turnout:')"
    team = next(b for b in data["budgets"] if b["budget"] == "client 'team'")
    assert team["spent_usd"] == pytest.approx(sum(r["cost_usd"] for r in data["rows"] if r["client"] == "team"))


def test_an_unreachable_redis_is_a_clear_error(tmp_path, capsys):
    """spend against a Redis that does not answer exits 1 saying so (never a partial report)."""
    path = _write(tmp_path, 'state: {backend: redis, url: "redis://127.0.0.1:1/0"}')
    code, _, err = _spend(capsys, str(path))
    assert code == 1 and "cannot read spend from Redis" in err
