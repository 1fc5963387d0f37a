"""Anthropic translation, both ways, without I/O: request bodies, responses, usage, error bodies."""

import json

import pytest

from turnout.drivers.anthropic.request import JSON_OBJECT_INSTRUCTION, build_request
from turnout.drivers.anthropic.response import classify, error_details, parse_response, usage_from
from turnout.errors import BadRequest, ErrorClass, ProtocolError
from turnout.types import ChatRequest, Usage

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def body(messages, **params):
    request = ChatRequest.create(model="route", messages=messages, **params)
    return build_request(request, model="claude-test", provider="anth", default_max_tokens=4096, stream=False)


def call(id_, name, args):
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def test_system_and_developer_messages_are_hoisted_in_order():
    """System and developer messages anywhere become top-level system blocks, in order; none stay in messages."""
    out = body(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "again"},
        ]
    )
    assert out["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}]
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]}
    ]


def test_consecutive_same_role_turns_are_merged():
    """Adjacent user turns merge into one and adjacent assistant turns too, keeping alternation."""
    out = body(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": "d"},
            {"role": "user", "content": "e"},
        ]
    )
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert [b["text"] for b in out["messages"][1]["content"]] == ["c", "d"]


def test_parallel_tool_round_trip_puts_all_results_first_in_one_user_turn():
    """Parallel tool calls become tool_use blocks; their results share one user turn, before any user text."""
    out = body(
        [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    call("toolu_1", "weather", {"city": "Paris"}),
                    call("toolu_2", "weather", {"city": "Rome"}),
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "also, be brief"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "25C"},
        ]
    )
    assistant, results = out["messages"][1], out["messages"][2]
    assert assistant["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
    ]
    assert len(out["messages"]) == 3
    assert results["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "25C"},
        {"type": "text", "text": "also, be brief"},
    ]


def test_foreign_tool_ids_are_rewritten_consistently():
    """Ids with characters Anthropic rejects are rewritten the same way in tool_use and tool_result."""
    out = body(
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [call("call:1/a", "f", {})]},
            {"role": "tool", "tool_call_id": "call:1/a", "content": "ok"},
        ]
    )
    assert out["messages"][1]["content"][0]["id"] == "call_1_a"
    assert out["messages"][2]["content"][0]["tool_use_id"] == "call_1_a"


def test_invalid_tool_arguments_are_a_bad_request_before_sending():
    """Arguments that are not a JSON object are refused as bad_request naming the field."""
    bad = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
    with pytest.raises(BadRequest, match=r"messages\[1\]\.tool_calls\[0\]\.function\.arguments"):
        body([{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [bad]}])


