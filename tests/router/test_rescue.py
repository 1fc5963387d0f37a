"""Rescuing broken streams in the library: the seam, restart's holdback, accounting, events, and a property test."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout import ErrorClass, ProviderError, Router
from turnout.events import ResponseCompleted, StreamContinued
from turnout.router.rescue import Answer, Holdback, Seam
from turnout.testing import Framing, OpenAIFake, ToolCall
from turnout.types import ChatChunk, ChunkBatch, chunk_data

ANSWER = "One cut, one seam, one answer: every word exactly once, and\n\nnothing doubled at the join."
HI = [{"role": "user", "content": "tell me"}]


def text_chunk(text: str) -> ChatChunk:
    return ChatChunk(data=chunk_data(id="c", model="m", created=1, delta={"content": text}), is_content=True)


def joined(seam: Seam, pieces: list[str]) -> str:
    out = [c.content for piece in pieces for c in seam.join(text_chunk(piece))]
    return "".join(out) + "".join(c.content or "" for c in seam.release())


# -- the seam, piece by piece ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delivered", "pieces", "expected"),
    [
        ("Hello world ", [" next", " words"], "next words"),  # the continuation repeats the delivered space
        ("Hello world ", ["next", " words"], "next words"),  # ... or does not: nothing invented either way
        ("Hello world", [" next"], " next"),  # no gap: the continuation's own space is the text
        ("Hello world", ["next"], "next"),  # a word that goes on ("worldnext") is the model's choice, kept
        ("One\n\n", [" ", "\n", "Two"], "Two"),  # whitespace spread over chunks, up to the gap
        ("One\n\n", ["\n\n\nTwo"], "\nTwo"),  # more whitespace than the gap: only the gap's worth goes
        ("The cat sat", ["The", " cat", " sat", " down"], " down"),  # an echo of the prefix is dropped whole
        ("The cat sat", ["The", " dog"], "The dog"),  # a start that only looked like an echo is kept whole
        ("The cat sat ", ["The cat sat", " down"], "down"),  # an echo, then the seam's space
        ("The cat", ["The"], "The"),  # the continuation ended inside what looked like an echo: released
    ],
)
def test_the_seam_joins_a_continuation_onto_the_delivered_text(delivered, pieces, expected):
    """The continuation's start is reconciled with what the caller already has: no doubled or invented space,
    no echoed prefix, nothing lost."""
    answer = Answer()
    answer.add(delivered)
    seam = answer.seam()
    assert seam.prefix == delivered.rstrip()
    assert joined(seam, pieces) == expected


def test_the_seam_passes_chunks_through_untouched_once_settled():
    """After the join, chunks (and batches) go on as the very same objects: no copies on the continuation's path."""
    answer = Answer()
    answer.add("Hi")
    seam = answer.seam()
    first, later = text_chunk(" there"), text_chunk(" again")
    assert seam.join(first) == (first,) and seam.settled
    batch = ChunkBatch([later.raw])
    assert seam.join(later) == (later,) and seam.join(batch) == (batch,)


def test_the_seam_releases_held_text_before_a_tool_call():
    """A continuation that turns into a tool call flushes what it held as a possible echo, then the call."""
    answer = Answer()
    answer.add("Let me check")
    seam = answer.seam()
    assert seam.join(text_chunk("Let")) == []
    call = ChatChunk(
        data=chunk_data(id="c", model="m", created=1, delta={"tool_calls": [{"index": 0}]}), is_content=True
    )
    out = seam.join(call)
    assert [c.content for c in out[:-1]] == ["Let"] and out[-1] is call


def test_holdback_counts_bytes_and_reports_the_overflow():
    """Held items count their exact bytes; the add that passes the limit says so, and release empties it."""
    held = Holdback(limit=len(text_chunk("a").raw) * 2)
    assert held.add(text_chunk("a")) is False
    assert held.add(ChunkBatch([text_chunk("b").raw])) is False
    assert held.add(text_chunk("c")) is True
    assert len(held.release()) == 3 and held.size == 0 and held.items == []


# -- through the router, on loopback fakes -----------------------------------------------------------------------


