"""Tracing in the sidecar: SERVER spans parented by traceparent, propagation upstream, and a real OTLP export."""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
from pathlib import Path

import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanKind

from turnout.router import Router
from turnout.schema import load_file
from turnout.server.app import create_app, make_runner
from turnout.testing import OpenAIFake

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
ASK = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
ROUTES = """\
version: 1
defaults: {retry: {attempts: 0}}
providers:
  internal: {driver: openai, base_url: "@INTERNAL@/v1", api_key: sk-internal-0001}
  public: {driver: openai, base_url: "@PUBLIC@/v1", api_key: sk-public-0002}
models:
  qwen: {provider: internal, name: qwen-7b}
  gpt: {provider: public, name: gpt-test}
routes:
  chat: {chain: [qwen, gpt]}
server: {watch: false}
telemetry:
  propagate_to: [internal]
"""


@contextlib.asynccontextmanager
async def sidecar(path: Path, provider):
    router = Router(load_file(path), tracer_provider=provider)
    app = create_app(router, config_path=str(path), access_log=io.StringIO())
    runner = make_runner(app, drain_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_server_span_continues_the_callers_trace_and_propagates_to_chosen_upstreams(spans, tmp_path, http):
    """The request's SERVER span is the child of the incoming traceparent and carries the GenAI attributes; the
    attempt on the internal provider sent its own span as traceparent; the public provider got no trace header."""
    async with OpenAIFake(model="qwen-7b") as internal, OpenAIFake(model="gpt-test") as public:
        internal.script("chat", internal.error("server_error"))
        public.default("chat", public.text("hello"))
        path = tmp_path / "routes.yaml"
        path.write_text(ROUTES.replace("@INTERNAL@", internal.url).replace("@PUBLIC@", public.url))
        async with sidecar(path, spans.provider) as url:
            headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
            async with http.post(url + "/v1/chat/completions", json=ASK, headers=headers) as resp:
                assert resp.status == 200
        sent_internal = internal.requests_to("chat")[0].header("traceparent")
        sent_public = public.requests_to("chat")[0].header("traceparent")
    [server] = [s for s in spans.all if s.kind is SpanKind.SERVER]
    assert server.name == "chat chat"
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_ID and server.parent.is_remote
    a = server.attributes
    assert a["http.request.method"] == "POST" and a["url.path"] == "/v1/chat/completions"
    assert a["http.response.status_code"] == 200 and a["gen_ai.request.model"] == "chat"
    assert a["turnout.served_by"] == "public/gpt" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.response.model"] == "gpt-test"
    first, second = spans.children(server)
    assert first.attributes["server.address"] == "127.0.0.1" and first.attributes["gen_ai.request.model"] == "qwen-7b"
    assert first.attributes["turnout.action"] == "next"
    _, trace_id, span_id, _ = sent_internal.split("-")
    assert (trace_id, span_id) == (TRACE_ID, format(first.context.span_id, "016x"))
    assert sent_public is None
    assert second.attributes["gen_ai.request.model"] == "gpt-test"


async def test_requests_turnout_refuses_still_get_a_server_span(spans, tmp_path, http):
    """A malformed body is answered 400 inside a SERVER span named after the endpoint (no route was reached)."""
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES.replace("@INTERNAL@", "http://127.0.0.1:9").replace("@PUBLIC@", "http://127.0.0.1:9"))
    bad = {"data": b"{not json", "headers": {"Content-Type": "application/json"}}
    async with sidecar(path, spans.provider) as url, http.post(url + "/v1/chat/completions", **bad) as r:
        assert r.status == 400
    [server] = spans.all
    assert server.name == "POST /v1/chat/completions" and server.attributes["http.response.status_code"] == 400


