"""Gemini translation, both ways, without I/O: request bodies, responses, ids, usage, google.rpc.Status errors."""

import json

import pytest

from turnout.drivers.gemini_request import SKIP_SIGNATURE, build_request, remote_image_urls
from turnout.drivers.gemini_response import (
    call_id,
    error_from_status,
    parse_duration,
    parse_response,
    usage_from,
)
from turnout.errors import BadRequest, ContentPolicyError, ErrorClass, ProtocolError, ServerError
from turnout.types import ChatRequest, Usage

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def req(messages, **params):
    return ChatRequest.create(model="route", messages=messages, **params)


def body(messages, images=None, **params):
    return build_request(req(messages, **params), model="gemini-test", provider="gem", images=images)


def call(id_, name, args, signature=None):
    out = {"id": id_, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
    if signature:
        out["extra_content"] = {"google": {"thought_signature": signature}}
    return out


def test_system_hoisting_and_role_mapping():
    """System/developer messages go to systemInstruction; assistant becomes model; same-role turns merge."""
    out = body(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "developer", "content": "Use French."},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": "d"},
        ]
    )
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}]},
        {"role": "user", "parts": [{"text": "d"}]},
    ]


def test_parallel_tool_round_trip_with_name_lookup_and_signatures():
    """Tool calls become functionCall parts (args objects, signature back); results become one user turn."""
    out = body(
        [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("call_0_x", "weather", {"city": "Paris"}, "sig-A"), call("call_1_y", "time", {})],
            },
            {"role": "tool", "tool_call_id": "call_1_y", "content": "noon"},
            {"role": "tool", "tool_call_id": "call_0_x", "content": "18C"},
        ]
    )
    model_turn, results = out["contents"][1], out["contents"][2]
    assert model_turn == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig-A"},
            {"functionCall": {"name": "time", "args": {}}},
        ],
    }
    assert results == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "time", "response": {"output": "noon"}}},
            {"functionResponse": {"name": "weather", "response": {"output": "18C"}}},
        ],
    }


def test_missing_thought_signature_gets_the_documented_placeholder():
    """A model turn with calls but no signature gets Google's skip placeholder on its first call only."""
    msgs = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [call("a", "f", {}), call("b", "g", {})]},
        {"role": "tool", "tool_call_id": "a", "content": "1"},
        {"role": "tool", "tool_call_id": "b", "content": "2"},
    ]
    parts = body(msgs)["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == SKIP_SIGNATURE
    assert "thoughtSignature" not in parts[1]
    off = build_request(req(msgs), model="m", provider="p", signature_fallback=False)
    assert all("thoughtSignature" not in p for p in off["contents"][1]["parts"])


def test_tool_result_without_known_call_is_refused():
    """A tool result whose id matches no earlier call cannot be named for Gemini: bad_request."""
    with pytest.raises(BadRequest, match="no matching assistant tool call"):
        body([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "1"}])


def test_tools_and_tool_choice():
    """Tools become functionDeclarations with plain JSON Schema; tool_choice maps to functionCallingConfig."""
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "w", "description": "d", "parameters": params}}]
    msgs = [{"role": "user", "content": "x"}]
    out = body(msgs, tools=tools)
    assert out["tools"] == [
        {"functionDeclarations": [{"name": "w", "description": "d", "parametersJsonSchema": params}]}
    ]
    assert "toolConfig" not in out
    for choice, config in [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ({"type": "function", "function": {"name": "w"}}, {"mode": "ANY", "allowedFunctionNames": ["w"]}),
    ]:
        assert body(msgs, tools=tools, tool_choice=choice)["toolConfig"] == {"functionCallingConfig": config}


def test_images_inline_from_data_urls_and_fetched_urls():
    """Data URLs become inlineData; http(s) URLs are listed for fetching and inlined from the fetched map."""
    msgs = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "image_url", "image_url": "https://example.com/cat.jpg"},
            ],
        }
    ]
    assert remote_image_urls(req(msgs)) == ["https://example.com/cat.jpg"]
    parts = body(msgs, images={"https://example.com/cat.jpg": ("image/jpeg", "QUJD")})["contents"][0]["parts"]
    assert parts[0] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    assert parts[1] == {"inlineData": {"mimeType": "image/jpeg", "data": "QUJD"}}
    with pytest.raises(BadRequest, match="not fetched"):
        body(msgs)


