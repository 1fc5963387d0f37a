"""Collecting located problems: JSON-ish paths, marks looked up lazily in the YAML node tree, "did you mean".

Marks are found only when a problem is reported (walking the node tree along the path), so a valid file pays
nothing for locations.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from turnout.errors import Problem

PathElem = str | int
Path = tuple[PathElem, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_PATH_TOKEN = re.compile(r'\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|\.?([^.\[]+)')
_SECRET_KEYS = frozenset({"api_key", "api_keys", "admin_keys", "headers"})


def format_path(path: Sequence[PathElem]) -> str:
    """`("routes", "chat", "chain", 1)` -> `routes.chat.chain[1]`; awkward keys are quoted: `models["gpt-4.1"]`."""
    out: list[str] = []
    for elem in path:
        if isinstance(elem, int):
            out.append(f"[{elem}]")
        elif _PLAIN_KEY.match(elem):
            out.append(f".{elem}" if out else elem)
        else:
            out.append(f"[{json.dumps(elem, ensure_ascii=False)}]")
    return "".join(out)


def split_path(text: str) -> list[PathElem]:
    """Inverse of `format_path`, leniently: `routes.chat.chain[1]` -> ["routes", "chat", "chain", 1]."""
    out: list[PathElem] = []
    for index, quoted, plain in _PATH_TOKEN.findall(text):
        out.append(int(index) if index else quoted if quoted else plain)
    return out


def is_secret_path(path: Sequence[PathElem]) -> bool:
    """Values under api_key, headers, server.api_keys/admin_keys, a client's keys or state.url (it may hold a
    password) are credentials."""
    if tuple(path[:2]) == ("state", "url") or (len(path) > 2 and path[0] == "clients" and path[2] == "keys"):
        return True
    return any(isinstance(e, str) and e in _SECRET_KEYS for e in path[:4])


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`"; did you mean 'X'?"` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _index(node: yaml.MappingNode) -> tuple[dict[str, tuple[yaml.Node, yaml.Node]], list[yaml.Node]]:
    """key text -> (key node, value node) for one mapping (first occurrence wins), plus its merge sources."""
    keys: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    merged: list[yaml.Node] = []
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            merged.extend(value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node])
        elif isinstance(key_node, yaml.ScalarNode):
            keys.setdefault(key_node.value, (key_node, value_node))
    return keys, merged


class Reporter:
    """Accumulates problems for one routing file; locates each by walking the YAML node tree along its path."""

    def __init__(self, source: str, root: yaml.Node | None = None) -> None:
        self.source = source
        self.root = root
        self.problems: list[Problem] = []
        self.error_paths: set[tuple[PathElem, ...]] = set()
        self.settled: set[tuple[PathElem, ...]] = set()  # error paths of finished stages: later ones stay quiet
        self._seen: set[tuple[tuple[PathElem, ...], str]] = set()
        self._indexes: dict[int, tuple[dict[str, tuple[yaml.Node, yaml.Node]], list[yaml.Node]]] = {}

    def locate(self, path: Sequence[PathElem], *, key: bool = False) -> tuple[int, int]:
        """1-based line/col of the value at `path` (of its key when `key`); the nearest ancestor if absent."""
        node = self.root
        if node is None:
            return 1, 1
        for i, elem in enumerate(path):
            child = self._child(node, elem, key and i == len(path) - 1)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1, node.start_mark.column + 1

    def _child(self, node: yaml.Node, elem: PathElem, want_key: bool) -> yaml.Node | None:
        if isinstance(node, yaml.SequenceNode):
            ok = isinstance(elem, int) and 0 <= elem < len(node.value)
            return node.value[elem] if ok else None
        if not isinstance(node, yaml.MappingNode):
            return None
        if id(node) not in self._indexes:
            self._indexes[id(node)] = _index(node)
        keys, merged = self._indexes[id(node)]
        pair = keys.get(str(elem))
        if pair is not None:
            return pair[0] if want_key else pair[1]
        for source in merged:
            found = self._child(source, elem, want_key)
            if found is not None:
                return found
        return None

    def locate_text_path(self, text: str) -> tuple[int, int]:
        """Locate a path written as text by someone else (e.g. `providers.my.provider.options`, unquoted).

        Dots inside names are ambiguous there, so at each mapping the longest run of segments that names a key
        wins. Falls back to the nearest ancestor found.
        """
        parts = split_path(text)
        node, i = self.root, 0
        while node is not None and i < len(parts):
            for j in range(len(parts), i, -1):
                elem = parts[i] if j == i + 1 else ".".join(str(p) for p in parts[i:j])
                child = self._child(node, elem, False)
                if child is not None:
                    node, i = child, j
                    break
            else:
                break
        return (node.start_mark.line + 1, node.start_mark.column + 1) if node is not None else (1, 1)

    def scalar_text(self, path: Sequence[PathElem]) -> str | None:
        """The scalar at `path` exactly as written (e.g. `off`, which YAML 1.1 reads as false)."""
        node = self.root
        for elem in path:
            node = self._child(node, elem, False) if node is not None else None
        return node.value if isinstance(node, yaml.ScalarNode) else None

    def error(self, path: Sequence[PathElem], message: str, *, key: bool = False) -> None:
        if not self.has_error_within(path) and (tuple(path), message) not in self._seen:
            self._seen.add((tuple(path), message))
            self._add(path, message, key, "error")

    def has_error_within(self, path: Sequence[PathElem]) -> bool:
        """True when an earlier stage reported an error at `path` or an ancestor (later stages don't pile on)."""
        return any(tuple(path[:n]) in self.settled for n in range(1, len(path) + 1))

    def settle(self) -> None:
        """End of a stage: its errors now silence later stages' errors at or below the same paths."""
        self.settled |= self.error_paths

    def warning(self, path: Sequence[PathElem], message: str, *, key: bool = False) -> None:
        self._add(path, message, key, "warning")

    def at(self, line: int, col: int, path: Sequence[PathElem], message: str) -> None:
        """A problem whose location is already known (parser errors, duplicate keys)."""
        self.error_paths.add(tuple(path))
        self.problems.append(Problem(self.source, line, col, format_path(path), message))

    def _add(self, path: Sequence[PathElem], message: str, key: bool, severity: str) -> None:
        line, col = self.locate(path, key=key)
        if severity == "error":
            self.error_paths.add(tuple(path))
        self.problems.append(Problem(self.source, line, col, format_path(path), message, severity))

    @property
    def errors(self) -> list[Problem]:
        return sorted((p for p in self.problems if p.severity == "error"), key=_order)

    @property
    def warnings(self) -> list[Problem]:
        return sorted((p for p in self.problems if p.severity == "warning"), key=_order)


def _order(problem: Problem) -> tuple[int, int, str]:
    return problem.line, problem.col, problem.message


def show(value: Any, path: Sequence[PathElem] = ()) -> str:
    """A short, safe rendering of a value for messages; credentials are never shown."""
    if is_secret_path(path):
        return "<secret>"
    if isinstance(value, dict | list):
        return _type_name(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)


def kind(value: Any) -> str:
    """The YAML-ish name of a value's type, for 'expected X, got Y' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return _type_name(value)
