"""`turnout serve`: the sidecar's subcommand, registered by `turnout.cli` through `add_serve_parser`.

Kept import-light (no aiohttp) so `turnout validate` and friends start fast; the server loads on use.
"""

from __future__ import annotations

import argparse
import sys


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = subparsers.add_parser(
        "serve",
        help="run the OpenAI-compatible sidecar",
        description=(
            "Serve /v1/chat/completions, /v1/models, /healthz, /readyz and /metrics for a routing file. "
            "The file is watched and reloaded on change, SIGHUP or POST /admin/reload; SIGTERM or SIGINT drains "
            "(up to server.drain_timeout) and exits 0."
        ),
    )
    serve.add_argument("file", nargs="?", default="routes.yaml", help="routing file (default: ./routes.yaml)")
    serve.add_argument("--host", default=None, help="address to bind (default: server.host, else 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: server.port, else 8080; 0 = any)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port via SO_REUSEPORT; /metrics shows all of them together",
    )
    serve.add_argument(
        "--access-log",
        default="-",
        metavar="DEST",
        help="JSON access lines: '-' stdout (default), 'stderr', a file path, or 'off'",
    )
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    if args.workers < 1:
        print("turnout serve: --workers must be at least 1", file=sys.stderr)
        return 2
    from turnout.server.run import serve

    return serve(args.file, host=args.host, port=args.port, workers=args.workers, access_log=args.access_log)