def test_generation_config():
    """Sampling, max tokens, stop, n and JSON modes land in generationConfig."""
    msgs = [{"role": "user", "content": "x"}]
    schema = {"type": "object"}
    out = body(
        msgs,
        temperature=1.5,
        top_p=0.9,
        max_tokens=50,
        stop="END",
        n=2,
        seed=7,
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    )
    assert out["generationConfig"] == {
        "temperature": 1.5,
        "topP": 0.9,
        "seed": 7,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    assert body(msgs, response_format={"type": "json_object"})["generationConfig"] == {
        "responseMimeType": "application/json"
    }
    assert "generationConfig" not in body(msgs, turnout_fault="x")
    assert "generationConfig" not in body(msgs, stop=7)


def test_prefill_is_refused():
    """Gemini cannot continue a partial answer, so a prefix is a bad_request."""
    with pytest.raises(BadRequest, match="prefill"):
        build_request(req([{"role": "user", "content": "x"}]).with_prefix("abc"), model="m", provider="p")


def test_response_with_function_calls_synthesises_ids():
    """functionCall parts become tool calls with synthesised call_<n>_<hash> ids; STOP with calls is tool_calls."""
    data = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True},
                        {"functionCall": {"name": "w", "args": {"city": "Paris"}}, "thoughtSignature": "sig"},
                        {"functionCall": {"name": "w", "args": {"city": "Rome"}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 6},
        "modelVersion": "gemini-test-001",
        "responseId": "resp-1",
    }
    response = parse_response(data, provider="p", model="m", created=1)
    assert response.finish_reason == "tool_calls"
    assert response.message["content"] is None
    ids = [c["id"] for c in response.tool_calls]
    assert ids == [call_id("resp-1", 0, "w", {"city": "Paris"}), call_id("resp-1", 1, "w", {"city": "Rome"})]
    assert ids[0].startswith("call_0_")
    assert ids[0] != ids[1]
    assert response.tool_calls[0]["extra_content"] == {"google": {"thought_signature": "sig"}}
    assert json.loads(response.tool_calls[1]["function"]["arguments"]) == {"city": "Rome"}
    assert response.usage == Usage(prompt_tokens=10, completion_tokens=10, reasoning_tokens=6)
    assert response.model == "gemini-test-001"
    assert response.message["reasoning_content"] == "thinking..."


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("SPII", "content_filter"),
        ("RECITATION", "stop"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reason_mapping(reason, finish):
    """Gemini finishReasons map to OpenAI finish reasons per section 9.1."""
    data = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert parse_response(data, provider="p", model="m").finish_reason == finish


def test_several_candidates_become_several_choices():
    """candidateCount > 1 answers become one choice each, in order."""
    data = {
        "candidates": [
            {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1},
        ]
    }
    choices = parse_response(data, provider="p", model="m").choices
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


def test_blocked_prompt_and_empty_answers():
    """No candidates with a blockReason is content_policy; without one protocol; a malformed call server_error."""
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}
    with pytest.raises(ContentPolicyError) as info:
        parse_response(blocked, provider="p", model="m")
    assert info.value.code == "SAFETY"
    with pytest.raises(ProtocolError):
        parse_response({"candidates": []}, provider="p", model="m")
    with pytest.raises(ServerError, match="MALFORMED_FUNCTION_CALL"):
        parse_response({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL"}]}, provider="p", model="m")


def test_usage_mapping():
    """Prompt includes cached and tool-use prompt tokens; completion = candidates + thoughts; missing = unknown."""
    usage = usage_from(
        {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 60,
            "toolUsePromptTokenCount": 5,
            "candidatesTokenCount": 7,
            "thoughtsTokenCount": 3,
            "totalTokenCount": 115,
        }
    )
    assert usage == Usage(prompt_tokens=105, completion_tokens=10, cached_tokens=60, reasoning_tokens=3)
    assert usage_from({"promptTokenCount": 4}) == Usage(prompt_tokens=4, completion_tokens=0)
    assert usage_from({}) is Usage.UNKNOWN


def status_body(code, status, message, *details):
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "15s"}
BAD_KEY = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
TOO_LONG = "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)."


def quota(quota_id):
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota_id}]}


STATUS_CASES = [
    (429, status_body(429, "RESOURCE_EXHAUSTED", "quota", quota(PER_MINUTE), RETRY), ErrorClass.RATE_LIMIT, 15.0),
    (429, status_body(429, "RESOURCE_EXHAUSTED", "quota", quota(PER_DAY)), ErrorClass.QUOTA_EXCEEDED, None),
    (400, status_body(400, "INVALID_ARGUMENT", "API key not valid.", BAD_KEY), ErrorClass.AUTH, None),
    (400, status_body(400, "INVALID_ARGUMENT", TOO_LONG), ErrorClass.CONTEXT_WINDOW, None),
    (400, status_body(400, "INVALID_ARGUMENT", "Invalid JSON payload received."), ErrorClass.BAD_REQUEST, None),
    (403, status_body(403, "PERMISSION_DENIED", "denied"), ErrorClass.AUTH, None),
    (404, status_body(404, "NOT_FOUND", "models/x is not found"), ErrorClass.NOT_FOUND, None),
    (500, status_body(500, "INTERNAL", "An internal error has occurred."), ErrorClass.SERVER_ERROR, None),
    (503, status_body(503, "UNAVAILABLE", "The model is overloaded."), ErrorClass.OVERLOADED, None),
    (504, status_body(504, "DEADLINE_EXCEEDED", "Deadline exceeded"), ErrorClass.TIMEOUT, None),
    (400, status_body(400, "FAILED_PRECONDITION", "User location is not supported."), ErrorClass.AUTH, None),
    (400, status_body(400, "INVALID_ARGUMENT", "Request blocked for safety reasons."), ErrorClass.CONTENT_POLICY, None),
]


@pytest.mark.parametrize(("status", "payload", "expected", "retry_after"), STATUS_CASES)
def test_status_body_classification(status, payload, expected, retry_after):
    """Status bodies classify by status, ErrorInfo reason, quota id and message; RetryInfo sets retry_after."""
    error = error_from_status(payload, status=status, provider="gem", model="m", retry_after=None)
    assert error.error_class is expected
    assert error.retry_after == retry_after
    assert error.status == status
    assert error.code == payload["error"]["status"]


def test_mid_stream_error_takes_status_from_its_code():
    """A mid-stream error chunk is classified from error.code and carries no HTTP status (the response was 200)."""
    error = error_from_status(status_body(503, "UNAVAILABLE", "overloaded"), status=None, provider="p", model="m")
    assert error.error_class is ErrorClass.OVERLOADED
    assert error.status is None
    assert error.code == "UNAVAILABLE"


def test_duration_parsing():
    """Protobuf duration strings parse to seconds; anything else is None."""
    assert parse_duration("15s") == 15.0
    assert parse_duration("0.250s") == 0.25
    assert parse_duration("15") is None
    assert parse_duration(None) is None
