"""`turnout spend [FILE]`: what was spent, per client, route and deployment, and where each budget stands.

It reads the ledger the file's `state:` section names: the sqlite file of the local backend (opened read-only, so
it never creates one and never blocks a running sidecar), or Redis. A running sidecar's last second of spend may
not be flushed yet; `GET /admin/spend` answers from the sidecar's own view, which includes it. The same report
(`report()`) is what that endpoint serves.

Exit codes: 0 (a report, possibly empty when nothing was recorded yet), 1 invalid file or unreadable ledger, 2 usage
error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from turnout.config import Config
from turnout.ops.common import DEFAULT_FILE, EXIT_INVALID, EXIT_OK, Style, load_routing_file, print_json, table
from turnout.router.budgets import BudgetRule, resets_at, stamp, usd
from turnout.state.ledger import NANO, PERIODS, UsageKey, UsageTotals, period_days, resolve_day
from turnout.state.meter import client_scope, deployment_scope, period_ids, route_scope

ANONYMOUS = "(anonymous)"  # how a caller with no client is shown
SpentOf = Callable[[str, int], tuple[int, int]]  # (scope, period kind) -> (spent, reserved) in nano-USD


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "spend",
        help="show spend per client, route and deployment, and each budget's standing",
        description="Read the spend ledger (the sqlite file of state.ledger, or Redis with state.backend: redis) "
        "and show requests, tokens and cost per client, route and deployment for a UTC period, and how much of "
        "each budget is used.",
    )
    parser.add_argument("file", nargs="?", default=DEFAULT_FILE, help="routing file (default: ./routes.yaml)")
    parser.add_argument("--client", metavar="NAME", help="only this client (a declared name)")
    parser.add_argument("--period", choices=PERIODS, default="day", help="UTC day (default), ISO week, month, total")
    parser.add_argument("--at", metavar="YYYY-MM-DD", help="the period containing this day (default: today, UTC)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_routing_file(args.file)
    if isinstance(loaded, int):
        return loaded
    config, _ = loaded
    if args.client is not None and args.client not in config.clients:
        known = ", ".join(config.clients) or "none are declared"
        print(f"turnout spend: no client named '{args.client}' in {args.file} ({known})", file=sys.stderr)
        return EXIT_INVALID
    try:
        day = resolve_day(args.at)
    except ValueError:
        print(f"turnout spend: --at must be a date such as 2025-06-01, got {args.at!r}", file=sys.stderr)
        return EXIT_INVALID
    read = asyncio.run(_read(config, args.period, day))
    if isinstance(read, str):
        print(f"turnout spend: {read}", file=sys.stderr)
        return EXIT_INVALID
    rows, totals, source = read
    data = report(config, rows, _offline(totals), args.period, day, client=args.client, source=source)
    if args.json:
        print_json(data)
    else:
        sys.stdout.write(render(data, Style.for_stream(sys.stdout)))
    return EXIT_OK


async def _read(
    config: Config, period: str, day: date
) -> tuple[dict[UsageKey, UsageTotals], Mapping[str, Mapping[str, int]], str] | str:
    """(usage rows of the period, current spend totals per period id, where they came from), or why not."""
    state = config.state
    pids = period_ids(datetime.now(UTC).date().isoformat())
    if state.backend == "redis":
        return await _read_redis(config, period, day, pids)
    if state.ledger is None:
        return "the spend ledger is kept in memory (state.ledger: memory, or a file loaded from text): nothing to read"
    if not await asyncio.to_thread(os.path.exists, state.ledger):
        print(f"turnout spend: no spend recorded yet ({state.ledger} does not exist)", file=sys.stderr)
        return {}, {}, state.ledger
    from turnout.state.sqlite import LedgerFileError, SqliteLedger

    def read() -> tuple[dict[UsageKey, list[int]], dict[str, dict[str, int]]]:
        ledger = SqliteLedger(state.ledger, readonly=True)  # type: ignore[arg-type]
        try:
            return ledger.usage(period_days(period, day)), ledger.spend(pids)  # type: ignore[arg-type]
        finally:
            ledger.close()

    try:
        summed, totals = await asyncio.to_thread(read)  # one thread: a sqlite connection stays in its own
    except LedgerFileError as exc:
        return str(exc)
    return {key: UsageTotals.of(counters) for key, counters in summed.items()}, totals, state.ledger


async def _read_redis(
    config: Config, period: str, day: date, pids: tuple[str, ...]
) -> tuple[dict[UsageKey, UsageTotals], Mapping[str, Mapping[str, int]], str] | str:
    from turnout.errors import ConfigError
    from turnout.state import open_state
    from turnout.state.base import StoreError

    try:
        backend = open_state(config.state, source=config.source)
    except ConfigError as exc:
        return str(exc)
    try:
        await backend.start()
        rows = await backend.usage(period, day)  # type: ignore[arg-type]
        totals = await backend.spend_totals(pids)  # type: ignore[attr-defined]
    except StoreError as exc:
        return f"cannot read spend from Redis: {exc}"
    finally:
        await backend.aclose()
    return rows, totals, f"redis (key prefix {config.state.key_prefix!r})"


def _offline(totals: Mapping[str, Mapping[str, int]]) -> SpentOf:
    def spent_of(scope: str, kind: int) -> tuple[int, int]:
        pid = period_ids(datetime.now(UTC).date().isoformat())[kind]
        return totals.get(pid, {}).get(scope, 0), 0

    return spent_of


# ---- the report ----------------------------------------------------------------------------------------------


def budget_rules(config: Config) -> list[BudgetRule]:
    """Every budget of the file, as compiled rules: clients first, then routes, then deployments."""
    rules = [
        BudgetRule.of(c.budget, client_scope(c.name), f"client '{c.name}'")
        for c in config.clients.values()
        if c.budget is not None
    ]
    rules += [
        BudgetRule.of(r.budget, route_scope(r.name), f"route '{r.name}'")
        for r in config.routes.values()
        if r.budget is not None
    ]
    for model in config.models.values():
        if model.budget is not None and model.price is not None:
            key = f"{model.provider}/{model.key}"
            rules.append(BudgetRule.of(model.budget, deployment_scope(key), f"deployment '{key}'"))
    return rules


def report(
    config: Config,
    rows: Mapping[UsageKey, UsageTotals],
    spent_of: SpentOf,
    period: str,
    day: date,
    *,
    client: str | None = None,
    source: str = "",
    now: float | None = None,
) -> dict[str, Any]:
    """The spend of `period` around `day` (rows, sorted by cost) and every budget's standing now, as JSON-ready data.
    `client` keeps only that client's rows and budget."""
    days = period_days(period, day)  # type: ignore[arg-type]
    selected = [(k, t) for k, t in rows.items() if client is None or k.client == client]
    selected.sort(key=lambda kt: (-kt[1].cost_usd, kt[0].client, kt[0].route, kt[0].deployment))
    total = _sum(t for _, t in selected)
    rules = [r for r in budget_rules(config) if client is None or r.scope == client_scope(client)]
    moment = now if now is not None else datetime.now(UTC).timestamp()
    return {
        "period": period,
        "from": days[0] if days else None,
        "to": days[-1] if days else None,
        "source": source,
        "client": client,
        "rows": [_row(k, t) for k, t in selected],
        "total": total.to_dict(),
        "budgets": [_standing(rule, spent_of, moment) for rule in rules],
    }


