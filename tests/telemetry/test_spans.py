"""Span trees of library calls: a request that retried, failed over and succeeded; streams continued or restarted."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

from turnout import AllUpstreamsFailed, Router

HI = [{"role": "user", "content": "a private prompt about Zanzibar"}]
ROUTES = """\
version: 1
defaults:
  retry: {attempts: 1, backoff: {initial: 1ms, max: 1ms}}
  breaker: {failure_threshold: 5, recovery_timeout: 1m}
providers:
  busy: {driver: mock, options: {faults: [{kind: status, status: 503}]}}
  locked: {driver: mock, options: {faults: [{kind: status, status: 401}]}}
  cutter: {driver: mock, options: {tokens_per_second: 0, faults: [{kind: cut, after_chunks: 2}]}}
  fine: {driver: mock, options: {tokens_per_second: 0}}
models:
  busy: {provider: busy, name: busy-1, price: {input: 1, output: 1}}
  locked: {provider: locked, name: locked-1}
  cutter: {provider: cutter, name: cutter-1, supports: [streaming, prefill], price: {input: 1, output: 1}}
  fine: {provider: fine, name: fine-1, supports: [streaming, prefill], price: {input: 2, output: 2}}
pools:
  first: {strategy: priority, members: [busy]}
routes:
  failover: {chain: [first, fine]}
  continued: {chain: [cutter, fine], mid_stream: continue}
  restarted: {chain: [cutter, fine], mid_stream: restart}
  breaker: {chain: [locked, fine]}
  dead: {chain: [busy]}
