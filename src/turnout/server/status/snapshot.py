"""The status JSON: one process's snapshot, and the view built from every worker's snapshots.

`local_snapshot` reads this process's state (breakers, gates, in-flight counts, the StatusObserver's figures and
recent events, reload history, the state backend) into plain JSON data stamped with wall-clock time, so another
worker can read it from a file (`files.py`). `build_view` draws the routes of the current graph from them: every
route's chain as written, each member's state combined over the live workers (the worst wins: an open breaker in
one worker shows as open, "in 1 of 4 workers"), figures summed over the live workers, recent events merged by time.
The shape is documented in docs/observability.md ("The status JSON"); `VERSION` changes if it ever breaks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from turnout.server.status.observer import RECENT, StatusObserver
from turnout.server.status.stats import WINDOW, figures, merge

if TYPE_CHECKING:
    from turnout.router.graph import CompiledRoute, PlannedMember
    from turnout.server.app import Sidecar

VERSION = 1
LIMIT_SHOWN = 15.0  # seconds a rate-limit refusal keeps a deployment shown as "at its rate limit"
STATE_KEYS = ("state", "state_backend", "state_processes", "state_error", "state_restart_required")
SEVERITY = {"usable": 0, "rate_limited": 1, "half_open": 2, "open": 3}


def local_snapshot(sidecar: Sidecar, observer: StatusObserver, worker: str | None) -> dict[str, Any]:
    """This process's part of the status (see the module docstring)."""
    now = observer.clock()
    router = sidecar.router
    keys = router.graph.deployments
    observer.stats.retain(keys)
    limited = observer.limited
    for key in [k for k, (at, _) in limited.items() if k not in keys or now - at > LIMIT_SHOWN]:
        del limited[key]
    deployments: dict[str, dict[str, Any]] = {}
    for key, health in router.health.entries.items():
        breaker = health.breaker
        state = breaker.state
        entry: dict[str, Any] = {
            "breaker": state,
            "failures": breaker.failure_count,
            "trips": breaker.trips,
            "in_flight": health.in_flight,
        }
        if state == "open":
            entry["probe_at"] = now + max(0.0, breaker.open_remaining)
        gate = health.gate
        if gate is not None and gate.limited:
            entry["window"] = list(gate.usage())
        if key in limited:
            entry["limited_at"], entry["limit_reason"] = limited[key]
        deployments[key] = entry
    readiness = router.readiness()
    reloader = sidecar.reloader
    return {
        "worker": worker,
        "pid": os.getpid(),
        "at": now,
        "ready": bool(readiness.get("ready")) and not sidecar.draining,
        "draining": sidecar.draining,
        "in_flight": sidecar.in_flight,
        "state": {key: readiness.get(key) for key in STATE_KEYS},
        "config": reloader.status() if reloader is not None else None,
        "reloads": list(reloader.history) if reloader is not None else [],
        "deployments": deployments,
        "stats": observer.stats.summary(now),
        "recent": list(observer.recent),
    }


def build_view(sidecar: Sidecar, snapshots: Sequence[Mapping[str, Any]], now: float) -> dict[str, Any]:
    """The documented status JSON from the snapshots of every worker (this one's first)."""
    own = snapshots[0]
    live = [s for s in snapshots if s.get("live", True)]
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for snap in live:
        for key, entry in snap.get("deployments", {}).items():
            by_key.setdefault(key, []).append(entry)
    totals = merge(s.get("stats", {}) for s in live)
    graph = sidecar.router.graph
    routes = [_route(route, by_key, totals, now, len(live)) for route in graph.routes.values()]
    recent = [{**r, "worker": s.get("worker")} for s in snapshots for r in s.get("recent", ())]
    recent.sort(key=lambda r: r.get("at") or 0.0, reverse=True)
    return {
        "version": VERSION,
        "generated_at": now,
        "window_seconds": WINDOW,
        "ready": all(s.get("ready") for s in live),
        "status": "draining" if own.get("draining") else "ready" if own.get("ready") else "not_ready",
        "in_flight": sum(int(s.get("in_flight") or 0) for s in live),
        "config": own.get("config"),
        "state": _state(live),
        "disabled_providers": dict(graph.disabled_providers),
        "routes": routes,
        "recent": recent[:RECENT],
        "reloads": list(reversed(own.get("reloads", ()))),
        "workers": [_worker(s, now) for s in snapshots],
    }


