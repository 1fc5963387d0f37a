"""Sidecar benchmark: nginx upstream vs bare aiohttp proxy vs `turnout serve`, measured in the same run.

    python bench/sidecar/run.py                       # full comparison (~2.5 min)
    python bench/sidecar/run.py --duration 5 --concurrency 1,32 --workers 1,2
    python bench/sidecar/run.py --soak 300 --targets turnout   # bounded soak, RSS every slice
    python bench/sidecar/run.py --rounds 5 --workers 1         # interleaved rounds, median kept (noisy machine)

Prints, per target, mode (json = non-streaming, sse = streaming), concurrency and worker count: req/s, p50/p99
latency (ms, from wrk) and CPU milliseconds per request of the proxy process tree (utime+stime deltas from
/proc). Then the derived figures the issue asks for: CPU ratio turnout/bare, added p50 latency at concurrency 1,
added streaming time to first `data:` event, and `--workers` scaling. Loopback only; every load is bounded by
`--duration`. turnout runs with metrics, access log (to a file), breakers and cost accounting on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import LoadResult, ProcessTree, first_token_latency, p50, run_wrk
from upstream import Nginx, free_port, wait_port

HERE = Path(__file__).resolve().parent
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
    {"role": "user", "content": "Summarise why a sidecar router should keep its per-request CPU cost low."},
]


def body(model: str, stream: bool) -> bytes:
    data: dict = {"model": model, "messages": MESSAGES, "max_tokens": 64}
    if stream:
        data["stream"] = True
    return json.dumps(data, separators=(",", ":")).encode()


ROUTES_YAML = """\
version: 1
defaults:
  deadline: 30s
  attempt_timeout: 10s
providers:
  up-json:
    driver: openai
    base_url: "{base}/json/v1"
    api_key: bench-key
  up-sse:
    driver: openai
    base_url: "{base}/sse/v1"
    api_key: bench-key
models:
  bench-json:
    provider: up-json
    name: gpt-4o-mini
    price: {{input: 0.15, output: 0.60}}
  bench-sse:
    provider: up-sse
    name: gpt-4o-mini
    price: {{input: 0.15, output: 0.60}}
routes:
  bench:
    chain: [bench-json]
  bench-stream:
    chain: [bench-sse]
