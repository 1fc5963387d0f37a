"""Where the sidecar's CPU goes: cProfile of one in-process `turnout serve` under wrk load.

    python bench/sidecar/cpu_profile.py [json|sse] [--seconds 5] [--top 25]

Prints tottime grouped by package (turnout.server / router / drivers, aiohttp, asyncio, syscalls) and the top
turnout functions. cProfile inflates small Python functions, so read shares, not absolute times; the CPU figures
to quote come from run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import os
import pstats
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import run_wrk
from run import ROUTES_YAML, body
from upstream import Nginx, free_port

GROUPS = (
    ("turnout/server", "turnout.server"),
    ("turnout/router", "turnout.router"),
    ("turnout/drivers", "turnout.drivers"),
    ("turnout/", "turnout (other)"),
    ("aiohttp", "aiohttp"),
    ("multidict", "aiohttp"),
    ("yarl", "aiohttp"),
    ("prometheus", "prometheus_client"),
    ("asyncio", "asyncio"),
    ("selectors", "asyncio"),
)


def group_of(filename: str, name: str) -> str:
    if "poll" in name:
        return "idle (epoll wait)"
    for needle, label in GROUPS:
        if needle in filename:
            return label
    if filename == "~" and ("send" in name or "recv" in name):
        return "socket syscalls"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="json", choices=["json", "sse"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--filter", default="turnout/", help="regex on file:function for the listing ('' = all)")
    args = parser.parse_args()

    from turnout.schema import load_file
    from turnout.server.run import serve_process

    nginx = Nginx().start()
    workdir = Path(tempfile.mkdtemp(prefix="turnout-profile-"))
    routes = workdir / "routes.yaml"
    routes.write_text(ROUTES_YAML.format(base=nginx.base))
    port = free_port()
    payload = body("bench", False) if args.mode == "json" else body("bench-stream", True)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    profiler = cProfile.Profile()

    def load() -> None:
        time.sleep(1.0)
        run_wrk(url, payload, connections=args.connections, seconds=1)
        result = run_wrk(url, payload, connections=args.connections, seconds=args.seconds)
        print(f"{result.requests} requests under the profiler ({result.rps:.0f} req/s)", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=load, daemon=True).start()
    access = open(os.devnull, "w")  # noqa: SIM115 (closed below)
    profiler.enable()
    try:
        asyncio.run(serve_process(str(routes), load_file(routes), "127.0.0.1", port, access_log=access))
    finally:
        profiler.disable()
        access.close()
        nginx.stop()
    stats = pstats.Stats(profiler)
    groups: collections.Counter[str] = collections.Counter()
    for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        groups[group_of(filename, name)] += tottime
    busy = sum(v for k, v in groups.items() if not k.startswith("idle"))
    print("\ntottime by package (share of busy time)")
    for label, seconds in groups.most_common():
        share = "" if label.startswith("idle") else f"{100 * seconds / busy:5.1f}%"
        print(f"  {label:22} {seconds:7.3f}s {share}")
    print()
    stats.sort_stats(args.sort).print_stats(args.filter, args.top)


if __name__ == "__main__":
    main()