def routes(primary: str, fallback: str, *, mode: str, dialect: str | None = "vllm", extra: str = "") -> str:
    options = f", options: {{prefill: {dialect}}}" if dialect else ""
    return (
        "version: 1\ndefaults:\n  retry: {attempts: 0}\n  stall_timeout: 2s\n"
        f"providers:\n  a: {{driver: openai, base_url: {primary}/v1}}\n"
        f"  b: {{driver: openai, base_url: {fallback}/v1{options}}}\n"
        "models:\n  ma: {provider: a, name: gpt-a, price: {input: 1, output: 2}}\n"
        "  mb: {provider: b, name: gpt-b, price: {input: 1, output: 2}}\n"
        f"routes:\n  r:\n    chain: [ma, mb]\n    mid_stream: {mode}\n{extra}"
    )


async def drain(stream, got: list[ChatChunk]) -> None:
    """Read a stream to its end, keeping every chunk in `got` (even if it then raises)."""
    async with stream:
        async for chunk in stream:
            got.append(chunk)


async def collect(stream) -> tuple[str, list[ChatChunk]]:
    chunks = []
    async with stream:
        async for chunk in stream:
            chunks.append(chunk)
    return "".join(c.content or "" for c in chunks), chunks


async def test_a_continued_stream_sums_usage_and_reports_the_splice(fakes, build, recorder):
    """The final chunk carries the usage of both attempts (the cut one estimated); an event and the completion
    record where the stream was continued and how many characters were kept."""
    a, b = await fakes(), await fakes()
    b.prefill = "vllm"
    a.script("chat", a.stream_answer(ANSWER, fault="cut", after=5))
    b.script("chat", b.stream_answer(ANSWER))
    async with build(routes(a.url, b.url, mode="continue")) as router:
        stream = router.stream(model="r", messages=HI, stream_options={"include_usage": True})
        text, chunks = await collect(stream)
    assert text == ANSWER
    cut, rest = stream.attempts
    assert (cut.estimated, cut.usage.completion_tokens) == (True, 5)
    assert chunks[-1].usage_only and chunks[-1].usage == cut.usage + rest.usage == stream.usage
    assert chunks[-1].data["usage"]["completion_tokens"] == 5 + rest.usage.completion_tokens
    [event] = recorder.of(StreamContinued)
    kept = len("".join(c.content or "" for c in chunks[:6]))
    assert (event.continued_from, event.deployment, event.chars_kept) == ("a/ma", "b/mb", kept)
    [done] = recorder.of(ResponseCompleted)
    assert done.splices == stream.splices and done.cost_usd == pytest.approx(cut.cost_usd + rest.cost_usd)


async def test_restart_holds_the_answer_and_retries_per_on_error(fakes, build):
    """Under restart nothing reaches the caller before the answer is complete; a cut is handled like a failure
    before the first token (here: one retry on the same deployment), and the caller gets one whole answer."""
    a, b = await fakes(), await fakes()
    a.script("chat", a.stream_answer(ANSWER, fault="cut", after=9), a.stream_answer(ANSWER))
    b.default("chat", b.stream_answer("never used"))
    yaml = routes(a.url, b.url, mode="restart", extra="    retry: {attempts: 1, backoff: {initial: 1ms, max: 1ms}}\n")
    async with build(yaml) as router:
        stream = router.stream(model="r", messages=HI)
        text, chunks = await collect(stream)
    assert text == ANSWER
    assert sum(1 for c in chunks if c.delta.get("role")) == 1  # one role chunk: the discarded try left no trace
    assert [(x.deployment, x.outcome) for x in stream.attempts] == [("a/ma", "error"), ("a/ma", "success")]
    assert b.requests_to("chat") == [] and stream.splices == ()
    assert a.requests[1].json["messages"] == HI  # restarted from scratch: no prefix


async def test_restart_past_its_buffer_commits_and_behaves_as_error(fakes, build):
    """An answer outgrowing restart_buffer is released; a later cut then ends the stream with the error, after the
    text already delivered, and nothing is retried or continued."""
    a, b = await fakes(), await fakes()
    a.script("chat", a.stream_answer(ANSWER, fault="cut", after=12))
    b.default("chat", b.stream_answer(ANSWER))
    async with build(routes(a.url, b.url, mode="restart", extra="    restart_buffer: 1KB\n")) as router:
        stream = router.stream(model="r", messages=HI)
        got: list[ChatChunk] = []
        with pytest.raises(ProviderError) as info:
            await drain(stream, got)
    text = "".join(c.content or "" for c in got)
    assert info.value.after_first_token and info.value.error_class is ErrorClass.CONNECTION
    assert ANSWER.startswith(text) and text
    assert b.requests_to("chat") == [] and len(stream.attempts) == 1


