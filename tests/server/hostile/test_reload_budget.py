"""Finding 10: operator-controlled, but still must not hang the server. Templates render under step and size
budgets; a reload is time-limited and a failed one keeps the old graph without blocking the next; SIGTERM exits
even while a reload is stuck. Whatever could hang runs in a child process with a memory limit and a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys

import aiohttp
import pytest

GOOD = """\
version: 1
providers:
  echo: {driver: mock, options: {reply: echo}}
models:
  echo: {provider: echo}
routes:
  chat: {chain: [echo]}
@ROUTES@
server:
  watch: false
@SERVER@
"""
HOSTILE_TEMPLATES = {
    "output": "{% set s='x'*100000 %}{% for a in s %}{{s}}{% endfor %}",
    "nested-loops": "{% set s='x'*1000 %}{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}"
    "{% endfor %}{% endfor %}",
    "doubling": "{% set s='x'*100000 %}" + "{% set s=s~s %}" * 20 + "{{ s|length }}",
    "replace": "{% set s='x'*100000 %}{{ s|replace('x', s)|length }}",
}
ASK = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def good(*, routes: str = "", server: str = "") -> str:
    return GOOD.replace("@ROUTES@", routes).replace("@SERVER@", server)


def hostile(template: str) -> str:
    return good().replace("{reply: echo}", '{reply: "' + template.replace('"', '\\"') + '"}')


def limited() -> None:
    """In the child: at most 2 GB of address space, so a runaway template fails instead of eating the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.parametrize("name", sorted(HOSTILE_TEMPLATES))
def test_hostile_templates_fail_fast_within_their_budget(tmp_path, name):
    """`turnout validate` on a looping or size-multiplying template reports a located sandbox error, quickly."""
    path = tmp_path / "routes.yaml"
    path.write_text(hostile(HOSTILE_TEMPLATES[name]))
    cmd = [sys.executable, "-m", "turnout.cli", "validate", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, preexec_fn=limited)
    assert result.returncode == 1, result.stderr
    assert f"{path}:3:" in result.stderr
    assert "template not allowed in the sandbox" in result.stderr, result.stderr


async def reload(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.post(url + "/admin/reload", timeout=aiohttp.ClientTimeout(total=20)) as resp:
        return resp.status, await resp.json()


async def chat_status(http: aiohttp.ClientSession, url: str, model: str = "chat") -> int:
    async with http.post(url + "/v1/chat/completions", json={**ASK, "model": model}) as resp:
        return resp.status


async def test_a_looping_template_in_a_reload_fails_fast_and_keeps_the_old_graph(tmp_path, serve_process, http):
    """A reload of a file whose template loops for ever fails at once (422); the old routes keep serving and
    the next good file applies."""
    path = tmp_path / "routes.yaml"
    path.write_text(good())
    async with serve_process(path) as server:
        path.write_text(hostile(HOSTILE_TEMPLATES["nested-loops"]))
        status, body = await reload(http, server.url)
        assert status == 422
        assert "steps" in " ".join(body["last_reload_error"]["problems"])
        assert await chat_status(http, server.url) == 200
        path.write_text(good(routes="  more: {chain: [echo]}\n"))
        assert (await reload(http, server.url))[0] == 200
        assert await chat_status(http, server.url, "more") == 200


@contextlib.contextmanager
def fifo_over(path, tmp_path):
    """Replace `path` by a FIFO (reading it blocks until a writer comes); on exit, unblock whoever waits on it."""
    fifo = tmp_path / "blocking.fifo"
    os.mkfifo(fifo)
    os.link(fifo, tmp_path / "keep.fifo")  # still reachable after `path` is replaced again
    os.replace(fifo, path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # ENXIO: nobody is blocked on it
            os.close(os.open(tmp_path / "keep.fifo", os.O_WRONLY | os.O_NONBLOCK))


async def test_a_stuck_reload_times_out_and_the_next_one_applies(tmp_path, server_kit, http):
    """A reload stuck reading the file fails after server.reload_timeout; old graph serves; the next reload works."""
    path = tmp_path / "routes.yaml"
    path.write_text(good(server="  reload_timeout: 1s\n"))
    async with server_kit.serving(path) as s:
        with fifo_over(path, tmp_path):
            status, body = await reload(http, s.url)
            assert status == 422
            assert "reload_timeout" in " ".join(body["last_reload_error"]["problems"])
            assert await chat_status(http, s.url) == 200
            (tmp_path / "next.yaml").write_text(
                good(routes="  more: {chain: [echo]}\n", server="  reload_timeout: 1s\n")
            )
            os.replace(tmp_path / "next.yaml", path)
            assert (await reload(http, s.url))[0] == 200
            assert await chat_status(http, s.url, "more") == 200


async def test_sigterm_exits_while_a_reload_is_stuck(tmp_path, serve_process, http):
    """With a reload stuck reading the file (SIGHUP on a FIFO), SIGTERM still drains and exits 0."""
    path = tmp_path / "routes.yaml"
    path.write_text(good())
    async with serve_process(path) as server:
        with fifo_over(path, tmp_path):
            server.proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.5)  # the reload thread is now blocked opening the FIFO
            assert await chat_status(http, server.url) == 200
            server.proc.send_signal(signal.SIGTERM)
            code = await server.finish(within=20)
    assert code == 0, "".join(server.stderr)
