"""`turnout drill`: the repo's routes.yaml passes; a deliberately weak file fails exactly where its policy is weak.

Every drill here runs the real Router against loopback fakes on a virtual-time loop, so a 60-second deadline costs
milliseconds while each row keeps its policy-time wall clock.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from turnout.errors import ErrorClass
from turnout.ops.drill.claims import MID_STREAM_RULES, Claim, claim
from turnout.ops.drill.runner import run_drill
from turnout.ops.drill.scenarios import BY_NAME, SCENARIOS
from turnout.router.compile import compile_graph
from turnout.schema import load_file, load_text

ROOT = Path(__file__).resolve().parents[2]
WEAK = Path(__file__).parent / "drill_cases" / "weak.yaml"
KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY", "OLLAMA_URL")
MID_STREAM = {"stream-cut", "stream-stall", "malformed-event"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    return subprocess.run(
        [sys.executable, "-m", "turnout.cli", "drill", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def by_key(rows) -> dict[tuple[str, str, str], dict]:
    return {(r["route"], r["scenario"], r["mode"]): r for r in rows}


@pytest.fixture(scope="module")
def repo_drill() -> tuple[int, dict, str]:
    """The whole drill of the repo's routes.yaml, run once through the real command (no keys set)."""
    result = cli("routes.yaml", "--json")
    return result.returncode, json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module")
def weak_rows() -> dict[tuple[str, str, str], dict]:
    report = run_drill(load_file(WEAK), scenarios=SCENARIOS)
    return by_key(report.to_json()["rows"])


def test_the_repo_routes_pass_every_scenario(repo_drill):
    """routes.yaml exits 0: chat and tools rescue everything but refusals and mid-stream cuts (mid_stream: error),
    smart continues cut streams on a prefill model; the mock-primary routes (echo, drill) and the embeddings route
    are skipped. No progress line off a TTY."""
    code, data, stderr = repo_drill
    assert (code, stderr) == (0, "")
    assert data["ok"] is True
    rows = by_key(data["rows"])
    for route in ("chat", "smart", "tools"):
        for mode in ("plain", "stream"):
            assert rows[(route, "baseline", mode)]["result"] == "ok"
            for scenario in SCENARIOS:
                row = rows[(route, scenario.name, mode)]
                clean = scenario.name == "content-filter" or (
                    route != "smart" and mode == "stream" and scenario.name in MID_STREAM
                )
                assert row["result"] == ("clean error" if clean else "rescued"), row
    assert rows[("echo", "baseline", "plain")]["served_by"] == "echo/echo"
    assert rows[("echo", "baseline", "plain")]["result"] == "ok"
    assert rows[("echo", "baseline", "stream")]["result"] == "ok"
    skipped = rows[("echo", "all", "stream")]
    assert (skipped["result"], skipped["title"]) == ("skipped", "every scenario")
    assert skipped["reason"] == "its primary echo/echo is the in-process mock provider: no provider fault to drill"
    assert rows[("drill", "all", "stream")]["result"] == "skipped"  # the drill route's primary is a mock too
    embed = rows[("embed", "baseline", "plain")]
    assert (embed["result"], embed["reason"]) == (
        "skipped",
        "a route of kind embeddings: the drill's scenarios are chat requests",
    )
    assert data["summary"] == {"ok": 10, "rescued": 66, "clean error": 12, "failed": 0, "skipped": 6}


