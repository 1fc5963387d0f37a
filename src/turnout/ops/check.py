"""`turnout check [FILE]`: does every enabled provider accept its credentials? (For deploy pipelines.)

One cheap authenticated call per enabled provider (`Router.check_credentials`, concurrently), shown as a table of
provider, result, latency and error class. Exit 0 when every enabled provider passed, 1 when one failed (or, with
`--strict`, when one is disabled, e.g. because its key variable is not set here), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from typing import Any

from turnout.config import StateSpec, TelemetrySpec
from turnout.drivers.base import CredentialCheck
from turnout.ops.common import DEFAULT_FILE, EXIT_INVALID, EXIT_OK, Style, load_routing_file, plural, print_json, table


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "check",
        help="check every enabled provider's credentials",
        description="Make one cheap authenticated call per enabled provider and report provider, result, latency "
        "and error class. Exit 1 when an enabled provider fails (with --strict also when one is disabled).",
    )
    parser.add_argument("file", nargs="?", default=DEFAULT_FILE, help="routing file (default: ./routes.yaml)")
    parser.add_argument("--strict", action="store_true", help="a disabled provider is a failure too")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_routing_file(args.file)
    if isinstance(loaded, int):
        return loaded
    config, _ = loaded
    results = asyncio.run(check(config))
    rows = [_row(r, config.providers[r.provider].enabled) for r in results]
    failed = [r for r in rows if r["result"] == "failed" or (args.strict and r["result"] == "disabled")]
    if args.json:
        print_json({"source": config.source, "ok": not failed, "providers": rows})
    else:
        sys.stdout.write(render(rows, Style.for_stream(sys.stdout), strict=args.strict))
    return EXIT_INVALID if failed else EXIT_OK


async def check(config: Any) -> list[CredentialCheck]:
    """Every provider's CredentialCheck, in the file's order (disabled ones say why)."""
    from turnout.router.client import Router

    # checking credentials needs no shared state, and traces nothing
    local = dataclasses.replace(config, state=StateSpec(), telemetry=TelemetrySpec(enabled=False))
    async with Router(local) as router:
        results = {r.provider: r for r in await router.check_credentials()}
    return [results[name] for name in config.providers if name in results]


def _row(result: CredentialCheck, enabled: bool) -> dict[str, Any]:
    outcome = "ok" if result.ok else ("failed" if enabled else "disabled")
    message = result.message.removeprefix("disabled: ") if outcome == "disabled" else result.message
    return {
        "provider": result.provider,
        "result": outcome,
        "status": result.status,
        "latency": result.latency,
        "error_class": result.error_class,
        "message": message,
    }


def render(rows: list[dict[str, Any]], style: Style, *, strict: bool = False) -> str:
    colours = {"ok": "green", "failed": "red", "disabled": "red" if strict else "dim"}
    cells = [
        [
            r["provider"],
            r["result"],
            f"{r['latency'] * 1000:.0f} ms" if r["latency"] is not None else "-",
            r["error_class"] or "-",
            _one_line(r["message"]),
        ]
        for r in rows
    ]
    text = table(
        ["provider", "result", "latency", "error class", "detail"], cells, style, [colours[r["result"]] for r in rows]
    )
    counts = {k: sum(1 for r in rows if r["result"] == k) for k in ("ok", "failed", "disabled")}
    summary = f"{plural(counts['ok'], 'provider')} ok, {counts['failed']} failed, {counts['disabled']} disabled"
    return text + "\n" + summary + "\n"


def _one_line(message: str, limit: int = 100) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