class Collector:
    """A fake OTLP/HTTP collector on loopback: keeps every ExportTraceServiceRequest it is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.received = asyncio.Event()

    async def traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.requests.append(message)
        self.headers.append(dict(request.headers))
        self.received.set()
        return web.Response(body=b"", content_type="application/x-protobuf")

    def spans(self) -> list[tuple[str, str, int]]:
        """(service.name, span name, kind) of everything received."""
        out = []
        for message in self.requests:
            for resource_spans in message.resource_spans:
                service = next(
                    a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"
                )
                for scope in resource_spans.scope_spans:
                    out += [(service, span.name, span.kind) for span in scope.spans]
        return out


@contextlib.asynccontextmanager
async def collector():
    found = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", found.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield found, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


MOCK = """\
version: 1
providers: {echo: {driver: mock}}
models: {echo: {provider: echo, name: echo-1}}
routes: {chat: {chain: [echo]}}
server: {watch: false}
"""


async def test_turnout_serve_exports_spans_over_otlp_when_the_environment_asks(tmp_path, cli, monkeypatch):
    """`turnout serve` with only OTEL_EXPORTER_OTLP_ENDPOINT set sends its spans (service turnout) to that
    collector, flushed when it shuts down; the banner says tracing is on."""
    async with collector() as (found, endpoint):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # only the shutdown flush sends them
        path = tmp_path / "routes.yaml"
        path.write_text(MOCK)
        async with cli.serve(path, "--access-log", "off") as child:
            await child.wait_listening(within=30)
            async with aiohttp.ClientSession() as http, http.post(child.url + "/v1/chat/completions", json=ASK) as r:
                assert r.status == 200
            child.proc.send_signal(signal.SIGTERM)
            assert await child.finish(within=30) == 0
        assert "tracing: on, OTLP (http/protobuf) to " + endpoint in child.log()
    assert sorted(found.spans()) == [
        ("turnout", "chat chat", SpanKind.SERVER.value + 1),  # OTLP's enum counts from UNSPECIFIED = 0
        ("turnout", "chat echo-1", SpanKind.CLIENT.value + 1),
    ]


async def test_the_files_endpoint_and_headers_win(tmp_path, monkeypatch):
    """The telemetry section's endpoint, headers and service name are what a library Router exports with; the
    environment's headers are sent too (the file's add to them)."""
    async with collector() as (found, endpoint):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # overridden by the file
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=blue")
        text = MOCK + (
            f"telemetry:\n  endpoint: {endpoint}\n  service_name: router-lib\n"
            '  headers: {x-collector-key: "{{ env.COLLECTOR_KEY }}"}\n'
        )
        router = Router.from_yaml(text, env={"COLLECTOR_KEY": "collector-SECRET-1"})
        async with router:
            await router.chat(model="chat", messages=ASK["messages"])
    assert [name for _, name, _ in found.spans()] == ["chat echo-1", "chat chat"]
    assert {service for service, _, _ in found.spans()} == {"router-lib"}
    assert found.headers[0]["x-collector-key"] == "collector-SECRET-1"
    assert found.headers[0]["x-tenant"] == "blue"


async def test_messages_embeddings_and_responses_requests_get_server_spans_too(spans, tmp_path, http):
    """Every ingress that reaches the Router is traced: an Anthropic Messages request, an embeddings request and a
    Responses request each get their SERVER span with the attempt under it."""
    path = tmp_path / "routes.yaml"
    path.write_text(
        "version: 1\nproviders: {m: {driver: mock}}\n"
        "models:\n  echo: {provider: m, name: echo-1}\n"
        "  vec: {provider: m, name: vec-1, kind: embeddings, dimensions: 4}\n"
        "routes: {chat: {chain: [echo]}, embed: {kind: embeddings, chain: [vec]}}\nserver: {watch: false}\n"
    )
    messages = {"model": "chat", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    async with sidecar(path, spans.provider) as url:
        async with http.post(url + "/v1/messages", json=messages) as resp:
            assert resp.status == 200
        async with http.post(url + "/v1/embeddings", json={"model": "embed", "input": "hi"}) as resp:
            assert resp.status == 200
        async with http.post(url + "/v1/responses", json={"model": "chat", "input": "hi"}) as resp:
            assert resp.status == 200
    servers = sorted((s for s in spans.all if s.kind is SpanKind.SERVER), key=lambda s: s.start_time)
    assert [(s.name, s.attributes["url.path"]) for s in servers] == [
        ("chat chat", "/v1/messages"),
        ("embeddings embed", "/v1/embeddings"),
        ("chat chat", "/v1/responses"),
    ]
    assert [len(spans.children(s)) for s in servers] == [1, 1, 1]
