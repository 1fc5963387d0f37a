"""Clients and budgets cost: `turnout serve` with client keys, budgets and a client rate limit against the same build
without them.

    python bench/sidecar/budgets.py                     # 6 interleaved rounds, non-streaming (~3 min)
    python bench/sidecar/budgets.py --mode sse --rounds 4

Every target is one sidecar process of this source tree on the same nginx upstream, loaded by wrk in interleaved
rounds (a shared 2-core machine drifts; each round measures every target back to back). All use the local state
backend with the sqlite ledger beside their file (the default), so every one pays for recording spend:

    open           no clients: anonymous callers                  the baseline
    client         one client key (SHA-256 + dict lookup per request, the client named in the log and ledger)
    budget         + a client budget and a route budget (reservation priced per request, checked against the
                   meter, released after; never refuses: $1,000,000 a day)
    budget-rpm     + a client rpm limit (one more sliding-window admission per request; never refuses)

Printed: CPU ms/request of the sidecar process at c=32 (median over rounds) and its ratio to `open`, and the
per-round ratios. Loopback only; bounded. Needs nginx and wrk.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import ProcessTree, run_wrk
from run import ROUTES_YAML, body
from upstream import Nginx, free_port, wait_port

KEY = "bench-client-key-0123456789abcdef"
CLIENT = f'clients:\n  bench:\n    keys: ["{KEY}"]\n'
BUDGET = "    budget: {usd: 1000000, per: day}\n"
RPM = "    limits: {rpm: 100000000}\n"
ROUTE_BUDGET = "    budget: {usd: 1000000, per: day}\n"


def routes(base: str, *, client: bool, budget: bool, rpm: bool) -> str:
    text = ROUTES_YAML.format(base=base)
    if budget:
        text = text.replace("    chain: [bench-json]\n", "    chain: [bench-json]\n" + ROUTE_BUDGET)
        text = text.replace("    chain: [bench-sse]\n", "    chain: [bench-sse]\n" + ROUTE_BUDGET)
    if client:
        text += CLIENT + (BUDGET if budget else "") + (RPM if rpm else "")
    return text


def start(name: str, text: str, workdir: Path) -> tuple[int, subprocess.Popen[bytes]]:
    folder = workdir / name  # each target its own ledger file
    folder.mkdir()
    path = folder / "routes.yaml"
    path.write_text(text)
    port = free_port()
    cmd = [sys.executable, "-c", "from turnout.cli import main; main()", "serve", str(path)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--access-log", str(folder / "access.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(folder / "stderr", "wb"))  # noqa: SIM115
    wait_port(port, proc, timeout=30)
    return port, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--mode", choices=("json", "sse"), default="json")
    args = parser.parse_args()

    nginx = Nginx().start()
    workdir = Path(tempfile.mkdtemp(prefix="turnout-budgets-bench-"))
    specs = {
        "open": routes(nginx.base, client=False, budget=False, rpm=False),
        "client": routes(nginx.base, client=True, budget=False, rpm=False),
        "budget": routes(nginx.base, client=True, budget=True, rpm=False),
        "budget-rpm": routes(nginx.base, client=True, budget=True, rpm=True),
    }
    procs = {name: start(name, text, workdir) for name, text in specs.items()}
    stream = args.mode == "sse"
    payload = body("bench-stream" if stream else "bench", stream)
    headers = {"Authorization": f"Bearer {KEY}"}
    cpu: dict[str, list[float]] = {name: [] for name in procs}
    try:
        for _ in range(args.rounds):
            for name, (port, proc) in procs.items():
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                tree = ProcessTree(proc.pid)
                run_wrk(url, payload, connections=args.connections, seconds=1, headers=headers)
                before = tree.cpu_seconds()
                result = run_wrk(url, payload, connections=args.connections, seconds=args.seconds, headers=headers)
                used = tree.cpu_seconds() - before
                assert result.errors == 0, f"{name}: {result.errors} errors"
                cpu[name].append(used * 1000 / max(1, result.requests))
        base = statistics.median(cpu["open"])
        print(f"{args.mode}, c={args.connections}, {args.rounds} rounds: sidecar CPU ms per request")
        print(f"{'target':<12}{'cpu ms/req':>11}{'x open':>8}   per-round ratio to open")
        for name in procs:
            ratios = [a / b for a, b in zip(cpu[name], cpu["open"], strict=True)]
            shown = " ".join(f"{r:.3f}" for r in ratios)
            c = statistics.median(cpu[name])
            print(f"{name:<12}{c:>11.3f}{c / base:>8.3f}   {shown}  median {statistics.median(ratios):.3f}")
    finally:
        for _port, proc in procs.values():
            proc.terminate()
            proc.wait(20)
        nginx.stop()
        if os.environ.get("KEEP_BENCH_DIR") is None:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
