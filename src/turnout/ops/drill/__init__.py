"""`turnout drill FILE [--route R] [--scenario S] [--mode plain|stream] [--json]`: the file's real policies replayed
against faults, with every provider replaced by a loopback fake (no key, no network).

Modules: `scenarios` (the faults), `stage` (the fakes and the rewritten file), `claims` (what a route claims to
handle, read from its compiled policy, and the definitions of the verdicts), `runner` (a real Router per run, in
virtual time) and `report` (the report card). Exit 0 when no row failed, 1 when one did (a route failing a
scenario it claims to handle, or the router misbehaving), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys

from turnout.ops.common import DEFAULT_FILE, EXIT_INVALID, EXIT_OK, EXIT_USAGE, Style, load_routing_file, print_json
from turnout.ops.drill.scenarios import BY_NAME, SCENARIOS


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    names = ", ".join(s.name for s in SCENARIOS)
    parser = subparsers.add_parser(
        "drill",
        help="replay fault scenarios against the file's policies (loopback fakes, no keys)",
        description="Replay fault scenarios against every route's real compiled policies, streamed and not, with "
        "each provider replaced by a loopback fake that injects the fault. Exit 1 when a route fails a scenario "
        "it claims to handle.",
        epilog=f"scenarios: {names}",
    )
    parser.add_argument("file", nargs="?", default=DEFAULT_FILE, help="routing file (default: ./routes.yaml)")
    parser.add_argument("--route", action="append", metavar="R", help="only this route (repeatable)")
    parser.add_argument("--scenario", action="append", metavar="S", help="only this scenario (repeatable)")
    parser.add_argument("--mode", choices=("plain", "stream", "both"), default="both", help="request kind (both)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the routers' randomness (1)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from turnout.ops.drill.report import render
    from turnout.ops.drill.runner import run_drill

    loaded = load_routing_file(args.file)
    if isinstance(loaded, int):
        return loaded
    config, _ = loaded
    unknown_routes = [r for r in args.route or () if r not in config.routes]
    unknown_scenarios = [s for s in args.scenario or () if s not in BY_NAME]
    if unknown_routes or unknown_scenarios:
        for name in unknown_routes:
            print(f"turnout drill: no route '{name}' (routes: {', '.join(config.routes)})", file=sys.stderr)
        for name in unknown_scenarios:
            print(f"turnout drill: no scenario '{name}' (scenarios: {', '.join(BY_NAME)})", file=sys.stderr)
        return EXIT_USAGE
    scenarios = [BY_NAME[s] for s in dict.fromkeys(args.scenario)] if args.scenario else list(SCENARIOS)
    modes = {"plain": (False,), "stream": (True,), "both": (False, True)}[args.mode]
    progress = _progress_line() if sys.stderr.isatty() else None
    report = run_drill(config, routes=args.route, scenarios=scenarios, modes=modes, seed=args.seed, progress=progress)
    if progress is not None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
    if args.json:
        print_json(report.to_json())
    else:
        sys.stdout.write(render(report, Style.for_stream(sys.stdout)))
    return EXIT_INVALID if report.failed else EXIT_OK


def _progress_line():  # type: ignore[no-untyped-def]
    """A live line on the terminal: `drill [ 12/84] chat silent stream`."""

    def show(done: int, total: int, label: str) -> None:
        width = len(str(total))
        sys.stderr.write(f"\r\x1b[Kdrill [{done:>{width}}/{total}] {label}")
        sys.stderr.flush()

    return show
