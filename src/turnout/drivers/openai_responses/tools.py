"""A Responses request's tools and tool choice as canonical function tools, and the way back. Pure: no I/O.

| Responses tool                          | canonical (OpenAI chat)                                               |
|-----------------------------------------|-----------------------------------------------------------------------|
| `function` {name, parameters, strict}   | a function tool (`strict` only when it is true)                       |
| `custom` {name, format} (free-form)     | a function tool with one string parameter `input`; its calls come    |
|                                         | back as `custom_tool_call` items with that string as `input`          |
| `namespace` {name, tools}               | its function and custom tools, each named `<namespace>__<name>`; their|
|                                         | calls come back with `namespace` and the tool's own name              |
| anything else (web_search, file_search, | dropped: built-in tools that only OpenAI runs or that only its models |
| code_interpreter, computer, mcp, shell, | know how to call; named in `dropped` (the `x-turnout-dropped` header) |
| local_shell, apply_patch, image_gen...) |                                                                       |

`tool_choice`: auto, none and required as they are; a function or custom tool by name; `allowed_tools` keeps only
the tools it allows, with its mode; a built-in tool's choice becomes auto (that tool was dropped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from turnout.errors import InvalidRequest
from turnout.types import is_mapping

NAMESPACE_SEPARATOR = "__"
CUSTOM_INPUT = "input"  # the one parameter a custom tool's function stands-in takes
_EMPTY_SCHEMA: Mapping[str, Any] = MappingProxyType({"type": "object", "properties": {}})
_CHOICES = frozenset({"auto", "none", "required"})
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_JSON_TYPES = {
    type(None): "null",
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
}


def invalid(where: str, expected: str, value: Any) -> InvalidRequest:
    """OpenAI's wording for a parameter of the wrong type."""
    got = _JSON_TYPES.get(type(value), "an object" if is_mapping(value) else type(value).__name__)
    return InvalidRequest(f"Invalid type for '{where}': expected {expected}, but got {got} instead.", param=where)


