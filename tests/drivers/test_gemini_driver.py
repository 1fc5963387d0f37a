"""The gemini driver over loopback: URLs, auth, image fetching, blocked prompts, RetryInfo, tool round trips."""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest

from turnout.config import ProviderSpec, Secret
from turnout.drivers._images import refusal
from turnout.drivers.base import CallContext
from turnout.drivers.gemini import GeminiDriver
from turnout.errors import BadRequest, ContentPolicyError, ErrorClass, ProviderError
from turnout.testing import GeminiFake, ToolCall, reply_json, reply_raw
from turnout.types import ChatRequest

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.fixture
async def fake():
    async with GeminiFake() as upstream:
        yield upstream


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


def driver(base_url: str, **options) -> GeminiDriver:
    spec = ProviderSpec(name="gem", driver="gemini", base_url=base_url, api_key=Secret("AIza-secret"), options=options)
    return GeminiDriver(spec)


def ctx(session, model="gemini-test") -> CallContext:
    return CallContext(session=session, model=model, attempt_timeout=5.0)


def ask(content, **params) -> ChatRequest:
    return ChatRequest.create(model="route", messages=[{"role": "user", "content": content}], **params)


async def test_urls_and_auth(fake, session):
    """generateContent and streamGenerateContent?alt=sse under /v1beta, x-goog-api-key, models/ prefix stripped."""
    fake.script("chat", fake.text("ok"), fake.stream_text(["ok"]))
    gemini = driver(fake.url)
    await gemini.send(ask("hi"), ctx(session, model="models/gemini-test"))
    assert fake.last.path == "/v1beta/models/gemini-test:generateContent"
    assert fake.last.header("x-goog-api-key") == "AIza-secret"
    assert "key" not in fake.last.query
    assert [c async for c in gemini.stream(ask("hi", stream=True), ctx(session))]
    assert fake.last.path == "/v1beta/models/gemini-test:streamGenerateContent"
    assert fake.last.query == {"alt": "sse"}


async def test_api_version_option_and_versioned_base_url(fake, session):
    """api_version picks the path segment; a base_url already ending in a version is used as is."""
    fake.default("chat", fake.text("ok"))
    await driver(fake.url, api_version="v1").send(ask("hi"), ctx(session))
    assert fake.last.path == "/v1/models/gemini-test:generateContent"
    await driver(f"{fake.url}/v1beta/").send(ask("hi"), ctx(session))
    assert fake.last.path == "/v1beta/models/gemini-test:generateContent"


def test_bad_options_are_refused():
    """Unknown or invalid options raise ValueError naming the option."""
    with pytest.raises(ValueError, match=r"options\.api_version"):
        driver("http://127.0.0.1:9", api_version="beta 1")
    with pytest.raises(ValueError, match="region"):
        driver("http://127.0.0.1:9", region="eu")


async def test_image_urls_are_fetched_and_inlined(fake, session):
    """An http(s) image is fetched once through the shared session and sent as inlineData."""
    fake.default("/cat.png", reply_raw(PNG, content_type="image/png"))
    fake.script("chat", fake.text("a cat"))
    url = f"{fake.url}/cat.png"
    parts = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}]
    gemini = driver(fake.url, image_urls="any")
    response = await gemini.send(ask([*parts, {"type": "image_url", "image_url": url}]), ctx(session))
    assert response.text == "a cat"
    assert len(fake.requests_to("/cat.png")) == 1
    inline = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    assert fake.last.json["contents"][0]["parts"] == [{"text": "what?"}, inline, inline]


@pytest.mark.parametrize(
    ("behaviour", "options", "match"),
    [
        (reply_raw(b"nope", status=404, content_type="text/plain"), {"image_urls": "any"}, "could not fetch"),
        (reply_raw(b"<html/>", content_type="text/html"), {"image_urls": "any"}, "could not fetch"),
        (reply_raw(PNG, content_type="image/png"), {"image_urls": "any", "max_image_bytes": 10}, "at most 10 bytes"),
        (reply_raw(PNG, content_type="image/png"), {}, "must be https"),
        (reply_raw(PNG, content_type="image/png"), {"image_urls": "off"}, "disabled"),
        (reply_raw(b"", status=302, headers={"Location": "/x.png"}), {"image_urls": "any"}, "could not fetch"),
    ],
)
async def test_unusable_images_are_bad_requests(fake, session, behaviour, options, match):
    """A missing, non-image, oversized, forbidden or endlessly redirecting image URL is refused; nothing is sent.

    What depends on the network is answered with one generic message; only what the URL's text decides is named."""
    fake.default("/x.png", behaviour)
    parts = [{"type": "image_url", "image_url": {"url": f"{fake.url}/x.png"}}]
    with pytest.raises(BadRequest, match=match):
        await driver(fake.url, **options).send(ask(parts), ctx(session))
    assert fake.requests_to("chat") == []


