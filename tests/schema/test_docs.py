"""Docs stay true: the reference matches the schema, and every cookbook recipe is a valid routing file."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from turnout.schema import load_text, schema_json

ROOT = Path(__file__).resolve().parents[2]
COOKBOOK = ROOT / "docs" / "cookbook.md"
_YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "scripts" / "gen_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_is_generated_from_the_current_schema():
    """docs/routes-reference.md equals what scripts/gen_reference.py renders now (run it if this fails)."""
    generator = _generator()
    expected = generator.render(json.loads(generator.SCHEMA.read_text(encoding="utf-8")))
    assert (ROOT / "docs" / "routes-reference.md").read_text(encoding="utf-8") == expected


def test_reference_mentions_every_schema_description():
    """Every property description of the schema reaches the reference."""
    text = (ROOT / "docs" / "routes-reference.md").read_text(encoding="utf-8")
    descriptions: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for prop in node.get("properties", {}).values():
                if "description" in prop:
                    descriptions.append(prop["description"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema_json())
    missing = [d for d in descriptions if d not in text]
    assert missing == []


RECIPES = _YAML_BLOCK.findall(COOKBOOK.read_text(encoding="utf-8"))


def test_cookbook_has_the_four_recipes():
    """The cookbook covers rate-limit fallback, context escalation, weighted canary and local-first."""
    text = COOKBOOK.read_text(encoding="utf-8").lower()
    for topic in ("rate limit", "context window", "canary", "local"):
        assert topic in text
    assert len(RECIPES) >= 4


@pytest.mark.parametrize("recipe", RECIPES, ids=[f"recipe{i}" for i in range(len(RECIPES))])
def test_every_cookbook_snippet_validates(recipe: str):
    """Each YAML snippet in the cookbook is a complete routing file that loads with no API keys set."""
    config = load_text(recipe, source="cookbook", env={})
    assert config.routes