async def test_restart_never_splices_a_cut_tool_call(fakes, build):
    """A tool call cut mid-arguments is discarded under restart; the fallback's whole call is what the caller
    receives, never two calls spliced into one."""
    a, b = await fakes(), await fakes()
    call = ToolCall("lookup", {"query": "a fairly long argument string to cut"}, id="call_1")
    start = {"index": 0, "id": "call_0", "type": "function", "function": {"name": "lookup", "arguments": '{"que'}}
    frames = [a.chunk({"role": "assistant", "content": None}), a.chunk({"tool_calls": [start]})]
    a.script("chat", a.send_sse(frames, Framing(cut_after=2)))  # the connection drops mid-arguments
    b.script("chat", b.stream_tool_calls([call]))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    async with build(routes(a.url, b.url, mode="restart")) as router:
        stream = router.stream(model="r", messages=HI, tools=tools)
        _, chunks = await collect(stream)
    fragments = [t for c in chunks for t in c.tool_calls]
    assert {f.get("id") for f in fragments if f.get("id")} == {"call_1"}
    args = "".join(f.get("function", {}).get("arguments", "") for f in fragments)
    assert args == '{"query": "a fairly long argument string to cut"}'


async def test_a_refusal_mid_answer_under_restart_is_a_clean_error(fakes, build):
    """A failure whose action is "fail" (a refusal) ends a held stream with the error and no text at all."""
    a, b = await fakes(), await fakes()
    a.script("chat", a.stream_error(["Part", " of", " it"], ErrorClass.CONTENT_POLICY))
    b.default("chat", b.stream_answer(ANSWER))
    async with build(routes(a.url, b.url, mode="restart")) as router:
        stream = router.stream(model="r", messages=HI)
        got: list[ChatChunk] = []
        with pytest.raises(ProviderError) as info:
            await drain(stream, got)
    assert info.value.error_class is ErrorClass.CONTENT_POLICY
    assert got == [] and stream.served_by is None and b.requests_to("chat") == []


# -- the property: whatever the cut, dialect and whitespace, the caller reads the canonical text ------------------

WORDS = st.lists(
    st.sampled_from(["alpha", "beta,", "gamma.", "delta:", "é", "🙂", "x", "(yes)"]), min_size=4, max_size=14
)
SEPARATORS = st.sampled_from([" ", " ", " ", "\n", "\n\n", "  "])


@st.composite
def answers(draw) -> str:
    words = draw(WORDS)
    return "".join(w + (draw(SEPARATORS) if i < len(words) - 1 else "") for i, w in enumerate(words))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answer=answers(),
    cut=st.integers(min_value=1, max_value=30),
    dialect=st.sampled_from(["assistant", "vllm", "prefix"]),
    whitespace=st.sampled_from(["before", "after"]),
    echo=st.booleans(),
)
def test_the_delivered_text_is_the_canonical_text(answer, cut, dialect, whitespace, echo):
    """Property: a stream cut after any token, continued in any dialect, with whitespace on either side of the
    tokens and with or without an echoed prefix, delivers exactly the canonical text."""
    assert asyncio.run(_continued(answer, cut, dialect, whitespace, echo)) == answer


async def _continued(answer: str, cut: int, dialect: str, whitespace: str, echo: bool) -> str:
    async with OpenAIFake() as a, OpenAIFake(prefill=dialect) as b:  # type: ignore[arg-type]
        a.script("chat", a.stream_answer(answer, fault="cut", after=cut, whitespace=whitespace))  # type: ignore[arg-type]
        b.script("chat", b.stream_answer(answer, whitespace=whitespace, echo_prefix=echo))  # type: ignore[arg-type]
        async with Router.from_yaml(routes(a.url, b.url, mode="continue", dialect=dialect), rng=random.Random(1)) as r:
            text, _ = await collect(r.stream(model="r", messages=HI))
    return text


async def test_a_stream_of_several_choices_is_never_continued(fakes, build):
    """With n > 1 there is no single text to continue: under continue a cut ends the stream with the error."""
    a, b = await fakes(), await fakes()
    b.prefill = "vllm"
    a.script("chat", a.stream_answer(ANSWER, fault="cut", after=5))
    b.default("chat", b.stream_answer(ANSWER))
    async with build(routes(a.url, b.url, mode="continue")) as router:
        got: list[ChatChunk] = []
        with pytest.raises(ProviderError) as info:
            await drain(router.stream(model="r", messages=HI, n=2), got)
    assert info.value.after_first_token and b.requests_to("chat") == []
