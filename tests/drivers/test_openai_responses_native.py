"""The openai driver's Responses pass-through, against the strict Responses fake: which deployments serve the API
natively (OpenAI by default, `responses: true` elsewhere, per provider or model, Azure's URLs), what goes upstream
(the client's body with only model and stream set), what comes back (the Response and its events untouched), and
how failures are classified."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from turnout import Router
from turnout.config import ProviderSpec, Secret
from turnout.drivers.base import CallContext
from turnout.drivers.openai import CHAT_ONLY, RESPONSES, AzureOpenAIDriver, OpenAIDriver
from turnout.drivers.openai_responses.request import responses_request
from turnout.errors import ErrorClass, ProviderError
from turnout.testing import Framing, OpenAIFake, cut_body
from turnout.types import ChatRequest, Usage


@pytest.fixture
async def fake() -> AsyncIterator[OpenAIFake]:
    async with OpenAIFake() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def driver(base_url: str | None, **options) -> OpenAIDriver:
    spec = ProviderSpec(name="oai", driver="openai", base_url=base_url, api_key=Secret("sk-secret"), options=options)
    return OpenAIDriver(spec)


def ctx(session, **model_options) -> CallContext:
    return CallContext(session=session, model="gpt-test", attempt_timeout=10.0, model_options=model_options)


def request(**fields) -> ChatRequest:
    return responses_request({"model": "route", "input": "Hi", **fields})


@pytest.mark.parametrize(
    ("base_url", "options", "model_options", "native"),
    [
        (None, {}, {}, True),
        ("https://api.openai.com/v1", {}, {}, True),
        ("https://api.x.ai/v1", {}, {}, False),
        ("https://api.x.ai/v1", {"responses": True}, {}, True),
        ("http://127.0.0.1:8000/v1", {}, {"responses": True}, True),
        ("https://api.openai.com/v1", {}, {"responses": False}, False),
    ],
)
def test_which_deployments_serve_the_responses_api(base_url, options, model_options, native):
    """OpenAI itself serves it by default; another server when the provider says so; a model overrides both."""
    formats = driver(base_url, **options).native_formats_for(model_options)
    assert (formats == RESPONSES) is native


def test_a_model_declaring_responses_support_is_compiled_with_it():
    """The compiled deployment carries the per-model answer (what the dispatcher's `unfit` checks)."""
    router = Router.from_yaml(
        """
version: 1
providers:
  compat: {driver: openai, base_url: "http://127.0.0.1:9/v1", api_key: k}
models:
  plain: {provider: compat}
  modern: {provider: compat, options: {responses: true}}
routes:
  r: {chain: [plain, modern]}
"""
    )
    deployments = {d.model: d.native_formats for step in router.graph.routes["r"].steps for d in step.deployments}
    assert deployments == {"plain": CHAT_ONLY, "modern": RESPONSES}


async def test_a_native_request_goes_to_responses_as_written(fake, session):
    """POST /v1/responses with Bearer auth: the client's body with model replaced, turnout's keys and (without a
    stream) stream_options removed; the answer's body is kept as `native`."""
    fake.script("responses", fake.response_text("Hello.", usage=Usage(6, 2)))
    client_body = {"input": "Hi", "store": False, "include": ["reasoning.encrypted_content"], "stream_options": {}}
    chat = request(**client_body, turnout_continues={"id": "resp_0"})
    answer = await driver(f"{fake.url}/v1", responses=True).send(chat, ctx(session))
    sent = fake.last
    assert (sent.path, sent.header("authorization")) == ("/v1/responses", "Bearer sk-secret")
    assert sent.json == {"model": "gpt-test", "input": "Hi", "store": False, "include": ["reasoning.encrypted_content"]}
    assert fake.refused == []
    assert answer.native["output"][0]["content"][0]["text"] == "Hello."
    assert (answer.text, answer.usage, answer.finish_reason) == ("Hello.", Usage(6, 2), "stop")


async def test_a_chat_request_and_a_deployment_without_responses_use_chat_completions(fake, session):
    """A chat request never goes to /responses; a Responses request to a deployment that does not serve the API is
    the canonical translation on /chat/completions."""
    fake.script("chat", fake.text("one"), fake.text("two"))
    native = driver(f"{fake.url}/v1", responses=True)
    await native.send(ChatRequest.create(model="route", messages=[{"role": "user", "content": "Hi"}]), ctx(session))
    await driver(f"{fake.url}/v1").send(request(instructions="Brief."), ctx(session))
    assert [r.endpoint for r in fake.requests] == ["chat", "chat"]
    assert fake.last.json["messages"] == [{"role": "system", "content": "Brief."}, {"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("framing", [Framing(), Framing(split_every=7), Framing(comments=True)])
async def test_a_native_stream_carries_the_upstream_events_byte_for_byte(fake, session, framing):
    """Every upstream event reaches the chunks' frames in order (lines split across reads, keep-alive comments
    skipped); the last chunk carries usage and the finish reason."""
    frames = fake.response_events(["Par", "is"], reasoning="Capital cities.")
    fake.script("responses", fake.stream_response_text(["Par", "is"], reasoning="Capital cities.", framing=framing))
    chunks = [c async for c in driver(f"{fake.url}/v1", responses=True).stream(request(stream=True), ctx(session))]
    assert fake.last.json == {"model": "gpt-test", "input": "Hi", "stream": True}
    data = b"".join(c.native.data for c in chunks)
    assert data.replace(b"resp_fake0002", b"resp_fake0001") == b"".join(frames)
    assert "".join(c.content for c in chunks if c.is_content) == "Paris"
    assert chunks[-1].usage == Usage(12, 5) and chunks[-1].finish_reason == "stop"


@pytest.mark.parametrize(
    ("behaviour", "error_class", "after", "streamed"),
    [
        (lambda f: f.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "2"}), ErrorClass.RATE_LIMIT, False, True),
        (lambda f: f.error(ErrorClass.AUTH), ErrorClass.AUTH, False, True),
        (lambda f: f.stream_response_failed([], ErrorClass.QUOTA_EXCEEDED), ErrorClass.QUOTA_EXCEEDED, False, True),
        (lambda f: f.stream_response_failed(["x"], ErrorClass.SERVER_ERROR), ErrorClass.SERVER_ERROR, True, True),
        (lambda f: f.stream_response_cut(["x"]), ErrorClass.CONNECTION, True, True),
        (lambda f: f.response_failed(ErrorClass.RATE_LIMIT), ErrorClass.RATE_LIMIT, False, False),
    ],
)
async def test_native_failures_are_classified(fake, session, behaviour, error_class, after, streamed):
    """HTTP errors, failed Responses (streamed or not) and cut streams raise their class, marked after the first
    token only when content came first; a 429's Retry-After is kept."""
    fake.script("responses", behaviour(fake))
    native = driver(f"{fake.url}/v1", responses=True)

    async def call() -> None:
        if not streamed:
            await native.send(request(), ctx(session))
            return
        async for _ in native.stream(request(stream=True), ctx(session)):
            pass

    with pytest.raises(ProviderError) as info:
        await call()
    assert info.value.error_class is error_class
    assert info.value.after_first_token is after
    if info.value.status == 429:
        assert info.value.retry_after == 2


async def test_a_half_sent_answer_is_a_retryable_failure(fake, session):
    """A Response body cut halfway is a connection/protocol failure (fail-over-able), never a partial success."""
    fake.script("responses", cut_body(fake.response_text("A long answer " * 20)))
    with pytest.raises(ProviderError) as info:
        await driver(f"{fake.url}/v1", responses=True).send(request(), ctx(session))
    assert info.value.error_class in (ErrorClass.CONNECTION, ErrorClass.PROTOCOL)


@pytest.mark.parametrize(
    ("options", "path", "query"),
    [
        ({"v1": True, "responses": True}, "/openai/v1/responses", {}),
        (
            {"api_version": "2025-04-01-preview", "responses": True},
            "/openai/responses",
            {"api-version": "2025-04-01-preview"},
        ),
    ],
)
async def test_azure_serves_responses_on_its_own_urls(fake, session, options, path, query):
    """Azure's v1 API and its api-version API each have their Responses URL; the resource must say it serves it."""
    spec = ProviderSpec(name="az", driver="azure", base_url=fake.url, api_key=Secret("az"), options=options)
    azure = AzureOpenAIDriver(spec)
    assert azure.native_formats_for({}) == RESPONSES
    fake.script("responses", fake.response_text("ok"))
    await azure.send(request(), CallContext(session=session, model="my-deployment", attempt_timeout=10.0))
    assert (fake.last.path, dict(fake.last.query), fake.last.header("api-key")) == (path, query, "az")
    no = AzureOpenAIDriver(ProviderSpec(name="az", driver="azure", base_url=fake.url, options={"v1": True}))
    assert no.native_formats_for({}) == CHAT_ONLY
