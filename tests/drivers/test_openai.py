"""openai/azure driver specifics beyond the contract: body rewriting, usage details, stream quirks, Azure URLs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from turnout.config import ProviderSpec, Secret
from turnout.drivers.base import CallContext
from turnout.drivers.openai import AzureOpenAIDriver, OpenAIDriver
from turnout.errors import BadRequest, ErrorClass, ProviderError
from turnout.testing import OpenAIFake, reply_json, reply_sse, sse_frame
from turnout.types import ChatRequest, Usage


@pytest.fixture
async def fake() -> AsyncIterator[OpenAIFake]:
    async with OpenAIFake() as upstream:
        yield upstream


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def driver(url: str, **options: Any) -> OpenAIDriver:
    return OpenAIDriver(
        ProviderSpec(name="oa", driver="openai", base_url=f"{url}/v1", api_key=Secret("sk-x"), options=options)
    )


def ctx(session: aiohttp.ClientSession, **fields: Any) -> CallContext:
    return CallContext(session=session, model="gpt-test", attempt_timeout=5, **fields)


def request(**params: Any) -> ChatRequest:
    return ChatRequest.create(model="route", messages=[{"role": "user", "content": "hi"}], **params)


async def test_max_tokens_param_renames(fake: OpenAIFake, session: aiohttp.ClientSession) -> None:
    """The model option max_tokens_param renames the client's field in either direction."""
    fake.default("chat", fake.text("ok"))
    d = driver(fake.url)
    await d.send(request(max_tokens=5), ctx(session, model_options={"max_tokens_param": "max_completion_tokens"}))
    assert fake.last.json["max_completion_tokens"] == 5 and "max_tokens" not in fake.last.json
    await d.send(request(max_completion_tokens=6), ctx(session, model_options={"max_tokens_param": "max_tokens"}))
    assert fake.last.json["max_tokens"] == 6 and "max_completion_tokens" not in fake.last.json
    await d.send(request(max_tokens=7), ctx(session))
    assert fake.last.json["max_tokens"] == 7


async def test_stream_options_merge_and_send_strips_stream(fake: OpenAIFake, session: aiohttp.ClientSession) -> None:
    """Streaming forces include_usage while keeping the client's other stream options; send drops stream fields."""
    fake.script("chat", fake.stream_text(["a"]), fake.text("ok"))
    req = request(stream=True, stream_options={"include_obfuscation": False})
    async for _ in driver(fake.url).stream(req, ctx(session)):
        pass
    assert fake.last.json["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert fake.last.json["stream"] is True
    await driver(fake.url).send(req, ctx(session))
    assert "stream" not in fake.last.json and "stream_options" not in fake.last.json


async def test_response_keeps_choices_and_extra(fake: OpenAIFake, session: aiohttp.ClientSession) -> None:
    """choices are kept as sent, other top-level fields land in extra, usage details are normalised."""
    body = fake.completion({"role": "assistant", "content": "x", "annotations": []}, finish_reason="stop", usage=None)
    body["usage"] = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 10},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    body["service_tier"] = "default"
    fake.script("chat", reply_json(body))
    response = await driver(fake.url).send(request(), ctx(session))
    assert response.choices[0]["message"]["annotations"] == []
    assert response.extra["service_tier"] == "default" and response.extra["system_fingerprint"] == "fp_fake"
    assert response.usage == Usage(100, 40, cached_tokens=60, cache_write_tokens=10, reasoning_tokens=30)
    assert response.to_openai()["service_tier"] == "default"


async def test_stream_forwards_exact_bytes(fake: OpenAIFake, session: aiohttp.ClientSession) -> None:
    """Each streamed chunk's raw bytes are exactly the upstream's data payload."""
    head = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    payload = head + b'[{"index":0,"delta":{"content":"\\u00fc x"},"finish_reason":null}]}'
    finish = head + b'[{"index":0,"delta":{},"finish_reason":"stop"}]}'
    fake.script("chat", reply_sse([sse_frame(payload), sse_frame(finish), b"data: [DONE]\n\n"]))
    chunks = [c async for c in driver(fake.url).stream(request(stream=True), ctx(session))]
    assert [c.raw for c in chunks] == [payload, finish]
    assert chunks[0].content == "ü x" and chunks[0].is_content
    assert chunks[-1].usage == Usage.UNKNOWN and chunks[-1].finish_reason == "stop"


async def test_stream_eof_after_finish_is_accepted(fake: OpenAIFake, session: aiohttp.ClientSession) -> None:
    """A stream missing [DONE] after its finish reason is complete (usage as reported, else unknown)."""
    frames = [fake.chunk({"content": "done"}), fake.chunk({}, "stop")]
    fake.script("chat", reply_sse(frames))
    chunks = [c async for c in driver(fake.url).stream(request(stream=True), ctx(session))]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == Usage.UNKNOWN


