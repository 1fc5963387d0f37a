"""The drill's report card: a row per route, scenario and mode, as text (colour only on a TTY) or JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from turnout.ops.common import Style, plural, table
from turnout.schema.units import format_duration

RESULTS = ("rescued", "clean error", "failed", "skipped")
_COLOUR = {"ok": "", "rescued": "green", "clean error": "yellow", "failed": "red", "skipped": "dim"}


@dataclass(frozen=True, slots=True)
class Row:
    """One request (or the outage sequence) of one route under one scenario. `wall` and `deadline` are in policy
    time (seconds); `cost` is USD, None when unknown; `reason` says why, in the route's policy terms."""

    route: str
    scenario: str
    title: str
    mode: str
    result: str
    reason: str
    claim: str
    attempts: int
    served_by: str | None
    wall: float
    deadline: float
    cost: float | None
    trail: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Report:
    source: str
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()
    seed: int = 1

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.result == "failed"]

    def counts(self) -> dict[str, int]:
        return {result: sum(1 for r in self.rows if r.result == result) for result in ("ok", *RESULTS)}

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "seed": self.seed,
            "ok": not self.failed,
            "summary": self.counts(),
            "notes": list(self.notes),
            "rows": [{**asdict(r), "trail": list(r.trail)} for r in self.rows],
        }


def render(report: Report, style: Style) -> str:
    out = [
        style(f"turnout drill: {report.source}", "bold"),
        "every provider replaced by a loopback fake; times are policy time",
        "",
    ]
    out += [style(f"note: {note}", "yellow") for note in report.notes]
    routes = list(dict.fromkeys(r.route for r in report.rows))
    for name in routes:
        rows = [r for r in report.rows if r.route == name]
        out.append(style(f"route {name}", "bold"))
        cells = [
            [
                r.title,
                r.mode,
                r.result,
                str(r.attempts) if r.attempts else "-",
                r.served_by or "-",
                f"{r.wall:.1f}s / {format_duration(r.deadline)}" if r.result != "skipped" else "-",
                _cost(r) if r.result != "skipped" else "-",
                r.reason,
            ]
            for r in rows
        ]
        headers = ["scenario", "mode", "result", "attempts", "served by", "wall / deadline", "cost", "why"]
        text = table(headers, cells, style, [_COLOUR[r.result] for r in rows])
        out += ["  " + line for line in text.rstrip("\n").split("\n")]
        out.append("")
    counts = report.counts()
    out.append(
        f"{plural(counts['rescued'], 'rescue')}, {plural(counts['clean error'], 'clean error')}, "
        f"{counts['failed']} failed, {counts['skipped']} skipped"
    )
    for row in report.failed:
        out.append(style(f"FAILED {row.route} · {row.title} ({row.mode}): {row.reason}", "red"))
    return "\n".join(out) + "\n"


def _cost(row: Row) -> str:
    if row.cost is None:
        return "unknown"
    return "$0" if row.cost == 0 else f"${row.cost:.6f}"