def test_repo_rows_carry_policy_time_and_reasons(repo_drill):
    """Waits take their policy time (30 s attempt timeout, 20 s first-token timeout, a 5 s Retry-After); reasons
    name the policy; a continued stream names both deployments; the outage row shows the breaker open and close."""
    rows = by_key(repo_drill[1]["rows"])
    assert rows[("chat", "silent", "plain")]["wall"] == pytest.approx(30.0, abs=0.5)
    assert rows[("chat", "silent", "stream")]["wall"] == pytest.approx(20.0, abs=0.5)
    assert rows[("chat", "retry-after", "plain")]["wall"] == pytest.approx(5.0, abs=0.5)
    assert rows[("chat", "retry-after", "plain")]["served_by"] == "openai/gpt-4o-mini"
    assert rows[("chat", "silent", "plain")]["served_by"] == "anthropic/claude-haiku"
    cut = rows[("chat", "stream-cut", "stream")]
    assert cut["reason"] == "mid_stream: error: a stream cut after its first token ends in an error"
    continued = rows[("smart", "stream-cut", "stream")]
    assert continued["served_by"] == "openai/gpt-4o → anthropic/claude-sonnet"
    assert continued["reason"] == "mid_stream: continue on anthropic/claude-sonnet (prefill)"
    refusal = rows[("tools", "content-filter", "plain")]
    assert (refusal["reason"], refusal["cost"]) == (
        "on_error.content_policy: fail: a refusal is never routed around",
        0,
    )
    outage = rows[("chat", "outage-recovers", "plain")]["reason"]
    assert "3 of 3 requests answered during the outage" in outage
    assert "breaker opened for 30s, closed by a probe 30s after opening" in outage
    assert rows[("chat", "silent", "plain")]["deadline"] == 60.0


def test_the_weak_file_fails_exactly_where_its_policy_is_weak(weak_rows):
    """Only the plain silent/slow/stalled requests of `tight` (one attempt eats its 25 s deadline) and
    `same-provider` (two 30 s attempts on the failing provider eat 60 s) fail; nothing else does."""
    failed = sorted(key for key, row in weak_rows.items() if row["result"] == "failed")
    assert failed == [
        ("same-provider", "silent", "plain"),
        ("same-provider", "slow-first-token", "plain"),
        ("same-provider", "stream-stall", "plain"),
        ("tight", "silent", "plain"),
        ("tight", "slow-first-token", "plain"),
        ("tight", "stream-stall", "plain"),
    ]
    assert weak_rows[("tight", "silent", "plain")]["reason"] == (
        "claims it falls back to backup/claude, yet it ended in timeout: the 25s deadline ran out after 1 attempt"
    )
    assert weak_rows[("same-provider", "silent", "plain")]["reason"].endswith(
        "the 1m deadline ran out after 2 attempts"
    )
    assert weak_rows[("same-provider", "silent", "plain")]["wall"] == pytest.approx(60.0, abs=1.0)


def test_the_weak_file_rows_that_are_clean_or_rescued(weak_rows):
    """Streams reach the fallback in time (first-token timeout < deadline); no fallback means clean errors; a
    continue policy without a prefill fallback and a smaller fallback window are clean errors naming the reason."""
    assert weak_rows[("tight", "silent", "stream")]["result"] == "rescued"
    assert weak_rows[("tight", "silent", "stream")]["wall"] == pytest.approx(20.0, abs=0.5)
    assert weak_rows[("same-provider", "silent", "stream")]["wall"] == pytest.approx(40.0, abs=0.5)
    solo = {s.name: weak_rows[("solo", s.name, "plain")]["result"] for s in SCENARIOS}
    assert {n for n, r in solo.items() if r == "rescued"} == {"retry-after", "500-then-200"}
    assert {n for n, r in solo.items() if r == "clean error"} == set(BY_NAME) - {"retry-after", "500-then-200"}
    assert weak_rows[("solo", "rate-limited", "plain")]["reason"] == "no fallback outside provider 'primary'"
    for scenario in MID_STREAM:
        row = weak_rows[("no-prefill", scenario, "stream")]
        assert (row["result"], row["reason"]) == (
            "clean error",
            "mid_stream: continue, but no fallback has prefill; the stream ends in an error",
        )
    window = weak_rows[("no-prefill", "context-length", "plain")]
    assert (window["result"], window["reason"]) == (
        "clean error",
        "no fallback has a context window larger than 128000",
    )
    outage = weak_rows[("solo", "outage-recovers", "plain")]
    assert outage["result"] == "clean error"
    assert "0 of 3 requests answered during the outage" in outage["reason"]
    assert "closed by a probe 30s after opening" in outage["reason"]


