"""Load-time checks of clients, keys and budgets (the `clients:` section, `budget:` on routes and models,
`server.admin_keys`, `state.ledger`), on rendered data.

Keys are secrets: no message quotes one, and two keys are compared by their SHA-256 digests only. A key written as
`sha256:<hex>` is already a digest. Route patterns are globs (`fnmatch`, case-sensitive) over route names; a plain
name must be a route (a typo would silently lock the client out), a pattern that matches nothing is a warning.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from turnout.config import key_digest
from turnout.schema.problems import Path, did_you_mean
from turnout.schema.templates import is_template

if TYPE_CHECKING:
    from turnout.schema.checks import Checker

DIGEST_PREFIX = "sha256:"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
GLOB_CHARS = frozenset("*?[")
SHORT_KEY = 16  # characters; a shorter plaintext key is guessable


def is_glob(pattern: str) -> bool:
    return any(c in GLOB_CHARS for c in pattern)


def digest_of(key: str) -> str | None:
    """The SHA-256 hex digest a rendered key stands for (`sha256:<hex>` as written, else hashed); None when a
    `sha256:` key is malformed."""
    if key.startswith(DIGEST_PREFIX):
        hexdigest = key[len(DIGEST_PREFIX) :].strip()
        return hexdigest.lower() if _HEX64.match(hexdigest) else None
    return key_digest(key)


class ClientChecks:
    """The client and budget half of the semantic checks, over a `Checker`'s data and reporter."""

    def __init__(self, checker: Checker) -> None:
        self.c = checker
        self.r = checker.r
        self.clients = _dict(checker.data.get("clients"))
        self._seen: dict[str, Path] = {}  # key digest -> where it was first declared

    def run(self) -> None:
        for name, spec in self.clients.items():
            self._client(name, _dict(spec))
        self._admin_keys()
        for name, spec in self.c.models.items():
            spec = _dict(spec)
            if "budget" in spec and spec.get("price") is None:
                self.r.error(
                    ("models", name, "budget"),
                    "a budget needs the model's price (spend is counted in USD); add price: {input: ..., output: ...}",
                    key=True,
                )
        for name, spec in self.c.routes.items():
            if "budget" in _dict(spec):
                self._route_budget(name, _dict(spec))
        self._ledger()

    def _admin_keys(self) -> None:
        server = _dict(self.c.data.get("server"))
        for i, key in enumerate(_list(server.get("admin_keys"))):
            self._key(key, ("server", "admin_keys", i), admin=True)

    def _client(self, name: str, spec: dict[str, Any]) -> None:
        path = ("clients", name)
        usable = 0
        for i, key in enumerate(_list(spec.get("keys"))):
            usable += self._key(key, (*path, "keys", i), admin=False)
        if usable == 0 and isinstance(spec.get("keys"), list):
            self.r.warning(
                (*path, "keys"),
                f"client '{name}' has no usable key: no request can authenticate as it "
                "(Router.chat(client=...) still can)",
            )
        for i, pattern in enumerate(_list(spec.get("routes"))):
            if isinstance(pattern, str) and pattern and not is_template(pattern):
                self._route_pattern(pattern, (*path, "routes", i))
        if "unpriced" in spec and "budget" not in spec:
            self.r.warning((*path, "unpriced"), "unpriced has no effect without a budget")

    def _key(self, key: Any, path: Path, *, admin: bool) -> int:
        """Check one rendered key; 1 when it is usable. Duplicates are errors: a key names one client (or admin)."""
        if not isinstance(key, str) or not key.strip() or is_template(key):
            return 0  # empty ones were reported while rendering; a template left here failed to render
        digest = digest_of(key.strip())
        if digest is None:
            self.r.error(
                path, "a key starting with 'sha256:' must be followed by the key's 64 hex digit SHA-256 digest"
            )
            return 0
        first = self._seen.get(digest)
        if first is not None:
            self.r.error(path, _duplicate(first, admin))
            return 0
        self._seen[digest] = path
        if not key.startswith(DIGEST_PREFIX) and len(key.strip()) < SHORT_KEY:
            self.r.warning(
                path, f"key is shorter than {SHORT_KEY} characters: use a long random one (openssl rand -hex 24)"
            )
        return 1

    def _route_pattern(self, pattern: str, path: Path) -> None:
        routes = list(self.c.routes)
        if is_glob(pattern):
            if not any(fnmatchcase(route, pattern) for route in routes):
                self.r.warning(path, f"pattern '{pattern}' matches no route")
        elif pattern not in self.c.routes:
            owner = next(
                (name for name, spec in self.c.routes.items() if pattern in _list(_dict(spec).get("aliases"))), None
            )
            if owner is not None:
                self.r.error(path, f"'{pattern}' is an alias of route '{owner}': list the route ('{owner}')")
            else:
                self.r.error(path, f"unknown route '{pattern}'{did_you_mean(pattern, routes)}")

    def _route_budget(self, route: str, spec: dict[str, Any]) -> None:
        unpriced = []
        for target in _list(spec.get("chain")):
            if isinstance(target, str):
                unpriced += [m for m in self.c._expand(target) if _dict(self.c.models.get(m)).get("price") is None]
        if unpriced:
            names = ", ".join(dict.fromkeys(unpriced))
            self.r.warning(
                ("routes", route, "budget"),
                f"{names} {'has' if len(unpriced) == 1 else 'have'} no price: skipped on this route, whose budget "
                "could not count their calls",
                key=True,
            )

    def _ledger(self) -> None:
        state = _dict(self.c.data.get("state"))
        if "ledger" in state and state.get("backend", "local") == "redis":
            self.r.warning(("state", "ledger"), "ledger is ignored with backend redis (Redis holds the ledger)")


def _duplicate(first: Path, admin: bool) -> str:
    """Why a key seen before at `first` cannot appear again (never quoting it)."""
    first_admin = first[0] == "server"
    owner = "an admin key" if first_admin else f"a key of client '{first[1]}'"
    if admin and first_admin:
        return "this admin key is listed twice"
    if admin or first_admin:
        return f"this key is also {owner}: admin keys and client keys must differ"
    return f"this key is also {owner}: a key identifies exactly one client"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
