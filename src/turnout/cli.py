"""The `turnout` command: validate, explain, schema, the operator commands of `turnout.ops` (plan, drill, models,
check, spend) and serve (when the sidecar package provides it).

Exit codes: 0 ok, 1 invalid routing file or a failed check, 2 usage error or unreadable file (`plan`: 2 means
"changes", every error is 1), 70 internal error (a bug: the message says so; never a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from turnout.config import Config

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70
DEFAULT_FILE = "routes.yaml"
OPERATOR_COMMANDS = ("plan", "drill", "models", "check", "spend")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code == EXIT_USAGE and _command(argv) == "plan":
                return EXIT_INVALID  # for plan, 2 means "changes found": every error is 1
            raise
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `turnout explain | head`
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:  # the promise: never a traceback, whatever the input
        print(f"turnout: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


def _command(argv: Sequence[str] | None) -> str | None:
    """The subcommand named on the command line (the first word that is not an option), if any."""
    words = sys.argv[1:] if argv is None else argv
    return next((w for w in words if not w.startswith("-")), None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnout",
        description="Route LLM chat requests through a declarative routes.yaml graph.",
        epilog="exit codes: 0 ok, 1 invalid routing file or failed check, 2 usage error or unreadable file "
        "(plan: 2 means changes, 1 any error), 70 internal error",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = subparsers.add_parser(
        "validate", help="check a routing file", description="Check a routing file and report every problem."
    )
    validate.add_argument("file", nargs="?", default=DEFAULT_FILE, help="routing file (default: ./routes.yaml)")
    validate.set_defaults(func=cmd_validate)

    explain = subparsers.add_parser(
        "explain",
        help="show every route expanded to deployments",
        description="Show every route's chain expanded to deployments with effective policies (secrets masked).",
    )
    explain.add_argument("file", nargs="?", default=DEFAULT_FILE, help="routing file (default: ./routes.yaml)")
    explain.add_argument("--json", action="store_true", help="print machine-readable JSON")
    explain.set_defaults(func=cmd_explain)

    schema = subparsers.add_parser(
        "schema", help="print the routing file's JSON Schema", description="Print the JSON Schema (Draft 2020-12)."
    )
    schema.set_defaults(func=cmd_schema)

    _add_operator_commands(subparsers)
    _add_extensions(subparsers)
    return parser


# ---- extension point: other packages add subcommands here --------------------------------------------------------


def _add_operator_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """plan, drill, models, check, spend: one module each in `turnout.ops`, each with `add_parser(subparsers)`."""
    for name in OPERATOR_COMMANDS:
        module = importlib.import_module(f"turnout.ops.{name}")
        module.add_parser(subparsers)


def _add_extensions(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `serve` from `turnout.server.cli.add_serve_parser(subparsers)` when that module exists.

    `add_serve_parser` must add its parser and `set_defaults(func=handler)`, where `handler(args) -> int`.
    """
    try:
        module = importlib.import_module("turnout.server.cli")
    except ModuleNotFoundError as exc:
        if exc.name in ("turnout.server.cli", "turnout.server"):
            return  # no sidecar in this install: fine
        _add_broken("serve", f"{type(exc).__name__}: {exc}", subparsers)
        return
    except Exception as exc:
        _add_broken("serve", f"{type(exc).__name__}: {exc}", subparsers)
        return
    add = getattr(module, "add_serve_parser", None)
    if callable(add):
        add(subparsers)


def _add_broken(name: str, reason: str, subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def unavailable(_args: argparse.Namespace) -> int:
        print(f"turnout: internal error: '{name}' is unavailable: {reason}", file=sys.stderr)
        return EXIT_INTERNAL

    broken = subparsers.add_parser(name, help=f"({name} is unavailable in this install)")
    broken.add_argument("rest", nargs=argparse.REMAINDER)
    broken.set_defaults(func=unavailable)


# ---- commands ----------------------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from turnout.explain import summary

    loaded = _load(args.file)
    if isinstance(loaded, int):
        return loaded
    config, _ = loaded
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    print(f"{args.file}: valid — {summary(config)}")
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from turnout.explain import explain, render_text

    loaded = _load(args.file)
    if isinstance(loaded, int):
        return loaded
    config, graph = loaded
    data = explain(graph if graph is not None else config)  # the graph _load compiled: never compile twice
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(render_text(data))
    return EXIT_OK


def cmd_schema(_args: argparse.Namespace) -> int:
    from turnout.schema import schema_json

    print(json.dumps(schema_json(), indent=2, ensure_ascii=False))
    return EXIT_OK


def _load(path: str) -> tuple[Config, Any] | int:
    """(Config, its DispatchGraph), or the exit code after reporting why there is none (2: unreadable, 1: invalid)."""
    from turnout.ops.common import load_routing_file

    return load_routing_file(path)


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at devnull so the interpreter's final flush cannot fail noisily."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
