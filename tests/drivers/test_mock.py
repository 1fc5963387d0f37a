"""The in-process mock driver: replies, pacing, prefill, tools, every fault kind, directives and determinism."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from turnout.config import ProviderSpec
from turnout.drivers.base import CallContext
from turnout.drivers.mock import MockDriver, parse_duration
from turnout.errors import (
    BadRequest,
    ContentPolicyError,
    ContextWindowExceeded,
    ErrorClass,
    ProtocolError,
    ProviderError,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from turnout.types import ChatChunk, ChatRequest

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}, "n": {"type": "integer"}, "opt": {"type": "string"}},
                "required": ["q", "n"],
            },
        },
    },
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
]


def mock(**options: Any) -> MockDriver:
    """A mock provider that takes per-request directives (most tests here script faults per request)."""
    return MockDriver(ProviderSpec(name="echo", driver="mock", options={"request_directives": True, **options}))


def ctx(**fields: Any) -> CallContext:
    return CallContext(session=None, model="echo-1", **fields)  # type: ignore[arg-type]


def request(text: str = "the quick brown fox", **params: Any) -> ChatRequest:
    return ChatRequest.create(model="route", messages=[{"role": "user", "content": text}], **params)


def faulty(*faults: dict[str, Any], text: str = "one two three four five") -> ChatRequest:
    return request(text, turnout_mock={"faults": list(faults)})


async def collect(driver: MockDriver, req: ChatRequest, context: CallContext | None = None) -> list[ChatChunk]:
    return [c async for c in driver.stream(req, context or ctx())]


async def stream_error(
    driver: MockDriver, req: ChatRequest, context: CallContext | None = None
) -> tuple[list[ChatChunk], ProviderError]:
    chunks: list[ChatChunk] = []

    async def consume() -> None:
        async for chunk in driver.stream(req, context or ctx()):
            chunks.append(chunk)

    with pytest.raises(ProviderError) as info:
        await consume()
    return chunks, info.value


def text(chunks: list[ChatChunk]) -> str:
    return "".join(c.content or "" for c in chunks)


# ---------------------------------------------------------------------------------------------- answers


async def test_echo_send_with_plausible_usage() -> None:
    """The default reply echoes the last user message, with usage estimated from characters and tokens."""
    response = await mock().send(request("hello there"), ctx())
    assert response.text == "hello there"
    assert response.finish_reason == "stop"
    assert response.usage.prompt_tokens == 3 + 4  # ceil(11 / 4) + 4 per message
    assert response.usage.completion_tokens == 2
    assert response.model == "echo-1"


async def test_fixed_reply_and_parts() -> None:
    """A fixed reply ignores the input; echo reads text parts of multimodal content."""
    assert (await mock(reply="Fixed.").send(request("x"), ctx())).text == "Fixed."
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]
    assert (await mock().send(request(parts), ctx())).text == "look"


async def test_stream_concatenates_and_ends_with_usage() -> None:
    """Streamed chunks concatenate to the reply; the last carries finish reason and usage and is usage-only."""
    chunks = await collect(mock(chunk_tokens=2), request("a b c d e"))
    assert text(chunks) == "a b c d e"
    assert [c.content for c in chunks if c.is_content] == ["a b ", "c d ", "e"]
    assert chunks[0].delta == {"role": "assistant", "content": ""}
    final = chunks[-1]
    assert final.usage_only and final.finish_reason == "stop"
    assert final.usage.completion_tokens == 5
    assert [c.usage is not None for c in chunks].count(True) == 1


async def test_pacing_tokens_per_second_and_latency() -> None:
    """latency delays the first token and tokens_per_second paces later chunks."""
    driver = mock(latency="20ms", tokens_per_second=500)
    started = time.monotonic()
    await collect(driver, request("a b c d e f"))
    assert time.monotonic() - started >= 0.02 + 5 / 500 * 0.9


async def test_latency_beyond_first_token_timeout_times_out() -> None:
    """A first token later than first_token_timeout is a timeout before any content."""
    chunks, error = await stream_error(mock(latency=5), request(), ctx(first_token_timeout=0.05))
    assert isinstance(error, UpstreamTimeout) and not error.after_first_token
    assert chunks == []


async def test_prefill_continues_the_echo() -> None:
    """With an assistant prefix, the reply is the rest of the echo, so prefix + continuation is the full reply."""
    full = "the quick brown fox jumps"
    continued = await collect(mock(), request(full).with_prefix("the quick br"))
    assert "the quick br" + text(continued) == full
    assert all("role" not in c.delta for c in continued)
    assert (await mock().send(request(full).with_prefix("the qu"), ctx())).text == "ick brown fox jumps"


async def test_json_mode_answers_json() -> None:
    """response_format json_object gets a JSON object reply."""
    response = await mock().send(request("hi", response_format={"type": "json_object"}), ctx())
    assert json.loads(response.text) == {"reply": "hi"}


async def test_tool_call_send_and_stream() -> None:
    """With tool_call on, the first tool is called with its required arguments filled; streaming matches."""
    driver = mock(tool_call=True)
    response = await driver.send(request("find cats", tools=TOOLS), ctx())
    assert response.finish_reason == "tool_calls"
    (call,) = response.tool_calls
    assert call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"q": "find cats", "n": 1}
    chunks = await collect(driver, request("find cats", tools=TOOLS, stream=True))
    args = "".join(d["function"].get("arguments", "") for c in chunks for d in c.tool_calls)
    assert json.loads(args) == {"q": "find cats", "n": 1}
    assert chunks[-1].finish_reason == "tool_calls"


async def test_tool_result_gets_a_text_answer() -> None:
    """After a tool result the mock answers in text instead of calling the tool again."""
    messages = [
        {"role": "user", "content": "find"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                               "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]  # fmt: skip
    response = await mock(tool_call=True, reply="Done.").send(
        ChatRequest.create(model="r", messages=messages, tools=TOOLS), ctx()
    )
    assert response.text == "Done." and response.finish_reason == "stop"


# ---------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("stream", [False, True])
async def test_status_fault_is_classified_like_http(stream: bool) -> None:
    """A status fault goes through the HTTP classification, with its Retry-After."""
    req = faulty({"kind": "status", "status": 429, "retry_after": "2s"})
    if stream:
        _, error = await stream_error(mock(), req)
    else:
        with pytest.raises(ProviderError) as info:
            await mock().send(req, ctx())
        error = info.value
    assert error.error_class is ErrorClass.RATE_LIMIT
    assert (error.status, error.retry_after) == (429, 2.0)


async def test_status_fault_with_body() -> None:
    """A status fault's body is classified as an upstream's would be."""
    body = {"error": {"message": "maximum context length is 10 tokens", "code": "context_length_exceeded"}}
    with pytest.raises(ContextWindowExceeded):
        await mock().send(faulty({"kind": "status", "status": 400, "body": body}), ctx())
    with pytest.raises(ProviderError) as info:
        await mock().send(faulty({"kind": "status", "status": 503, "body": "<html>down</html>"}), ctx())
    assert info.value.error_class is ErrorClass.OVERLOADED


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("drop", UpstreamConnectionError), ("refusal", ContentPolicyError), ("context_length", ContextWindowExceeded)],
)
async def test_immediate_faults(kind: str, expected: type) -> None:
    """drop, refusal and context_length fail before any output, streaming or not."""
    with pytest.raises(expected):
        await mock().send(faulty({"kind": kind}), ctx())
    chunks, error = await stream_error(mock(), faulty({"kind": kind}))
    assert isinstance(error, expected) and chunks == []


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_respects_the_attempt_budget(stream: bool) -> None:
    """A hang never answers: it times out at the attempt's budget."""
    started = time.monotonic()
    if stream:
        _, error = await stream_error(mock(), faulty({"kind": "hang"}), ctx(attempt_timeout=0.05))
    else:
        with pytest.raises(UpstreamTimeout) as info:
            await mock().send(faulty({"kind": "hang"}), ctx(attempt_timeout=0.05))
        error = info.value
    assert isinstance(error, UpstreamTimeout)
    assert 0.04 <= time.monotonic() - started < 2.0  # a hang never ends by itself (margin for a loaded CI)


