"""The curated public surface: `turnout.__all__` is sorted, complete for the contract, and importable."""

from __future__ import annotations

import importlib

import turnout

CONTRACT = {
    "AllUpstreamsFailed",
    "Attempt",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ConfigError",
    "Conversation",
    "ErrorClass",
    "LoggingObserver",
    "ProviderError",
    "ResponseCompleted",
    "Router",
    "Usage",
}


def test_all_is_sorted_and_unique():
    """__all__ is sorted (case-sensitively) and lists each name once."""
    assert turnout.__all__ == sorted(turnout.__all__)
    assert len(set(turnout.__all__)) == len(turnout.__all__)


def test_every_name_is_importable():
    """Every name in __all__ exists on the package (from turnout import X works)."""
    module = importlib.import_module("turnout")
    missing = [name for name in turnout.__all__ if not hasattr(module, name)]
    assert missing == []


def test_contract_names_are_public():
    """The names the architecture's library contract promises are exported."""
    assert set(turnout.__all__) >= CONTRACT


def test_no_internals_leak():
    """Nothing private or module-like is exported."""
    assert not [name for name in turnout.__all__ if name.startswith("_")]
    assert not [name for name in turnout.__all__ if type(getattr(turnout, name)).__name__ == "module"]
