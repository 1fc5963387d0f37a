"""`turnout plan`: golden text and JSON per kind of change, exit codes, and the health verdicts agreeing with a reload.

Each folder of `plan_cases/` holds `old.yaml`, `new.yaml` and the expected `expected.txt` / `expected.json` (or
`expected.stderr` for an invalid NEW). `TURNOUT_UPDATE_GOLDEN=1` rewrites the expected files (review the diff).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from turnout import Router
from turnout.cli import main
from turnout.ops.common import Style
from turnout.ops.plan_diff import compare
from turnout.ops.plan_text import render
from turnout.ops.snapshot import digest, snapshot
from turnout.schema import load_file

CASES = Path(__file__).parent / "plan_cases"
NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())
UPDATE = os.environ.get("TURNOUT_UPDATE_GOLDEN") == "1"
VALID = [n for n in NAMES if not (CASES / n / "expected.stderr").exists() and n != "invalid_new"]


def plan_in(case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *flags: str):
    monkeypatch.chdir(CASES / case)
    code = main(["plan", "old.yaml", "new.yaml", *flags])
    out, err = capsys.readouterr()
    return code, out, err


def golden(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with TURNOUT_UPDATE_GOLDEN=1 to create it"
    assert actual == path.read_text(encoding="utf-8"), f"output differs from {path}"


def test_every_kind_of_change_has_a_case():
    """The fixture set covers each kind of change the issue lists, plus no change and an invalid NEW."""
    assert set(NAMES) >= {
        "route_added_removed",
        "chain_reordered",
        "deployments_enter_leave",
        "strategy_weights",
        "timeouts",
        "retry_breaker",
        "prices",
        "health_kept_reset",
        "providers_server",
        "no_change",
        "invalid_new",
    }


@pytest.mark.parametrize("case", VALID)
def test_text_output_matches_the_golden_file(case, capsys, monkeypatch):
    """The text plan of each case is exactly its golden file; exit 2 when something changed, 0 when not."""
    code, out, err = plan_in(case, capsys, monkeypatch)
    assert err == ""
    assert code == (0 if case == "no_change" else 2)
    assert "\x1b[" not in out  # not a terminal: no colour
    golden(CASES / case / "expected.txt", out)


@pytest.mark.parametrize("case", VALID)
def test_json_output_matches_the_golden_file(case, capsys, monkeypatch):
    """--json gives the same plan for machines: the golden JSON, and `changed` agrees with the exit code."""
    code, out, _ = plan_in(case, capsys, monkeypatch, "--json")
    data = json.loads(out)
    assert data["changed"] is (code == 2)
    golden(CASES / case / "expected.json", out)


def test_an_invalid_new_file_exits_1_with_located_problems(capsys, monkeypatch):
    """A NEW file with errors is reported as `validate` does (FILE:LINE:COL, every problem) with exit 1."""
    code, out, err = plan_in("invalid_new", capsys, monkeypatch)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "new.yaml:24:15: pools.small.strategy: expected one of priority, round_robin, weighted, least_busy, "
        "lowest_latency, lowest_cost, got 'weigthed'; did you mean 'weighted'?",
        "new.yaml:27:46: routes.chat.chain[0]: unknown pool or model 'smal'; did you mean 'small'?",
        "new.yaml: invalid — 2 problems",
    ]


def test_errors_exit_1_so_that_2_always_means_changes(capsys, monkeypatch, tmp_path):
    """An unreadable file, a bad flag and too many files all exit 1 (never 2, which means "changes")."""
    monkeypatch.chdir(CASES / "prices")
    assert main(["plan", "old.yaml", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["plan", "old.yaml", "new.yaml", "--bogus"]) == 1
    assert main(["plan"]) == 1  # no file at all
    assert main(["plan", "old.yaml", "new.yaml", "new.yaml"]) == 1
    assert "give OLD NEW, or NEW alone" in capsys.readouterr().err


@pytest.mark.parametrize("case", VALID)
def test_health_verdicts_are_what_a_reload_does(case):
    """For every case, a real Router swapped from old to new keeps exactly the deployments the plan says it keeps,
    and resets, adds and drops exactly the others (one rule, not two copies)."""
    old, new = load_file(CASES / case / "old.yaml"), load_file(CASES / case / "new.yaml")
    health = compare(snapshot(old, salt="s"), snapshot(new, salt="s")).health
    router = Router(old)
    before = dict(router.health.entries)
    router.swap(new)
    after = router.health.entries
    kept = sorted(k for k, entry in after.items() if before.get(k) is entry)
    reset = sorted(k for k in after if k in before and before[k] is not after[k])
    fresh = sorted(k for k in after if k not in before)
    dropped = sorted(k for k in before if k not in after)
    assert kept == sorted(health["kept"])
    assert reset == sorted(r["deployment"] for r in health["reset"])
    assert fresh == sorted(health["fresh"])
    assert dropped == sorted(health["dropped"])


def test_markdown_is_a_heading_and_a_diff_block(capsys, monkeypatch):
    """--markdown wraps the plain plan in a ```diff block under a heading, so a PR comment colours +/- lines."""
    _, plain, _ = plan_in("route_added_removed", capsys, monkeypatch)
    _, markdown, _ = plan_in("route_added_removed", capsys, monkeypatch, "--markdown")
    assert markdown.startswith("#### turnout plan: old.yaml → new.yaml\n\n2 changes: 2 routes affected\n\n```diff\n")
    assert markdown.endswith("```\n")
    assert "  + summarise: chain haiku → echo\n  - smart: chain gpt-big → haiku → echo\n" in markdown
    assert plain.splitlines()[3:] == markdown.split("```diff\n")[1].removesuffix("```\n").splitlines()


def test_colour_only_on_a_terminal(monkeypatch):
    """On a TTY added lines are green and removed red; NO_COLOR or a pipe gives plain text."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    old = load_file(CASES / "route_added_removed" / "old.yaml")
    new = load_file(CASES / "route_added_removed" / "new.yaml")
    plan = compare(snapshot(old, salt="s"), snapshot(new, salt="s"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    coloured = render(plan, Style.for_stream(Terminal()))
    assert "\x1b[32m  + summarise" in coloured and "\x1b[31m  - smart" in coloured
    assert "\x1b[" not in render(plan, Style.for_stream(io.StringIO()))
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in render(plan, Style.for_stream(Terminal()))


def test_snapshots_hold_no_secret_and_digests_follow_equality():
    """No credential appears in a snapshot; digests are equal for equal values (1 == 1.0, any key order) and
    differ with the salt and with the key (the admin key), so only an admin can test a guess against one."""
    config = load_file(CASES / "health_kept_reset" / "new.yaml")
    text = json.dumps(snapshot(config, salt="s"))
    assert "sk-ant-fixture-ROTATED" not in text and "sk-fixture-0001" not in text
    assert digest({"a": 1, "b": (2.0, "x")}, "s") == digest({"b": [2, "x"], "a": 1.0}, "s")
    assert digest({"a": 1}, "s") != digest({"a": 2}, "s")
    assert digest({"a": 1}, "s") != digest({"a": 1}, "t")
    assert digest({"a": 1}, "s", "admin-1") != digest({"a": 1}, "s", "admin-2")
    assert digest({"a": 1}, "s", "admin-1") == digest({"a": 1.0}, "s", "admin-1")