async def test_cut_after_chunks() -> None:
    """cut breaks the stream after N content chunks with a connection error after the first token."""
    chunks, error = await stream_error(mock(), faulty({"kind": "cut", "after_chunks": 2}))
    assert isinstance(error, UpstreamConnectionError) and error.after_first_token
    assert text(chunks) == "one two "


async def test_cut_before_content_is_not_after_first_token() -> None:
    """A cut at 0 chunks happens before any content."""
    _, error = await stream_error(mock(), faulty({"kind": "cut", "after_chunks": 0}))
    assert isinstance(error, UpstreamConnectionError) and not error.after_first_token


async def test_stall_longer_than_stall_timeout() -> None:
    """A stall longer than the stall timeout ends in a timeout after the first token."""
    chunks, error = await stream_error(
        mock(), faulty({"kind": "stall", "after_chunks": 1, "duration": 10}), ctx(stall_timeout=0.05)
    )
    assert isinstance(error, UpstreamTimeout) and error.after_first_token
    assert text(chunks) == "one "


async def test_short_stall_completes() -> None:
    """A stall shorter than the stall timeout only delays the stream."""
    started = time.monotonic()
    chunks = await collect(mock(), faulty({"kind": "stall", "duration": "30ms"}), ctx(stall_timeout=1))
    assert text(chunks) == "one two three four five"
    assert time.monotonic() - started >= 0.03


