"""Batched pass-through of OpenAI streams: a ChunkBatch carries exactly the chunks single-chunk mode would give.

The sidecar asks for batches (`ChatStream.batched()` -> `CallContext.batch`); library users never see them. The
property test feeds the same reads to both modes and compares every byte, the failure and the final state.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout.config import ProviderSpec, Secret
from turnout.drivers._framing import SSEParser
from turnout.drivers.base import CallContext
from turnout.drivers.openai import OpenAIDriver
from turnout.drivers.openai_wire import StreamState, plain_run
from turnout.testing import FakeUpstream, reply_sse, sse_frame
from turnout.types import ChatChunk, ChatRequest, ChunkBatch

TRICKY = st.sampled_from(['"finish_reason":"stop"', '"usage":{"a":1}', "[DONE]", '"error"', "}\n\n{", '"choices":[]'])
texts = st.one_of(st.text(max_size=8), TRICKY)


def chunk(**fields: Any) -> bytes:
    delta = fields.pop("delta", {})
    choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": fields.pop("finish", None)}]
    body: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body["choices"] = [] if fields.pop("empty", False) else choices
    body.update(fields)
    return json.dumps(body, separators=(",", ":")).encode()


plain = st.one_of(
    texts.map(lambda t: chunk(delta={"content": t})),
    texts.map(lambda t: chunk(delta={"content": t}, usage=None)),
)
others = st.one_of(
    st.just(chunk(delta={"role": "assistant", "content": ""})),
    st.just(chunk(delta={})),
    st.just(chunk(finish="stop")),
    st.just(chunk(empty=True, usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})),
    st.just(chunk(empty=True)),
    st.just(chunk(delta={"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})),
    texts.map(lambda t: json.dumps({"choices": [{"delta": {"content": t}, "finish_reason": None}]}).encode()),
    st.just(b'{"error":{"message":"overloaded","type":"server_error"}}'),
    st.just(b'{"choices": [{"delta": {"content": "spaced"}, "finish_reason": null}], "usage": null}'),
    st.just(b"[DONE]"),
    st.just(b"not json"),
    st.just(b'{"truncated": '),
)
payloads = st.one_of(plain, plain, plain, plain, others)  # mostly plain content, as real streams are


def flatten(items: list[ChatChunk | ChunkBatch]) -> list[tuple[bytes, Any, str | None]]:
    """(bytes, usage, finish_reason) of every chunk, batches opened."""
    out = []
    for item in items:
        if isinstance(item, ChunkBatch):
            out += [(chunk.raw, None, None) for chunk in item]
        else:
            out.append((item.raw, item.usage, item.finish_reason))
    return out


def run(reads: list[list[bytes]], batching: bool) -> tuple[list[Any], Any, tuple[Any, ...]]:
    state = StreamState("p", "m")
    items: list[ChatChunk | ChunkBatch] = []
    failure: Any = None
    for raws in reads:
        at = 0
        while at < len(raws) and not state.done and state.failure is None:
            taken, at = state.take(raws, batching, at)
            items += taken
        if state.failure is not None:
            failure = (type(state.failure), str(state.failure), state.failure.after_first_token)
            break
        if state.done:
            break
    if failure is None:
        try:
            items += state.finish()
        except Exception as exc:
            failure = (type(exc), str(exc))
    return items, failure, (state.content, state.done, state.finish_reason, state.usage)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads, max_size=24), st.lists(st.integers(0, 24), max_size=6))
def test_batches_carry_exactly_what_single_chunks_would(events: list[bytes], cuts: list[int]) -> None:
    """Same chunks (bytes, order), same failure, same final state, whatever the reads hold."""
    bounds = [0, *sorted({c % (len(events) + 1) for c in cuts}), len(events)]
    reads = [events[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    batched, failure, final = run(reads, batching=True)
    single, single_failure, single_final = run(reads, batching=False)
    assert not any(isinstance(item, ChunkBatch) for item in single)
    assert flatten(batched) == flatten(single)
    assert (failure, final) == (single_failure, single_final)
    for item in batched:
        if isinstance(item, ChunkBatch):
            assert item.count >= 2
            assert item.to_sse() == b"".join(chunk.to_sse() for chunk in item)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(plain, min_size=1, max_size=20),
    st.lists(st.tuples(st.integers(0, 20), others), max_size=2),
    st.lists(st.integers(0, 30), max_size=4),
)
def test_real_shaped_streams_batch_the_same(middle: list[bytes], injected: list[Any], cuts: list[int]) -> None:
    """Role chunk, content, finish, usage, [DONE] (with a hostile event slipped in now and then): batches and
    single chunks agree, and batches do occur."""
    events = [chunk(delta={"role": "assistant", "content": ""}), chunk(delta={"content": "x"}), *middle]
    for at, extra in injected:
        events.insert(2 + at % (len(middle) + 1), extra)
    events += [chunk(finish="stop"), chunk(empty=True, usage={"prompt_tokens": 1, "completion_tokens": 2}), b"[DONE]"]
    test_batches_carry_exactly_what_single_chunks_would.hypothesis.inner_test(events, cuts)  # type: ignore[attr-defined]
    if not injected and not cuts and len(middle) >= 2:
        items, _, _ = run([events], batching=True)
        assert any(isinstance(item, ChunkBatch) for item in items)


def test_a_typical_read_becomes_one_batch_between_commit_and_tail() -> None:
    """Role and first content go one by one (the commit point), the plain middle as one batch, then the tail;
    the first take stops at the commit point (time to first token)."""
    words = [chunk(delta={"content": w}) for w in ["Hel", "lo", ",", " wor", "ld"]]
    events = [
        chunk(delta={"role": "assistant", "content": ""}),
        *words,
        chunk(finish="stop"),
        chunk(empty=True, usage={"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}),
        b"[DONE]",
    ]
    items, failure, _ = run([events], batching=True)
    assert failure is None
    kinds = [type(item).__name__ for item in items]
    assert kinds == ["ChatChunk", "ChatChunk", "ChunkBatch", "ChatChunk", "ChatChunk"]
    assert items[2].raws == words[1:]
    assert items[2].content == "lo, world"
    assert items[-1].usage is not None and items[-1].usage.completion_tokens == 5
    first, at = StreamState("p", "m").take(events, True)
    assert [chunk.content for chunk in first] == ["", "Hel"] and at == 2


def test_plain_run_refuses_anything_doubtful() -> None:
    """Odd spacing, a payload holding a newline or any non-plain chunk makes the whole-run check say no."""
    plain = [chunk(delta={"content": "a"}), chunk(delta={"content": "b"})]
    assert plain_run(plain)
    assert not plain_run([*plain, chunk(finish="stop")])
    assert not plain_run([*plain, b'{"choices":[{"delta":{},"finish_reason": "stop"}]}'])
    assert not plain_run([*plain, b"not json"])
    assert not plain_run([*plain, b'{"error":{"message":"x"}}'])
    assert not plain_run([*plain, chunk(empty=True)])


def test_the_sse_parser_fast_path_matches_the_line_parser() -> None:
    """A read of whole single-line events (the fast path) parses like the same bytes fed one byte at a time."""
    data = b"".join(sse_frame(chunk(delta={"content": t})) for t in ["a", "data: x", "\\n", ""])
    fast = SSEParser().feed(data)
    slow_parser = SSEParser()
    slow = [event for byte in data for event in slow_parser.feed(bytes([byte]))]
    assert fast == slow and len(fast) == 4
    assert SSEParser().feed_payloads(data) == [event.data for event in slow]


async def test_the_driver_batches_a_burst_only_when_asked() -> None:
    """Over loopback: a whole stream in one write gives a ChunkBatch with ctx.batch, single chunks without."""
    words = ["a", "b", "c", "d"]
    frames = [sse_frame(chunk(delta={"role": "assistant", "content": ""}))]
    frames += [sse_frame(chunk(delta={"content": w})) for w in words]
    frames += [
        sse_frame(chunk(finish="stop")),
        sse_frame(chunk(empty=True, usage={"prompt_tokens": 1, "completion_tokens": 4})),
        b"data: [DONE]\n\n",
    ]
    async with FakeUpstream() as fake, aiohttp.ClientSession() as session:
        fake.default("/v1/chat/completions", reply_sse([b"".join(frames)]))
        spec = ProviderSpec(name="oa", driver="openai", base_url=f"{fake.url}/v1", api_key=Secret("sk-x"))
        driver = OpenAIDriver(spec)
        request = ChatRequest.create(model="route", messages=[{"role": "user", "content": "hi"}], stream=True)
        results = {}
        for batch in (True, False):
            ctx = CallContext(session=session, model="gpt-4o-mini", batch=batch)
            results[batch] = [item async for item in driver.stream(request, ctx)]
    assert any(isinstance(item, ChunkBatch) for item in results[True])
    assert all(isinstance(item, ChatChunk) for item in results[False])
    assert b"".join(item.to_sse() for item in results[True]) == b"".join(item.to_sse() for item in results[False])
    assert "".join(item.content or "" for item in results[True]) == "abcd"


def test_a_payload_spanning_lines_is_framed_line_by_line() -> None:
    """Multi-line `data:` (allowed by SSE) survives forwarding: every line of the payload stays a `data:` line,
    single chunk or batch, so a client's parser gets the same payload back."""
    spread = b'{"choices":[{"delta":{"content":"x"},\n"finish_reason":null}]}'
    wire = b"data: " + spread.replace(b"\n", b"\ndata: ") + b"\n\n"
    assert SSEParser().feed_payloads(wire) == [spread]
    assert ChatChunk(raw=spread).to_sse() == wire
    batch = ChunkBatch([chunk(delta={"content": "a"}), spread])
    assert SSEParser().feed_payloads(batch.to_sse()) == list(batch.raws)
    assert ChunkBatch([chunk(delta={"content": "a"}), chunk(delta={"content": "b"})]).to_sse().count(b"\n") == 4
