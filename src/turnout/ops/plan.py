"""`turnout plan OLD NEW` / `turnout plan NEW`: what a routing change does, before the reload.

Both files are loaded and checked exactly as `validate` does; with one file the old side is what a running
sidecar serves (`GET /admin/config`, admin key from `$TURNOUT_ADMIN_KEY`). The two snapshots
(`turnout.ops.snapshot`) are compared by `turnout.ops.plan_diff` and printed by `turnout.ops.plan_text` or as
JSON.

Exit codes, as `terraform plan -detailed-exitcode`: 0 no change, 2 changes, 1 for every error (an invalid file,
with its problems located as in `validate`; an unreadable file; an unreachable sidecar; a usage error), so a CI
step can gate on 2 without mistaking an error for a change.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from turnout.ops.common import EXIT_INVALID, EXIT_OK, Style, load_routing_file, print_json
from turnout.ops.plan_diff import Plan, compare
from turnout.ops.plan_text import render
from turnout.ops.snapshot import FORMAT, snapshot

EXIT_CHANGES = 2
KEY_ENV = "TURNOUT_ADMIN_KEY"
CONFIG_PATH = "/admin/config"
HTTP_TIMEOUT = 10.0


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "plan",
        help="show what a routing change does (exit 0 no change, 2 changes, 1 error)",
        description="Compare two routing files (or a file with what a running sidecar serves) in routing terms: "
        "routes, chains, deployments, policies, prices, and which deployments keep their health on reload.",
        epilog=f"exit codes: 0 no change, 2 changes, 1 any error. With one FILE the sidecar at --server (default: "
        f"the file's server.host:port) is asked for {CONFIG_PATH}, with the admin key from ${KEY_ENV}.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="OLD NEW, or NEW alone (compared with the sidecar)")
    parser.add_argument("--server", metavar="URL", help="the sidecar to compare with, e.g. http://127.0.0.1:8080")
    parser.add_argument("--key-env", default=KEY_ENV, metavar="VAR", help=f"variable holding the admin key ({KEY_ENV})")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--markdown", action="store_true", help="print a pull-request comment (heading + diff block)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if len(args.files) > 2:
        args_error = "give OLD NEW, or NEW alone"
        print(f"turnout plan: error: {args_error}", file=sys.stderr)
        return EXIT_INVALID
    new = load_routing_file(args.files[-1], unreadable=EXIT_INVALID)
    if isinstance(new, int):
        return new
    new_config, _ = new
    if len(args.files) == 2:
        old = load_routing_file(args.files[0], unreadable=EXIT_INVALID)
        if isinstance(old, int):
            return old
        salt = os.urandom(8).hex()
        plan = compare(snapshot(old[0], salt=salt), snapshot(new_config, salt=salt))
    else:
        url = args.server or _default_server(new_config)
        key = os.environ.get(args.key_env, "")
        served = fetch_served(url, key)
        if isinstance(served, str):
            print(f"turnout plan: {served}", file=sys.stderr)
            return EXIT_INVALID
        plan = compare(served, snapshot(new_config, salt=served["salt"], key=key), remote=True)
    _print(plan, args)
    return EXIT_CHANGES if plan.changed else EXIT_OK


def _print(plan: Plan, args: argparse.Namespace) -> None:
    if args.json:
        print_json(plan.to_json())
    else:
        sys.stdout.write(render(plan, Style.for_stream(sys.stdout), markdown=args.markdown))


def _default_server(config: Any) -> str:
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


def fetch_served(url: str, key: str) -> dict[str, Any] | str:
    """The snapshot the sidecar at `url` serves, or a sentence saying why there is none."""
    target = url.rstrip("/") + CONFIG_PATH
    request = urllib.request.Request(target, headers={"Accept": "application/json"})
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        return f"the sidecar at {url} refused {CONFIG_PATH}: HTTP {exc.code}{_error_message(exc)}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"cannot reach the sidecar at {url}: {reason}"
    try:
        data = json.loads(body)
        served = data["snapshot"]
        if served.get("format") != FORMAT:
            return f"the sidecar at {url} answers snapshot format {served.get('format')!r}; this turnout reads {FORMAT}"
        return served
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"the sidecar at {url} sent something that is not a turnout snapshot"


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(exc.read())["error"]["message"]
    except Exception:
        return ""
    hint = f" (set ${KEY_ENV})" if exc.code == 401 else ""
    return f" — {message}{hint}"
