"""ollama driver specifics beyond the contract: translation both ways, image fetching, ids, counters, stream lines."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from turnout.config import ProviderSpec
from turnout.drivers.base import CallContext
from turnout.drivers.ollama import OllamaDriver, call_id
from turnout.errors import BadRequest, ErrorClass, ProviderError
from turnout.testing import OllamaFake, ToolCall, reply_json, reply_raw
from turnout.types import ChatChunk, ChatRequest, Usage

PNG = b"\x89PNG\r\n\x1a\nfake-image-bytes"


@pytest.fixture
async def fake() -> AsyncIterator[OllamaFake]:
    async with OllamaFake() as upstream:
        yield upstream


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def driver(url: str, **options: Any) -> OllamaDriver:
    options.setdefault("image_urls", "any")  # the fake serves images over loopback http
    return OllamaDriver(ProviderSpec(name="local", driver="ollama", base_url=url, options=options))


def ctx(session: aiohttp.ClientSession) -> CallContext:
    return CallContext(session=session, model="llama-test", attempt_timeout=5)


def chat(messages: list[dict[str, Any]], **params: Any) -> ChatRequest:
    return ChatRequest.create(model="route", messages=messages, **params)


async def collect(d: OllamaDriver, req: ChatRequest, c: CallContext) -> list[ChatChunk]:
    return [chunk async for chunk in d.stream(req, c)]


async def test_request_translation(fake: OllamaFake, session: aiohttp.ClientSession) -> None:
    """Roles, text parts, sampling options, stop and max tokens map onto /api/chat fields."""
    fake.script("chat", fake.text("ok"))
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "Be"}, {"type": "text", "text": "brief"}]},
        {"role": "user", "content": "hi"},
    ]
    req = chat(messages, temperature=0.2, top_p=0.5, seed=3, stop="END", max_completion_tokens=9)
    await driver(fake.url, options={"num_ctx": 4096}).send(req, ctx(session))
    body = fake.last.json
    assert body["messages"] == [{"role": "system", "content": "Be\nbrief"}, {"role": "user", "content": "hi"}]
    assert body["options"] == {"num_ctx": 4096, "temperature": 0.2, "top_p": 0.5, "seed": 3, "num_predict": 9,
                               "stop": ["END"]}  # fmt: skip
    assert body["stream"] is False


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "json_object"}, "json"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}, {"type": "object"}),
    ],
)
async def test_response_format(
    fake: OllamaFake, session: aiohttp.ClientSession, response_format: dict, expected: Any
) -> None:
    """JSON mode becomes format "json"; a JSON schema is passed as the format."""
    fake.script("chat", fake.text("{}"))
    await driver(fake.url).send(chat([{"role": "user", "content": "x"}], response_format=response_format), ctx(session))
    assert fake.last.json["format"] == expected


async def test_https_image_is_fetched_and_inlined(fake: OllamaFake, session: aiohttp.ClientSession) -> None:
    """An image URL is downloaded through the shared session and sent as bare base64."""
    fake.script("/img.png", reply_raw(PNG, content_type="image/png"))
    fake.script("chat", fake.text("a picture"))
    parts = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": f"{fake.url}/img.png"}}]
    await driver(fake.url).send(chat([{"role": "user", "content": parts}]), ctx(session))
    assert fake.last.json["messages"][0]["images"] == [base64.b64encode(PNG).decode()]


async def test_image_fetch_failure_is_bad_request(fake: OllamaFake, session: aiohttp.ClientSession) -> None:
    """An image URL that cannot be fetched is the client's problem (bad_request), and nothing is sent."""
    parts = [{"type": "image_url", "image_url": {"url": f"{fake.url}/missing.png"}}]
    with pytest.raises(BadRequest, match="could not fetch the image"):
        await driver(fake.url).send(chat([{"role": "user", "content": parts}]), ctx(session))
    assert fake.requests_to("chat") == []


async def test_tool_round_trip_translation(fake: OllamaFake, session: aiohttp.ClientSession) -> None:
    """Assistant tool-call arguments become objects; tool results carry the tool name found by call id."""
    fake.script("chat", fake.text("ok"))
    messages = [
        {"role": "user", "content": "time and weather"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\": \"UTC\"}"}},
            {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "b", "content": "sunny"},
        {"role": "tool", "tool_call_id": "a", "content": "noon"},
    ]  # fmt: skip
    await driver(fake.url).send(chat(messages), ctx(session))
    sent = fake.last.json["messages"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == {"tz": "UTC"}
    assert sent[1]["tool_calls"][1]["function"]["arguments"] == {}
    assert [(m["tool_name"], m["content"]) for m in sent[2:]] == [("get_weather", "sunny"), ("get_time", "noon")]


async def test_invalid_tool_arguments_are_bad_request(fake: OllamaFake, session: aiohttp.ClientSession) -> None:
    """Tool-call arguments that are not JSON cannot become an object: bad_request before sending."""
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
    ]  # fmt: skip
    with pytest.raises(BadRequest):
        await driver(fake.url).send(chat(messages), ctx(session))


