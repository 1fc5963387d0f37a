"""Streaming dispatch: commit point, invisible failover, first-token and stall timeouts, mid-stream policies."""

from __future__ import annotations

import time

import pytest
from aiohttp import web

from turnout import AllUpstreamsFailed, ErrorClass, ProviderError
from turnout.events import ResponseCompleted
from turnout.testing import Framing, hang

HI = [{"role": "user", "content": "hello there"}]


def stream_yaml(*urls: str, route: str = "", defaults: str = "") -> str:
    providers = "\n".join(
        f"  p{i}:\n    driver: openai\n    base_url: {url}/v1\n    api_key: sk-test" for i, url in enumerate(urls)
    )
    models = "\n".join(f"  m{i}: {{provider: p{i}, price: {{input: 1, output: 2}}}}" for i in range(len(urls)))
    chain = ", ".join(f"m{i}" for i in range(len(urls)))
    defaults = defaults or "  retry: {attempts: 0}"
    return (
        f"version: 1\ndefaults:\n{defaults}\nproviders:\n{providers}\nmodels:\n{models}\n"
        f"routes:\n  r:\n    chain: [{chain}]\n{route}"
    )


def content_then_hang(fake, pieces):
    """Stream the role chunk and `pieces`, then go silent (a stalled upstream)."""

    async def behave(request, upstream):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(fake.chunk({"role": "assistant", "content": ""}))
        for piece in pieces:
            await resp.write(fake.chunk({"content": piece}))
        await upstream.sleep(3600)
        return resp

    return behave


async def drain(stream, got: list) -> None:
    """Read a stream to its end, keeping each chunk's content in `got` (even if it then raises)."""
    async with stream:
        async for chunk in stream:
            got.append(chunk.content)


async def collect(stream):
    chunks = []
    async with stream:
        async for chunk in stream:
            chunks.append(chunk)
    return chunks


async def test_a_stream_is_forwarded_with_usage_and_cost(fakes, build):
    """A healthy stream yields every chunk; usage, cost, served_by and TTFT are set when it ends."""
    a = await fakes()
    a.script("chat", a.stream_text(["Hel", "lo"]))
    async with build(stream_yaml(a.url)) as router:
        stream = router.stream(model="r", messages=HI)
        chunks = await collect(stream)
    assert "".join(c.content or "" for c in chunks) == "Hello"
    assert chunks[-1].usage.prompt_tokens == 12
    assert stream.served_by == "p0/m0"
    assert stream.cost_usd == pytest.approx((12 * 1 + 5 * 2) / 1e6)
    assert stream.time_to_first_token is not None
    assert [a.outcome for a in stream.attempts] == ["success"]


async def test_failure_before_first_content_fails_over_invisibly(fakes, build):
    """An error after the role chunk but before content is invisible: the caller sees one clean stream from b."""
    a, b = await fakes(), await fakes()
    a.script("chat", a.stream_error([], ErrorClass.SERVER_ERROR))
    b.script("chat", b.stream_text(["from ", "b"]))
    async with build(stream_yaml(a.url, b.url)) as router:
        stream = router.stream(model="r", messages=HI)
        chunks = await collect(stream)
    assert "".join(c.content or "" for c in chunks) == "from b"
    assert sum(1 for c in chunks if c.delta.get("role")) == 1
    assert stream.served_by == "p1/m1"
    assert [x.outcome for x in stream.attempts] == ["error", "success"]


async def test_nothing_is_yielded_when_every_option_fails_before_content(fakes, build):
    """If all deployments fail before content, iteration raises AllUpstreamsFailed before any chunk."""
    a, b = await fakes(), await fakes()
    a.default("chat", a.error(ErrorClass.SERVER_ERROR))
    b.default("chat", b.stream_error([], ErrorClass.OVERLOADED))
    async with build(stream_yaml(a.url, b.url)) as router:
        got = []
        with pytest.raises(AllUpstreamsFailed):
            await drain(router.stream(model="r", messages=HI), got)
    assert got == []