async def test_redirects_are_followed_and_policed(fake, session):
    """A redirect is followed to the image; a redirect to a host the policy forbids is refused before fetching it."""
    fake.default("/moved.png", reply_raw(b"", status=301, headers={"Location": "/cat.png"}))
    fake.default("/cat.png", reply_raw(PNG, content_type="image/png"))
    fake.script("chat", fake.text("a cat"))
    parts = [{"type": "image_url", "image_url": {"url": f"{fake.url}/moved.png"}}]
    await driver(fake.url, image_urls="any").send(ask(parts), ctx(session))
    assert fake.last.json["contents"][0]["parts"][0]["inlineData"]["data"] == base64.b64encode(PNG).decode()
    assert refusal("https://cdn.example.com/a.png", "public") is None
    for url in ("https://localhost/a.png", "https://127.0.0.1/a.png", "https://10.0.0.8/a", "https://[::1]/a"):
        assert refusal(url, "public"), url
    assert refusal("https://169.254.169.254/latest/meta-data", "public")
    assert refusal("ftp://example.com/a.png", "any")


async def test_blocked_prompt_is_content_policy(fake, session):
    """HTTP 200 with promptFeedback.blockReason and no candidates is a content_policy error, streamed or not."""
    fake.script("chat", fake.blocked("PROHIBITED_CONTENT"))
    with pytest.raises(ContentPolicyError) as info:
        await driver(fake.url).send(ask("bad"), ctx(session))
    assert info.value.code == "PROHIBITED_CONTENT"
    sse = b'data: {"promptFeedback": {"blockReason": "SAFETY"}}\n\n'
    fake.script("chat", reply_raw(sse, content_type="text/event-stream"))
    with pytest.raises(ContentPolicyError):
        [c async for c in driver(fake.url).stream(ask("bad", stream=True), ctx(session))]


async def test_retry_info_and_daily_quota(fake, session):
    """RetryInfo's retryDelay becomes retry_after; a per-day quota violation is quota_exceeded."""
    fake.script("chat", fake.error(ErrorClass.RATE_LIMIT, retry_delay="15s"), fake.error(ErrorClass.QUOTA_EXCEEDED))
    with pytest.raises(ProviderError) as info:
        await driver(fake.url).send(ask("hi"), ctx(session))
    assert (info.value.error_class, info.value.retry_after, info.value.code) == (
        ErrorClass.RATE_LIMIT,
        15.0,
        "RESOURCE_EXHAUSTED",
    )
    with pytest.raises(ProviderError) as info:
        await driver(fake.url).send(ask("hi"), ctx(session))
    assert info.value.error_class is ErrorClass.QUOTA_EXCEEDED


async def test_tool_round_trip_carries_ids_names_and_signatures(fake, session):
    """Synthesised ids and thought signatures from one answer come back as named functionResponse turns."""
    answer = fake.response(
        [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnMQ=="},
            {"functionCall": {"name": "get_time", "args": {}}},
        ],
        finish="STOP",
        usage=None,
    )
    fake.script("chat", reply_json(answer), fake.text("Sunny at noon."))
    gemini = driver(fake.url)
    first = await gemini.send(ask("weather and time?", tools=TOOLS), ctx(session))
    assert first.finish_reason == "tool_calls"
    message = dict(first.message)
    results = [
        {"role": "tool", "tool_call_id": c["id"], "content": f"result {i}"} for i, c in enumerate(first.tool_calls)
    ]
    follow_up = ChatRequest.create(
        model="route",
        messages=[{"role": "user", "content": "weather and time?"}, message, *results],
        tools=TOOLS,
    )
    second = await gemini.send(follow_up, ctx(session))
    assert second.text == "Sunny at noon."
    contents = fake.last.json["contents"]
    assert contents[1]["parts"][0] == {
        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
        "thoughtSignature": "c2lnMQ==",
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": "result 0"}}},
            {"functionResponse": {"name": "get_time", "response": {"output": "result 1"}}},
        ],
    }


async def test_stream_tool_calls_and_usage(fake, session):
    """Streamed function calls come whole with ids, and the final chunk has the last usageMetadata."""
    fake.script("chat", fake.stream_tool_calls([ToolCall("get_weather", {"city": "Rome"})]))
    chunks = [c async for c in driver(fake.url).stream(ask("w?", tools=TOOLS, stream=True), ctx(session))]
    calls = [call for c in chunks for call in c.tool_calls]
    assert calls[0]["id"].startswith("call_0_")
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Rome"}
    assert chunks[-1].usage.prompt_tokens == 12
    assert chunks[-1].finish_reason == "tool_calls"


async def test_list_models_strips_prefix_and_pages(fake, session):
    """GET /v1beta/models follows nextPageToken and strips `models/` from ids."""
    page1 = {"models": [{"name": "models/gemini-a", "inputTokenLimit": 1048576}], "nextPageToken": "t2"}
    page2 = {"models": [{"name": "models/gemini-b"}]}
    fake.script("models", reply_json(page1), reply_json(page2))
    models = await driver(fake.url).list_models(ctx(session))
    assert [(m.id, m.context_window) for m in models] == [("gemini-a", 1048576), ("gemini-b", None)]
    assert fake.requests[1].query == {"pageSize": "1000", "pageToken": "t2"}
    assert fake.last.path == "/v1beta/models"


async def test_prefill_is_refused_and_not_a_capability(fake, session):
    """Gemini declares no prefill and refuses a continuation prefix before sending."""
    gemini = driver(fake.url)
    assert "prefill" not in gemini.capabilities
    with pytest.raises(BadRequest):
        await gemini.send(ask("x").with_prefix("abc"), ctx(session))
    assert fake.requests == []