async def test_response_ids_finish_and_reasoning(fake: OllamaFake, session: aiohttp.ClientSession) -> None:
    """Tool calls get stable synthesised ids and finish tool_calls; thinking becomes reasoning_content."""
    body = fake.done(Usage(5, 2), tool_calls=[{"function": {"name": "f", "arguments": {"x": 1}}}], thinking="hmm")
    fake.script("chat", reply_json(body), reply_json(body))
    first = await driver(fake.url).send(chat([{"role": "user", "content": "x"}]), ctx(session))
    second = await driver(fake.url).send(chat([{"role": "user", "content": "x"}]), ctx(session))
    assert first.tool_calls[0]["id"] == second.tool_calls[0]["id"] == call_id(0, "f", {"x": 1})
    assert first.finish_reason == "tool_calls"
    assert first.message["reasoning_content"] == "hmm" and first.message["content"] is None


@pytest.mark.parametrize(
    ("counters", "expected"),
    [
        ({"prompt_eval_count": 7, "eval_count": 3}, Usage(7, 3)),
        ({"eval_count": 3}, Usage(0, 3)),
        ({}, Usage.UNKNOWN),
    ],
)
async def test_usage_counters(
    fake: OllamaFake, session: aiohttp.ClientSession, counters: dict, expected: Usage
) -> None:
    """A missing prompt_eval_count is 0 (cached prompt); a missing eval_count means usage unknown."""
    body = {**fake.done(None, content="x"), **counters}
    fake.script("chat", reply_json(body))
    response = await driver(fake.url).send(chat([{"role": "user", "content": "x"}]), ctx(session))
    assert response.usage == expected


async def test_stream_shapes(fake: OllamaFake, session: aiohttp.ClientSession) -> None:
    """The first chunk has the role, tool calls carry index and id, and the stream ends with finish + usage."""
    fake.script("chat", fake.stream_tool_calls([ToolCall("f", {"a": 1}), ToolCall("g", {})], usage=Usage(4, 6)))
    chunks = await collect(driver(fake.url), chat([{"role": "user", "content": "x"}], stream=True), ctx(session))
    assert chunks[0].delta["role"] == "assistant"
    calls = [call for c in chunks for call in c.tool_calls]
    assert [(c["index"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        (0, "f", {"a": 1}),
        (1, "g", {}),
    ]
    assert chunks[-1].usage == Usage(4, 6) and chunks[-1].finish_reason == "tool_calls" and chunks[-1].usage_only


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model 'x' not found", ErrorClass.NOT_FOUND),
        ("server busy, please try again", ErrorClass.OVERLOADED),
        ("the input length exceeds the context length", ErrorClass.CONTEXT_WINDOW),
        ("unexpected EOF", ErrorClass.SERVER_ERROR),
    ],
)
async def test_stream_error_line(
    fake: OllamaFake, session: aiohttp.ClientSession, text: str, expected: ErrorClass
) -> None:
    """An {"error"} line after the 200 is classified by its text."""
    fake.script("chat", fake.stream_error(["partial"], ErrorClass.SERVER_ERROR, message=text))
    with pytest.raises(ProviderError) as info:
        await collect(driver(fake.url), chat([{"role": "user", "content": "x"}], stream=True), ctx(session))
    assert info.value.error_class is expected and info.value.after_first_token


def test_options_checked() -> None:
    """Unknown ollama options are rejected at construction."""
    with pytest.raises(ValueError, match="keepalive"):
        driver("http://127.0.0.1:1", keepalive="5m")


async def test_image_urls_are_policed_by_default(fake: OllamaFake, session: aiohttp.ClientSession) -> None:
    """Without `image_urls: any`, a client's URL pointing at a loopback host is refused, nothing is fetched or sent."""
    parts = [{"type": "image_url", "image_url": {"url": f"{fake.url}/img.png"}}]
    spec = ProviderSpec(name="local", driver="ollama", base_url=fake.url)
    with pytest.raises(BadRequest, match="image URL must be https"):
        await OllamaDriver(spec).send(chat([{"role": "user", "content": parts}]), ctx(session))
    assert fake.requests == []
