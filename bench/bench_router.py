"""Router overhead in library mode: CPU per call above a plain aiohttp call to the same loopback upstream.

Run: `python bench/bench_router.py` (about a minute on 2 cores; `--quick` for a smoke run).

The upstream runs in a separate process, so `time.process_time()` in this process measures only the client
side: a plain aiohttp call (post JSON, read and parse the body / iterate the SSE lines) versus the same call
through `Router.chat` / `Router.stream` with the openai driver. Printed numbers:

- chat: CPU us per call, plain vs router, and the difference (target <= 50 us);
- stream: CPU us per extra chunk, from the slope between short and long streams, plain vs router (target <= 3 us);
- failover: what a request that fails over after a fast 500 (action "next") adds beyond the failed attempt
  itself, t(fail->ok) - t(ok) - t(the 500 call through the driver alone), in wall and CPU us (target < 1000 us;
  wall time on a busy 2-core box is noisy, the CPU figure is the stable one);
- mock: CPU us per call through the in-process mock driver (the router's own cost plus a trivial driver), and per
  embeddings call (`router.embed`, one text, 1536 dimensions, through the same loop: validation, dispatch, the
  shape check and pricing, plus the mock's hashing);
- memory: RSS after warm-up and after N mock calls (target: growth within 10%).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import random
import statistics
import time
from typing import Any

import aiohttp
from aiohttp import web

from turnout import ChatRequest, ProviderError, Router
from turnout.drivers.base import CallContext
from turnout.schema import load_text

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1727346143,
        "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }
).encode()
ERROR = json.dumps({"error": {"message": "boom", "type": "server_error", "code": None}}).encode()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1727346180,
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def _stream_body(chunks: int) -> bytes:
    usage = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench", "choices": []}
    usage["usage"] = {"prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks}
    frames = [_chunk({"role": "assistant", "content": ""})]
    frames += [_chunk({"content": "tok "}) for _ in range(chunks)]
    frames += [_chunk({}, "stop"), b"data: " + json.dumps(usage).encode() + b"\n\n", b"data: [DONE]\n\n"]
    return b"".join(frames)


def _serve(conn: Any) -> None:
    """The upstream process: /ok answers a completion, /fail a fast 500, /s/<n> streams n content chunks."""
    bodies: dict[int, bytes] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        kind = request.match_info["kind"]
        if kind == "fail":
            return web.Response(body=ERROR, status=500, content_type="application/json")
        if kind == "ok":
            return web.Response(body=COMPLETION, content_type="application/json")
        n = int(kind[1:])
        body = bodies.get(n) or bodies.setdefault(n, _stream_body(n))
        return web.Response(body=body, content_type="text/event-stream")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/{kind}/v1/chat/completions", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


def routes_yaml(port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    return f"""
version: 1
defaults:
  retry: {{attempts: 0}}
  breaker: {{failure_threshold: 1000000}}  # keep the failing deployment in play for the failover measurement
providers:
  ok: {{driver: openai, base_url: "{base}/ok/v1", api_key: sk-bench}}
  bad: {{driver: openai, base_url: "{base}/fail/v1", api_key: sk-bench}}
  s10: {{driver: openai, base_url: "{base}/s10/v1", api_key: sk-bench}}
  s210: {{driver: openai, base_url: "{base}/s210/v1", api_key: sk-bench}}
  mock: {{driver: mock}}
models:
  good: {{provider: ok, price: {{input: 1, output: 1}}}}
  broken: {{provider: bad, price: {{input: 1, output: 1}}}}
  short: {{provider: s10, price: {{input: 1, output: 1}}}}
  long: {{provider: s210, price: {{input: 1, output: 1}}}}
  echo: {{provider: mock, price: {{input: 0, output: 0}}}}
  vectors: {{provider: mock, kind: embeddings, dimensions: 1536, price: {{input: 0.02}}}}
routes:
  chat: {{chain: [good]}}
  failover: {{chain: [broken, good], on_error: {{server_error: next}}}}
  short: {{chain: [short]}}
  long: {{chain: [long]}}
  mock: {{chain: [echo]}}
  embed: {{kind: embeddings, chain: [vectors]}}