async def test_first_token_timeout_fails_over(fakes, build):
    """A deployment that sends no content within first_token_timeout is abandoned for the next one."""
    a, b = await fakes(), await fakes()
    a.default("chat", content_then_hang(a, []))
    b.script("chat", b.stream_text(["b"]))
    yaml = stream_yaml(a.url, b.url, route="    first_token_timeout: 200ms\n")
    async with build(yaml, real_time=True) as router:
        started = time.monotonic()
        stream = router.stream(model="r", messages=HI)
        chunks = await collect(stream)
    assert "".join(c.content or "" for c in chunks) == "b"
    assert stream.attempts[0].error_class == "timeout"
    assert time.monotonic() - started < 1.5


async def test_stall_after_content_ends_with_an_explicit_error(fakes, build):
    """A stream that goes silent after content raises a timeout ProviderError marked after_first_token."""
    a, b = await fakes(), await fakes()
    a.default("chat", content_then_hang(a, ["partial"]))
    b.default("chat", b.stream_text(["never used"]))
    yaml = stream_yaml(a.url, b.url, route="    stall_timeout: 200ms\n")
    async with build(yaml, real_time=True) as router:
        got = []
        started = time.monotonic()
        with pytest.raises(ProviderError) as info:
            await drain(router.stream(model="r", messages=HI), got)
    assert info.value.after_first_token
    assert info.value.error_class is ErrorClass.TIMEOUT
    assert "partial" in got
    assert b.requests_to("chat") == []
    assert time.monotonic() - started < 1.5


async def test_midstream_error_policy_never_ends_as_success(fakes, build):
    """With mid_stream: error, a cut after content raises the upstream's error with after_first_token=True."""
    a, b = await fakes(), await fakes()
    a.default("chat", a.stream_error(["Hel", "lo"], ErrorClass.SERVER_ERROR))
    b.default("chat", b.stream_text(["never"]))
    async with build(stream_yaml(a.url, b.url, route="    mid_stream: error\n")) as router:
        stream = router.stream(model="r", messages=HI)
        got = []
        with pytest.raises(ProviderError) as info:
            await drain(stream, got)
    assert info.value.after_first_token
    assert info.value.error_class is ErrorClass.SERVER_ERROR
    assert "".join(x or "" for x in got) == "Hello"
    assert stream.served_by == "p0/m0"
    assert b.requests_to("chat") == []


async def test_truncated_stream_without_terminator_is_an_error(fakes, build):
    """A body that ends after content without finish or [DONE] is a protocol error, not a success."""
    a = await fakes()
    a.default("chat", a.stream_unterminated(["Hel"]))
    async with build(stream_yaml(a.url)) as router:
        with pytest.raises(ProviderError) as info:
            async for _ in router.stream(model="r", messages=HI):
                pass
    assert info.value.after_first_token
    assert info.value.error_class is ErrorClass.PROTOCOL


async def test_continue_without_a_prefill_deployment_reports_the_original_failure(fakes, build):
    """mid_stream: continue with no prefill-capable deployment left behaves as error, with the first failure."""
    a, b = await fakes(), await fakes()
    a.default("chat", a.stream_error(["Hel"], ErrorClass.OVERLOADED))
    b.default("chat", b.stream_text(["never"]))
    async with build(stream_yaml(a.url, b.url, route="    mid_stream: continue\n")) as router:
        stream = router.stream(model="r", messages=HI)
        with pytest.raises(ProviderError) as info:
            async for _ in stream:
                pass
    assert info.value.error_class is ErrorClass.OVERLOADED
    assert info.value.after_first_token
    assert b.requests_to("chat") == []  # the openai driver declares no prefill
    assert stream.attempts[-1].detail.startswith("lacks prefill")