def test_tool_definitions_and_choices_map():
    """Tools become input_schema definitions; every tool_choice form and parallel_tool_calls map to Anthropic's."""
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
    msgs = [{"role": "user", "content": "x"}]
    assert body(msgs, tools=tools)["tools"] == [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]
    assert "tool_choice" not in body(msgs, tools=tools)
    assert body(msgs, tools=tools, tool_choice="auto")["tool_choice"] == {"type": "auto"}
    assert body(msgs, tools=tools, tool_choice="none")["tool_choice"] == {"type": "none"}
    assert body(msgs, tools=tools, tool_choice="required")["tool_choice"] == {"type": "any"}
    named = {"type": "function", "function": {"name": "f"}}
    assert body(msgs, tools=tools, tool_choice=named)["tool_choice"] == {"type": "tool", "name": "f"}
    assert body(msgs, tools=tools, parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    bare = [{"type": "function", "function": {"name": "g"}}]
    assert body(msgs, tools=bare)["tools"][0]["input_schema"] == {"type": "object", "properties": {}}


def test_images_from_urls_and_data_urls():
    """https image URLs become URL sources and base64 data URLs base64 sources with their media type."""
    out = body(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ]
    )
    blocks = out["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    assert blocks[2] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("data:image/bmp;base64,Qk0=", "image/bmp"),
        ("data:image/png,rawbytes", "base64"),
        ("ftp://example.com/x.png", "http"),
    ],
)
def test_unsupported_images_are_refused_before_sending(url, match):
    """Unsupported media types, non-base64 data URLs and other schemes are bad_request errors."""
    with pytest.raises(BadRequest, match=match) as info:
        body([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert info.value.provider == "anth"
    assert info.value.model == "claude-test"


def test_sampling_parameters_stop_and_temperature_clamp():
    """temperature is clamped to 0..1, top_p passes, stop becomes stop_sequences minus whitespace-only ones."""
    msgs = [{"role": "user", "content": "x"}]
    out = body(msgs, temperature=1.7, top_p=0.9, stop="END", user="u-1")
    assert out["temperature"] == 1.0
    assert out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "u-1"}
    assert body(msgs, temperature=0.3, stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert body(msgs, temperature=0.3)["temperature"] == 0.3
    assert "stop_sequences" not in body(msgs, stop=7)
    assert "stop_sequences" not in body(msgs, stop=[""])
    assert body(msgs, stop=["\n\n", " ", "END"])["stop_sequences"] == ["END"]
    for dropped in ("frequency_penalty", "seed", "logprobs"):
        assert dropped not in body(msgs, frequency_penalty=0.5, seed=3, logprobs=True)


def test_max_tokens_is_always_sent():
    """max_tokens comes from the request (either OpenAI name) or the driver's default."""
    msgs = [{"role": "user", "content": "x"}]
    assert body(msgs)["max_tokens"] == 4096
    assert body(msgs, max_tokens=100)["max_tokens"] == 100
    assert body(msgs, max_completion_tokens=200)["max_tokens"] == 200


def test_response_formats():
    """json_schema becomes output_config.format; json_object becomes a system instruction."""
    msgs = [{"role": "user", "content": "x"}]
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = body(msgs, response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    out = body(msgs, response_format={"type": "json_object"})
    assert out["system"] == [{"type": "text", "text": JSON_OBJECT_INSTRUCTION}]
    assert "output_config" not in out


def test_assistant_prefix_becomes_a_prefill_without_trailing_whitespace():
    """A continuation prefix is sent as the final assistant message, right-stripped."""
    request = ChatRequest.create(model="r", messages=[{"role": "user", "content": "count"}]).with_prefix("1, 2, ")
    out = build_request(request, model="m", provider="p", default_max_tokens=10, stream=True)
    assert out["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": "1, 2,"}]}
    assert out["stream"] is True


def test_n_greater_than_one_and_foreign_tools_are_refused():
    """n > 1 and non-function tools cannot be served by Anthropic and are refused up front."""
    msgs = [{"role": "user", "content": "x"}]
    with pytest.raises(BadRequest, match="n > 1"):
        body(msgs, n=2)
    with pytest.raises(BadRequest, match="function"):
        body(msgs, tools=[{"type": "web_search"}])


def test_turnout_directives_never_reach_the_wire():
    """Top-level turnout_* keys (mock test directives) are not part of the Anthropic body."""
    out = body([{"role": "user", "content": "x"}], turnout_fault="500")
    assert not any(key.startswith("turnout_") for key in out)


def test_response_with_text_and_tool_calls():
    """Text and tool_use blocks become content and JSON-string tool calls; tool_use maps to tool_calls."""
    data = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-2025",
        "content": [
            {"type": "text", "text": "I'll check."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    response = parse_response(data, provider="p", model="m", created=1)
    assert response.text == "I'll check."
    assert response.finish_reason == "tool_calls"
    assert [json.loads(c["function"]["arguments"]) for c in response.tool_calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    assert response.tool_calls[0]["id"] == "toolu_1"
    assert response.model == "claude-test-2025"
    assert response.to_openai()["id"] == "msg_1"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
    ],
)
def test_stop_reason_mapping(stop_reason, finish):
    """Every Anthropic stop_reason maps to the OpenAI finish_reason of section 9.1."""
    data = {"id": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason}
    assert parse_response(data, provider="p", model="m").finish_reason == finish


def test_usage_counts_cache_traffic_as_prompt():
    """Prompt = input + cache creation + cache read; cached = reads; cache write = creation."""
    usage = usage_from(
        {
            "input_tokens": 10,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "output_tokens": 7,
            "output_tokens_details": {"thinking_tokens": 3},
        }
    )
    assert usage == Usage(
        prompt_tokens=1110, completion_tokens=7, cached_tokens=1000, cache_write_tokens=100, reasoning_tokens=3
    )
    assert usage_from(None) is Usage.UNKNOWN
    assert not usage_from({"input_tokens": 3}).known


def test_thinking_round_trip():
    """Thinking blocks come back as reasoning_content + thinking_blocks and are sent back first in their turn."""
    blocks = [
        {"type": "thinking", "thinking": "Check the weather.", "signature": "sig=="},
        {"type": "redacted_thinking", "data": "opaque"},
    ]
    data = {
        "id": "m",
        "content": [*blocks, {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}],
        "stop_reason": "tool_use",
    }
    message = parse_response(data, provider="p", model="m").message
    assert message["reasoning_content"] == "Check the weather."
    assert message["thinking_blocks"] == blocks
    out = body(
        [
            {"role": "user", "content": "weather?"},
            dict(message),
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        ],
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert out["messages"][1]["content"][:2] == blocks
    assert out["messages"][1]["content"][2]["type"] == "tool_use"
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_non_message_body_is_a_protocol_error():
    """A 200 body that is not a message is a protocol error, not a crash."""
    with pytest.raises(ProtocolError):
        parse_response({"hello": 1}, provider="p", model="m")


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected"),
    [
        (429, "rate_limit_error", "Number of requests has exceeded your rate limit", ErrorClass.RATE_LIMIT),
        (529, "overloaded_error", "Overloaded", ErrorClass.OVERLOADED),
        (500, "api_error", "Internal server error", ErrorClass.SERVER_ERROR),
        (401, "authentication_error", "invalid x-api-key", ErrorClass.AUTH),
        (403, "permission_error", "no access", ErrorClass.AUTH),
        (404, "not_found_error", "model: claude-nope", ErrorClass.NOT_FOUND),
        (402, "billing_error", "payment required", ErrorClass.QUOTA_EXCEEDED),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes", ErrorClass.BAD_REQUEST),
        (504, "timeout_error", "Request timed out", ErrorClass.TIMEOUT),
        (400, "invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum", ErrorClass.CONTEXT_WINDOW),
        (400, "invalid_request_error", "Your credit balance is too low to access the API", ErrorClass.QUOTA_EXCEEDED),
        (400, "invalid_request_error", "messages: text content blocks must be non-empty", ErrorClass.BAD_REQUEST),
        (529, None, None, ErrorClass.OVERLOADED),
    ],
)
def test_error_type_classification(status, kind, message, expected):
    """Anthropic error types (and their messages) classify into the taxonomy."""
    assert classify(status, kind, message) is expected


def test_error_details_from_bodies():
    """Error bodies give (message, type); HTML or garbage gives nothing so status classification takes over."""
    raw = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}'
    assert error_details(raw) == ("Overloaded", "overloaded_error")
    assert error_details(b"<html>502</html>") == (None, None)
    assert classify(502, None, None) is None