async def test_azure_prompt_filter_chunk_skipped(session: aiohttp.ClientSession) -> None:
    """Azure's empty-choices prompt-filter chunk is not passed on."""
    async with OpenAIFake(flavor="azure") as fake:
        fake.script("chat", fake.stream_text(["hi"]))
        spec = ProviderSpec(
            name="az", driver="azure", base_url=fake.url, api_key=Secret("k"), options={"api_version": "2024-10-21"}
        )
        chunks = [c async for c in AzureOpenAIDriver(spec).stream(request(stream=True), ctx(session))]
    assert all(c.data.get("model") for c in chunks)
    assert "".join(c.content or "" for c in chunks) == "hi"


async def test_usage_on_content_chunk_and_groq_location(fake: OpenAIFake, session: aiohttp.ClientSession) -> None:
    """Usage is found wherever it arrives: on a content chunk (xAI) or under x_groq."""
    data = json.loads(fake.chunk({"content": "x"}, "stop")[6:])
    data["usage"] = {"prompt_tokens": 3, "completion_tokens": 1}
    fake.script("chat", reply_sse([sse_frame(json.dumps(data)), b"data: [DONE]\n\n"]))
    chunks = [c async for c in driver(fake.url).stream(request(stream=True), ctx(session))]
    assert chunks[-1].usage == Usage(3, 1) and chunks[-1].content == "x"
    async with OpenAIFake(flavor="groq") as groq:
        groq.script("chat", groq.stream_text(["y"], usage=Usage(4, 2)))
        chunks = [c async for c in driver(groq.url).stream(request(stream=True), ctx(session))]
    assert chunks[-1].usage == Usage(4, 2) and not chunks[-1].usage_only


async def test_stream_error_event_classes(fake: OpenAIFake, session: aiohttp.ClientSession) -> None:
    """An in-stream error event is classified from its code (no HTTP status on the error)."""
    fake.script("chat", fake.stream_error(["a"], ErrorClass.RATE_LIMIT))
    with pytest.raises(ProviderError) as info:
        async for _ in driver(fake.url).stream(request(stream=True), ctx(session)):
            pass
    assert info.value.error_class is ErrorClass.RATE_LIMIT and info.value.status is None


async def test_error_body_with_200(fake: OpenAIFake, session: aiohttp.ClientSession) -> None:
    """A 200 whose body is an error object is classified, not returned as an answer."""
    fake.script("chat", reply_json({"error": {"message": "The server is overloaded", "type": "server_error"}}))
    with pytest.raises(ProviderError) as info:
        await driver(fake.url).send(request(), ctx(session))
    assert info.value.error_class is ErrorClass.OVERLOADED


async def test_prefix_is_refused(fake: OpenAIFake, session: aiohttp.ClientSession) -> None:
    """The openai driver has no prefill; a continuation request is refused before sending."""
    with pytest.raises(BadRequest):
        await driver(fake.url).send(request().with_prefix("Hel"), ctx(session))
    assert fake.requests == []


async def test_azure_v1_and_bearer(session: aiohttp.ClientSession) -> None:
    """Azure's v1 API uses /openai/v1 without api-version; auth: bearer sends a Bearer token."""
    async with OpenAIFake(flavor="azure") as fake:
        fake.default("chat", fake.text("ok"))
        spec = ProviderSpec(
            name="az", driver="azure", base_url=fake.url, api_key=Secret("tok"), options={"v1": True, "auth": "bearer"}
        )
        await AzureOpenAIDriver(spec).send(request(), ctx(session))
    assert fake.last.path == "/openai/v1/chat/completions" and fake.last.query == {}
    assert fake.last.header("authorization") == "Bearer tok" and fake.last.header("api-key") is None


@pytest.mark.parametrize(
    ("base_url", "options", "message"),
    [
        ("https://x.openai.azure.com", {}, "api_version is required"),
        (None, {"api_version": "2024-10-21"}, "base_url is required"),
        ("https://x.openai.azure.com", {"api_version": ""}, "options.api_version"),
        ("https://x.openai.azure.com", {"v1": True, "deployment": "x"}, "Additional properties"),
    ],
)
def test_azure_options_checked(base_url: str | None, options: dict, message: str) -> None:
    """Azure's construction validates base_url and options with specific messages."""
    with pytest.raises(ValueError, match=message):
        AzureOpenAIDriver(ProviderSpec(name="az", driver="azure", base_url=base_url, options=options))


def test_openai_options_checked() -> None:
    """Unknown openai options are rejected at construction; the key never appears in the message."""
    with pytest.raises(ValueError, match="options") as info:
        OpenAIDriver(ProviderSpec(name="oa", driver="openai", api_key=Secret("sk-x"), options={"orgnization": "o"}))
    assert "sk-x" not in str(info.value)