async def test_malformed_and_no_terminator() -> None:
    """malformed fails after N chunks; no_terminator ends without finishing; both are protocol errors."""
    chunks, error = await stream_error(mock(), faulty({"kind": "malformed", "after_chunks": 3}))
    assert isinstance(error, ProtocolError) and error.after_first_token and text(chunks) == "one two three "
    chunks, error = await stream_error(mock(), faulty({"kind": "no_terminator"}))
    assert isinstance(error, ProtocolError) and text(chunks) == "one two three four five"
    assert all(c.usage is None and c.finish_reason is None for c in chunks)
    with pytest.raises(ProtocolError):
        await mock().send(faulty({"kind": "malformed"}), ctx())


async def test_slow_adds_latency() -> None:
    """slow delays the answer by its duration."""
    started = time.monotonic()
    response = await mock().send(faulty({"kind": "slow", "duration": "30ms"}), ctx())
    assert response.text == "one two three four five"
    assert time.monotonic() - started >= 0.03


# ---------------------------------------------------------------------------------------------- options


async def test_probability_is_seeded_and_deterministic() -> None:
    """Fault probability draws come from the seeded generator: same seed, same outcomes; roughly the rate."""

    async def outcomes(seed: int) -> list[bool]:
        driver = mock(seed=seed, faults=[{"kind": "drop", "probability": 0.3}])
        results = []
        for _ in range(300):
            try:
                await driver.send(request(), ctx())
                results.append(True)
            except UpstreamConnectionError:
                results.append(False)
        return results

    first, again, other = await outcomes(7), await outcomes(7), await outcomes(8)
    assert first == again
    assert first != other
    assert 60 <= first.count(False) <= 120


async def test_request_directive_overrides_provider_options() -> None:
    """turnout_mock in the body overrides provider options for that request only."""
    driver = mock(reply="from provider", faults=[{"kind": "drop"}])
    response = await driver.send(request("x", turnout_mock={"reply": "from request", "faults": []}), ctx())
    assert response.text == "from request"
    with pytest.raises(UpstreamConnectionError):
        await driver.send(request("x"), ctx())


async def test_directives_are_ignored_unless_the_provider_opts_in() -> None:
    """Without options.request_directives a turnout_mock key changes nothing: no fault, no reply override."""
    driver = MockDriver(ProviderSpec(name="echo", driver="mock", options={"reply": "fixed"}))
    directive = {"reply": "from request", "faults": [{"kind": "status", "status": 401}]}
    assert (await driver.send(request("x", turnout_mock=directive), ctx())).text == "fixed"
    assert text(await collect(driver, request("x", stream=True, turnout_mock=directive))) == "fixed"


def test_directives_cannot_switch_themselves_on() -> None:
    """request_directives and seed are provider options only, never per-request keys."""
    from turnout.drivers.mock import DIRECTIVE_SCHEMA, OPTIONS_SCHEMA

    assert "request_directives" in OPTIONS_SCHEMA["properties"]
    assert {"request_directives", "seed"}.isdisjoint(DIRECTIVE_SCHEMA["properties"])


async def test_invalid_directive_is_bad_request() -> None:
    """A malformed turnout_mock directive is a bad_request naming the problem."""
    with pytest.raises(BadRequest, match=r"turnout_mock\.faults\.0\.kind"):
        await mock().send(request("x", turnout_mock={"faults": [{"kind": "explode"}]}), ctx())


@pytest.mark.parametrize(
    "options",
    [{"latency": "fast"}, {"faults": [{"kind": "status", "status": 99}]}, {"colour": "red"}, {"chunk_tokens": 0}],
)
def test_invalid_options_raise_value_error(options: dict) -> None:
    """Bad provider options fail at construction with a specific message."""
    with pytest.raises(ValueError, match="provider 'echo' \\(driver mock\\)"):
        mock(**options)


def test_parse_duration() -> None:
    """Durations accept numbers and ms/s/m/h strings."""
    assert [parse_duration(v) for v in (0.5, 2, "5ms", "1.5s", "2m", "1h")] == [0.5, 2.0, 0.005, 1.5, 120.0, 3600.0]
    with pytest.raises(ValueError):
        parse_duration("soon")


async def test_models_and_credentials() -> None:
    """The mock lists its model and always has valid credentials."""
    driver = mock()
    assert [m.id for m in await driver.list_models(ctx())] == ["echo-1"]
    assert (await driver.check_credentials(ctx())).ok
    assert {"tools", "vision", "json", "prefill", "streaming"} <= driver.capabilities


async def test_send_ignores_first_token_timeout() -> None:
    """A non-streamed answer is bounded by the attempt's budget only, not by the streaming first-token limit."""
    response = await mock(latency="30ms").send(request("ok"), ctx(first_token_timeout=0.01, attempt_timeout=1))
    assert response.text == "ok"