def test_the_command_exits_1_on_a_failure_and_2_on_usage_errors():
    """A failing row exits 1 and is listed; clean errors alone exit 0; unknown names are usage errors (2)."""
    failing = cli(str(WEAK), "--route", "tight", "--scenario", "silent", "--mode", "plain")
    assert failing.returncode == 1
    assert "FAILED tight · silent upstream (plain): claims it falls back to backup/claude" in failing.stdout
    passing = cli(str(WEAK), "--route", "solo", "--scenario", "silent", "--scenario", "stream-cut")
    assert passing.returncode == 0, passing.stdout
    assert "0 rescues, 4 clean errors, 0 failed, 0 skipped" in passing.stdout
    unknown = cli(str(WEAK), "--route", "nope", "--scenario", "typo")
    assert unknown.returncode == 2
    assert "no route 'nope' (routes: solo, tight, same-provider, no-prefill)" in unknown.stderr
    assert "no scenario 'typo' (scenarios: retry-after," in unknown.stderr
    assert "Traceback" not in failing.stderr + passing.stderr + unknown.stderr


def test_progress_reports_every_step():
    """The progress callback counts up to the total, one step per request row (baseline included)."""
    seen: list[tuple[int, int, str]] = []
    run_drill(
        load_file(WEAK),
        routes=["solo"],
        scenarios=[BY_NAME["silent"], BY_NAME["content-filter"]],
        progress=lambda done, total, label: seen.append((done, total, label)),
    )
    assert [(done, total) for done, total, _ in seen] == [(i, 6) for i in range(1, 7)]
    assert seen[0][2] == "solo baseline plain" and seen[-1][2] == "solo content-filter stream"


def test_mid_stream_policies_are_read_from_the_route_and_new_ones_slot_in(monkeypatch):
    """The mid-stream claim comes from the compiled route's policy; a policy without a rule makes no claim, and a
    rule registered for it is used."""
    graph = compile_graph(load_file(WEAK))
    route = graph.routes["no-prefill"]
    resume = dataclasses.replace(route, policy=dataclasses.replace(route.policy, mid_stream="resume"))
    args = {"faulted": "primary", "stream": True, "mid_stream": True}
    assert claim(route, ErrorClass.CONNECTION, **args).reason.startswith("mid_stream: continue, but no fallback")
    assert claim(resume, ErrorClass.CONNECTION, **args) == Claim(
        None, "mid_stream: resume has no drill rule: outcome reported, not judged"
    )
    monkeypatch.setitem(MID_STREAM_RULES, "resume", lambda r, others: Claim(bool(others), "resumes elsewhere"))
    assert claim(resume, ErrorClass.CONNECTION, **args) == Claim(True, "resumes elsewhere")
    assert claim(resume, ErrorClass.CONNECTION, **{**args, "stream": False}).reason == "falls back to google/gem"


def test_a_restart_route_is_judged_as_before_the_first_token():
    """Under mid_stream: restart a mid-stream fault is held back and restarted: the drill claims (and sees) the same
    fallback as for a fault before the first token, with no prefill needed."""
    text = WEAK.read_text().replace("    mid_stream: continue", "    mid_stream: restart")
    restart = compile_graph(load_text(text, env={})).routes["no-prefill"]
    assert claim(restart, ErrorClass.CONNECTION, faulted="primary", stream=True, mid_stream=True) == Claim(
        True, "falls back to google/gem"
    )
    report = run_drill(load_text(text, env={}), routes=["no-prefill"], scenarios=[BY_NAME[s] for s in MID_STREAM])
    rows = by_key(report.to_json()["rows"])
    assert {rows[("no-prefill", s, "stream")]["result"] for s in MID_STREAM} == {"rescued"}


