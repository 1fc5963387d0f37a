"""Breaker news between replicas: what one replica decided, carried by Redis pub/sub and reconciled periodically.

A replica whose own breaker opens or closes publishes the change (`scripts/breakers.lua` stores it in the
breakers hash, stamped with the server's time, and publishes it). Every other replica applies it to its local
breaker at once (pub/sub) or, if it missed the message, at the next reconcile from the hash (every sync
interval). Ordering is by the server's timestamp of each change, so a stale message never undoes a newer state.
A deployment whose local change has not been published yet (Redis was away) keeps its local state until it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Change:
    """One replica's decision about one deployment's breaker, as stored in Redis."""

    deployment: str
    state: str  # "open" | "closed"
    until_us: int  # server time the open period ends (0 when closed)
    trips: int
    changed_us: int  # server time of the decision: orders changes
    origin: str  # the replica that decided

    def remaining(self, now_us: int) -> float:
        return max(0.0, (self.until_us - now_us) / 1_000_000)


def parse_stored(deployment: str, value: Any) -> Change | None:
    """A breakers-hash value "state|until_us|trips|changed_us|origin"; None when malformed."""
    parts = _text(value).split("|", 4)
    if len(parts) != 5 or parts[0] not in ("open", "closed"):
        return None
    try:
        return Change(deployment, parts[0], int(parts[1]), int(parts[2]), int(parts[3]), parts[4])
    except ValueError:
        return None


def parse_message(data: Any) -> tuple[Change, int] | None:
    """A published "deployment|state|until_us|trips|changed_us|origin|now_us": the change and the server time."""
    text = _text(data)
    deployment, _, rest = text.partition("|")
    stored, _, now = rest.rpartition("|")
    change = parse_stored(deployment, stored) if deployment and stored else None
    if change is None:
        return None
    try:
        return change, int(now)
    except ValueError:
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Newsroom:
    """Applies other replicas' changes in order. `apply(deployment, state, remaining, trips, origin)` is the
    Router's callback; `pending` holds this replica's changes that Redis has not confirmed yet."""

    def __init__(self, replica: str, apply: Callable[[str, str, float | None, int, str], None] | None) -> None:
        self.replica = replica
        self._apply = apply
        self.seen: dict[str, int] = {}  # deployment -> changed_us of the newest change applied or made here
        self.pending: dict[str, tuple[str, float | None, int, float]] = {}  # deployment -> (state, open_for, trips, at)

    def local(self, deployment: str, state: str, open_for: float | None, trips: int, at: float) -> None:
        """This replica decided: remember it until it is published."""
        self.pending[deployment] = (state, open_for, trips, at)

    def published(self, deployments: list[str], changed_us: int) -> None:
        for deployment in deployments:
            self.pending.pop(deployment, None)
            self.seen[deployment] = max(self.seen.get(deployment, 0), changed_us)

    def receive(self, change: Change, now_us: int) -> bool:
        """Apply `change` if it is another replica's, newer than what we have, and we have nothing unpublished."""
        deployment = change.deployment
        if change.changed_us <= self.seen.get(deployment, 0) or deployment in self.pending:
            return False
        self.seen[deployment] = change.changed_us
        if change.origin == self.replica:
            return False
        if change.state == "open":
            remaining = change.remaining(now_us)
            if remaining <= 0:
                return False  # it has run its course: our own breaker decides what happens next
            if self._apply is not None:
                self._apply(deployment, "open", remaining, change.trips, change.origin)
        elif self._apply is not None:
            self._apply(deployment, "closed", None, change.trips, change.origin)
        return True

    def reconcile(self, stored: list[Any], now_us: int) -> int:
        """Apply the breakers hash (a flat field/value list from HGETALL); returns how many changes applied."""
        applied = 0
        for i in range(0, len(stored) - 1, 2):
            change = parse_stored(_text(stored[i]), stored[i + 1])
            if change is not None and self.receive(change, now_us):
                applied += 1
        return applied

    def outbox(self, now: float) -> list[Any]:
        """breakers.lua arguments for every unpublished change (open periods shortened by the time they waited)."""
        args: list[Any] = []
        for deployment, (state, open_for, trips, at) in self.pending.items():
            left = max(0.0, (open_for or 0.0) - (now - at)) if state == "open" else 0.0
            args += [deployment, state, int(left * 1_000_000), trips, self.replica]
        return args
