"""CPU per request of the sidecar with tracing absent, installed but off, on, and on but sampled out.

    python bench/sidecar/tracing.py --mode json --rounds 6

One `turnout serve` per variant, all on the same routing file and nginx upstream, loaded in interleaved rounds (a,
b, c, d, a, ...), so a shared machine's drift hits every variant alike; the medians and their ratio to `disabled`
are the figures to quote:

- `absent`: OpenTelemetry cannot be imported (bench/sidecar/without_otel hides it): the extra not installed;
- `disabled`: installed, nothing asks for traces (no telemetry section, no OTEL_* variables);
- `enabled`: OTEL_EXPORTER_OTLP_ENDPOINT points at the nginx upstream, which answers the OTLP/HTTP exports: spans
  are built, batched, encoded and sent (the exporter's thread counts too: it is the same process);
- `sampled-out`: enabled with OTEL_TRACES_SAMPLER=traceidratio and a ratio of 0: spans are not recorded.

Loopback only, bounded.
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

from load import interleaved_cpu_ms
from run import ROUTES_YAML, body
from upstream import Nginx, free_port, wait_port

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
VARIANTS = {
    "absent": {"PYTHONPATH": f"{SRC}{os.pathsep}{HERE / 'without_otel'}"},
    "disabled": {},
    "enabled": {"OTEL_EXPORTER_OTLP_ENDPOINT": "{upstream}"},
    "sampled-out": {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "{upstream}",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
    },
}


def start(name: str, routes: Path, workdir: Path, upstream: str) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(SRC)
    env.update({k: v.format(upstream=upstream) for k, v in VARIANTS[name].items()})
    cmd = [sys.executable, "-c", "from turnout.cli import main; main()", "serve", str(routes)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--access-log", str(workdir / f"{name}.log")]
    log = open(workdir / f"{name}.err", "wb")  # noqa: SIM115 (lives as long as the process)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    wait_port(port, proc, timeout=30)
    return port, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("json", "sse"), default="json")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    nginx = Nginx().start()
    workdir = Path(tempfile.mkdtemp(prefix="turnout-tracing-"))
    routes = workdir / "routes.yaml"
    routes.write_text(ROUTES_YAML.format(base=nginx.base))
    procs = {}
    try:
        for name in VARIANTS:
            procs[name] = start(name, routes, workdir, nginx.base)
        stream = args.mode == "sse"
        payload = body("bench-stream" if stream else "bench", stream)
        ports = {name: (port, proc.pid) for name, (port, proc) in procs.items()}
        cpu = interleaved_cpu_ms(ports, payload, rounds=args.rounds, connections=args.connections, seconds=args.seconds)
        base = statistics.median(cpu["disabled"])
        for name, values in cpu.items():
            median = statistics.median(values)
            shown = " ".join(f"{v:.3f}" for v in values)
            print(f"{name:12} cpu ms/request {shown}  median {median:.3f}  ({median / base:.3f} x disabled)")
        banner = (workdir / "enabled.err").read_text()
        print("enabled banner:", next((line.strip() for line in banner.splitlines() if "tracing:" in line), "?"))
    finally:
        for _port, proc in procs.values():
            proc.terminate()
            proc.wait(20)
        nginx.stop()


if __name__ == "__main__":
    main()
