"""The Anthropic stream state machine: named events in, OpenAI-shaped chunks out, every edge case classified."""

import json

import pytest

from turnout.drivers.anthropic.stream import AnthropicStream
from turnout.errors import ErrorClass, Overloaded, ProtocolError, ProviderError
from turnout.types import Usage


def ev(kind, **fields):
    return kind, json.dumps({"type": kind, **fields})


START = ev(
    "message_start",
    message={
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-test",
        "usage": {"input_tokens": 11, "cache_read_input_tokens": 4, "output_tokens": 1},
    },
)
TEXT_START = ev("content_block_start", index=0, content_block={"type": "text", "text": ""})
STOP = ev("message_stop")


def text(piece, index=0):
    return ev("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})


def run(events):
    machine = AnthropicStream(provider="anth", model="m", created=7)
    chunks = [c for name, data in events for c in machine.feed(name, data)]
    return machine, [*chunks, *machine.finish()]


def test_text_stream_with_ping_and_cumulative_usage():
    """Text deltas become content chunks; ping is ignored; message_delta usage overrides message_start's."""
    _, chunks = run(
        [
            START,
            TEXT_START,
            ("ping", '{"type": "ping"}'),
            text("Hel"),
            text("lo"),
            ev("content_block_stop", index=0),
            ev("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 3}),
            ev("message_delta", delta={}, usage={"output_tokens": 6}),
            STOP,
        ]
    )
    assert chunks[0].delta == {"role": "assistant", "content": ""}
    assert not chunks[0].is_content
    assert [c.content for c in chunks if c.is_content] == ["Hel", "lo"]
    finish, final = chunks[-2], chunks[-1]
    assert finish.finish_reason == "stop"
    assert finish.data["choices"][0]["finish_reason"] == "stop"
    assert final.usage_only
    assert final.is_final
    assert final.usage == Usage(prompt_tokens=15, completion_tokens=6, cached_tokens=4)
    assert final.data["usage"]["prompt_tokens"] == 15
    assert chunks[1].data["id"] == "msg_1"
    assert chunks[1].model == "claude-test"


def test_tool_use_stream_emits_openai_tool_call_deltas():
    """tool_use blocks give a first delta with id/name and empty arguments, then the JSON fragments by tool index."""
    _, chunks = run(
        [
            START,
            TEXT_START,
            text("Checking."),
            ev("content_block_stop", index=0),
            ev(
                "content_block_start",
                index=1,
                content_block={"type": "tool_use", "id": "toolu_a", "name": "w", "input": {}},
            ),
            ev("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": ""}),
            ev("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"ci'}),
            ev("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": 'ty": "Par'}),
            ev("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": 'is"}'}),
            ev("content_block_stop", index=1),
            ev(
                "content_block_start",
                index=2,
                content_block={"type": "tool_use", "id": "toolu_b", "name": "w", "input": {}},
            ),
            ev("content_block_delta", index=2, delta={"type": "input_json_delta", "partial_json": '{"city": "Rome"}'}),
            ev("content_block_stop", index=2),
            ev("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 30}),
            STOP,
        ]
    )
    deltas = [call for c in chunks for call in c.tool_calls]
    assert deltas[0] == {"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "w", "arguments": ""}}
    assert deltas[4] == {"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "w", "arguments": ""}}
    args: dict[int, str] = {}
    for d in deltas:
        args[d["index"]] = args.get(d["index"], "") + d["function"]["arguments"]
    assert {i: json.loads(a) for i, a in args.items()} == {0: {"city": "Paris"}, 1: {"city": "Rome"}}
    assert all(c.is_content for c in chunks if c.tool_calls)
    assert chunks[-1].finish_reason == "tool_calls"


def test_refusal_maps_to_content_filter():
    """A refusal stop_reason finishes the stream with content_filter."""
    _, chunks = run(
        [
            START,
            ev(
                "message_delta",
                delta={"stop_reason": "refusal", "stop_details": {"type": "refusal"}},
                usage={"output_tokens": 0},
            ),
            STOP,
        ]
    )
    assert chunks[-1].finish_reason == "content_filter"


def test_error_event_after_200_is_classified_and_marked_after_content():
    """An `event: error` after content raises the classified error with after_first_token set."""
    machine = AnthropicStream(provider="anth", model="m")
    for name, data in (START, TEXT_START, text("partial")):
        machine.feed(name, data)
    error = ev("error", error={"type": "overloaded_error", "message": "Overloaded"})
    with pytest.raises(Overloaded) as info:
        machine.feed(*error)
    assert info.value.after_first_token
    assert info.value.code == "overloaded_error"
    assert info.value.message == "Overloaded"


def test_error_event_before_content_is_not_after_first_token():
    """An error event before any content leaves after_first_token False so the router may fail over."""
    machine = AnthropicStream(provider="anth", model="m")
    machine.feed(*START)
    with pytest.raises(ProviderError) as info:
        machine.feed(*ev("error", error={"type": "api_error", "message": "boom"}))
    assert info.value.error_class is ErrorClass.SERVER_ERROR
    assert not info.value.after_first_token


def test_missing_message_stop_is_a_protocol_error():
    """EOF without message_stop is a truncated stream, never a success."""
    machine = AnthropicStream(provider="anth", model="m")
    for name, data in (START, TEXT_START, text("cut")):
        machine.feed(name, data)
    with pytest.raises(ProtocolError) as info:
        machine.finish()
    assert info.value.after_first_token


def test_unknown_events_are_ignored_and_garbage_is_protocol():
    """Unknown event types are skipped; malformed JSON and events before message_start are protocol errors."""
    _, chunks = run([START, ev("future_event", x=1), TEXT_START, text("ok"), STOP])
    assert [c.content for c in chunks if c.is_content] == ["ok"]
    with pytest.raises(ProtocolError):
        AnthropicStream(provider="p", model="m").feed("message_start", '{"type": "message_st')
    with pytest.raises(ProtocolError):
        AnthropicStream(provider="p", model="m").feed(*text("early"))


def test_usage_unknown_when_stream_reports_none():
    """A stream without usage numbers ends with Usage.UNKNOWN, not zeros."""
    start = ev("message_start", message={"id": "m", "model": "x", "content": []})
    _, chunks = run([start, ev("message_delta", delta={"stop_reason": "end_turn"}), STOP])
    assert chunks[-1].usage is Usage.UNKNOWN


def test_thinking_streams_as_reasoning_and_whole_blocks():
    """Thinking deltas stream as reasoning_content; the finished block (with signature) follows; none is content."""
    _, chunks = run(
        [
            START,
            ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""}),
            ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Let me "}),
            ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "think."}),
            ev("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "EqQBCgIYAh"}),
            ev("content_block_stop", index=0),
            ev("content_block_start", index=1, content_block={"type": "text", "text": ""}),
            text("Answer", index=1),
            ev("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 9}),
            STOP,
        ]
    )
    reasoning = [c.delta["reasoning_content"] for c in chunks if "reasoning_content" in c.delta]
    assert reasoning == ["Let me ", "think."]
    blocks = [b for c in chunks for b in c.delta.get("thinking_blocks", ())]
    assert blocks == [{"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCgIYAh"}]
    assert [c.content for c in chunks if c.is_content] == ["Answer"]
