"""The canonical request/response values: validation, routing fields, and exact OpenAI rendering."""

import json
import pickle

import pytest

from turnout.config import ProviderSpec, Secret
from turnout.errors import (
    AllUpstreamsFailed,
    ErrorClass,
    InvalidRequest,
    ProviderError,
    RateLimited,
    UpstreamConnectionError,
    UpstreamTimeout,
    provider_error,
)
from turnout.types import Attempt, ChatChunk, ChatRequest, ChatResponse, Usage, chunk_data, usage_chunk_data

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def test_request_keeps_the_client_body_and_derives_routing_fields():
    """The body is kept as sent; tools, vision, JSON mode, stream usage and token estimates are derived from it."""
    body = {
        "model": "chat",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 400}, IMAGE]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "response_format": {"type": "json_object"},
        "max_completion_tokens": 100,
    }
    request = ChatRequest.from_openai(body)
    assert request.body is body
    assert (request.model, request.stream, request.include_usage) == ("chat", True, True)
    assert request.needs_tools and request.needs_vision and request.needs_json
    assert request.estimated_prompt_tokens == 100 + 4 + 800
    assert request.max_output_tokens == 100
    assert request.estimated_total_tokens == request.estimated_prompt_tokens + 100


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "", "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages[0].content[0]"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0].image_url",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": {}}]},
            "messages[0].tool_calls",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": True},
            "max_completion_tokens",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": "1"}, "top_p"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": {}}, "tools"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": 1}, "stream_options"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": "yes"}},
            "stream_options.include_usage",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": "json"}, "response_format"),
    ],
)
def test_malformed_requests_name_the_offending_field(body, param):
    """Every malformed shape raises InvalidRequest whose `param` names the field, so the sidecar can say which."""
    with pytest.raises(InvalidRequest) as info:
        ChatRequest.from_openai(body)
    assert info.value.param == param


def test_create_builds_the_same_request_as_from_openai():
    """The keyword form used by `router.chat(model=..., messages=...)` validates like a wire body."""
    request = ChatRequest.create(model="m", messages=[{"role": "user", "content": "hi"}], temperature=0.5)
    assert request.body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}
    with pytest.raises(InvalidRequest):
        ChatRequest.create(model="m", messages=[])


def test_with_prefix_returns_a_new_request_carrying_the_partial_answer():
    """Mid-stream continuation hands the partial text on without mutating the original request."""
    request = ChatRequest.create(model="m", messages=[{"role": "user", "content": "hi"}])
    continued = request.with_prefix("Hel")
    assert continued.assistant_prefix == "Hel" and request.assistant_prefix is None
    assert continued.body is request.body


def test_unknown_usage_stays_unknown_and_poisons_sums():
    """Missing usage is never reported as zero: it renders as null and any sum with it is unknown."""
    known = Usage(10, 5, cached_tokens=2, reasoning_tokens=1)
    assert known.total_tokens == 15
    assert not Usage.UNKNOWN.known and Usage.UNKNOWN.total_tokens is None
    assert Usage.UNKNOWN.to_openai() is None
    assert not (known + Usage.UNKNOWN).known
    assert (known + known) == Usage(20, 10, cached_tokens=4, reasoning_tokens=2)
    assert known.to_openai() == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 1},
    }


def test_response_renders_openai_json_with_upstream_fields():
    """to_openai() is OpenAI's chat.completion shape; upstream extras (system_fingerprint) survive."""
    response = ChatResponse(
        id="chatcmpl-1",
        model="gpt-4o-2024-08-06",
        created=1,
        choices=({"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"},),
        usage=Usage(3, 1),
        extra={"system_fingerprint": "fp_1"},
    )
    assert response.text == "hi" and response.finish_reason == "stop" and response.tool_calls == ()
    out = response.to_openai()
    assert out["object"] == "chat.completion" and out["system_fingerprint"] == "fp_1"
    assert out["usage"]["total_tokens"] == 4
    assert json.loads(json.dumps(out)) == out


def test_chunk_round_trips_between_raw_bytes_and_data():
    """A forwarded chunk keeps the upstream's exact bytes; a built chunk serialises compactly; both are immutable."""
    raw = b'{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"model":"m"}'
    forwarded = ChatChunk(raw=raw, is_content=True)
    assert forwarded.to_sse() == b"data: " + raw + b"\n\n"
    assert forwarded.content == "Hi" and forwarded.model == "m" and not forwarded.is_final
    built = ChatChunk(
        data=chunk_data(id="c", model="m", created=1, delta={}, finish_reason="stop"),
        finish_reason="stop",
        usage=Usage(1, 1),
    )
    assert built.is_final and json.loads(built.raw)["choices"][0]["finish_reason"] == "stop"
    with pytest.raises(AttributeError):
        built.usage = None
    with pytest.raises(ValueError, match="needs data or raw"):
        ChatChunk()
    usage = usage_chunk_data(id="c", model="m", created=1, usage=Usage(1, 2))
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 3


def test_provider_errors_carry_their_class_and_builtin_bases():
    """provider_error builds the subclass for a class; timeouts and resets are also builtin exceptions."""
    err = provider_error("rate_limit", "slow down", provider="openai", model="gpt", status=429, retry_after=2.0)
    assert isinstance(err, RateLimited) and err.error_class is ErrorClass.RATE_LIMIT and err.retry_after == 2.0
    assert str(err) == "openai/gpt: rate_limit (HTTP 429): slow down"
    assert isinstance(provider_error(ErrorClass.TIMEOUT, "t"), UpstreamTimeout | TimeoutError)
    assert isinstance(provider_error("connection", "reset"), UpstreamConnectionError | ConnectionError)
    assert {provider_error(c, "x").error_class for c in ErrorClass} == set(ErrorClass)


def test_all_upstreams_failed_summarises_the_trail():
    """The exhaustion error counts real attempts (not skips) and exposes the meaningful error's class."""
    attempts = (
        Attempt("a/m", 0.0, 0.1, "error", error_class="server_error", status=500),
        Attempt("b/m", 0.1, 0.0, "skipped", detail="breaker open"),
    )
    last = provider_error("server_error", "boom", provider="a", model="m", status=500)
    err = AllUpstreamsFailed("chat", attempts, last)
    assert "1 attempts" in str(err) and err.error_class is ErrorClass.SERVER_ERROR
    assert isinstance(err, Exception) and not isinstance(err, ProviderError)
    assert attempts[0].to_dict()["duration_ms"] == 100.0


def test_secrets_are_masked_everywhere_but_reveal():
    """A Secret never shows its value in repr/str (also nested in specs) and refuses to be pickled."""
    secret = Secret("sk-live-123456")
    spec = ProviderSpec(name="openai", driver="openai", api_key=secret, headers={"x-key": Secret("hdr-999")})
    for text in (repr(secret), str(secret), repr(spec), str(spec), f"{spec}"):
        assert "sk-live-123456" not in text and "hdr-999" not in text
    assert secret.reveal() == "sk-live-123456" and bool(secret) and not Secret("")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
