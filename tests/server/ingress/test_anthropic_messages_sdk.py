"""The official `anthropic` SDK, unchanged, against the sidecar's `/v1/messages`: create, streams (text and tool
use), count_tokens, the exception classes it raises, and a multi-turn tool conversation across providers.

Each behaviour is checked on both paths: a route that starts at an Anthropic deployment (the client's body goes
through untouched) and one that starts at an OpenAI deployment (translated both ways).
"""

from __future__ import annotations

import json

import pytest

from turnout.errors import ErrorClass
from turnout.testing import ToolCall
from turnout.types import Usage

anthropic = pytest.importorskip("anthropic")

HI = [{"role": "user", "content": "Say hello"}]
WEATHER = {
    "name": "weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


async def test_create_on_an_anthropic_route_returns_the_upstream_message(messages_serve, claude, sdk):
    """The answer is Anthropic's own message (usage with cache fields, stop reason), with the routing headers."""
    claude.script("chat", claude.text("Hello!", usage=Usage(120, 4, cached_tokens=100, cache_write_tokens=0)))
    async with messages_serve() as s, sdk.client(s) as client:
        raw = await client.messages.with_raw_response.create(model="claude", max_tokens=50, messages=HI)
        message = await raw.parse()
    assert [block.text for block in message.content] == ["Hello!"]
    assert (message.model, message.stop_reason, message.id) == ("claude-upstream", "end_turn", "msg_fake01")
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        20,
        100,
        4,
    )
    assert raw.headers["x-turnout-route"] == "claude"
    assert raw.headers["x-turnout-served-by"] == "claude/c1"
    assert raw.headers["x-turnout-attempts"] == "1"
    expected_cost = (20 * 3.0 + 100 * 0.3 + 4 * 15.0) / 1e6
    assert float(raw.headers["x-turnout-cost-usd"]) == pytest.approx(expected_cost)
    assert claude.last.json == {"model": "claude-upstream", "max_tokens": 50, "messages": HI}


async def test_create_on_an_openai_route_is_translated_both_ways(messages_serve, primary, sdk):
    """An OpenAI deployment gets an OpenAI body; the client gets a Messages answer in Anthropic's terms."""
    primary.script("chat", primary.text("Hi there.", usage=Usage(11, 3)))
    async with messages_serve() as s, sdk.client(s) as client:
        message = await client.messages.create(
            model="gpt",
            max_tokens=50,
            system="Be brief.",
            messages=HI,
            stop_sequences=["END"],
            extra_body={"temperature": 0.3},
        )
    assert message.content[0].text == "Hi there."
    assert (message.model, message.stop_reason, message.role, message.type) == (
        "gpt-test",
        "end_turn",
        "assistant",
        "message",
    )
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)
    assert message.id.startswith("msg_")
    assert primary.last.json == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Say hello"}]},
        ],
        "max_tokens": 50,
        "stop": ["END"],
        "temperature": 0.3,
    }


@pytest.mark.parametrize("route", ["claude", "gpt"])
async def test_stream_text(messages_serve, claude, primary, sdk, route):
    """`messages.stream` yields the text as it comes and a final message with stop reason and usage."""
    fake = claude if route == "claude" else primary
    fake.script("chat", fake.stream_text(["Hel", "lo", " world"], usage=Usage(9, 3)))
    async with (
        messages_serve() as s,
        sdk.client(s) as client,
        client.messages.stream(model=route, max_tokens=50, messages=HI) as stream,
    ):
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == "Hello world" and len(pieces) == 3
    assert final.content[0].text == "Hello world"
    assert (final.stop_reason, final.usage.output_tokens, final.usage.input_tokens) == ("end_turn", 3, 9)


@pytest.mark.parametrize("route", ["claude", "gpt"])
async def test_stream_tool_use(messages_serve, claude, primary, sdk, route):
    """Streamed tool calls arrive as tool_use blocks whose input the SDK assembles from the JSON fragments."""
    fake = claude if route == "claude" else primary
    calls = [
        ToolCall("weather", {"city": "Paris"}, id="toolu_01A"),
        ToolCall("weather", {"city": "Rome"}, id="toolu_01B"),
    ]
    fake.script("chat", fake.stream_tool_calls(calls))
    async with (
        messages_serve() as s,
        sdk.client(s) as client,
        client.messages.stream(model=route, max_tokens=50, messages=HI, tools=[WEATHER]) as stream,
    ):
        final = await stream.get_final_message()
    assert [(b.type, b.id, b.name, b.input) for b in final.content] == [
        ("tool_use", "toolu_01A", "weather", {"city": "Paris"}),
        ("tool_use", "toolu_01B", "weather", {"city": "Rome"}),
    ]
    assert final.stop_reason == "tool_use"


async def test_count_tokens(messages_serve, sdk):
    """count_tokens answers an estimate in Anthropic's shape, growing with the input (tools included)."""
    async with messages_serve() as s, sdk.client(s) as client:
        short = await client.messages.count_tokens(model="claude", messages=HI)
        longer = await client.messages.count_tokens(
            model="claude", messages=[{"role": "user", "content": "word " * 400}], tools=[WEATHER]
        )
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.count_tokens(model="nope", messages=HI)
    assert 0 < short.input_tokens < longer.input_tokens
    assert longer.input_tokens >= 500


