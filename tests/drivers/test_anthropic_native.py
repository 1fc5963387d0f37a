"""The anthropic driver with a client's own Messages body (`ChatRequest.native`): sent as written, answered as sent.

Checked field by field against the strict fake: cache_control markers, thinking blocks and their signatures, tool
ids, server tools and fields the API added later all reach the upstream unchanged (only `model` and `stream`
differ), and the upstream's answer and stream events come back byte for byte.
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from turnout.config import ProviderSpec, Secret
from turnout.drivers._framing import SSEParser
from turnout.drivers.anthropic import AnthropicDriver
from turnout.drivers.anthropic.ingress_request import messages_request
from turnout.drivers.anthropic.stream import AnthropicStream
from turnout.drivers.base import CallContext
from turnout.testing import AnthropicFake, ToolCall, reply_json, reply_sse
from turnout.testing.anthropic_fake import event
from turnout.types import Usage

SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
CACHED = {"type": "ephemeral", "ttl": "1h"}
CONVERSATION = {
    "model": "claude-route",
    "max_tokens": 2048,
    "system": [{"type": "text", "text": "You are an agent.", "cache_control": CACHED}],
    "messages": [
        {
            "role": "user",
            "content": [{"type": "text", "text": "List the files.", "cache_control": {"type": "ephemeral"}}],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should call ls.", "signature": SIGNATURE},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
                {"type": "tool_use", "id": "toolu_01AbC-xyz_9", "name": "ls", "input": {"path": "."}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01AbC-xyz_9", "content": "a.py\nb.py", "is_error": False},
                {"type": "text", "text": "Which is bigger?"},
            ],
        },
    ],
    "tools": [
        {
            "name": "ls",
            "description": "List",
            "input_schema": {"type": "object"},
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    ],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
    "output_config": {"effort": "medium"},
    "metadata": {"user_id": "user-1234"},
    "stream": False,
}


@pytest.fixture
async def fake():
    async with AnthropicFake() as upstream:
        yield upstream


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


def driver(base_url: str, **options) -> AnthropicDriver:
    spec = ProviderSpec(name="anth", driver="anthropic", base_url=base_url, api_key=Secret("k"), options=options)
    return AnthropicDriver(spec)


def ctx(session) -> CallContext:
    return CallContext(session=session, model="claude-upstream-1", attempt_timeout=5.0)


async def test_the_client_body_reaches_anthropic_unchanged_but_for_the_model(fake, session):
    """Every field the client sent arrives as sent; only `model` names the upstream model (and stream is off)."""
    fake.script("chat", fake.text("b.py"))
    request = messages_request(CONVERSATION, {"anthropic-beta": "context-management-2025-06-27"})
    await driver(fake.url).send(request, ctx(session))
    sent = fake.last.json
    expected = {k: v for k, v in CONVERSATION.items() if k != "stream"}
    assert sent == {**expected, "model": "claude-upstream-1"}
    assert sent["system"][0]["cache_control"] == CACHED
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "I should call ls.",
        "signature": SIGNATURE,
    }
    assert sent["messages"][1]["content"][1]["type"] == "redacted_thinking"
    assert (
        sent["messages"][1]["content"][2]["id"]
        == sent["messages"][2]["content"][0]["tool_use_id"]
        == "toolu_01AbC-xyz_9"
    )
    assert sent["tools"][1] == CONVERSATION["tools"][1]
    assert fake.refused == []


async def test_client_betas_join_the_providers(fake, session):
    """The client's anthropic-beta flags are added after the provider's, without repeats."""
    fake.script("chat", fake.text("ok"))
    request = messages_request(CONVERSATION, {"anthropic-beta": "b-2, c-3"})
    await driver(fake.url, anthropic_beta=["a-1", "b-2"]).send(request, ctx(session))
    assert fake.last.header("anthropic-beta") == "a-1,b-2,c-3"
    assert fake.last.header("anthropic-version") == "2023-06-01"


async def test_the_answer_comes_back_as_anthropic_sent_it(fake, session):
    """The upstream's message is kept whole (`native`), and the canonical view is still parsed for accounting."""
    answer = {
        "id": "msg_01X",
        "type": "message",
        "role": "assistant",
        "model": "claude-upstream-1",
        "content": [
            {"type": "thinking", "thinking": "Compare.", "signature": SIGNATURE},
            {"type": "text", "text": "b.py", "citations": None},
        ],
        "stop_reason": "stop_sequence",
        "stop_sequence": "###",
        "usage": {
            "input_tokens": 40,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 0,
            "output_tokens": 7,
        },
    }
    fake.script("chat", reply_json(answer))
    response = await driver(fake.url).send(messages_request(CONVERSATION), ctx(session))
    assert response.native == answer
    assert response.text == "b.py"
    assert response.usage == Usage(140, 7, cached_tokens=100)