def missing(where: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{where}'.", param=where)


def shown(kind: str) -> str:
    """A client-chosen type name as it may appear in a header: safe characters only, bounded."""
    return _SAFE.sub("", kind)[:64] or "unnamed"


@dataclass(frozen=True, slots=True)
class ToolTable:
    """The canonical tools of one request and how their names map back to Responses items."""

    functions: tuple[dict[str, Any], ...] = ()
    custom: frozenset[str] = frozenset()  # canonical names of custom (free-form) tools
    namespaced: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # canonical name -> (namespace, name)
    dropped: tuple[str, ...] = ()  # built-in tool types left out

    def canonical(self, name: str, namespace: Any = None) -> str:
        """The canonical function name of a call to `name` (in `namespace`)."""
        return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if isinstance(namespace, str) and namespace else name

    def origin(self, canonical: str) -> tuple[str | None, str, bool]:
        """(namespace, name, is_custom) of a canonical tool name, for the item that reports its call."""
        namespace, name = self.namespaced.get(canonical, (None, canonical))
        return namespace, name, canonical in self.custom


def tool_table(tools: Any) -> ToolTable:
    """Validate `tools` (None or a list) and build their canonical table."""
    if tools is None:
        return ToolTable()
    if not isinstance(tools, list):
        raise invalid("tools", "an array of tools", tools)
    functions: list[dict[str, Any]] = []
    custom: set[str] = set()
    namespaced: dict[str, tuple[str, str]] = {}
    dropped: list[str] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        kind = _kind(tool, where)
        if kind == "namespace":
            namespace = _name(tool, where)
            members = tool.get("tools")
            if not isinstance(members, list):
                raise invalid(f"{where}.tools", "an array of function or custom tools", members)
            for j, member in enumerate(members):
                at = f"{where}.tools[{j}]"
                inner = _kind(member, at)
                if inner not in ("function", "custom"):
                    dropped.append(shown(inner))
                    continue
                function = _function(member, at, inner, prefix=namespace + NAMESPACE_SEPARATOR)
                namespaced[function["function"]["name"]] = (namespace, member["name"])
                if inner == "custom":
                    custom.add(function["function"]["name"])
                functions.append(function)
        elif kind in ("function", "custom"):
            function = _function(tool, where, kind)
            if kind == "custom":
                custom.add(function["function"]["name"])
            functions.append(function)
        else:
            dropped.append(shown(kind))
    return ToolTable(tuple(functions), frozenset(custom), namespaced, tuple(dict.fromkeys(dropped)))


def _kind(tool: Any, where: str) -> str:
    if not is_mapping(tool):
        raise invalid(where, "a tool object", tool)
    kind = tool.get("type")
    if not isinstance(kind, str) or not kind:
        raise missing(f"{where}.type")
    return kind


def _name(tool: Mapping[str, Any], where: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise missing(f"{where}.name")
    return name


def _function(tool: Mapping[str, Any], where: str, kind: str, prefix: str = "") -> dict[str, Any]:
    """A function or custom tool -> a canonical function tool."""
    name = prefix + _name(tool, where)
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid(f"{where}.description", "a string", description)
    function: dict[str, Any] = {"name": name}
    if kind == "custom":
        function["parameters"] = {
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's input, as free-form text."}},
            "required": [CUSTOM_INPUT],
            "additionalProperties": False,
        }
        description = _with_grammar(description, tool.get("format"))
    else:
        parameters = tool.get("parameters")
        if parameters is not None and not is_mapping(parameters):
            raise invalid(f"{where}.parameters", "a JSON Schema object", parameters)
        function["parameters"] = dict(parameters) if parameters else dict(_EMPTY_SCHEMA)
        if tool.get("strict") is True:
            function["strict"] = True
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def _with_grammar(description: str | None, fmt: Any) -> str | None:
    """A custom tool's grammar stays with the model as part of its description (a function has no grammar)."""
    if not is_mapping(fmt) or fmt.get("type") != "grammar" or not isinstance(fmt.get("definition"), str):
        return description
    rule = f"The input must follow this {fmt.get('syntax') or ''} grammar:\n{fmt['definition']}".replace("  ", " ")
    return f"{description}\n\n{rule}" if description else rule


def tool_choice(choice: Any, table: ToolTable) -> tuple[Any, tuple[dict[str, Any], ...]]:
    """(canonical tool_choice or None, the tools it leaves callable) for a Responses `tool_choice`."""
    functions = table.functions
    if choice is None:
        return None, functions
    if isinstance(choice, str):
        if choice not in _CHOICES:
            raise InvalidRequest(
                f"Invalid value for 'tool_choice': expected one of auto, none or required, got {choice!r}.",
                param="tool_choice",
            )
        return choice, functions
    if not is_mapping(choice):
        raise invalid("tool_choice", "a string or an object", choice)
    kind = choice.get("type")
    if kind in ("function", "custom"):
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise missing("tool_choice.name")
        return {"type": "function", "function": {"name": table.canonical(name, choice.get("namespace"))}}, functions
    if kind == "allowed_tools":
        return _allowed(choice, table)
    return "auto", functions  # a built-in tool, dropped with its tool: the model chooses among the others


def _allowed(choice: Mapping[str, Any], table: ToolTable) -> tuple[Any, tuple[dict[str, Any], ...]]:
    mode = choice.get("mode", "auto")
    if mode not in ("auto", "required"):
        message = "Invalid value for 'tool_choice.mode': expected auto or required."
        raise InvalidRequest(message, param="tool_choice.mode")
    allowed = choice.get("tools")
    if not isinstance(allowed, list):
        raise invalid("tool_choice.tools", "an array of tools", allowed)
    names = {
        table.canonical(tool["name"], tool.get("namespace"))
        for tool in allowed
        if is_mapping(tool) and isinstance(tool.get("name"), str)
    }
    kept = tuple(f for f in table.functions if f["function"]["name"] in names)
    return (mode if kept else None), kept