"""


@dataclass
class Target:
    """One thing under load: where to POST, which bodies, and the process tree to account."""

    name: str
    port: int
    json_path: str
    sse_path: str
    json_body: bytes
    sse_body: bytes
    tree: ProcessTree
    proc: subprocess.Popen[bytes] | None = None
    workers: int = 1

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.json_path if mode == 'json' else self.sse_path}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_bare(upstream: str, workers: int) -> Target:
    port = free_port()
    cmd = [sys.executable, str(HERE / "bare_proxy.py"), "--upstream", upstream, "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    path = "/v1/chat/completions"
    return Target(
        "bare", port, path, path, body("bench", False), body("bench", True), ProcessTree(proc.pid), proc, workers
    )


def start_turnout(upstream: str, workers: int, workdir: Path) -> Target:
    port = free_port()
    routes = workdir / "routes.yaml"
    routes.write_text(ROUTES_YAML.format(base=upstream))
    exe = shutil.which("turnout")
    cmd = [exe] if exe else [sys.executable, "-c", "from turnout.cli import main; main()"]
    cmd += ["serve", str(routes), "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    log = open(workdir / f"turnout-w{workers}.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, proc, timeout=30)
    time.sleep(0.3 * workers)  # let every worker bind before load starts
    path = "/v1/chat/completions"
    return Target(
        "turnout",
        port,
        path,
        path,
        body("bench", False),
        body("bench-stream", True),
        ProcessTree(proc.pid),
        proc,
        workers,
    )


def upstream_target(nginx: Nginx) -> Target:
    assert nginx.proc is not None
    return Target(
        "upstream",
        nginx.port,
        "/json/v1/chat/completions",
        "/sse/v1/chat/completions",
        body("gpt-4o-mini", False),
        body("gpt-4o-mini", True),
        ProcessTree(nginx.proc.pid),
        None,
    )


@dataclass(frozen=True)
class Row:
    target: str
    mode: str
    conc: int
    workers: int
    load: LoadResult
    cpu_ms: float


def measure(target: Target, mode: str, conc: int, seconds: float, quiet: bool = False) -> Row:
    payload = target.json_body if mode == "json" else target.sse_body
    run_wrk(target.url(mode), payload, connections=conc, seconds=1)  # warm up connections and caches
    before = target.tree.cpu_by_pid()
    result = run_wrk(target.url(mode), payload, connections=conc, seconds=seconds)
    after = target.tree.cpu_by_pid()
    used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    cpu = sum(used.values())
    row = Row(target.name, mode, conc, target.workers, result, cpu * 1000 / max(1, result.requests))
    split = ""
    if target.workers > 1:  # how evenly SO_REUSEPORT spread the load: CPU seconds per busy process
        split = "  per-process cpu s: " + " ".join(f"{v:.2f}" for v in sorted(used.values(), reverse=True) if v > 0.05)
    if not quiet:
        print_row(row, split)
    return row


def print_row(row: Row, extra: str = "") -> None:
    result = row.load
    print(
        f"{row.target:9} {row.mode:4} {row.conc:5} {row.workers:7} {result.rps:9.0f} {result.p50_ms:8.3f} "
        f"{result.p99_ms:8.3f} {row.cpu_ms:11.3f} {result.errors:7}{extra}",
        flush=True,
    )


def interleaved_ttft(targets: list[Target], samples: int, block: int = 50) -> dict[str, float]:
    """p50 time to first SSE event per target, sampled in alternating blocks so drift hits every target alike."""
    for target in targets:
        first_token_latency(target.port, target.sse_path, target.sse_body, samples=20)  # warm-up
    got: dict[str, list[float]] = {target.name: [] for target in targets}
    for _ in range(max(1, samples // block)):
        for target in targets:
            got[target.name] += first_token_latency(target.port, target.sse_path, target.sse_body, samples=block)
    return {name: p50(values) for name, values in got.items()}


def find(rows: list[Row], target: str, mode: str, conc: int, workers: int = 1) -> Row | None:
    return next(
        (r for r in rows if (r.target, r.mode, r.conc, r.workers) == (target, mode, conc, workers)),
        None,
    )


def summarise(rows: list[Row], ttfts: dict[str, float], concs: list[int], workers: list[int]) -> None:
    print("\nderived")
    high = max(concs)
    for mode in ("json", "sse"):
        bare, tout = find(rows, "bare", mode, high), find(rows, "turnout", mode, high)
        if bare and tout:
            print(
                f"  cpu/request {mode} c={high}: turnout {tout.cpu_ms:.3f} ms vs bare {bare.cpu_ms:.3f} ms "
                f"= {tout.cpu_ms / bare.cpu_ms:.2f}x (turnout ~{1000 / tout.cpu_ms:.0f} req/s per core)"
            )
    for mode in ("json", "sse"):
        up, bare, tout = (find(rows, t, mode, 1) for t in ("upstream", "bare", "turnout"))
        if tout and bare:
            extra = f", vs upstream direct +{tout.load.p50_ms - up.load.p50_ms:.3f} ms" if up else ""
            print(
                f"  added p50 latency {mode} c=1: turnout vs bare +{tout.load.p50_ms - bare.load.p50_ms:.3f} ms{extra}"
            )
    if "turnout" in ttfts:
        parts = ", ".join(f"{k} {v:.3f} ms" for k, v in ttfts.items())
        print(f"  time to first SSE event p50 (c=1): {parts}")
        for ref in ("bare", "upstream"):
            if ref in ttfts:
                print(f"  streaming TTFT added by turnout vs {ref}: +{ttfts['turnout'] - ttfts[ref]:.3f} ms")
    for name in ("bare", "turnout"):
        one = find(rows, name, "json", high, 1)
        for w in workers:
            many = find(rows, name, "json", high, w)
            if one and many and w > 1:
                ratio = many.load.rps / one.load.rps
                print(f"  {name} --workers {w}: {many.load.rps:.0f} req/s vs {one.load.rps:.0f} = {ratio:.2f}x")


def soak(target: Target, seconds: float, conc: int, slice_s: float) -> None:
    """Bounded soak: alternate json/sse load in slices, print RSS of the process tree after each."""
    print(f"\nsoak {target.name}: {seconds:.0f}s at c={conc}, RSS after each {slice_s:.0f}s slice")
    end = time.monotonic() + seconds
    samples: list[float] = []
    total = 0
    i = 0
    while time.monotonic() < end:
        mode = "json" if i % 2 == 0 else "sse"
        result = run_wrk(
            target.url(mode),
            target.json_body if mode == "json" else target.sse_body,
            connections=conc,
            seconds=min(slice_s, max(1.0, end - time.monotonic())),
        )
        total += result.requests
        samples.append(target.tree.rss_mb())
        print(
            f"  t={seconds - (end - time.monotonic()):6.0f}s  {mode:4} {result.rps:7.0f} req/s  "
            f"errors {result.errors}  rss {samples[-1]:7.1f} MB  (requests so far {total})",
            flush=True,
        )
        i += 1
    if len(samples) >= 2:
        base = samples[0]
        drift = max(abs(s - base) for s in samples) / base * 100
        print(f"  rss first slice {base:.1f} MB, last {samples[-1]:.1f} MB, max deviation {drift:.1f}%")


def median_row(rows: list[Row]) -> Row:
    """The round with the median CPU per request (its latency and req/s come with it)."""
    ordered = sorted(rows, key=lambda r: r.cpu_ms)
    return ordered[len(ordered) // 2]


def round_ratios(by_key: dict[tuple[str, str, int], list[Row]], conc: int) -> None:
    """turnout/bare CPU ratio of each round (the two rows ran back to back, so a drifting machine cancels out)."""
    for mode in ("json", "sse"):
        bare, tout = by_key.get(("bare", mode, conc)), by_key.get(("turnout", mode, conc))
        if not bare or not tout:
            continue
        ratios = sorted(t.cpu_ms / b.cpu_ms for b, t in zip(bare, tout, strict=True))
        print(
            f"  per-round cpu ratio {mode} c={conc}: median {ratios[len(ratios) // 2]:.2f}x "
            f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}, {len(ratios)} rounds)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement (bounded)")
    parser.add_argument("--concurrency", default="1,32", help="comma-separated open connections")
    parser.add_argument("--targets", default="upstream,bare,turnout")
    parser.add_argument("--workers", default="1,2", help="worker counts for bare and turnout (json, max conc)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="interleaved rounds of the single-worker rows (bare, turnout, bare, ...); the median round is kept, "
        "so a noisy neighbour on a shared machine skews both targets alike",
    )
    parser.add_argument("--ttft-samples", type=int, default=300)
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of soak after the comparison (0 = none)")
    parser.add_argument("--soak-slice", type=float, default=15.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (routes file, turnout log)")
    args = parser.parse_args()
    concs = [int(c) for c in args.concurrency.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    targets = args.targets.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-"))
    nginx = Nginx().start()
    rows: list[Row] = []
    ttfts: dict[str, float] = {}
    print(
        f"cpus {os.cpu_count()}, duration {args.duration}s per row, {args.rounds} round(s), "
        f"upstream nginx at {nginx.base}, workdir {workdir}"
    )
    print(
        f"{'target':9} {'mode':4} {'conc':>5} {'workers':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cpu ms/req':>11} {'errors':>7}"
    )

    def start(name: str, w: int) -> Target:
        if name == "upstream":
            return upstream_target(nginx)
        if name == "bare":
            return start_bare(nginx.base, w)
        return start_turnout(nginx.base, w, workdir)

    try:
        # Single worker: every target alive at once, rows interleaved round by round.
        singles = [start(name, 1) for name in targets]
        try:
            modes = [("json", c) for c in concs] + [("sse", c) for c in concs]
            by_key: dict[tuple[str, str, int], list[Row]] = {}
            for _ in range(args.rounds):
                for mode, conc in modes:
                    for target in singles:
                        by_key.setdefault((target.name, mode, conc), []).append(
                            measure(target, mode, conc, args.duration, quiet=args.rounds > 1)
                        )
            if args.rounds > 1:
                print(f"median of {args.rounds} rounds:")
                for key in sorted(by_key, key=lambda k: (targets.index(k[0]), k[1], k[2])):
                    print_row(median_row(by_key[key]))
                round_ratios(by_key, max(concs))
            rows += [median_row(found) for found in by_key.values()]
            ttfts.update(interleaved_ttft(singles, args.ttft_samples))
            if args.soak:
                soak(singles[-1], args.soak, max(concs), args.soak_slice)
        finally:
            for target in singles:
                target.stop()
        # More workers: one target at a time (they would compete for the same cores).
        for name in targets:
            for w in workers:
                if name == "upstream" or w == 1:
                    continue
                target = start(name, w)
                try:
                    rows.append(measure(target, "json", max(concs), args.duration))
                finally:
                    target.stop()
        summarise(rows, ttfts, concs, workers)
    finally:
        nginx.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
