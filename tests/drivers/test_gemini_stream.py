"""The Gemini stream state machine: data-only SSE chunks in, OpenAI-shaped chunks out, truncation detected."""

import json

import pytest

from turnout.drivers.gemini_response import call_id
from turnout.drivers.gemini_stream import GeminiStream
from turnout.errors import ContentPolicyError, ErrorClass, ProtocolError, ProviderError
from turnout.types import Usage


def chunk(parts=None, finish=None, usage=None, index=None, **extra):
    candidate = {"content": {"role": "model", "parts": parts or []}}
    if finish:
        candidate["finishReason"] = finish
    if index is not None:
        candidate["index"] = index
    data = {"candidates": [candidate], **extra}
    if usage:
        data["usageMetadata"] = usage
    return json.dumps(data)


def run(payloads):
    machine = GeminiStream(provider="gem", model="m", created=3)
    chunks = [c for p in payloads for c in machine.feed(p)]
    return [*chunks, *machine.finish()]


def test_text_stream_takes_the_last_usage():
    """Text parts stream as content; the last usageMetadata wins; EOF after a finishReason ends normally."""
    chunks = run(
        [
            chunk([{"text": "Hel"}], usage={"promptTokenCount": 9}, responseId="r1", modelVersion="gemini-x"),
            chunk([{"text": "lo"}], usage={"promptTokenCount": 9, "candidatesTokenCount": 1}),
            chunk([{"text": "!"}], finish="STOP", usage={"promptTokenCount": 9, "candidatesTokenCount": 3}),
        ]
    )
    assert chunks[0].delta == {"role": "assistant", "content": ""}
    assert [c.content for c in chunks if c.is_content] == ["Hel", "lo", "!"]
    assert chunks[-2].finish_reason == "stop"
    assert chunks[-1].usage_only
    assert chunks[-1].usage == Usage(prompt_tokens=9, completion_tokens=3)
    assert chunks[1].data["id"] == "r1"
    assert chunks[1].model == "gemini-x"


def test_function_calls_arrive_whole_with_the_same_ids_as_non_streaming():
    """Each functionCall part becomes one complete tool-call delta with the synthesised id; finish is tool_calls."""
    chunks = run(
        [
            chunk(
                [{"functionCall": {"name": "w", "args": {"city": "Paris"}}, "thoughtSignature": "s1"}], responseId="r9"
            ),
            chunk([{"functionCall": {"name": "w", "args": {"city": "Rome"}}}], finish="STOP"),
        ]
    )
    calls = [c for ch in chunks for c in ch.tool_calls]
    assert [c["index"] for c in calls] == [0, 1]
    assert calls[0]["id"] == call_id("r9", 0, "w", {"city": "Paris"})
    assert calls[0]["function"] == {"name": "w", "arguments": json.dumps({"city": "Paris"})}
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "s1"}}
    assert chunks[-1].finish_reason == "tool_calls"


def test_eof_without_finish_reason_is_a_protocol_error():
    """A body that ends before any finishReason is a truncated stream."""
    machine = GeminiStream(provider="gem", model="m")
    machine.feed(chunk([{"text": "cut"}]))
    with pytest.raises(ProtocolError) as info:
        machine.finish()
    assert info.value.after_first_token


def test_mid_stream_error_chunk_is_classified():
    """A `{"error": ...}` chunk after content raises the classified error marked after the first token."""
    machine = GeminiStream(provider="gem", model="m")
    machine.feed(chunk([{"text": "partial"}]))
    with pytest.raises(ProviderError) as info:
        machine.feed(json.dumps({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}))
    assert info.value.error_class is ErrorClass.OVERLOADED
    assert info.value.after_first_token


def test_blocked_prompt_and_safety_finish():
    """A blockReason chunk is content_policy; a SAFETY finish ends the stream with content_filter."""
    with pytest.raises(ContentPolicyError):
        GeminiStream(provider="p", model="m").feed(
            json.dumps({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
        )
    chunks = run([chunk([{"text": "Sure, "}]), chunk(finish="SAFETY")])
    assert chunks[-1].finish_reason == "content_filter"


def test_thought_parts_are_reasoning_not_content_and_garbage_is_protocol():
    """Thought summaries stream as reasoning_content, not content; a malformed chunk is a protocol error."""
    chunks = run([chunk([{"text": "hmm", "thought": True}, {"text": "Yes"}], finish="STOP")])
    assert [c.content for c in chunks if c.is_content] == ["Yes"]
    assert [c.delta["reasoning_content"] for c in chunks if "reasoning_content" in c.delta] == ["hmm"]
    with pytest.raises(ProtocolError):
        GeminiStream(provider="p", model="m").feed(b'{"candidates": [{"cont')


def test_several_candidates_keep_their_choice_index():
    """With n > 1 each candidate's deltas and finish chunk carry its own choice index."""
    chunks = run(
        [chunk([{"text": "a"}], index=0), chunk([{"text": "b"}], finish="STOP", index=1), chunk(finish="STOP", index=0)]
    )
    indexes = [(c.data["choices"][0]["index"], c.content) for c in chunks if c.is_content]
    assert indexes == [(0, "a"), (1, "b")]
    finishes = [c.data["choices"][0]["index"] for c in chunks if c.finish_reason and not c.usage_only]
    assert finishes == [0, 1]
