"""Operator commands never touch a routing file's shared state: a drill or a credential check writes nothing to
its Redis (the limits, breaker news and usage there belong to the running replicas)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

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


def test_a_drill_exports_no_spans_whatever_the_file_and_environment_say(tmp_path, monkeypatch):
    """A file with a telemetry section, and OTEL_* variables asking for traces: a drill's virtual-time requests send
    nothing to the collector (here, a console exporter that would print every span)."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    text = FILE.replace('state: {{backend: redis, url: "{url}"}}', "telemetry: {{exporter: console}}").format()
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    code = subprocess.run(
        [sys.executable, "-c", "import sys; from turnout.cli import main; sys.exit(main())", "drill", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert code.returncode in (0, 1), code.stderr
    assert '"trace_id"' not in code.stdout and "span_id" not in code.stdout
