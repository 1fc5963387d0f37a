"""Shared state cost: `turnout serve` with `state.backend: redis` against the same build with `backend: local`.

    python bench/sidecar/state.py                      # 6 interleaved rounds (~3 min)
    python bench/sidecar/state.py --rounds 3 --seconds 3

Every target is one sidecar process of this source tree on the same nginx upstream (non-streaming), loaded by
wrk in interleaved rounds (a shared 2-core machine drifts; each round measures every target back to back):

    local          backend local, no limits            the baseline
    local-rpm      backend local, an rpm limit         (a limit that never refuses: 100,000,000 rpm)
    redis          backend redis, no limits            must cost <= 1.10x local CPU, p50 at c=1 <= +0.3 ms
    redis-rpm      backend redis, the rpm limit        must cost <= 1.30x local CPU: one script call per batch
    redis-rpm-py   redis-rpm with redis-py's pure-Python parser (hiredis hidden): what hiredis buys

Printed: CPU ms/request of the sidecar process (median over rounds) and its ratio to `local`, p50 latency at
concurrency 1 (median of rounds), and Redis commands per request from INFO commandstats deltas: round trips
(EVALSHA + EVAL calls made by clients) and commands executed in all (scripts' inner calls included).
Loopback only; bounded. Needs nginx, wrk and redis-server.
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

from turnout.testing.redis_server import RedisServer

LAUNCH = "from turnout.cli import main; main()"
LAUNCH_NO_HIREDIS = "import sys; sys.modules['hiredis'] = None; from turnout.cli import main; main()"
RPM = "    limits: {rpm: 100000000}\n"


def routes(base: str, redis_url: str | None, limited: bool) -> str:
    text = ROUTES_YAML.format(base=base)
    if limited:
        text = text.replace("    name: gpt-4o-mini\n", "    name: gpt-4o-mini\n" + RPM, 1)
    if redis_url:
        text += f'state:\n  backend: redis\n  url: "{redis_url}"\n'
    return text


def start(name: str, text: str, workdir: Path, launch: str) -> tuple[int, subprocess.Popen[bytes]]:
    path = workdir / f"{name}.yaml"
    path.write_text(text)
    port = free_port()
    cmd = [sys.executable, "-c", launch, "serve", str(path), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--access-log", str(workdir / f"{name}.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(workdir / f"{name}.err", "wb"))  # noqa: SIM115
    wait_port(port, proc, timeout=30)
    return port, proc


def commandstats(redis: RedisServer) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            calls[name.removeprefix("cmdstat_")] = int(rest.split("calls=")[1].split(",")[0])
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    nginx = Nginx().start()
    redis = RedisServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="turnout-state-bench-"))
    specs = {
        "local": (routes(nginx.base, None, False), LAUNCH),
        "local-rpm": (routes(nginx.base, None, True), LAUNCH),
        "redis": (routes(nginx.base, redis.url, False), LAUNCH),
        "redis-rpm": (routes(nginx.base, redis.url, True), LAUNCH),
        "redis-rpm-py": (routes(nginx.base, redis.url, True), LAUNCH_NO_HIREDIS),
    }
    procs = {name: start(name, text, workdir, launch) for name, (text, launch) in specs.items()}
    payload = body("bench", False)
    cpu: dict[str, list[float]] = {name: [] for name in procs}
    p50: dict[str, list[float]] = {name: [] for name in procs}
    trips: dict[str, list[float]] = {name: [] for name in procs}
    commands: dict[str, list[float]] = {name: [] for name in procs}
    cpu1: dict[str, list[float]] = {name: [] for name in procs}
    try:
        for _ in range(args.rounds):
            for name, (port, proc) in procs.items():
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                tree = ProcessTree(proc.pid)
                run_wrk(url, payload, connections=args.connections, seconds=1)
                before, stats = tree.cpu_seconds(), commandstats(redis)
                result = run_wrk(url, payload, connections=args.connections, seconds=args.seconds)
                used, after = tree.cpu_seconds() - before, commandstats(redis)
                assert result.errors == 0, f"{name}: {result.errors} errors"
                cpu[name].append(used * 1000 / max(1, result.requests))
                delta = {k: v - stats.get(k, 0) for k, v in after.items()}
                trips[name].append((delta.get("evalsha", 0) + delta.get("eval", 0)) / max(1, result.requests))
                commands[name].append(sum(v for k, v in delta.items() if k != "info") / max(1, result.requests))
                before = tree.cpu_seconds()
                single = run_wrk(url, payload, connections=1, seconds=2)
                p50[name].append(single.p50_ms)
                cpu1[name].append((tree.cpu_seconds() - before) * 1000 / max(1, single.requests))
        base_cpu, base_p50 = statistics.median(cpu["local"]), statistics.median(p50["local"])
        base_cpu1 = statistics.median(cpu1["local"])
        print(f"c={args.connections}: cpu per request, Redis round trips and commands per request; c=1: p50, cpu")
        print(f"{'target':<14}{'cpu ms/req':>11}{'x local':>9}{'trips/req':>11}{'cmds/req':>10}"
              f"{'p50 c=1 ms':>12}{'+ms':>7}{'cpu c=1':>9}{'x local':>9}")  # fmt: skip
        for name in procs:
            c, p, c1 = statistics.median(cpu[name]), statistics.median(p50[name]), statistics.median(cpu1[name])
            print(
                f"{name:<14}{c:>11.3f}{c / base_cpu:>9.3f}{statistics.median(trips[name]):>11.3f}"
                f"{statistics.median(commands[name]):>10.3f}{p:>12.3f}{p - base_p50:>+7.3f}{c1:>9.3f}"
                f"{c1 / base_cpu1:>9.3f}"
            )
        ratios = {n: [a / b for a, b in zip(cpu[n], cpu["local"], strict=True)] for n in procs}
        print("per-round CPU ratio to local (median):")
        for name in procs:
            shown = " ".join(f"{r:.3f}" for r in ratios[name])
            print(f"  {name:<14}{shown}  median {statistics.median(ratios[name]):.3f}")
    finally:
        for _port, proc in procs.values():
            proc.terminate()
            proc.wait(20)
        redis.close()
        nginx.stop()
        if os.environ.get("KEEP_BENCH_DIR") is None:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
