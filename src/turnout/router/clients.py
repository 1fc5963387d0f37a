"""Clients compiled for dispatch: who a key belongs to, which routes a client may use, its limits and budget.

`compile_clients(config, route_names)` is pure (part of compiling the graph): each client's route patterns are
expanded against the file's routes into a frozenset (None: every route), its budget into a `BudgetRule`, and
every key digest is indexed to its client's name. Looking a key up is one SHA-256 of the presented key and one
dict lookup: no comparison against each key, so timing tells nothing about the keys, and nothing after loading
holds a plaintext key.

A client's rate limits live in a gate of the state backend (shared by every replica with Redis), kept by
`ClientGates` across reloads while the client's limits stay the same, exactly as a deployment's window is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import MappingProxyType

from turnout.config import ClientSpec, Config, Limits, key_digest
from turnout.router.budgets import BudgetRule
from turnout.state import Gate, StateBackend
from turnout.state.meter import client_scope

GATE_PREFIX = "@client/"  # gate keys of clients: never a deployment key (those start with a provider name)
TAG_LIMIT = 64  # characters of a request's tag kept
_TAG_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/@+-")


@dataclass(frozen=True, slots=True, eq=False)
class CompiledClient:
    """A declared client, ready for admission. `routes` None means every route."""

    name: str
    routes: frozenset[str] | None
    limits: Limits
    budget: BudgetRule | None
    denies_unpriced: bool

    def may_use(self, route: str) -> bool:
        return self.routes is None or route in self.routes

    @property
    def limited(self) -> bool:
        return self.limits.rpm is not None or self.limits.tpm is not None


def compile_clients(
    config: Config, route_names: Iterable[str]
) -> tuple[Mapping[str, CompiledClient], Mapping[str, str]]:
    """(clients by name, client name by key digest)."""
    names = list(route_names)
    clients: dict[str, CompiledClient] = {}
    keys: dict[str, str] = {}
    for spec in config.clients.values():
        clients[spec.name] = _client(spec, names)
        for key in spec.keys:
            keys[key.digest] = spec.name
    return MappingProxyType(clients), MappingProxyType(keys)


def _client(spec: ClientSpec, route_names: list[str]) -> CompiledClient:
    routes = None
    if spec.routes is not None:
        routes = frozenset(r for r in route_names if any(fnmatchcase(r, p) for p in spec.routes))
    budget = BudgetRule.of(spec.budget, client_scope(spec.name), f"client '{spec.name}'") if spec.budget else None
    return CompiledClient(spec.name, routes, spec.limits, budget, spec.denies_unpriced)


def clean_tag(tag: str | None) -> str | None:
    """A caller's attribution tag as logs and events may carry it: at most TAG_LIMIT characters, each a letter,
    digit or one of `._:/@+-` (anything else becomes `_`); None when nothing is left."""
    if not tag:
        return None
    cut = tag[:TAG_LIMIT].strip()
    cleaned = "".join(c if c in _TAG_SAFE else "_" for c in cut)
    return cleaned or None


def client_of_key(keys: Mapping[str, str], presented: str) -> str | None:
    """The name of the client whose key was presented, or None."""
    return keys.get(key_digest(presented)) if presented else None


class ClientGates:
    """The rate-limit gate of every client with limits, kept across reloads while its limits are unchanged."""

    def __init__(self, state: StateBackend) -> None:
        self._state = state
        self._gates: dict[str, tuple[Limits, Gate | None]] = {}

    def sync(self, clients: Mapping[str, CompiledClient]) -> None:
        fresh: dict[str, tuple[Limits, Gate | None]] = {}
        for name, client in clients.items():
            if not client.limited:
                continue
            old = self._gates.get(name)
            if old is not None and old[0] == client.limits:
                fresh[name] = old
            else:
                fresh[name] = (client.limits, self._state.gate(GATE_PREFIX + name, client.limits, 0))
        self._gates = fresh

    def get(self, name: str) -> Gate | None:
        entry = self._gates.get(name)
        return entry[1] if entry is not None else None
