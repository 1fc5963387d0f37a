"""Who is asking: the declared client a request's key belongs to, and whether a request is an admin's.

**Client keys** open the model endpoints (`/v1/*`). With any client declared (the file's `clients:` section) every
such request must carry one, as `Authorization: Bearer <key>` or `x-api-key: <key>` (Anthropic's clients); the key
is looked up by its SHA-256 (one hash and one dict lookup: `Router.client_of_key`), and the request runs as that
client: its routes, rate limits and budget apply, and the access log, events and metrics name it. A key that
matches no client gets 401; the log names it by a short digest prefix, never the key (at most once a minute per
key, so a flood cannot flood the log). With no client declared the model endpoints are open to loopback Hosts
and `server.allowed_hosts` only (the DNS-rebinding guard, `hosts.py`), and callers are anonymous.

**The admin key rule** (`is_admin`), for /admin/*, the /readyz detail and a protected /metrics, and nothing else:
- `server.admin_keys` set: the request carries one of them (compared in constant time). Client keys never open
  an admin endpoint, and an admin key is not a client key.
- no admin keys, but clients declared: closed (a key-holding client must not become an admin by default).
- neither: the loopback/allowed Host rule, as the model endpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from turnout.config import key_digest
from turnout.server import errors

log = logging.getLogger("turnout.server")
NOTE_EVERY = 60.0  # seconds between two log lines about the same unknown key
NOTED_LIMIT = 1024  # unknown keys remembered for that (then forgotten all at once)
UNKNOWN_KEY_MESSAGE = (
    "Missing or invalid API key. Send 'Authorization: Bearer <key>' with the key of a client declared in the "
    "routing file's clients section."
)
ADMIN_KEY_MESSAGE = (
    "Admin endpoints need one of server.admin_keys (as 'Authorization: Bearer <key>'); client keys do not open them."
)
ADMIN_CLOSED_MESSAGE = (
    "Admin endpoints are closed: the file declares clients but no server.admin_keys. Set server.admin_keys to use "
    "them (a reload also happens on SIGHUP and when the file changes)."
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a model request comes from: a declared client (None: anonymous), its sanitised `x-turnout-tag`, and for
    a refused key its digest prefix (for the access log)."""

    client: str | None
    tag: str | None = None
    unknown_key: str | None = None


ANONYMOUS = Caller(None)


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """The keys a request presents: its bearer token and its `x-api-key`, in that order (either may be absent)."""
    keys = []
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    api_key = headers.get("x-api-key", "").strip()
    if api_key:
        keys.append(api_key)
    return keys


def presented_key(headers: Mapping[str, str]) -> str:
    """The first key a request presents ("" when none)."""
    keys = presented_keys(headers)
    return keys[0] if keys else ""


def shown(key: str) -> str:
    """How logs name a key: a short prefix of its SHA-256 digest."""
    return f"sha256:{key_digest(key)[:8]}…"


class Callers:
    """Identifies clients and admins for one Sidecar (its settings and Router are read at each call)."""

    def __init__(self, sidecar: Any) -> None:
        self.sc = sidecar
        self._noted: dict[str, float] = {}

    def client(self, request: Any, unauthorized: str = UNKNOWN_KEY_MESSAGE) -> str | errors.Failure | None:
        """The declared client making `request` (None: anonymous, no clients declared), or the refusal: 401 for
        a missing or unknown key, 403 for a Host the guard refuses. `unauthorized` is the ingress's 401 text."""
        settings = self.sc.settings
        if not settings.clients_on:
            if settings.hosts.allows(request.headers.get("Host")):
                return None
            return errors.host_not_allowed()
        keys = presented_keys(request.headers)
        for key in keys:
            name = self.sc.router.client_of_key(key)
            if name is not None:
                return name
        if keys:
            self._note_unknown(keys[0], request)
        return errors.simple(401, unauthorized, code="invalid_api_key")

    def is_admin(self, request: Any) -> bool:
        """The admin key rule (see the module docstring)."""
        settings = self.sc.settings
        if settings.admin_keys.enabled:
            return settings.admin_keys.allows(request.headers)
        if settings.clients_on:
            return False
        return settings.hosts.allows(request.headers.get("Host"))

    def admin_refusal(self, request: Any) -> errors.Failure | None:
        """The refusal of a request that is not an admin's (cross-site requests included), or None."""
        from turnout.server.hosts import cross_site

        if cross_site(request.headers):
            return errors.cross_site()
        if self.is_admin(request):
            return None
        settings = self.sc.settings
        if settings.admin_keys.enabled:
            return errors.simple(401, ADMIN_KEY_MESSAGE, code="invalid_api_key")
        if settings.clients_on:
            return errors.simple(403, ADMIN_CLOSED_MESSAGE, code="admin_closed")
        return errors.host_not_allowed()

    def unknown_key_of(self, request: Any) -> str | None:
        """For the access log of a 401: the presented key's digest prefix (None when no key was presented)."""
        key = presented_key(request.headers)
        return shown(key) if key else None

    def _note_unknown(self, key: str, request: Any) -> None:
        prefix = shown(key)
        now = time.monotonic()
        if now - self._noted.get(prefix, -NOTE_EVERY) < NOTE_EVERY:
            return
        if len(self._noted) >= NOTED_LIMIT:
            self._noted.clear()
        self._noted[prefix] = now
        log.warning("unknown client key %s on %s %s (refused with 401)", prefix, request.method, request.path)
