"""The difference between two snapshots (`turnout.ops.snapshot`), stated in routing terms.

`compare(old, new)` returns a `Plan`: a list of `Change`s (routes, pools, deployments, providers, server) and what
the reload would do to each deployment's health. Health is decided by `keeps_health` on the snapshots' health
digests: the very rule `HealthTable.sync` applies on a reload, so the plan cannot disagree with the reload.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from turnout.ops.snapshot import health_of
from turnout.router.health import HealthIdentity, keeps_health

# What each HealthIdentity component means to an operator (why a deployment's health is reset).
HEALTH_REASONS: Mapping[str, str] = {
    "breaker": "breaker policy changed",
    "limits": "rate limits changed",
    "provider": "provider settings changed (driver, URL, credentials, headers, options or timeouts)",
    "upstream": "upstream model changed",
    "options": "model options changed",
}
assert set(HEALTH_REASONS) == set(HealthIdentity._fields)
# A provider's settings as a snapshot shows them (masked); a change only its digest sees is a credential's.
_PROVIDER_FIELDS = (
    "driver",
    "base_url",
    "options",
    "headers",
    "connect_timeout",
    "breaker",
    "enabled",
    "disabled_reason",
)


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. `section`: routes | pools | deployments | providers | clients | server | state; `kind`: added |
    removed |
    changed; `field` names what changed (dotted, "" for a whole item); `note` adds e.g. a relative price change."""

    section: str
    subject: str
    kind: str
    field: str = ""
    old: Any = None
    new: Any = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    old_source: str
    new_source: str
    changes: tuple[Change, ...]
    health: Mapping[str, Any]  # kept / reset / fresh / dropped / inactive
    warnings: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_json(self) -> dict[str, Any]:
        sections: dict[str, int] = {}
        for change in self.changes:
            sections[change.section] = sections.get(change.section, 0) + 1
        return {
            "old": self.old_source,
            "new": self.new_source,
            "changed": self.changed,
            "summary": {"changes": len(self.changes), "by_section": sections},
            "changes": [asdict(c) for c in self.changes],
            "health": self.health,
            "warnings": list(self.warnings),
        }


def compare(old: Mapping[str, Any], new: Mapping[str, Any], *, remote: bool = False) -> Plan:
    """The plan from snapshot `old` to snapshot `new` (both taken with the same salt)."""
    changes = [
        *_routes(old["routes"], new["routes"]),
        *_pools(old["pools"], new["pools"]),
        *_deployments(old["deployments"], new["deployments"]),
        *_providers(old["providers"], new["providers"]),
        *_clients(old.get("clients") or {}, new.get("clients") or {}),
        *_server(old["server"], new["server"]),
        *_state(old.get("state") or {}, new.get("state") or {}),
    ]
    warnings = _environment_warnings(old, new) if remote else ()
    return Plan(old["source"], new["source"], tuple(changes), health_plan(old, new), tuple(warnings))