"""


MESSAGES = [{"role": "user", "content": "hello, how are you today?"}]


async def per_call(
    calls: dict[str, Any], n: int, *, clock: Any = time.process_time, rounds: int = 5
) -> dict[str, float]:
    """Seconds per call for each callable, measured in interleaved rounds (median), so drift and noise from the
    other process hit every candidate alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            gc.collect()
            start = clock()
            for _ in range(n):
                await call()
            samples[name].append((clock() - start) / n)
    return {name: statistics.median(values) for name, values in samples.items()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def run(port: int, n: int, mem_calls: int, mem_seconds: float) -> None:
    base = f"http://127.0.0.1:{port}"
    body = {"model": "bench", "messages": MESSAGES}
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def plain_chat() -> None:
            async with session.post(
                f"{base}/ok/v1/chat/completions",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
            ) as r:
                json.loads(await r.read())

        def plain_stream(path: str) -> Any:
            async def call() -> None:
                async with session.post(
                    f"{base}/{path}/v1/chat/completions",
                    data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                ) as r:
                    async for line in r.content:
                        if line.startswith(b"data: [DONE]"):
                            break

            return call

        router = Router(load_text(routes_yaml(port)), rng=random.Random(1))
        async with router:

            async def routed_chat() -> None:
                await router.chat(model="chat", messages=MESSAGES)

            async def routed_failover() -> None:
                await router.chat(model="failover", messages=MESSAGES)

            def routed_stream(route: str) -> Any:
                async def call() -> None:
                    async for _ in router.stream(model=route, messages=MESSAGES):
                        pass

                return call

            async def mock_chat() -> None:
                await router.chat(model="mock", messages=MESSAGES)

            async def mock_embed() -> None:
                await router.embed(model="embed", input=MESSAGES[0]["content"])

            for warm in (plain_chat, routed_chat, routed_failover, mock_chat):
                for _ in range(200):
                    await warm()

            deployment = router.graph.deployments["ok/good"]
            request = ChatRequest.create(model="chat", messages=MESSAGES)

            async def driver_alone() -> None:
                ctx = CallContext(
                    session=router._ensure_session(),
                    model="bench",
                    deadline=time.monotonic() + 60,
                    attempt_timeout=30,
                    connect_timeout=5,
                )
                await deployment.driver.send(request, ctx)

            for _ in range(200):
                await driver_alone()
            cpu = await per_call({"plain": plain_chat, "driver": driver_alone, "router": routed_chat}, n)
            plain, driver, routed = cpu["plain"], cpu["driver"], cpu["router"]
            print(
                f"chat    CPU/call: plain aiohttp {plain * 1e6:7.1f} us | openai driver alone {driver * 1e6:7.1f} us"
                f" | router {routed * 1e6:7.1f} us | overhead {(routed - plain) * 1e6:6.1f} us (target <= 50; "
                f"router above its driver {(routed - driver) * 1e6:5.1f} us)"
            )

            m = max(50, n // 10)
            streams = {
                "p10": plain_stream("s10"),
                "p210": plain_stream("s210"),
                "r10": routed_stream("short"),
                "r210": routed_stream("long"),
            }
            cpu = await per_call(streams, m)
            plain_chunk, routed_chunk = (cpu["p210"] - cpu["p10"]) / 200, (cpu["r210"] - cpu["r10"]) / 200
            print(
                f"stream  CPU/chunk: plain iteration {plain_chunk * 1e6:5.2f} us | router {routed_chunk * 1e6:5.2f} us"
                f" | overhead {(routed_chunk - plain_chunk) * 1e6:5.2f} us (target <= 3)"
            )
            print(
                f"stream  CPU/request (10 chunks): plain {cpu['p10'] * 1e6:7.1f} us | router {cpu['r10'] * 1e6:7.1f} us"
            )

            broken = router.graph.deployments["bad/broken"]

            async def failed_attempt() -> None:
                ctx = CallContext(
                    session=router._ensure_session(),
                    model="bench",
                    deadline=time.monotonic() + 60,
                    attempt_timeout=30,
                    connect_timeout=5,
                )
                try:
                    await broken.driver.send(request, ctx)
                except ProviderError:
                    pass

            calls = {"ok": routed_chat, "failover": routed_failover, "fail": failed_attempt}
            for label, clock in (("wall", time.perf_counter), ("CPU ", time.process_time)):
                t = await per_call(calls, n, clock=clock)
                added = t["failover"] - t["ok"] - t["fail"]
                print(
                    f"failover {label}: ok {t['ok'] * 1e6:7.1f} us | fail->ok {t['failover'] * 1e6:7.1f} us | the 500 "
                    f"attempt alone {t['fail'] * 1e6:7.1f} us | added {added * 1e6:6.1f} us (target < 1000)"
                )

            mock = await per_call({"chat": mock_chat, "embed": mock_embed}, n)
            print(
                f"mock    CPU/call through the router: chat {mock['chat'] * 1e6:7.1f} us | "
                f"embeddings {mock['embed'] * 1e6:7.1f} us"
            )

            for _ in range(10_000):
                await mock_chat()
            gc.collect()
            before = rss_bytes()
            deadline = time.monotonic() + mem_seconds
            done = 0
            while done < mem_calls and time.monotonic() < deadline:
                for _ in range(1000):
                    await mock_chat()
                # The mock answers without ever suspending, so this loop alone would never let the event loop
                # run; asyncio purges cancelled timer handles (one per attempt timeout) only when it does.
                await asyncio.sleep(0)
                done += 1000
            gc.collect()
            after = rss_bytes()
            print(
                f"memory  RSS after warm-up {before / 2**20:.1f} MiB, after {done:,} more calls "
                f"{after / 2**20:.1f} MiB ({(after - before) / before * 100:+.1f}%, target within 10%)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per measurement")
    parser.add_argument("--mem-calls", type=int, default=200_000)
    parser.add_argument("--mem-seconds", type=float, default=90.0, help="time bound for the memory run")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.mem_calls = 300, 5000
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    try:
        port = parent.recv()
        asyncio.run(run(port, args.calls, args.mem_calls, args.mem_seconds))
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
