"""The case folders: every valid file loads; every invalid file fails with exactly the problems it states."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from turnout.errors import ConfigError
from turnout.schema import load_file

CASES = Path(__file__).parent / "cases"
ENV = {"PRESENT_KEY": "sk-case-present-0001"}  # the only environment the cases see
_EXPECT = re.compile(rb"^#\s*(expect|warn):\s*(\d+):(\d+)\s+(.+?)\s*$", re.MULTILINE)


def _stated(path: Path, kind: str) -> list[tuple[int, int, str]]:
    """The `# expect: LINE:COL text` (or `# warn:`) lines of a case file."""
    return [
        (int(line), int(col), text.decode("utf-8"))
        for k, line, col, text in _EXPECT.findall(path.read_bytes())
        if k.decode() == kind
    ]


def _shown(problems) -> list[tuple[int, int, str]]:
    return [(p.line, p.col, f"{p.path}: {p.message}" if p.path else p.message) for p in problems]


def _assert_matches(expected: list[tuple[int, int, str]], got: list[tuple[int, int, str]]) -> None:
    for line, col, text in expected:
        assert any((line, col) == (gl, gc) and text in gt for gl, gc, gt in got), (
            f"expected {line}:{col} {text!r}; got:\n" + "\n".join(f"{gl}:{gc} {gt}" for gl, gc, gt in got)
        )
    assert len(got) == len(expected), "unexpected extra problems:\n" + "\n".join(f"{a}:{b} {c}" for a, b, c in got)


INVALID = sorted((CASES / "invalid").glob("*.yaml"))
VALID = sorted((CASES / "valid").glob("*.yaml"))


def test_there_are_enough_invalid_cases():
    """The invalid folder covers the rules with at least 40 cases."""
    assert len(INVALID) >= 40


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_invalid_case_reports_exactly_the_stated_problems(case: Path):
    """An invalid case fails with exactly the located problems its `# expect:` comments state."""
    expected = _stated(case, "expect")
    assert expected, f"{case.name} states no `# expect:` line"
    with pytest.raises(ConfigError) as info:
        load_file(case, env=ENV)
    assert all(p.file == str(case) for p in info.value.problems)
    _assert_matches(expected, _shown(info.value.problems))


@pytest.mark.parametrize("case", VALID, ids=lambda p: p.stem)
def test_valid_case_loads_with_exactly_the_stated_warnings(case: Path):
    """A valid case loads, and its warnings are exactly the `# warn:` lines it states."""
    config = load_file(case, env=ENV)
    assert config.routes
    _assert_matches(_stated(case, "warn"), _shown(config.warnings))
