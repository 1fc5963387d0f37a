"""The anthropic driver over loopback: headers, URLs, options, max_tokens defaults, paging and Anthropic-only errors."""

from __future__ import annotations

import aiohttp
import pytest

from turnout.config import ProviderSpec, Secret
from turnout.drivers.anthropic import AnthropicDriver
from turnout.drivers.base import CallContext
from turnout.errors import BadRequest, ErrorClass, ProviderError
from turnout.testing import AnthropicFake, reply_json, reply_raw
from turnout.types import ChatRequest


@pytest.fixture
async def fake():
    async with AnthropicFake() as upstream:
        yield upstream


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


def driver(base_url: str, **options) -> AnthropicDriver:
    headers = {"x-team": Secret("blue")}
    spec = ProviderSpec(
        name="anth", driver="anthropic", base_url=base_url, api_key=Secret("sk-ant-secret"), headers=headers,
        options=options,
    )  # fmt: skip
    return AnthropicDriver(spec)


def ctx(session, **model_options) -> CallContext:
    return CallContext(session=session, model="claude-test", attempt_timeout=5.0, model_options=model_options)


def hello(**params) -> ChatRequest:
    return ChatRequest.create(model="route", messages=[{"role": "user", "content": "hi"}], **params)


async def test_headers_and_url(fake, session):
    """POST /v1/messages with x-api-key, the default anthropic-version, joined betas and configured headers."""
    fake.script("chat", fake.text("ok"))
    await driver(fake.url, anthropic_beta=["a-1", "b-2"]).send(hello(), ctx(session))
    sent = fake.last
    assert sent.path == "/v1/messages"
    assert sent.header("x-api-key") == "sk-ant-secret"
    assert sent.header("anthropic-version") == "2023-06-01"
    assert sent.header("anthropic-beta") == "a-1,b-2"
    assert sent.header("x-team") == "blue"
    assert sent.header("authorization") is None
    assert sent.json["model"] == "claude-test"


async def test_bearer_auth_option(fake, session):
    """auth: bearer sends the key as Authorization: Bearer instead of x-api-key."""
    fake.script("chat", fake.text("ok"))
    await driver(fake.url, auth="bearer").send(hello(), ctx(session))
    assert fake.last.header("authorization") == "Bearer sk-ant-secret"
    assert fake.last.header("x-api-key") is None


async def test_version_option_and_base_url_with_v1(fake, session):
    """anthropic_version overrides the header; a base_url ending in /v1 is not doubled."""
    fake.script("chat", fake.text("ok"))
    await driver(f"{fake.url}/v1/", anthropic_version="2099-01-01").send(hello(), ctx(session))
    assert fake.last.path == "/v1/messages"
    assert fake.last.header("anthropic-version") == "2099-01-01"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"default_max_tokens": 0}, "options.default_max_tokens"),
        ({"anthropic_beta": 3}, "options.anthropic_beta"),
        ({"max_tokens": 10}, "max_tokens"),
    ],
)
def test_bad_options_are_refused_at_construction(options, match):
    """Invalid or unknown provider options raise ValueError naming the option, without any I/O."""
    with pytest.raises(ValueError, match=match):
        driver("http://127.0.0.1:9", **options)


async def test_max_tokens_defaults(fake, session):
    """max_tokens: request value, else model option, else provider option (default 4096)."""
    fake.default("chat", fake.text("ok"))
    await driver(fake.url).send(hello(), ctx(session))
    assert fake.last.json["max_tokens"] == 4096
    await driver(fake.url, default_max_tokens=512).send(hello(), ctx(session))
    assert fake.last.json["max_tokens"] == 512
    await driver(fake.url, default_max_tokens=512).send(hello(), ctx(session, max_output_tokens=8192))
    assert fake.last.json["max_tokens"] == 8192
    await driver(fake.url).send(hello(max_tokens=5), ctx(session, max_output_tokens=8192))
    assert fake.last.json["max_tokens"] == 5


async def test_unsupported_image_never_reaches_upstream(fake, session):
    """An unsupported image type is refused as bad_request before any request is sent."""
    parts = [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,SUkqAA=="}}]
    request = ChatRequest.create(model="r", messages=[{"role": "user", "content": parts}])
    with pytest.raises(BadRequest, match="image/tiff"):
        await driver(fake.url).send(request, ctx(session))
    assert fake.requests == []


async def test_overloaded_529_with_retry_after(fake, session):
    """HTTP 529 overloaded_error is classified overloaded and keeps Retry-After."""
    fake.script("chat", fake.error(ErrorClass.OVERLOADED, headers={"retry-after": "4"}))
    with pytest.raises(ProviderError) as info:
        await driver(fake.url).send(hello(), ctx(session))
    assert info.value.error_class is ErrorClass.OVERLOADED
    assert (info.value.status, info.value.retry_after, info.value.code) == (529, 4.0, "overloaded_error")


async def test_rate_limit_that_should_not_be_retried_is_quota(fake, session):
    """A 429 with `x-should-retry: false` is quota_exceeded: waiting will not help."""
    fake.script("chat", fake.error(ErrorClass.RATE_LIMIT, headers={"x-should-retry": "false", "retry-after": "60"}))
    with pytest.raises(ProviderError) as info:
        await driver(fake.url).send(hello(), ctx(session))
    assert info.value.error_class is ErrorClass.QUOTA_EXCEEDED


async def test_low_credit_balance_is_quota(fake, session):
    """The 400 'credit balance is too low' answer is quota_exceeded, not a bad request."""
    message = "Your credit balance is too low to access the Anthropic API."
    fake.script("chat", fake.error(ErrorClass.BAD_REQUEST, message=message))
    with pytest.raises(ProviderError) as info:
        await driver(fake.url).send(hello(), ctx(session))
    assert info.value.error_class is ErrorClass.QUOTA_EXCEEDED


async def test_request_too_large_from_the_edge_is_bad_request(fake, session):
    """A 413 answered by the edge proxy with a non-JSON body is a bad_request, not a retryable failure."""
    fake.script("chat", reply_raw(b"<html><body>413 Request Entity Too Large</body></html>", 413, "text/html"))
    with pytest.raises(BadRequest, match="too large") as info:
        await driver(fake.url).send(hello(), ctx(session))
    assert info.value.status == 413


async def test_list_models_follows_pages(fake, session):
    """GET /v1/models follows has_more/last_id pages and reads context windows."""
    page1 = {"data": [{"id": "claude-a", "max_input_tokens": 200000}], "has_more": True, "last_id": "claude-a"}
    page2 = {"data": [{"id": "claude-b"}], "has_more": False, "last_id": "claude-b"}
    fake.script("models", reply_json(page1), reply_json(page2))
    models = await driver(fake.url).list_models(ctx(session))
    assert [(m.id, m.context_window) for m in models] == [("claude-a", 200000), ("claude-b", None)]
    assert fake.requests[1].query == {"limit": "1000", "after_id": "claude-a"}
    assert fake.last.header("x-api-key") == "sk-ant-secret"


async def test_stream_request_body_and_prefill(fake, session):
    """A stream sends stream: true, and a continuation prefix as a final assistant message."""
    fake.script("chat", fake.stream_text(["3"]))
    request = hello(stream=True).with_prefix("1, 2, ")
    chunks = [c async for c in driver(fake.url).stream(request, ctx(session))]
    assert "".join(c.content or "" for c in chunks) == "3"
    assert fake.last.json["stream"] is True
    assert fake.last.json["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": "1, 2,"}]}
    assert "prefill" in driver(fake.url).capabilities
