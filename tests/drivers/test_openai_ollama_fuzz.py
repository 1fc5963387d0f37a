"""Hostile upstream output never crashes the openai/ollama parsers: every failure is a classified ProviderError."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout.drivers import ollama_wire, openai_wire
from turnout.errors import ProviderError
from turnout.types import ChatChunk, ChatResponse

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
scalars = st.none() | st.booleans() | st.integers(-5, 2**70) | st.floats() | st.text(max_size=6)
keys = st.sampled_from(
    [
        "id", "choices", "delta", "content", "message", "finish_reason", "usage", "prompt_tokens",
        "completion_tokens", "prompt_tokens_details", "cached_tokens", "completion_tokens_details",
        "reasoning_tokens", "x_groq", "error", "code", "type", "status", "tool_calls", "function", "name",
        "arguments", "refusal", "index", "done", "done_reason", "eval_count", "prompt_eval_count", "thinking",
        "model", "created",
    ]
)  # fmt: skip
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=5))
payloads = values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=30)


def survives(action: Callable[[], Any]) -> None:
    try:
        result = action()
    except ProviderError:
        return
    items = result if isinstance(result, list) else [result]
    for item in items:
        assert item is None or isinstance(item, ChatChunk | ChatResponse)
        if isinstance(item, ChatResponse):
            assert isinstance(item.text, str)


@SETTINGS
@given(st.lists(payloads, max_size=6), st.booleans())
def test_openai_stream_survives_anything(events: list[bytes], done: bool) -> None:
    """Arbitrary SSE payloads give chunks or a ProviderError, never another exception."""
    state = openai_wire.StreamState("p", "m")
    for raw in [*events, b"[DONE]"] if done else events:
        survives(lambda raw=raw: state.feed(raw))
    survives(state.finish)


@SETTINGS
@given(values)
def test_openai_response_survives_anything(data: Any) -> None:
    """An arbitrary non-streamed body gives a ChatResponse with a text, or a ProviderError."""
    survives(lambda: openai_wire.response_from(data, provider="p", model="m"))


@SETTINGS
@given(st.lists(payloads, max_size=6))
def test_ollama_stream_survives_anything(lines: list[bytes]) -> None:
    """Arbitrary NDJSON lines give chunks or a ProviderError, never another exception."""
    state = ollama_wire.StreamState("p", "m")
    for raw in lines:
        survives(lambda raw=raw: state.feed(raw))


@SETTINGS
@given(values)
def test_ollama_response_survives_anything(data: Any) -> None:
    """An arbitrary /api/chat body gives a ChatResponse with a text, or a ProviderError."""
    survives(lambda: ollama_wire.response_from(data, provider="p", model="m"))
