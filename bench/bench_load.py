#!/usr/bin/env python3
"""Load + validate time and memory for a large generated routing file (target: 5,000 routes / 500 models
in under 2 s and under 200 MB).

    python bench/bench_load.py [--routes 5000] [--models 500] [--repeat 3]

Prints per-stage times (best of --repeat), the whole `load_text` time, the router's compile time when the
router is installed, the tracemalloc peak of one load and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from turnout.drivers.registry import DriverRegistry
from turnout.schema import load_text, validate
from turnout.schema.build import build_config
from turnout.schema.checks import Checker
from turnout.schema.problems import Reporter
from turnout.schema.templates import Renderer
from turnout.schema.yamltree import parse


def generate(routes: int, models: int, providers: int = 10, pools: int = 100) -> str:
    """A realistic big file: templated keys, priced models, weighted pools, some route overrides."""
    out = ["version: 1", "defaults:", "  deadline: 60s", "  retry: {attempts: 2, backoff: {initial: 250ms, max: 8s}}"]
    out.append("providers:")
    for p in range(providers):
        driver = "mock" if p == 0 else "openai"
        key = "" if p == 0 else f"\n    api_key: \"{{{{ env.KEY_{p} | default('') }}}}\""
        out.append(f"  p{p}:\n    driver: {driver}{key}")
    out.append("models:")
    for m in range(models):
        out += [
            f"  m{m}:",
            f"    provider: p{m % providers}",
            f"    name: upstream-model-{m}",
            "    context_window: 128000",
            "    supports: [tools, json, streaming]",
            "    price: {input: 0.15, output: 0.60, cached_input: 0.075}",
            "    limits: {rpm: 500, tpm: 200000}",
        ]
    out.append("pools:")
    for p in range(pools):
        out += [f"  pool{p}:", "    strategy: weighted", "    members:"]
        out += [f"      - {{model: m{(p * 5 + k) % models}, weight: {k + 1}}}" for k in range(5)]
    out.append("routes:")
    for r in range(routes):
        out += [f"  route-{r}:", f"    description: generated route {r}"]
        out.append(f"    chain: [pool{r % pools}, m{(r * 7 + 3) % models}, m{(r * 7 + 4) % models}]")
        if r % 10 == 0:
            out += ["    deadline: 120s", "    retry: {attempts: 3}", "    on_error: {timeout: retry}"]
    return "\n".join(out) + "\n"


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def stages(text: str, env: dict[str, str], repeat: int) -> list[tuple[str, float]]:
    """Time each pipeline stage separately (each on a fresh parse, since rendering mutates the data)."""
    registry = DriverRegistry()
    t_parse, _ = best_of(repeat, lambda: parse(text, Reporter("bench")))
    data = parse(text, Reporter("bench"))
    t_schema, _ = best_of(repeat, lambda: validate.check(data, Reporter("bench")))

    def render_and_check() -> tuple[Any, Renderer, Reporter]:
        reporter = Reporter("bench")
        fresh = parse(text, reporter)
        start = time.perf_counter()
        renderer = Renderer(env, reporter)
        renderer.render_all(fresh)
        Checker(fresh, reporter, registry.names(), renderer.disabled, renderer.disabled_at).run()
        return time.perf_counter() - start, (fresh, renderer, reporter)

    t_checks, (fresh, renderer, reporter) = min((render_and_check() for _ in range(repeat)), key=lambda x: x[0])
    t_build, _ = best_of(repeat, lambda: build_config(fresh, "bench", renderer.disabled, reporter.warnings))
    return [
        ("parse (YAML -> data + marks)", t_parse),
        ("schema validation", t_schema),
        ("templates + semantic checks", t_checks),
        ("build frozen Config", t_build),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=5000)
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = {f"KEY_{p}": f"sk-bench-{p}" for p in range(1, 10)}

    text = generate(args.routes, args.models)
    print(f"file: {args.routes} routes, {args.models} models, {text.count(chr(10))} lines, {len(text) / 1e6:.2f} MB")
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}")

    load_time, config = best_of(args.repeat, lambda: load_text(text, source="bench.yaml", env=env))
    for name, seconds in stages(text, env, args.repeat):
        print(f"  {name:<32} {seconds * 1000:8.1f} ms")
    print(f"load + validate (load_text, best of {args.repeat}): {load_time * 1000:.1f} ms")

    try:
        from turnout.router.compile import compile_graph
    except ImportError:
        print("compile: router not installed, skipped")
    else:
        compile_time, graph = best_of(args.repeat, lambda: compile_graph(config))
        print(f"compile (config -> dispatch graph): {compile_time * 1000:.1f} ms ({len(graph.routes)} routes)")

    tracemalloc.start()
    load_text(text, source="bench.yaml", env=env)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"tracemalloc peak during one load: {peak / 2**20:.1f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"process peak RSS: {rss:.1f} MiB")
    ok = load_time < 2.0 and rss < 200
    print(f"target (< 2 s, < 200 MB): {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