async def test_aclose_cancels_the_upstream_at_once(fakes, build, recorder):
    """Closing a stream mid-way disconnects from the upstream at once, frees the slot, ends as "cancelled"."""
    a = await fakes()
    a.default("chat", a.stream_text([f"w{i} " for i in range(50)], framing=Framing(delay=0.05)))
    async with build(stream_yaml(a.url), real_time=True) as router:
        stream = router.stream(model="r", messages=HI)
        async for chunk in stream:
            if chunk.is_content:
                break
        await stream.aclose()
        assert await a.wait_disconnect(within=1.0)
        assert router.health["p0/m0"].in_flight == 0
    done = recorder.of(ResponseCompleted)
    assert [(e.served_by, e.error_class) for e in done] == [("p0/m0", "cancelled")]


async def test_hanging_first_token_respects_the_deadline(fakes, build):
    """Every deployment silent: the stream fails by its deadline, long before the first-token timeouts add up."""
    a, b = await fakes(), await fakes()
    a.default("chat", hang())
    b.default("chat", hang())
    yaml = stream_yaml(a.url, b.url, route="    deadline: 300ms\n    first_token_timeout: 10s\n")
    async with build(yaml, real_time=True) as router:
        started = time.monotonic()
        with pytest.raises(AllUpstreamsFailed) as info:
            async for _ in router.stream(model="r", messages=HI):
                pass
    assert time.monotonic() - started < 3.0  # far under one 10 s first-token timeout (margin for a loaded CI)
    assert info.value.error_class is ErrorClass.TIMEOUT


def mock_yaml(first_options: str, *, second: str = "{reply: echo}", third: str = "", policy: str = "continue") -> str:
    extra_provider = f"\n  m2p: {{driver: mock, options: {third}}}" if third else ""
    extra_model = "\n  m2: {provider: m2p, price: {input: 1, output: 1}}" if third else ""
    chain = "[m0, m1, m2]" if third else "[m0, m1]"
    return f"""
version: 1
defaults:
  retry: {{attempts: 0}}
providers:
  m0p: {{driver: mock, options: {first_options}}}
  m1p: {{driver: mock, options: {second}}}{extra_provider}
models:
  m0: {{provider: m0p, price: {{input: 1, output: 1}}}}
  m1: {{provider: m1p, price: {{input: 1, output: 1}}}}{extra_model}
routes:
  r:
    chain: {chain}
    mid_stream: {policy}
"""


LONG = [{"role": "user", "content": "one two three four five six"}]


async def test_midstream_continue_hands_the_partial_answer_to_a_prefill_deployment(build):
    """A cut after two chunks continues on the next deployment from the text so far: the caller sees one answer."""
    cut = "{reply: echo, chunk_tokens: 1, faults: [{kind: cut, after_chunks: 2}]}"
    async with build(mock_yaml(cut)) as router:
        stream = router.stream(model="r", messages=LONG)
        chunks = await collect(stream)
    assert "".join(c.content or "" for c in chunks) == "one two three four five six"
    assert sum(1 for c in chunks if c.delta.get("role")) == 1
    assert [(a.deployment, a.outcome) for a in stream.attempts] == [("m0p/m0", "error"), ("m1p/m1", "success")]
    assert stream.attempts[0].error_class == "connection"
    assert stream.served_by == "m0p/m0"  # the deployment that committed the stream
    cut, rest = stream.attempts
    assert cut.estimated and cut.usage.completion_tokens == 2  # the cut never reported usage: two chunks arrived
    assert stream.usage == cut.usage + rest.usage  # the answer's usage and cost sum both attempts
    assert stream.cost_usd == pytest.approx(cut.cost_usd + rest.cost_usd)
    assert [(s.continued_from, s.continued_by, s.chars_kept) for s in stream.splices] == [("m0p/m0", "m1p/m1", 8)]


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