def _row(key: UsageKey, totals: UsageTotals) -> dict[str, Any]:
    return {"client": key.client or None, "route": key.route, "deployment": key.deployment, **totals.to_dict()}


def _standing(rule: BudgetRule, spent_of: SpentOf, now: float) -> dict[str, Any]:
    spent, reserved = spent_of(rule.scope, rule.kind)
    reset = resets_at(rule.per, now)
    return {
        "budget": rule.owner,
        "usd": rule.limit / NANO,
        "per": rule.per,
        "spent_usd": spent / NANO,
        "reserved_usd": reserved / NANO,
        "used": (spent + reserved) / rule.limit if rule.limit else None,
        "exhausted": spent + reserved >= rule.limit,
        "resets_at": stamp(reset) if reset is not None else None,
    }


def _sum(totals: Iterable[UsageTotals]) -> UsageTotals:
    parts = list(totals)
    return UsageTotals(
        requests=sum(t.requests for t in parts),
        input_tokens=sum(t.input_tokens for t in parts),
        output_tokens=sum(t.output_tokens for t in parts),
        cached_tokens=sum(t.cached_tokens for t in parts),
        cost_usd=sum(t.cost_usd for t in parts),
        unpriced_requests=sum(t.unpriced_requests for t in parts),
        estimated_usd=sum(t.estimated_usd for t in parts),
    )


def render(data: Mapping[str, Any], style: Style) -> str:
    """The report as text: a table of rows with a total, then the budgets."""
    span = data["from"] if data["from"] == data["to"] else f"{data['from']} .. {data['to']}"
    when = "all time" if data["period"] == "total" else f"{span} ({data['period']}, UTC)"
    who = f" for client '{data['client']}'" if data["client"] else ""
    lines = [style(f"spend{who}, {when}", "bold") + (f" — {data['source']}" if data["source"] else ""), ""]
    if data["rows"]:
        rows = [
            [
                r["client"] or ANONYMOUS,
                r["route"],
                r["deployment"],
                f"{r['requests']:,}",
                f"{r['input_tokens']:,}",
                f"{r['output_tokens']:,}",
                _cost(r),
            ]
            for r in data["rows"]
        ]
        total = data["total"]
        counts = [f"{total[k]:,}" for k in ("requests", "input_tokens", "output_tokens")]
        rows.append(["total", "", "", *counts, _cost(total)])
        headers = ["client", "route", "deployment", "requests", "input", "output", "cost"]
        lines.append(table(headers, rows, style, [""] * (len(rows) - 1) + ["bold"]).rstrip("\n"))
        if total["estimated_usd"] or total["unpriced_requests"]:
            lines.append(
                "  * includes estimates: attempts billed without reporting usage are charged their reservation; "
                "+ requests served by deployments with no price (not counted)"
            )
    else:
        lines.append("nothing spent in this period")
    if data["budgets"]:
        lines += ["", style("budgets (current periods)", "bold")]
        for b in data["budgets"]:
            used = f"{b['used']:.1%}" if b["used"] is not None else "-"
            reserved = f" (+${b['reserved_usd']:.4f} reserved)" if b["reserved_usd"] else ""
            reset = f"resets {b['resets_at']}" if b["resets_at"] else "never resets"
            per = "in total" if b["per"] == "total" else f"per {b['per']}"
            state = style("EXHAUSTED", "red") if b["exhausted"] else used
            lines.append(
                f"  {b['budget']}: {usd(round(b['spent_usd'] * NANO))}{reserved} of "
                f"{usd(round(b['usd'] * NANO))} {per} — {state}; {reset}"
            )
    return "\n".join(lines) + "\n"


def _cost(row: Mapping[str, Any]) -> str:
    text = usd(round(row["cost_usd"] * NANO))
    if row["estimated_usd"]:
        text += "*"
    if row["unpriced_requests"]:
        text += "+"
    return text