def test_verdicts_catch_what_a_broken_router_would_do():
    """The verdict fails a truncated answer passed off as complete, a refusal routed around, a deadline overrun
    and a non-turnout exception; an answer that never met the fault is skipped, not rescued."""
    from turnout.ops.drill.request import Outcome
    from turnout.ops.drill.runner import Drill
    from turnout.ops.drill.scenarios import BEFORE_FAULT, FULL
    from turnout.types import Attempt

    config = load_file(WEAK, env={"TURNOUT_DRILL_TEST_UNSET": "sk-enabled"})
    drill = Drill(config, routes=None, scenarios=SCENARIOS, modes=(True,), seed=1, progress=None)
    drill.graph = compile_graph(config)
    route = drill.graph.routes["tight"]
    primary = drill.graph.deployments["primary/main"]
    cut = [Attempt("primary/main", 0, 0, "error", "connection"), Attempt("backup/claude", 0, 0, "success")]
    rescue = Claim(True, "continues")

    def verdict(scenario: str, outcome: Outcome, promise: Claim = rescue) -> tuple[str, str]:
        return drill._verdict(route, BY_NAME[scenario], True, primary, outcome, promise)

    truncated = Outcome(True, BEFORE_FAULT, "primary/main", tuple(cut), None, 1.0)
    assert verdict("stream-cut", truncated) == (
        "failed",
        f"ended as a success with an incomplete answer ('{BEFORE_FAULT}')",
    )
    whole = Outcome(True, BEFORE_FAULT + FULL, "primary/main", tuple(cut), None, 1.0)
    assert verdict("stream-cut", whole) == ("rescued", "continues")
    refusal = [Attempt("primary/main", 0, 0, "error", "content_policy"), Attempt("backup/claude", 0, 0, "success")]
    routed = Outcome(True, FULL, "backup/claude", tuple(refusal), 0.0, 0.1)
    result, why = verdict("content-filter", routed, Claim(False, "on_error.content_policy: fail"))
    assert result == "failed" and why.startswith("a content-policy refusal was routed around")
    untouched = Outcome(True, FULL, "backup/claude", (Attempt("backup/claude", 0, 0, "success"),), 0.0, 0.1)
    assert verdict("silent", untouched)[0] == "skipped"
    late = Outcome(False, "", None, tuple(cut[:1]), None, 40.0, "timeout", "deadline")
    assert verdict("silent", late) == ("failed", "took 40.0s against a 25s deadline")
    broken = Outcome(False, "", None, (), None, 0.1, unexpected="KeyError: 'x'")
    assert verdict("silent", broken) == ("failed", "the router misbehaved: KeyError: 'x'")


def test_the_cookbook_timeout_recipe_survives_every_scenario(tmp_path):
    """The cookbook's "Timeouts that leave room for the fallback" recipe fails no row: even two silent OpenAI
    deployments leave time for Claude, and cut streams continue on it."""
    text = (ROOT / "docs" / "cookbook.md").read_text(encoding="utf-8")
    section = text.split("## Timeouts that leave room for the fallback", 1)[1]
    recipe = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    report = run_drill(load_file(path, env={}), scenarios=SCENARIOS)
    assert report.failed == []
    rows = by_key(report.to_json()["rows"])
    assert rows[("chat", "silent", "plain")]["wall"] == pytest.approx(40.0, abs=0.5)
    assert rows[("chat", "stream-cut", "stream")]["served_by"] == "openai/gpt-4o-mini → anthropic/claude-haiku"


def test_a_live_progress_line_only_on_a_terminal():
    """With stderr on a terminal, `drill [n/total] label` lines are drawn and the line is cleared at the end."""
    import pty
    import select

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    argv = [sys.executable, "-m", "turnout.cli", "drill", str(WEAK), "--route", "solo", "--scenario", "silent"]
    try:
        result = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=300)
    finally:
        os.close(slave)
    drawn = b""
    while select.select([master], [], [], 1.0)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other side is closed: everything was read
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert result.returncode == 0
    assert b"drill [1/4] solo baseline plain" in drawn and b"drill [4/4] solo silent stream" in drawn
    assert drawn.endswith(b"\r\x1b[K")
    assert "drill [" not in result.stdout
