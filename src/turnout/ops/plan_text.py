"""`turnout plan` as text: readable in a terminal (colour only on a TTY) and in a pull-request comment.

Lines start with `+` (added), `-` (removed) or `~` (changed), so the `--markdown` form (the same text in a
```diff block under a heading) is coloured by GitHub and GitLab as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from turnout.ops.common import Style, plural
from turnout.ops.plan_diff import Change, Plan
from turnout.schema.units import format_duration

SECTIONS = ("routes", "pools", "deployments", "providers", "clients", "server", "state")
_ROUTE_SHAPE = (
    "chain",
    "deployments entering",
    "deployments leaving",
    "try order",
    "description",
    "kind",
    "aliases",
    "requires",
)
_DURATIONS = ("deadline", "timeout", "initial", "backoff.max", "max_retry_after", "interval")
_MARK = {"added": "+", "removed": "-", "changed": "~"}
_COLOUR = {"+": "green", "-": "red", "~": "yellow"}
LIST_LIMIT = 12  # names shown before "and N more" (the JSON always has them all)


def render(plan: Plan, style: Style, *, markdown: bool = False) -> str:
    """The whole plan as text; with `markdown` a heading plus the text in a diff block, never coloured."""
    if markdown:
        style = Style(False)
    head = f"turnout plan: {plan.old_source} → {plan.new_source}"
    summary = _summary(plan)
    lines: list[str] = []
    for warning in plan.warnings:
        lines.append(style(f"warning: {warning}", "yellow"))
    for section in SECTIONS:
        changes = [c for c in plan.changes if c.section == section]
        if changes:
            lines += ["", style(section, "bold"), *_section(section, changes, style)]
    lines += ["", style("health on reload (breaker state, rate-limit windows, latency)", "bold"), *_health(plan)]
    if markdown:
        return f"#### {head}\n\n{summary}\n\n```diff\n" + "\n".join(lines).strip("\n") + "\n```\n"
    return style(head, "bold") + "\n" + summary + "\n" + "\n".join(lines) + "\n"


def _summary(plan: Plan) -> str:
    if not plan.changes:
        return "no changes: a reload would keep every route as it is"
    parts = []
    for section in SECTIONS:
        subjects = {c.subject for c in plan.changes if c.section == section}
        if subjects:
            noun = f"{section} setting" if section in ("server", "state") else section.rstrip("s")
            parts.append(plural(len(subjects), noun))
    return f"{plural(len(plan.changes), 'change')}: " + ", ".join(parts) + " affected"


def _section(section: str, changes: list[Change], style: Style) -> list[str]:
    lines: list[str] = []
    grouped: dict[tuple[str, str, str], list[str]] = {}
    by_subject: dict[str, list[Change]] = {}
    for change in changes:
        if section == "routes" and change.kind == "changed" and change.field not in _ROUTE_SHAPE:
            key = (change.field, _value(change.field, change.old), _value(change.field, change.new))
            grouped.setdefault(key, []).append(change.subject)
        else:
            by_subject.setdefault(change.subject, []).append(change)
    for subject, items in by_subject.items():
        first = items[0]
        if first.kind in ("added", "removed"):
            mark = _MARK[first.kind]
            lines.append(style(f"  {mark} {subject}{_about(section, first)}", _COLOUR[mark]))
            continue
        lines.append(style(f"  ~ {subject}", "yellow"))
        lines += [f"      {_changed(c)}" for c in items]
    for (name, was, now), routes in grouped.items():
        lines.append(style(f"  ~ {name}: {was} → {now}", "yellow") + f"  ({_names(routes)})")
    return lines


def _about(section: str, change: Change) -> str:
    """A one-line description of an added or removed item."""
    item = change.new if change.kind == "added" else change.old
    if section == "routes":
        return f": chain {' → '.join(s['target'] for s in item['chain'])}"
    if section == "pools":
        return f": {item['strategy']} over {', '.join(m['deployment'] for m in item['members'])}"
    if section == "deployments":
        price = item["price"]
        cost = f", ${money(price['input'])} in / ${money(price['output'])} out per 1M" if price else ", price unknown"
        return f" (upstream {item['upstream']}{cost})"
    if section == "providers":
        return f" (driver {item['driver']})"
    if section == "clients":
        routes = ", ".join(item["routes"]) if item["routes"] is not None else "every route"
        budget = item["budget"]
        spend = f", budget ${money(budget['usd'])} per {budget['per']}" if budget else ""
        return f" ({plural(item['keys'], 'key')}, routes {routes}{spend})"
    return ""


def _changed(change: Change) -> str:
    name = change.field
    if name == "chain":
        tail = " (reordered)" if change.note == "reordered" else ""
        return f"chain: {' → '.join(change.old)}  ⇒  {' → '.join(change.new)}{tail}"
    if name in ("deployments entering", "members entering"):
        return f"{name}: {_names(change.new)}"
    if name in ("deployments leaving", "members leaving"):
        return f"{name}: {_names(change.old)}"
    if name in ("try order", "member order"):
        return f"{name}: {', '.join(change.old)}  ⇒  {', '.join(change.new)}"
    if name == "credentials":
        return change.note
    note = f" ({change.note})" if change.note else ""
    label = name.replace("price.", "price ") + (" per 1M" if name.startswith("price.") else "")
    return f"{label}: {_value(name, change.old)} → {_value(name, change.new)}{note}"


def _health(plan: Plan) -> list[str]:
    health = plan.health
    lines = _health_lines(health["kept"], health["reset"], health["fresh"], "  ")
    if health["dropped"]:
        lines.append(f"  dropped  {len(health['dropped'])}: {_names(health['dropped'])} (their health is discarded)")
    inactive = health["inactive"]
    if inactive:
        lines.append(f"  inactive {len(inactive)}: provider disabled in {plan.new_source}, so no health; once enabled:")
        kept = [e["deployment"] for e in inactive if e["would"] == "keep"]
        reset = [e for e in inactive if e["would"] == "reset"]
        fresh = [e["deployment"] for e in inactive if e["would"] == "start fresh"]
        lines += _health_lines(kept, reset, fresh, "      ")
    return lines or ["  (no deployments)"]


def _health_lines(kept: list[str], reset: list[Mapping[str, Any]], fresh: list[str], indent: str) -> list[str]:
    lines = []
    if kept:
        lines.append(f"{indent}kept     {len(kept)}: {_names(kept)}")
    lines += [f"{indent}reset      {e['deployment']}: {'; '.join(e['because'])}" for e in reset]
    if fresh:
        lines.append(f"{indent}fresh    {len(fresh)}: {_names(fresh)} (new)")
    return lines


def _names(names: Iterable[str]) -> str:
    names = list(names)
    if len(names) <= LIST_LIMIT:
        return ", ".join(names)
    return ", ".join(names[:LIST_LIMIT]) + f" and {len(names) - LIST_LIMIT} more"


def _value(name: str, value: Any) -> str:
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and any(part in name for part in _DURATIONS):
        return format_duration(float(value))
    if name.startswith("price.") or name.endswith("budget.usd"):
        return f"${money(value)}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def money(value: Any) -> str:
    """A price with at least two decimals: 0.3 -> 0.30, 0.075 -> 0.075, 10 -> 10.00."""
    text = str(value)
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"
