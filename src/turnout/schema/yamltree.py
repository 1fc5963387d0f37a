"""YAML text -> (plain data, node tree with marks), rejecting what a routing file must not contain.

The C parser (libyaml) builds the node tree quickly, but it recurses natively and crashes on absurd nesting, so a
flat event scan bounds the depth first. Plain data is then built from the nodes in Python, which is where
duplicate keys, non-finite numbers, unsupported tags and alias bombs are caught with their exact marks.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from turnout.schema.problems import Path, Reporter

MAX_DEPTH = 100  # the schema's deepest path is ~6 levels; free-form driver options get the rest
MAX_EXPANDED = 2_000_000  # values after alias expansion ("billion laughs" guard)

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_T = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _MERGE = (_T + t for t in ("str", "int", "float", "bool", "null", "merge"))
_AS_TEXT = frozenset({_T + "timestamp", _T + "binary", _T + "value", "!"})
_SEQ, _MAP = _T + "seq", _T + "map"


class _Abort(Exception):
    """Stops building when going on would only cost time or memory (the problem is already recorded)."""


def parse(text: str, reporter: Reporter) -> Any:
    """Parse one YAML document into plain data; problems go to `reporter`. Returns None if unparseable."""
    try:
        if not _depth_ok(text, reporter):
            return None
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reporter.at(line, col, (), f"YAML syntax error: {_yaml_message(exc)}")
        return None
    except yaml.YAMLError as exc:  # ReaderError: a non-printable character, with a position only
        line, col = _position(text, getattr(exc, "position", 0))
        reporter.at(line, col, (), f"YAML error: {exc}".replace("\n", " "))
        return None
    if root is None:
        reporter.at(1, 1, (), "the file is empty; expected a mapping with version, providers, models and routes")
        return None
    reporter.root = root
    builder = _Builder(reporter)
    try:
        return builder.build(root, (), 0)
    except _Abort:
        return None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return ": ".join(parts) if parts else "invalid YAML"


def _position(text: str, index: int) -> tuple[int, int]:
    before = text[: max(0, index)]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def _depth_ok(text: str, reporter: Reporter) -> bool:
    """Scan events (flat, no recursion) and refuse nesting deeper than MAX_DEPTH before composing."""
    depth = 0
    starts = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
    ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, starts):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                reporter.at(mark.line + 1, mark.column + 1, (), f"nesting deeper than {MAX_DEPTH} levels")
                return False
        elif isinstance(event, ends):
            depth -= 1
    return True


class _Builder:
    """Builds plain dicts/lists/scalars from nodes; aliases share one built value, as PyYAML does."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.scalars = SafeConstructor()
        self.memo: dict[int, tuple[Any, int]] = {}
        self.count = 0

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        if depth > MAX_DEPTH:
            self._fatal(node, path, f"nesting deeper than {MAX_DEPTH} levels (a recursive alias?)")
        if isinstance(node, yaml.ScalarNode):
            self.count += 1
            return self._scalar(node, path)
        seen = self.memo.get(id(node))
        if seen is not None:
            self.count += seen[1]
            if self.count > MAX_EXPANDED:
                self._fatal(node, path, f"aliases expand to more than {MAX_EXPANDED:,} values")
            return seen[0]
        before = self.count
        if node.tag not in (_SEQ, _MAP):
            self._problem(node, path, f"unsupported YAML tag '{node.tag}'")
        if isinstance(node, yaml.SequenceNode):
            value: Any = [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        else:
            value = self._mapping(node, path, depth)
        self.count += 1
        self.memo[id(node)] = (value, self.count - before)
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, path, "mapping keys must be plain strings, not a list or mapping")
                continue
            key = key_node.value  # the key as written: `no:` or `1:` stay the names "no" and "1"
            if key in result:
                first = next(k for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value == key)
                line = first.start_mark.line + 1
                self._problem(key_node, (*path, key), f"duplicate key '{key}' (first at line {line})")
            result[key] = self.build(value_node, (*path, key), depth + 1)
        for merge in merges:  # YAML merge keys: explicit keys win over merged ones
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                merged = self.build(source, path, depth + 1)
                if not isinstance(merged, dict):
                    self._problem(source, path, "a merge key (<<) must refer to a mapping")
                    continue
                for key, value in merged.items():
                    result.setdefault(key, value)
        return result

    def _scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        tag = node.tag
        if tag == _STR or tag in _AS_TEXT:
            return node.value
        try:
            if tag == _INT:
                return self.scalars.construct_yaml_int(node)
            if tag == _FLOAT:
                value = self.scalars.construct_yaml_float(node)
                if not math.isfinite(value):
                    self._problem(node, path, f"expected a finite number, got {node.value}")
                return value
            if tag == _BOOL:
                return self.scalars.construct_yaml_bool(node)
            if tag == _NULL:
                return None
        except (ConstructorError, ValueError, KeyError):
            self._problem(node, path, f"cannot read {node.value!r} as {tag.rsplit(':', 1)[-1]}")
            return node.value
        self._problem(node, path, f"unsupported YAML tag '{tag}'")
        return node.value

    def _problem(self, node: yaml.Node, path: Path, message: str) -> None:
        self.reporter.at(node.start_mark.line + 1, node.start_mark.column + 1, path, message)

    def _fatal(self, node: yaml.Node, path: Path, message: str) -> None:
        self._problem(node, path, message)
        raise _Abort
