"""tests/conftest.py's provisioning of external binaries: found, skipped with a reason, or failed under CI=true."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
USES_MISSING = """
def test_needs_it(binaries):
    binaries("turnout-no-such-binary", "turnout-no-such-package")
"""
USES_PRESENT = """
def test_finds_it(binaries):
    assert binaries("sh", "dash").endswith("/sh")
"""


@pytest.fixture
def scratch(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A scratch pytest session with this conftest, installing nothing."""
    pytester.makeconftest(CONFTEST.read_text())
    monkeypatch.setenv("TURNOUT_TEST_NO_INSTALL", "1")
    return pytester


def test_a_missing_binary_skips_with_its_reason(scratch: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Outside CI a missing binary skips the test and says which one."""
    monkeypatch.delenv("CI", raising=False)
    scratch.makepyfile(USES_MISSING)
    result = scratch.runpytest("-rs", "-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*turnout-no-such-binary is not installed*"])


def test_a_missing_binary_fails_under_ci(scratch: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Under CI=true a missing binary is a failure, never a quiet skip."""
    monkeypatch.setenv("CI", "true")
    scratch.makepyfile(USES_MISSING)
    result = scratch.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CI=true and a required binary is missing*turnout-no-such-binary*"])


def test_a_present_binary_is_found(scratch: pytest.Pytester):
    """An installed binary is returned by path."""
    scratch.makepyfile(USES_PRESENT)
    scratch.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio").assert_outcomes(passed=1)
