"""Finding a driver class by name: explicit mapping > built-ins > `turnout.drivers` entry points.

Built-ins are imported only when a routing file uses them. There is no module-level mutable registry: a
`DriverRegistry` is a value an embedder builds (or the Router builds with defaults).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from types import MappingProxyType

from turnout.drivers.base import Driver

ENTRY_POINT_GROUP = "turnout.drivers"

# name -> "module:ClassName"; `azure` is the OpenAI driver's Azure flavour.
BUILTIN: Mapping[str, str] = MappingProxyType(
    {
        "openai": "turnout.drivers.openai:OpenAIDriver",
        "azure": "turnout.drivers.openai:AzureOpenAIDriver",
        "anthropic": "turnout.drivers.anthropic:AnthropicDriver",
        "gemini": "turnout.drivers.gemini:GeminiDriver",
        "ollama": "turnout.drivers.ollama:OllamaDriver",
        "mock": "turnout.drivers.mock:MockDriver",
    }
)


class UnknownDriver(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown driver '{name}'; known drivers: {', '.join(known)}")


class DriverRegistry:
    """Resolves driver names to classes. `explicit` (from an embedder) wins over everything else."""

    def __init__(self, explicit: Mapping[str, type[Driver]] | None = None, *, use_entry_points: bool = True) -> None:
        self._explicit = MappingProxyType(dict(explicit or {}))
        self._use_entry_points = use_entry_points

    def names(self) -> list[str]:
        names = set(self._explicit) | set(BUILTIN)
        if self._use_entry_points:
            names |= {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
        return sorted(names)

    def knows(self, name: str) -> bool:
        return name in self.names()

    def resolve(self, name: str) -> type[Driver]:
        if name in self._explicit:
            return self._explicit[name]
        if name in BUILTIN:
            module_name, _, attr = BUILTIN[name].partition(":")
            return getattr(importlib.import_module(module_name), attr)
        if self._use_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
                return ep.load()
        raise UnknownDriver(name, self.names())