async def test_error_classes(messages_serve, claude, primary, backup, keys, sdk):
    """Each failure reaches the SDK as the exception it raises for Anthropic's own: NotFoundError,
    BadRequestError, AuthenticationError, RateLimitError (with retry-after), OverloadedError, InternalServerError."""
    async with messages_serve(clients=keys.clients) as s:
        async with sdk.client(s, api_key="wrong") as client:
            with pytest.raises(anthropic.AuthenticationError) as info:
                await client.messages.create(model="claude", max_tokens=5, messages=HI)
            assert info.value.body["error"]["type"] == "authentication_error"
        async with sdk.client(s, api_key=keys.client) as client:
            with pytest.raises(anthropic.NotFoundError):
                await client.messages.create(model="nope", max_tokens=5, messages=HI)
            with pytest.raises(anthropic.BadRequestError, match=r"messages\.0\.role"):
                await client.messages.create(model="claude", max_tokens=5, messages=[{"role": "robot", "content": 42}])

            primary.script("chat", primary.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "7"}))
            backup.script("chat", backup.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "3"}))
            with pytest.raises(anthropic.RateLimitError) as limited:
                await client.messages.create(model="gpt", max_tokens=5, messages=HI)
            assert limited.value.response.headers["retry-after"] == "3"
            assert limited.value.body["error"]["type"] == "rate_limit_error"

            claude.script("chat", claude.error(ErrorClass.OVERLOADED))
            primary.script("chat", primary.error(ErrorClass.OVERLOADED))
            with pytest.raises(anthropic.OverloadedError) as overloaded:
                await client.messages.create(model="claude", max_tokens=5, messages=HI)
            assert overloaded.value.status_code == 529
            assert [a["deployment"] for a in overloaded.value.body["error"]["attempts"]] == ["claude/c1", "oai/g1"]

            with pytest.raises(anthropic.OverloadedError):  # no usable deployment: the route is at capacity
                await client.messages.create(model="unavailable", max_tokens=5, messages=HI)

            claude.script("chat", claude.error(ErrorClass.SERVER_ERROR))
            with pytest.raises(anthropic.InternalServerError) as broken:
                await client.messages.create(model="claude-only", max_tokens=5, messages=HI)
            assert broken.value.body["error"]["type"] == "api_error"

            claude.script("chat", claude.error(ErrorClass.BAD_REQUEST, message="messages: bad thing"))
            with pytest.raises(anthropic.BadRequestError, match="bad thing"):
                await client.messages.create(model="claude", max_tokens=5, messages=HI)


@pytest.mark.parametrize("route", ["claude", "gpt"])
async def test_a_failure_mid_stream_raises_in_the_sdk(messages_serve, claude, primary, sdk, route):
    """An upstream error after the first text ends the stream with an `error` event: the SDK raises, never
    returning the cut answer as complete."""
    fake = claude if route == "claude" else primary
    fake.script("chat", fake.stream_error(["partial"], ErrorClass.OVERLOADED))
    async with messages_serve() as s, sdk.client(s) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(model=route, max_tokens=50, messages=HI) as stream:
                await stream.get_final_message()
    assert info.value.body["error"]["type"] == "overloaded_error"


async def test_a_multi_turn_tool_conversation_across_providers(messages_serve, claude, primary, sdk):
    """Turn 1 is served by OpenAI (its tool call id reaches the client), turn 2 by Anthropic after OpenAI fails:
    the strict Anthropic fake accepts the conversation (tool_result paired with the id), and the answer ends it."""
    primary.script("chat", primary.tool_calls([ToolCall("weather", {"city": "Paris"}, id="call_abc123")]))
    async with messages_serve() as s, sdk.client(s) as client:
        history = [{"role": "user", "content": "Weather in Paris?"}]
        first = await client.messages.create(model="gpt-then-claude", max_tokens=200, messages=history, tools=[WEATHER])
        assert first.stop_reason == "tool_use"
        call = first.content[-1]
        assert (call.type, call.id, call.input) == ("tool_use", "call_abc123", {"city": "Paris"})

        history += [
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}]},
        ]
        primary.script("chat", primary.error(ErrorClass.SERVER_ERROR))
        claude.script("chat", claude.text("It is 18C and sunny in Paris."))
        second = await client.messages.create(
            model="gpt-then-claude", max_tokens=200, messages=history, tools=[WEATHER]
        )
    assert second.content[0].text == "It is 18C and sunny in Paris."
    assert claude.refused == []
    sent = claude.last.json["messages"]
    assert sent[1]["content"][-1] == {
        "type": "tool_use",
        "id": "call_abc123",
        "name": "weather",
        "input": {"city": "Paris"},
    }
    assert sent[2]["content"][0]["tool_use_id"] == "call_abc123"
    openai_turn = primary.requests_to("chat")[-1].json["messages"]
    assert openai_turn[1]["tool_calls"][0]["id"] == "call_abc123"
    assert openai_turn[2] == {"role": "tool", "tool_call_id": "call_abc123", "content": "18C and sunny"}
    assert json.loads(openai_turn[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
