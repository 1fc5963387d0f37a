"""The floor for any Python sidecar: a bare aiohttp pass-through proxy.

Per request it does only what every OpenAI proxy must: read the body, parse the JSON, pick the upstream (the
JSON or SSE base URL of the benchmark upstream, by `stream`), forward the original bytes with one shared
ClientSession, and relay the answer (whole body, or SSE bytes as they arrive). No routing table, metrics,
logging, breakers or accounting: turnout's CPU per request is compared against this.

    python bench/sidecar/bare_proxy.py --upstream http://127.0.0.1:PORT --port 9000 [--workers N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal

import aiohttp
from aiohttp import web

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def make_app(upstream: str) -> web.Application:
    json_url = f"{upstream}/json/v1/chat/completions"
    sse_url = f"{upstream}/sse/v1/chat/completions"
    forward_headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    app = web.Application()

    async def start_session(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None))

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        data = json.loads(body)
        stream = data.get("stream") is True
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(sse_url if stream else json_url, data=body, headers=forward_headers) as upstream:
            if not stream:
                payload = await upstream.read()
                return web.Response(body=payload, status=upstream.status, content_type="application/json")
            response = web.StreamResponse(status=upstream.status, headers=_SSE_HEADERS)
            try:
                await response.prepare(request)
                async for piece in upstream.content.iter_any():
                    await response.write(piece)
                await response.write_eof()
            except ConnectionResetError:  # the client went away (wrk stops mid-request at the end of a run)
                pass
            return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.on_startup.append(start_session)
    app.on_cleanup.append(close_session)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", healthz)
    return app


def serve(upstream: str, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; SO_REUSEPORT lets several worker processes share the port."""
    web.run_app(make_app(upstream), host=host, port=port, access_log=None, print=None, reuse_port=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="base URL of bench/sidecar/upstream.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.workers <= 1:
        serve(args.upstream, args.host, args.port)
        return
    # N processes on one port via SO_REUSEPORT: the kernel spreads connections across them.
    children = [
        multiprocessing.Process(target=serve, args=(args.upstream, args.host, args.port), daemon=False)
        for _ in range(args.workers)
    ]
    for child in children:
        child.start()

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.join()


if __name__ == "__main__":
    main()
