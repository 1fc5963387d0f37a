"""`turnout plan NEW` against a running sidecar: the same plan as two files, the admin key, clear failures."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from turnout import Router
from turnout.cli import main
from turnout.schema import load_file
from turnout.server.app import create_app, make_runner

CASES = Path(__file__).parent / "plan_cases"


@contextlib.asynccontextmanager
async def sidecar(path: Path) -> AsyncIterator[str]:
    """The real sidecar app serving `path` on 127.0.0.1:0 (no access log, no file watching, and its spend ledger in
    memory: a test never writes a ledger file beside the repository's case files)."""
    config = load_file(path)
    config = dataclasses.replace(config, state=dataclasses.replace(config.state, ledger=None))
    app = create_app(Router(config), config_path=str(path), watch=False)
    runner = make_runner(app, drain_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def plan(capsys, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["plan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", ["health_kept_reset", "retry_breaker", "strategy_weights"])
async def test_a_plan_against_the_sidecar_equals_the_two_file_plan(case, capsys, monkeypatch):
    """The changes and health verdicts (credentials included, via salted digests) are those of the two-file plan."""
    monkeypatch.chdir(CASES / case)
    async with sidecar(CASES / case / "old.yaml") as url:
        code, out, err = await plan(capsys, "new.yaml", "--server", url, "--json")
    assert (code, err) == (2, "")
    remote = json.loads(out)
    local = json.loads((CASES / case / "expected.json").read_text())
    assert remote["old"] == str(CASES / case / "old.yaml")
    assert (remote["changes"], remote["health"], remote["warnings"]) == (local["changes"], local["health"], [])


async def test_the_admin_key_comes_from_the_environment(capsys, monkeypatch, tmp_path):
    """Without $TURNOUT_ADMIN_KEY the sidecar refuses (exit 1, says which variable); with it the plan runs."""
    old = (CASES / "chain_reordered" / "old.yaml").read_text() + "server:\n  admin_keys: [admin-key-test]\n"
    new = (CASES / "chain_reordered" / "new.yaml").read_text() + "server:\n  admin_keys: [admin-key-test]\n"
    (tmp_path / "old.yaml").write_text(old)
    (tmp_path / "new.yaml").write_text(new)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TURNOUT_ADMIN_KEY", raising=False)
    async with sidecar(tmp_path / "old.yaml") as url:
        code, out, err = await plan(capsys, "new.yaml", "--server", url)
        assert (code, out) == (1, "")
        assert f"the sidecar at {url} refused /admin/config: HTTP 401" in err and "(set $TURNOUT_ADMIN_KEY)" in err
        monkeypatch.setenv("TURNOUT_ADMIN_KEY", "admin-key-test")
        code, out, err = await plan(capsys, "new.yaml", "--server", url)
        assert (code, err) == (2, "")
        assert "chain: gpt-big → haiku → echo  ⇒  haiku → gpt-big → echo (reordered)" in out
        assert "kept     4: openai/gpt-mini, openai/gpt-big, anthropic/haiku, echo/echo" in out  # keyed digests agree
        assert "admin-key-test" not in out
        monkeypatch.setenv("ANOTHER_ADMIN_KEY", "admin-key-other")
        code, _, err = await plan(capsys, "new.yaml", "--server", url, "--key-env", "ANOTHER_ADMIN_KEY")
    assert code == 1 and "HTTP 401" in err


async def test_a_provider_disabled_only_here_is_flagged(capsys, monkeypatch):
    """A provider the sidecar runs but this shell's environment disables gets a warning, not silence."""
    monkeypatch.chdir(CASES / "providers_server")
    async with sidecar(CASES / "providers_server" / "old.yaml") as url:
        code, out, _ = await plan(capsys, "new.yaml", "--server", url)
    assert code == 2
    assert "warning: provider 'anthropic' is enabled on the sidecar but disabled here" in out


async def test_an_unreachable_sidecar_is_a_clear_error(capsys, monkeypatch, unused_tcp_port):
    """Nobody listening: exit 1 with 'cannot reach the sidecar', never a traceback."""
    monkeypatch.chdir(CASES / "prices")
    code, out, err = await plan(capsys, "new.yaml", "--server", f"http://127.0.0.1:{unused_tcp_port}")
    assert (code, out) == (1, "")
    assert err.startswith(f"turnout plan: cannot reach the sidecar at http://127.0.0.1:{unused_tcp_port}: ")
    assert "Traceback" not in err


async def test_a_server_that_is_not_a_sidecar_is_a_clear_error(capsys, monkeypatch):
    """A 200 that is not a snapshot (some other service on the port) exits 1 saying so."""

    async def other(request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    app = web.Application()
    app.router.add_get("/admin/config", other)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    monkeypatch.chdir(CASES / "prices")
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        code, _, err = await plan(capsys, "new.yaml", "--server", url)
    finally:
        await runner.cleanup()
    assert code == 1
    assert f"the sidecar at {url} sent something that is not a turnout snapshot" in err