def health_plan(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """What a reload from `old` to `new` does to each deployment's health (breaker, rate windows, latency).

    Only deployments of enabled providers have health. One in both files keeps it exactly when `keeps_health`
    says so; otherwise it is reset (with the components that differ). New ones start fresh; the rest are dropped.
    Deployments whose provider is disabled in `new` have none ("inactive"); for them the plan still says what the
    same rule would do once the provider is enabled (a plan run in CI, without the production keys, needs that).
    """
    before = {k: d for k, d in old["deployments"].items() if d["enabled"]}
    after = {k: d for k, d in new["deployments"].items() if d["enabled"]}
    kept, reset, fresh, inactive = [], [], [], []
    for key, deployment in new["deployments"].items():
        active = key in after
        previous = (before if active else old["deployments"]).get(key)
        if previous is None:
            (fresh if active else inactive).append(key if active else {"deployment": key, "would": "start fresh"})
            continue
        was, now = health_of(previous), health_of(deployment)
        differing = [name for name in HealthIdentity._fields if getattr(was, name) != getattr(now, name)]
        because = [HEALTH_REASONS[name] for name in differing]
        if not active:
            would = "keep" if keeps_health(was, now) else "reset"
            inactive.append({"deployment": key, "would": would, "because": because})
        elif keeps_health(was, now):
            kept.append(key)
        else:
            reset.append({"deployment": key, "because": because})
    dropped = [key for key in before if key not in after]
    return {"kept": kept, "reset": reset, "fresh": fresh, "dropped": dropped, "inactive": inactive}


# ---- sections -----------------------------------------------------------------------------------------------------


def _added_removed(section: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    for name in new:
        if name not in old:
            yield Change(section, name, "added", new=_shown(new[name]))
    for name in old:
        if name not in new:
            yield Change(section, name, "removed", old=_shown(old[name]))


def _shown(item: Mapping[str, Any]) -> dict[str, Any]:
    """An added or removed item without its digests (salted per snapshot, they mean nothing on their own)."""
    return {k: v for k, v in item.items() if k not in ("health", "digest", "keys_digest")}


def _routes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    yield from _added_removed("routes", old, new)
    for name in new:
        if name not in old:
            continue
        was, now = old[name], new[name]
        targets_was = [s["target"] for s in was["chain"]]
        targets_now = [s["target"] for s in now["chain"]]
        if targets_was != targets_now:
            reordered = sorted(targets_was) == sorted(targets_now)
            yield Change("routes", name, "changed", "chain", targets_was, targets_now, "reordered" if reordered else "")
        deployments_was = [d for s in was["chain"] for d in s["deployments"]]
        deployments_now = [d for s in now["chain"] for d in s["deployments"]]
        entering = [d for d in dict.fromkeys(deployments_now) if d not in deployments_was]
        leaving = [d for d in dict.fromkeys(deployments_was) if d not in deployments_now]
        if entering:
            yield Change("routes", name, "changed", "deployments entering", None, entering)
        if leaving:
            yield Change("routes", name, "changed", "deployments leaving", leaving, None)
        if not entering and not leaving and deployments_was != deployments_now and targets_was == targets_now:
            yield Change("routes", name, "changed", "try order", deployments_was, deployments_now)
        yield from _fields("routes", name, _about(was), _about(now))
        yield from _fields("routes", name, flatten(was["policy"]), flatten(now["policy"]))


def _about(route: Mapping[str, Any]) -> dict[str, Any]:
    """A route's own settings beside its chain and policy (a sidecar older than kinds, aliases and budgets has
    none of them)."""
    return {
        "description": route["description"],
        "kind": route.get("kind", "chat"),
        "aliases": route.get("aliases", []),
        "requires": route["requires"],
        **flatten({"budget": route.get("budget")}),
    }


def _pools(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    yield from _added_removed("pools", old, new)
    for name in new:
        if name not in old:
            continue
        was, now = old[name], new[name]
        if was["strategy"] != now["strategy"]:
            yield Change("pools", name, "changed", "strategy", was["strategy"], now["strategy"])
        weights_was = {m["deployment"]: m["weight"] for m in was["members"]}
        weights_now = {m["deployment"]: m["weight"] for m in now["members"]}
        entering = [d for d in weights_now if d not in weights_was]
        leaving = [d for d in weights_was if d not in weights_now]
        if entering:
            yield Change("pools", name, "changed", "members entering", None, entering)
        if leaving:
            yield Change("pools", name, "changed", "members leaving", leaving, None)
        common_was = [d for d in weights_was if d in weights_now]
        common_now = [d for d in weights_now if d in weights_was]
        if common_was != common_now:
            yield Change("pools", name, "changed", "member order", common_was, common_now)
        for deployment in common_now:
            if weights_was[deployment] != weights_now[deployment]:
                field_name = f"weight of {deployment}"
                yield Change("pools", name, "changed", field_name, weights_was[deployment], weights_now[deployment])


def _deployments(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    yield from _added_removed("deployments", old, new)
    for key in new:
        if key not in old:
            continue
        was = {k: v for k, v in old[key].items() if k not in ("health", "enabled", "provider", "model")}
        now = {k: v for k, v in new[key].items() if k not in ("health", "enabled", "provider", "model")}
        for change in _fields("deployments", key, flatten(was), flatten(now)):
            if change.field.startswith("price."):
                change = Change(change.section, key, "changed", change.field, change.old, change.new, _relative(change))
            yield change


def _providers(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    yield from _added_removed("providers", old, new)
    for name in new:
        if name not in old:
            continue
        was = {k: old[name][k] for k in _PROVIDER_FIELDS}
        now = {k: new[name][k] for k in _PROVIDER_FIELDS}
        changes = list(_fields("providers", name, flatten(was), flatten(now)))
        yield from changes
        if not changes and old[name]["digest"] != new[name]["digest"]:
            note = "credentials, header values or masked settings changed"
            yield Change("providers", name, "changed", "credentials", note=note)


def _clients(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    """Clients by name; their keys are compared by count and by a keyed digest, so a rotation shows, never a key."""
    yield from _added_removed("clients", old, new)
    for name in new:
        if name not in old:
            continue
        was = {k: v for k, v in old[name].items() if k != "keys_digest"}
        now = {k: v for k, v in new[name].items() if k != "keys_digest"}
        changes = list(_fields("clients", name, flatten(was), flatten(now)))
        yield from changes
        if old[name]["keys_digest"] != new[name]["keys_digest"] and not any(c.field == "keys" for c in changes):
            yield Change("clients", name, "changed", "credentials", note="a key was replaced (the same number of keys)")


def _server(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    for change in _fields("server", "server", old, new):
        if change.field == "admin_keys_digest":
            if old.get("admin_keys") == new.get("admin_keys"):
                yield Change("server", "server", "changed", "credentials", note="an admin key was replaced")
            continue
        yield change


def _state(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    """The state section (absent from an older sidecar's snapshot: nothing to compare). A new backend, url or key
    prefix takes a restart: a reload keeps the running backend, so the note says so."""
    if not old or not new:
        return
    for change in _fields("state", "state", old, new):
        if change.field == "url_digest":
            if old.get("url") == new.get("url"):
                note = "url credentials changed (takes effect on a restart)"
                yield Change("state", "state", "changed", "credentials", note=note)
            continue
        restart = change.field in ("backend", "url", "key_prefix", "ledger")
        yield Change(change.section, change.subject, change.kind, change.field, change.old, change.new,
                     "takes effect on a restart" if restart else "")  # fmt: skip


def _fields(section: str, subject: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    """One change per key whose value differs (keys of `new` in order, then keys only `old` has)."""
    for key in [*new, *(k for k in old if k not in new)]:
        was, now = old.get(key), new.get(key)
        if was != now:
            yield Change(section, subject, "changed", key, was, now)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"retry": {"attempts": 2}} -> {"retry.attempts": 2}; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _relative(change: Change) -> str:
    """'+100%' for a price that doubled; '' when either side is unknown or the old price was 0."""
    try:
        was, now = Decimal(str(change.old)), Decimal(str(change.new))
    except (InvalidOperation, ValueError):
        return "new price" if change.old is None and change.new is not None else ""
    if was == 0:
        return "was free" if now != 0 else ""
    percent = (now - was) / was * 100
    return f"{percent:+.1f}%".replace(".0%", "%")


def _environment_warnings(served: Mapping[str, Any], local: Mapping[str, Any]) -> list[str]:
    """Providers the sidecar has enabled that this shell's environment disables: probably a missing variable."""
    out = []
    for name, provider in local["providers"].items():
        running = served["providers"].get(name)
        if running is not None and running["enabled"] and not provider["enabled"]:
            out.append(
                f"provider '{name}' is enabled on the sidecar but disabled here ({provider['disabled_reason']}): "
                "run the plan with the sidecar's environment, or its deployments show as leaving"
            )
    return out
