"""Operator commands never touch a routing file's shared state: a drill or a credential check writes nothing to
its Redis (the limits, breaker news and usage there belong to the running replicas)."""

from __future__ import annotations

import asyncio

from turnout.cli import main
from turnout.ops.drill.runner import run_drill
from turnout.ops.drill.scenarios import SCENARIOS
from turnout.schema import load_text

FILE = """\
version: 1
defaults: {{retry: {{attempts: 0}}, breaker: {{failure_threshold: 1}}}}
providers: {{a: {{driver: mock}}, b: {{driver: mock}}}}
models:
  m: {{provider: a, limits: {{rpm: 5}}}}
  n: {{provider: b}}
routes: {{chat: {{chain: [m, n]}}}}
state: {{backend: redis, url: "{url}"}}
"""


def test_a_drill_uses_local_state_only(redis_server):
    """Drilling a file whose state is on Redis leaves that Redis empty (no window, breaker, replica or usage)."""
    report = run_drill(load_text(FILE.format(url=redis_server.url), env={}), scenarios=SCENARIOS)
    assert report.to_json()["rows"]
    assert redis_server.command("DBSIZE") == 0
    assert [c for c in redis_server.command("CLIENT", "LIST").splitlines() if "name=turnout-" in c] == []


async def test_a_credential_check_uses_local_state_only(redis_server, tmp_path, capsys):
    """`turnout check` on such a file connects to the providers only, never to the Redis."""
    path = tmp_path / "routes.yaml"
    path.write_text(FILE.format(url=redis_server.url))
    assert await asyncio.to_thread(main, ["check", str(path)]) == 0
    capsys.readouterr()
    assert redis_server.command("DBSIZE") == 0