async def test_a_stream_comes_back_byte_for_byte(fake, session):
    """The chunks' native frames, joined, are exactly the upstream's event stream (pings and all)."""
    frames = [
        event(
            "message_start",
            message={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "m",
                "usage": {"input_tokens": 5, "output_tokens": 1},
            },
        ),
        event("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""}),
        event("ping"),
        event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Hmm."}),
        event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": SIGNATURE}),
        event("content_block_stop", index=0),
        event("content_block_start", index=1, content_block={"type": "text", "text": ""}),
        event("content_block_delta", index=1, delta={"type": "text_delta", "text": "b.py"}),
        event("content_block_delta", index=1, delta={"type": "citations_delta", "citation": {"type": "char_location"}}),
        event("content_block_stop", index=1),
        event("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage={"output_tokens": 9}),
        event("message_stop"),
    ]
    fake.script("chat", reply_sse(frames))
    request = messages_request({**CONVERSATION, "stream": True})
    chunks = [c async for c in driver(fake.url).stream(request, ctx(session))]
    assert b"".join(c.native.data for c in chunks) == b"".join(frames)
    assert all(c.native is not None for c in chunks)
    assert [c.content for c in chunks if c.is_content] == ["b.py"]
    assert chunks[-1].usage == Usage(5, 9)
    assert fake.last.json["stream"] is True


def test_native_frames_know_the_open_block():
    """After each chunk's frames, the next free index and the open block are known (for a continuation)."""
    machine = AnthropicStream(provider="p", model="m", native=True)
    parser = SSEParser()
    raw = b"".join(
        [
            event(
                "message_start", message={"id": "msg_1", "model": "m", "usage": {"input_tokens": 1, "output_tokens": 1}}
            ),
            event(
                "content_block_start", index=0, content_block={"type": "tool_use", "id": "t", "name": "n", "input": {}}
            ),
            event("content_block_stop", index=0),
            event("content_block_start", index=1, content_block={"type": "text", "text": ""}),
            event("content_block_delta", index=1, delta={"type": "text_delta", "text": "partial"}),
        ]
    )
    chunks = [c for e in parser.feed(raw) for c in machine.feed(e.event, e.data)]
    last = chunks[-1].native
    assert (last.next_block, last.open_block, last.open_type) == (2, 1, "text")


async def test_a_continuation_extends_the_clients_body(fake, session):
    """A cut stream continued on an Anthropic deployment sends the client's body plus the text so far as the final
    assistant turn (after the client's own prefill, when it has one)."""
    fake.script("chat", fake.stream_text([" more"]), fake.stream_text([" more"]))
    request = messages_request({**CONVERSATION, "stream": True}).with_prefix("The answer is ")
    [c async for c in driver(fake.url).stream(request, ctx(session))]
    assert fake.last.json["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    prefilled = {**CONVERSATION, "messages": [*CONVERSATION["messages"], {"role": "assistant", "content": "{"}]}
    request = messages_request(prefilled).with_prefix('"a": 1')
    [c async for c in driver(fake.url).stream(request, ctx(session))]
    assert fake.last.json["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "{"}, {"type": "text", "text": '"a": 1'}],
    }


async def test_tool_calls_keep_their_ids_in_a_native_stream(fake, session):
    """A streamed tool_use reaches the client with the upstream's id (and input fragments) untouched."""
    fake.script("chat", fake.stream_tool_calls([ToolCall("ls", {"path": "."}, id="toolu_01Q-x")]))
    chunks = [
        c async for c in driver(fake.url).stream(messages_request({**CONVERSATION, "stream": True}), ctx(session))
    ]
    raw = b"".join(c.native.data for c in chunks)
    assert b'"id": "toolu_01Q-x"' in raw
    calls = [c.tool_calls[0] for c in chunks if c.tool_calls]
    assert calls[0]["id"] == "toolu_01Q-x"
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"path": "."}
