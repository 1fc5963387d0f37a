"""Hostile upstream output never crashes the anthropic/gemini parsers: every failure is a classified ProviderError."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout.drivers import gemini_request, gemini_response
from turnout.drivers.anthropic import request as anthropic_request
from turnout.drivers.anthropic import response as anthropic_response
from turnout.drivers.anthropic.stream import AnthropicStream
from turnout.drivers.gemini_stream import GeminiStream
from turnout.errors import InvalidRequest, ProviderError
from turnout.types import ChatChunk, ChatRequest

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 600)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["google.rpc.RetryInfo", "google.rpc.QuotaFailure", "google.rpc.ErrorInfo", "15s", "PerDay"])
)
keys = st.sampled_from(
    [
        "type", "index", "delta", "content_block", "message", "usage", "text", "partial_json", "id", "name",
        "input", "stop_reason", "error", "candidates", "content", "parts", "functionCall", "args", "finishReason",
        "usageMetadata", "promptTokenCount", "promptFeedback", "blockReason", "code", "status", "details",
        "@type", "violations", "quotaId", "retryDelay", "reason", "message",
    ]
)  # fmt: skip
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4)
)
event_names = st.sampled_from(
    ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
     "message_stop", "ping", "error", None]
)  # fmt: skip
VALID_START = json.dumps({"type": "message_start", "message": {"id": "m", "content": [], "model": "c"}})


def only_provider_errors(action) -> None:
    try:
        result = action()
    except ProviderError:
        return
    assert all(isinstance(chunk, ChatChunk) for chunk in result or ())


@SETTINGS
@given(st.lists(st.tuples(event_names, json_values | st.binary(max_size=20)), max_size=8), st.booleans())
def test_anthropic_stream_survives_anything(events, started):
    """Arbitrary event names and JSON (or bytes) yield chunks or a ProviderError, never another exception."""
    machine = AnthropicStream(provider="p", model="m")
    if started:
        machine.feed("message_start", VALID_START)
    for name, value in events:
        data = (
            value
            if isinstance(value, bytes)
            else json.dumps({"type": name, **value} if isinstance(value, dict) else value)
        )
        only_provider_errors(lambda name=name, data=data: machine.feed(name, data))
    only_provider_errors(machine.finish)


@SETTINGS
@given(st.lists(json_values | st.binary(max_size=20), max_size=8))
def test_gemini_stream_survives_anything(payloads):
    """Arbitrary chunk payloads yield chunks or a ProviderError, never another exception."""
    machine = GeminiStream(provider="p", model="m")
    for value in payloads:
        data = value if isinstance(value, bytes) else json.dumps(value)
        only_provider_errors(lambda data=data: machine.feed(data))
    only_provider_errors(machine.finish)


@SETTINGS
@given(json_values)
def test_response_parsers_survive_anything(value):
    """Arbitrary 200 bodies parse to a response or raise a ProviderError."""
    for parse in (anthropic_response.parse_response, gemini_response.parse_response):
        try:
            parse(value, provider="p", model="m")
        except ProviderError:
            pass


rpc_details = st.lists(
    st.fixed_dictionaries(
        {"@type": st.sampled_from(["google.rpc.RetryInfo", "google.rpc.QuotaFailure", "google.rpc.ErrorInfo"])},
        optional={"violations": json_values, "retryDelay": json_values, "reason": json_values},
    ),
    max_size=3,
)


@SETTINGS
@given(rpc_details, scalars, scalars, st.sampled_from([400, 429, 503, None]))
def test_gemini_status_details_survive_anything(details, code, message, status):
    """google.rpc.Status bodies with hostile details still classify into a ProviderError."""
    body = {"error": {"code": code, "message": message, "status": "RESOURCE_EXHAUSTED", "details": details}}
    assert isinstance(gemini_response.error_from_status(body, status=status, provider="p", model="m"), ProviderError)


@SETTINGS
@given(json_values, st.sampled_from([400, 401, 404, 429, 500, 503, 529, None]))
def test_error_classifiers_survive_anything(value, status):
    """Arbitrary error bodies are classified without raising."""
    message, kind = anthropic_response.error_details(json.dumps(value))
    anthropic_response.classify(status, kind, message)
    if isinstance(value, dict) and isinstance(value.get("error"), dict):
        error = gemini_response.error_from_status(value, status=status, provider="p", model="m")
        assert isinstance(error, ProviderError)


request_keys = st.sampled_from(
    ["tools", "tool_choice", "response_format", "stop", "parallel_tool_calls", "user", "top_k", "thinking", "seed"]
)
text_parts = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=3)}), max_size=2)
functions = st.dictionaries(keys | st.just("arguments"), json_values, max_size=3)
tool_calls = st.lists(st.fixed_dictionaries({"function": functions}, optional={"id": json_values}), max_size=2)
message_values = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool"])},
    optional={
        "content": st.none() | st.text(max_size=5) | text_parts,
        "tool_calls": tool_calls,
        "tool_call_id": json_values,
        "name": json_values,
    },
)


@SETTINGS
@given(st.lists(message_values, min_size=1, max_size=5), st.dictionaries(request_keys, json_values, max_size=4))
def test_request_translators_survive_anything(messages, params):
    """Any request the canonical validator accepts translates to a body or a bad_request, never a crash."""
    try:
        request = ChatRequest.from_openai({"model": "r", "messages": messages, **params})
    except InvalidRequest:
        return
    for build in (
        lambda: anthropic_request.build_request(request, model="m", provider="p", default_max_tokens=5, stream=False),
        lambda: gemini_request.build_request(request, model="m", provider="p"),
    ):
        failure = None
        try:
            json.dumps(build())
        except ProviderError as error:
            failure = error
        assert failure is None or failure.error_class.value == "bad_request"
