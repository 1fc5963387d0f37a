"""A/B of two turnout source trees as sidecars: CPU per request, interleaved round by round.

    git worktree add /tmp/before HEAD~1
    python bench/sidecar/ab.py --a src --b /tmp/before/src --mode sse --rounds 6

Both sidecars serve the same routing file against the same nginx upstream and are loaded alternately (a, b, a,
b, ...), so a shared machine's drift hits both alike; the per-round ratio a/b and its median are the figures to
quote for a before/after. Differences under ~2% are within the noise of a 2-core shared machine. `--ttft`
also compares the time to the first SSE event (sampled in alternating blocks). Loopback only, bounded.
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

from load import first_token_latency, interleaved_cpu_ms
from run import ROUTES_YAML, body
from upstream import Nginx, free_port, wait_port


def start(src: str, routes: Path, workdir: Path, name: str, workers: int = 1) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
    cmd = [sys.executable, "-c", "from turnout.cli import main; main()", "serve", str(routes)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--access-log", str(workdir / f"{name}.log")]
    cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, timeout=30)
    return port, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="source tree A (the directory holding the turnout package)")
    parser.add_argument("--b", required=True, help="source tree B")
    parser.add_argument("--mode", choices=("json", "sse"), default="sse")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ttft", action="store_true", help="also compare time to first SSE event")
    parser.add_argument("--workers", type=int, default=1, help="turnout serve --workers for both trees")
    args = parser.parse_args()

    nginx = Nginx().start()
    workdir = Path(tempfile.mkdtemp(prefix="turnout-ab-"))
    routes = workdir / "routes.yaml"
    routes.write_text(ROUTES_YAML.format(base=nginx.base))
    procs: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for name, src in (("a", args.a), ("b", args.b)):
            procs[name] = start(src, routes, workdir, name, args.workers)
        stream = args.mode == "sse"
        payload = body("bench-stream" if stream else "bench", stream)
        ports = {name: (port, proc.pid) for name, (port, proc) in procs.items()}
        cpu = interleaved_cpu_ms(ports, payload, rounds=args.rounds, connections=args.connections, seconds=args.seconds)
        for name, values in cpu.items():
            shown = " ".join(f"{v:.3f}" for v in values)
            print(f"{name}: cpu ms/request {shown}  median {statistics.median(values):.3f}")
        ratios = [a / b for a, b in zip(cpu["a"], cpu["b"], strict=True)]
        print(f"a/b per round: {' '.join(f'{r:.3f}' for r in ratios)}  median {statistics.median(ratios):.3f}")
        if args.ttft:
            body_sse = body("bench-stream", True)
            got: dict[str, list[float]] = {name: [] for name in procs}
            for _ in range(args.rounds):
                for name, (port, _proc) in procs.items():
                    got[name] += first_token_latency(port, "/v1/chat/completions", body_sse, samples=50)
            for name, values in got.items():
                print(f"{name}: time to first SSE event p50 {statistics.median(values):.3f} ms")
    finally:
        for _port, proc in procs.values():
            proc.terminate()
            proc.wait(20)
        nginx.stop()


if __name__ == "__main__":
    main()