async def test_continue_never_splices_a_cut_tool_call(build):
    """A stream cut inside a tool call cannot be continued from text: under `continue` it ends with the error."""
    cut = "{tool_call: true, faults: [{kind: cut, after_chunks: 2}]}"
    async with build(mock_yaml(cut, second="{tool_call: true}")) as router:
        stream = router.stream(model="r", messages=LONG, tools=TOOLS)
        got = []
        with pytest.raises(ProviderError) as info:
            await drain(stream, got)
    assert info.value.error_class is ErrorClass.CONNECTION
    assert info.value.after_first_token
    assert [a.deployment for a in stream.attempts] == ["m0p/m0"]  # nothing was spliced onto the partial call


async def test_continue_skips_failing_continuations_and_keeps_going(build):
    """If the first continuation fails before its content, the next prefill deployment continues instead."""
    cut = "{reply: echo, chunk_tokens: 1, faults: [{kind: cut, after_chunks: 1}]}"
    broken = "{faults: [{kind: status, status: 500}]}"
    async with build(mock_yaml(cut, second=broken, third="{reply: echo}")) as router:
        stream = router.stream(model="r", messages=LONG)
        chunks = await collect(stream)
    assert "".join(c.content or "" for c in chunks) == "one two three four five six"
    assert [a.outcome for a in stream.attempts] == ["error", "error", "success"]


async def test_continue_reports_the_original_failure_when_continuations_fail(build):
    """When every continuation fails too, the caller gets the first mid-stream failure, not a later one."""
    cut = "{reply: echo, chunk_tokens: 1, faults: [{kind: malformed, after_chunks: 2}]}"
    broken = "{faults: [{kind: status, status: 503}]}"
    async with build(mock_yaml(cut, second=broken)) as router:
        with pytest.raises(ProviderError) as info:
            await drain(router.stream(model="r", messages=LONG), [])
    assert info.value.error_class is ErrorClass.PROTOCOL
    assert info.value.after_first_token


async def test_a_continuation_rejecting_the_request_reports_the_original_cut(build):
    """A continuation that answers 400 (e.g. it rejects the prefix) stops the stream with the original failure."""
    cut = "{reply: echo, chunk_tokens: 1, faults: [{kind: cut, after_chunks: 2}]}"
    rejects = "{faults: [{kind: status, status: 400}]}"
    async with build(mock_yaml(cut, second=rejects, third="{reply: echo}")) as router:
        stream = router.stream(model="r", messages=LONG)
        with pytest.raises(ProviderError) as info:
            await drain(stream, [])
    assert [(a.deployment, a.error_class) for a in stream.attempts] == [
        ("m0p/m0", "connection"),
        ("m1p/m1", "bad_request"),
    ]
    assert info.value.error_class is ErrorClass.CONNECTION  # why the stream broke, not the secondary 400
    assert info.value.after_first_token


async def test_a_refusal_after_the_commit_is_raised_not_routed_around(build):
    """Under mid_stream: continue, a continuation that refuses ends the stream with that refusal; no third try."""
    cut = "{reply: echo, chunk_tokens: 1, faults: [{kind: cut, after_chunks: 2}]}"
    refuse = "{faults: [{kind: refusal}]}"
    async with build(mock_yaml(cut, second=refuse, third="{reply: echo}")) as router:
        stream = router.stream(model="r", messages=LONG)
        with pytest.raises(ProviderError) as info:
            await drain(stream, [])
    assert info.value.error_class is ErrorClass.CONTENT_POLICY
    assert info.value.after_first_token
    assert [a.deployment for a in stream.attempts] == ["m0p/m0", "m1p/m1"]


async def test_a_stream_closed_before_reading_ends_as_cancelled(build, recorder):
    """A stream closed without being read sends nothing upstream and still completes (as cancelled)."""
    async with build(mock_yaml("{}")) as router:
        stream = router.stream(model="r", messages=LONG)
        await stream.aclose()
        finished = router.stream(model="r", messages=LONG)
        await collect(finished)
        await finished.aclose()  # closing after the end changes nothing
    done = [(e.served_by, e.error_class) for e in recorder.of(ResponseCompleted)]
    assert done == [(None, "cancelled"), ("m0p/m0", None)]
    assert stream.attempts == ()