def _route(
    route: CompiledRoute,
    by_key: Mapping[str, list[Mapping[str, Any]]],
    totals: Mapping[str, list[float]],
    now: float,
    workers: int,
) -> dict[str, Any]:
    steps = []
    usable = total = 0
    for step in route.plan:
        members = [_member(m, by_key.get(m.key, []), totals.get(m.key), now, workers) for m in step.members]
        total += len(members)
        usable += sum(1 for m in members if m["state"] in ("usable", "half_open", "rate_limited"))
        steps.append({"name": step.name, "kind": step.kind, "strategy": step.strategy, "deployments": members})
    return {
        "name": route.name,
        "kind": route.kind,
        "aliases": list(route.aliases),
        "description": route.description,
        "mid_stream": route.policy.mid_stream,
        "usable": usable,
        "total": total,
        "steps": steps,
    }


def _member(
    member: PlannedMember, entries: Sequence[Mapping[str, Any]], totals: list[float] | None, now: float, workers: int
) -> dict[str, Any]:
    """One chain member: its state (worst over the live workers), why, and its figures."""
    out: dict[str, Any] = {
        "key": member.key,
        "model": member.model,
        "provider": member.provider,
        "upstream": member.deployment.upstream if member.deployment is not None else None,
        "weight": member.weight,
    }
    opened = [e for e in entries if e.get("breaker") == "open"]
    half = [e for e in entries if e.get("breaker") == "half_open"]
    limited = sorted((e for e in entries if "limited_at" in e), key=lambda e: e["limited_at"])
    probe_in = None
    if member.deployment is None:
        state, reason = "disabled", member.excluded or "not available"
    elif opened:
        state = "open"
        probe_in = max(0.0, min(float(e.get("probe_at") or now) for e in opened) - now)
        reason = _in_workers("breaker open", len(opened), workers)
    elif half:
        state, reason = "half_open", _in_workers("breaker half-open: probing", len(half), workers)
    elif limited:
        state, reason = "rate_limited", str(limited[-1].get("limit_reason") or "at its rate limit")
    else:
        state, reason = "usable", None
    window = [e["window"] for e in entries if isinstance(e.get("window"), list)]
    out.update(
        state=state,
        reason=reason,
        probe_in=probe_in,
        breaker={
            "failures": max((int(e.get("failures") or 0) for e in entries), default=0),
            "trips": max((int(e.get("trips") or 0) for e in entries), default=0),
            "open_in": len(opened),
            "half_open_in": len(half),
        },
        in_flight=sum(int(e.get("in_flight") or 0) for e in entries),
        limits=_limits(member, window),
        stats=figures(totals),
    )
    return out


def _in_workers(text: str, count: int, workers: int) -> str:
    return text if workers <= 1 else f"{text} in {count} of {workers} workers"


def _limits(member: PlannedMember, window: Sequence[Sequence[int]]) -> dict[str, Any] | None:
    deployment = member.deployment
    if deployment is None or (deployment.limits.rpm is None and deployment.limits.tpm is None):
        return None
    return {
        "rpm": deployment.limits.rpm,
        "tpm": deployment.limits.tpm,
        # admitted in the current minute by the workers that answered (with Redis: this host's workers only)
        "used_requests": sum(int(w[0]) for w in window),
        "used_tokens": sum(int(w[1]) for w in window),
    }


def _state(live: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The state backend as the workers see it: degraded when any of them is."""
    states = [s.get("state") or {} for s in live]
    degraded = [s for s in states if s.get("state") == "degraded"]
    first = (degraded or states or [{}])[0]
    return {
        "state": "degraded" if degraded else first.get("state", "ok"),
        "backend": first.get("state_backend"),
        "processes": first.get("state_processes"),
        "error": first.get("state_error"),
        "restart_required": any(s.get("state_restart_required") for s in states),
        "degraded_workers": len(degraded),
    }


def _worker(snap: Mapping[str, Any], now: float) -> dict[str, Any]:
    config = snap.get("config") or {}
    return {
        "worker": snap.get("worker"),
        "pid": snap.get("pid"),
        "live": bool(snap.get("live", True)),
        "age_seconds": max(0.0, now - float(snap.get("at") or now)),
        "in_flight": snap.get("in_flight"),
        "ready": snap.get("ready"),
        "reloads": config.get("reloads"),
        "reload_failures": config.get("reload_failures"),
        "last_reload_failed": config.get("last_reload_error") is not None,
    }