@EXTRA@
"""


def routes(extra: str = "") -> str:
    return ROUTES.replace("@EXTRA@", extra)


async def test_a_request_that_retried_failed_over_and_succeeded(spans):
    """One request span (child of the caller's) holds three CLIENT attempts: two on the busy deployment (retry,
    then next) and the one that served; GenAI attributes, the actions, the retry wait and the fallback are there."""
    tracer = spans.provider.get_tracer("app")
    async with Router.from_yaml(routes(), tracer_provider=spans.provider) as router:
        with tracer.start_as_current_span("app work") as app_span:
            reply = await router.chat(model="failover", messages=HI, max_tokens=50, temperature=0.2)
    [root] = spans.roots()
    assert root.name == "app work"
    [request] = spans.children(root)
    assert request.context.trace_id == app_span.get_span_context().trace_id
    assert request.name == "chat failover" and request.kind is SpanKind.INTERNAL
    a = request.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "failover"
    assert a["gen_ai.provider.name"] == "turnout.mock" and a["turnout.served_by"] == "fine/fine"
    assert a["gen_ai.response.model"] == reply.model and a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.2
    assert a["turnout.cost_usd"] == pytest.approx(reply.cost_usd)
    assert (a["turnout.attempts"], a["turnout.fallbacks"]) == (3, 1)
    assert request.status.status_code is StatusCode.UNSET
    first, second, served = spans.children(request)
    for span in (first, second, served):
        assert span.kind is SpanKind.CLIENT and span.attributes["gen_ai.operation.name"] == "chat"
    assert first.name == "chat busy-1" and first.attributes["gen_ai.request.model"] == "busy-1"
    assert [s.attributes["turnout.attempt"] for s in (first, second, served)] == [1, 2, 3]
    assert [s.attributes.get("turnout.retry") for s in (first, second, served)] == [None, 1, None]
    assert [s.attributes.get("turnout.fallback_step") for s in (first, second, served)] == [0, 0, 1]
    assert [s.attributes.get("turnout.action") for s in (first, second)] == ["retry", "next"]
    for failed in (first, second):
        assert failed.attributes["error.type"] == "overloaded" and failed.attributes["http.response.status_code"] == 503
        assert failed.status.status_code is StatusCode.ERROR
        assert failed.end_time <= served.start_time  # a failed attempt ends when it failed, not when decided
    assert served.attributes["turnout.deployment"] == "fine/fine" and "error.type" not in served.attributes
    assert served.attributes["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    [retry] = spans.events(request, "turnout.retry")
    assert retry["turnout.deployment"] == "busy/busy" and retry["error.type"] == "overloaded"
    assert retry["turnout.retry.number"] == 1 and retry["turnout.retry.delay"] >= 0
    [fallback] = spans.events(request, "turnout.fallback")
    assert fallback == {"turnout.deployment": "busy/busy", "error.type": "overloaded"}


async def test_a_stream_that_was_continued(spans):
    """A stream cut after content and continued elsewhere: the cut attempt's action is continue, the next attempt
    says it continues (from whom, how many characters), and the request span says the stream was continued."""
    router = Router.from_yaml(routes(), tracer_provider=spans.provider)
    async with router, router.stream(model="continued", messages=HI) as stream:
        text = "".join([c.content or "" async for c in stream])
    assert text
    [request] = spans.roots()
    assert request.attributes["turnout.stream"] is True
    assert request.attributes["turnout.stream.continued"] is True
    assert request.attributes["turnout.stream.continued_from"] == ("cutter/cutter",)
    assert request.attributes["turnout.served_by"] == "fine/fine"
    cut, continuation = spans.children(request)
    assert cut.attributes["turnout.action"] == "continue" and cut.attributes["turnout.after_first_token"] is True
    assert cut.attributes["error.type"] == "connection"  # the mock's cut: the connection broke mid-answer
    c = continuation.attributes
    assert c["turnout.mid_stream"] == "continue" and c["turnout.continued_from"] == "cutter/cutter"
    assert c["turnout.chars_kept"] > 0 and c["gen_ai.response.finish_reasons"] == ("stop",)
    [event] = spans.events(request, "turnout.stream_continued")
    assert event["turnout.deployment"] == "fine/fine"


async def test_a_stream_that_was_restarted(spans):
    """Under mid_stream: restart a cut attempt is followed by a restart, marked on the attempt and the request."""
    router = Router.from_yaml(routes(), tracer_provider=spans.provider)
    async with router, router.stream(model="restarted", messages=HI) as stream:
        assert "".join([c.content or "" async for c in stream])
    [request] = spans.roots()
    assert request.attributes["turnout.stream.restarted"] is True
    tries = spans.children(request)
    assert tries[0].attributes["turnout.after_first_token"] is True
    assert tries[-1].attributes["turnout.mid_stream"] == "restart"
    assert tries[-1].attributes["turnout.deployment"] == "fine/fine"


async def test_breaker_decisions_are_events_and_skips_are_named(spans):
    """A 401 opens the breaker while serving (an event on that request); the next request notes the skip."""
    async with Router.from_yaml(routes(), tracer_provider=spans.provider) as router:
        await router.chat(model="breaker", messages=HI)
        await router.chat(model="breaker", messages=HI)
    first, second = sorted(spans.roots(), key=lambda s: s.start_time)
    [opened] = spans.events(first, "turnout.breaker.opened")
    assert opened["turnout.deployment"] == "locked/locked" and opened["turnout.breaker.open_for"] == 60
    [skip] = spans.events(second, "turnout.skip")
    assert skip == {"turnout.deployment": "locked/locked", "turnout.skip.reason": "breaker open"}
    assert len(spans.children(second)) == 1


async def test_a_failed_request_is_an_error_span(spans):
    """A request nothing could serve ends with error.type and an ERROR status; its attempts say what followed
    them (a retry, then moving on: here to nothing)."""
    async with Router.from_yaml(routes(), tracer_provider=spans.provider) as router:
        with pytest.raises(AllUpstreamsFailed):
            await router.chat(model="dead", messages=HI)
    [request] = spans.roots()
    assert request.status.status_code is StatusCode.ERROR and request.attributes["error.type"] == "overloaded"
    assert [s.attributes["turnout.action"] for s in spans.children(request)] == ["retry", "next"]


async def test_no_content_is_recorded_unless_log_content(spans):
    """Prompt and completion text appear in no span attribute or event, unless server.log_content is on."""
    async with Router.from_yaml(routes(), tracer_provider=spans.provider) as router:
        await router.chat(model="failover", messages=HI)
    recorded = [str(v) for s in spans.all for v in s.attributes.values()]
    recorded += [str(v) for s in spans.all for e in s.events for v in (e.attributes or {}).values()]
    assert not any("Zanzibar" in value for value in recorded)
    spans.clear()
    with_content = routes("server: {log_content: true}")
    async with Router.from_yaml(with_content, tracer_provider=spans.provider) as router:
        reply = await router.chat(model="failover", messages=HI)
    [request] = spans.roots()
    assert "Zanzibar" in request.attributes["gen_ai.input.messages"]
    assert reply.text in request.attributes["gen_ai.output.messages"]


async def test_a_request_id_sent_twice_keeps_its_own_spans(spans):
    """Two concurrent requests with the same request id (a client's x-request-id) each get a whole tree."""
    import asyncio

    async with Router.from_yaml(routes(), tracer_provider=spans.provider) as router:
        await asyncio.gather(*(router.chat(model="failover", messages=HI, request_id="same") for _ in range(2)))
    roots = spans.roots()
    assert len(roots) == 2
    assert [len(spans.children(r)) for r in roots] == [3, 3]


async def test_the_file_can_turn_tracing_off(spans):
    """`telemetry: {enabled: false}` wins over a provider passed in: no spans, no tracing observer."""
    async with Router.from_yaml(routes("telemetry: {enabled: false}"), tracer_provider=spans.provider) as router:
        await router.chat(model="failover", messages=HI)
        assert router.tracing is None
    assert spans.all == []


def test_an_application_provider_is_never_shut_down_by_turnout():
    """A provider the embedder passes stays usable after the Router closes (turnout only flushes its own)."""
    import asyncio

    provider = TracerProvider()

    async def run() -> None:
        async with Router.from_yaml(routes(), tracer_provider=provider) as router:
            await router.chat(model="failover", messages=HI)

    asyncio.run(run())
    assert provider.get_tracer("after").start_span("still works").is_recording()


async def test_a_request_the_route_refuses_to_fail_over_says_fail(spans):
    """A client's bad request (400) fails at once: its attempt's action is fail, the request span an error."""
    extra = "  refuses: {chain: [bad, fine]}\n"
    text = (
        routes()
        .replace("routes:\n", "routes:\n" + extra)
        .replace(
            "providers:\n", "providers:\n  bad: {driver: mock, options: {faults: [{kind: status, status: 400}]}}\n"
        )
        .replace("models:\n", "models:\n  bad: {provider: bad}\n")
    )
    async with Router.from_yaml(text, tracer_provider=spans.provider) as router:
        with pytest.raises(Exception, match=r"400|invalid|bad"):
            await router.chat(model="refuses", messages=HI)
    [request] = spans.roots()
    [attempt] = spans.children(request)
    assert attempt.attributes["turnout.action"] == "fail" and attempt.attributes["error.type"] == "bad_request"
    assert request.attributes["error.type"] == "bad_request"


EMBEDDINGS = """\
version: 1
providers: {vectors: {driver: mock}}
models: {vec: {provider: vectors, name: vec-1, kind: embeddings, dimensions: 8, price: {input: 0.02}}}
routes: {embed: {kind: embeddings, chain: [vec]}}
"""


async def test_an_embeddings_request_is_an_embeddings_span(spans):
    """An embeddings route's spans are named and marked as the embeddings operation, with the vectors' length."""
    async with Router.from_yaml(EMBEDDINGS, tracer_provider=spans.provider) as router:
        reply = await router.embed(model="embed", input=["one", "two"])
    [request] = spans.roots()
    [attempt] = spans.children(request)
    assert (request.name, attempt.name) == ("embeddings embed", "embeddings vec-1")
    assert request.attributes["gen_ai.operation.name"] == attempt.attributes["gen_ai.operation.name"] == "embeddings"
    assert attempt.attributes["gen_ai.embeddings.dimension.count"] == 8
    assert request.attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
