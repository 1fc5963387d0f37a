"""Property: whatever a mutated routing file contains, the loader returns a Config or raises ConfigError, located."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout.config import Config
from turnout.errors import ConfigError
from turnout.schema import load_text

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [ROOT / "routes.yaml", *sorted((Path(__file__).parent / "cases" / "valid").glob("*.yaml"))]
SEED_TEXTS = [p.read_text(encoding="utf-8") for p in SEEDS]
SEED_DATA = [yaml.safe_load(t) for t in SEED_TEXTS]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["{{", "{{ env.X }}", "{% for %}", "{{ ''.__class__.__mro__ }}", "30 s", "-1s", "1e999", "~"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=3),
    st.integers(min_value=50, max_value=140).map(_deep),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _mutate(data: Any, path: tuple, op: str, value: Any) -> Any:
    data = yaml.safe_load(yaml.safe_dump(data))  # a private deep copy
    parent = data
    for elem in path[:-1]:
        parent = parent[elem]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "rename" and isinstance(parent, dict):
        parent[str(value)[:20] or "_"] = parent.pop(last)
    else:
        parent[last] = value
    return data


def _assert_located(text: str | bytes) -> None:
    try:
        result: object = load_text(text, source="fuzz.yaml", env={"OPENAI_API_KEY": "sk-fuzz"})
    except ConfigError as exc:
        result = exc
    if isinstance(result, ConfigError):
        assert result.problems, "ConfigError without problems"
        for problem in result.problems:
            assert problem.file == "fuzz.yaml"
            assert problem.line >= 1 and problem.col >= 1, str(problem)
            assert problem.message
    else:
        assert isinstance(result, Config)


@SETTINGS
@given(
    seed=st.integers(min_value=0, max_value=len(SEED_DATA) - 1),
    pick=st.integers(min_value=0),
    op=st.sampled_from(["delete", "replace", "rename"]),
    value=WEIRD,
)
def test_structural_mutations_only_raise_located_config_errors(seed: int, pick: int, op: str, value: Any):
    """Deleting keys, renaming them or swapping in wrong types, huge numbers or deep nesting gives ConfigError."""
    data = SEED_DATA[seed]
    paths = _paths(data)
    mutated = _mutate(data, paths[pick % len(paths)], op, value)
    _assert_located(yaml.safe_dump(mutated, sort_keys=False, allow_unicode=True))


@SETTINGS
@given(
    seed=st.integers(min_value=0, max_value=len(SEED_TEXTS) - 1),
    at=st.integers(min_value=0),
    op=st.sampled_from(["truncate", "insert", "replace"]),
    junk=st.binary(min_size=1, max_size=12),
)
def test_byte_level_mutations_only_raise_located_config_errors(seed: int, at: int, op: str, junk: bytes):
    """Truncated text, random or non-UTF-8 bytes spliced in anywhere give ConfigError with a location."""
    raw = SEED_TEXTS[seed].encode("utf-8")
    cut = at % (len(raw) + 1)
    if op == "truncate":
        raw = raw[:cut]
    elif op == "insert":
        raw = raw[:cut] + junk + raw[cut:]
    else:
        raw = raw[:cut] + junk + raw[cut + len(junk) :]
    _assert_located(raw)
