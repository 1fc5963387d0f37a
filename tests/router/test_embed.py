"""`router.embed` through the one dispatch loop: failover between loopback fakes, breakers, limits, retries with
Retry-After, per-length and token-input fitness, vectors of the wrong length refused, pricing and events."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from turnout import AllUpstreamsFailed, ConfigError, InvalidRequest, ProviderError, RouteNotFound
from turnout.embeddings import EmbeddingRequest, as_floats
from turnout.errors import ErrorClass
from turnout.events import ResponseCompleted
from turnout.router.compile import compile_graph
from turnout.schema import load_text
from turnout.testing import GeminiFake, OllamaFake, OpenAIFake, expected_vector

TEXTS = ["alpha beta", "gamma"]


def close_to(actual: list[float], expected: list[float]) -> bool:
    return len(actual) == len(expected) and all(abs(a - b) < 1e-6 for a, b in zip(actual, expected, strict=True))


@pytest.fixture
async def openai_fake() -> AsyncIterator[OpenAIFake]:
    async with OpenAIFake(model="text-embedding-3-small") as fake:
        yield fake


@pytest.fixture
async def ollama_fake() -> AsyncIterator[OllamaFake]:
    async with OllamaFake(model="nomic") as fake:
        yield fake


@pytest.fixture
async def gemini_fake() -> AsyncIterator[GeminiFake]:
    async with GeminiFake(model="gemini-embedding-001") as fake:
        yield fake


def two_providers(
    openai_url: str,
    ollama_url: str,
    *,
    retry: int = 0,
    defaults: str = "",
    openai_extra: str = "",
    ollama_extra: str = "",
) -> str:
    """An embeddings route over an OpenAI fake (shortens from 8 down to 2) then an Ollama fake (8 only)."""
    return f"""
version: 1
defaults:
  retry: {{attempts: {retry}}}
{defaults}
providers:
  openai: {{driver: openai, base_url: "{openai_url}/v1", api_key: sk-test}}
  local: {{driver: ollama, base_url: "{ollama_url}"}}
models:
  small:
    provider: openai
    name: text-embedding-3-small
    kind: embeddings
    dimensions: 8
    min_dimensions: 2
    price: {{input: 0.02}}
{openai_extra}
  nomic:
    provider: local
    kind: embeddings
    dimensions: 8
    price: {{input: 0.01}}
{ollama_extra}
routes:
  embed:
    kind: embeddings
    aliases: [text-embedding-3-small]
    chain: [small, nomic]
  chat: {{chain: [small-chat]}}
"""


CHAT_MODEL = """  small-chat: {provider: openai, name: gpt-test}"""


def routes(openai_url: str, ollama_url: str, **parts: object) -> str:
    text = two_providers(openai_url, ollama_url, **parts)
    return text.replace("routes:\n", f"{CHAT_MODEL}\nroutes:\n", 1)


async def test_embed_returns_vectors_cost_and_trail(build, openai_fake, ollama_fake):
    """A healthy primary serves: vectors in order, usage, input-token cost, route and deployment named."""
    openai_fake.script("embeddings", openai_fake.embeddings(dimensions=8, usage=300))
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        reply = await router.embed(model="embed", input=TEXTS)
    assert all(close_to(v, expected_vector(t)) for v, t in zip(reply.embeddings, TEXTS, strict=True))
    assert (reply.route, reply.served_by, reply.model) == ("embed", "openai/small", "text-embedding-3-small")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (300, 0)
    assert reply.cost_usd == pytest.approx(300 * 0.02 / 1e6)
    assert reply.usage_estimated is False
    assert [a.outcome for a in reply.attempts] == ["success"]


async def test_embed_fails_over_to_the_next_fake(build, recorder, openai_fake, ollama_fake):
    """A 503 from the primary moves the request to the Ollama deployment, which serves it; the events say so."""
    openai_fake.default("embeddings", openai_fake.error(ErrorClass.OVERLOADED))
    ollama_fake.script("embeddings", ollama_fake.embeddings(dimensions=8))
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        reply = await router.embed(model="embed", input=TEXTS)
    assert reply.served_by == "local/nomic"
    assert [(a.deployment, a.outcome, a.error_class) for a in reply.attempts] == [
        ("openai/small", "error", "overloaded"),
        ("local/nomic", "success", None),
    ]
    assert close_to(reply.embeddings[1], expected_vector(TEXTS[1]))
    assert reply.cost_usd == pytest.approx(3 * 0.01 / 1e6)  # the 503 billed nothing; Ollama counted 3 words
    done = recorder.of(ResponseCompleted)[-1]
    assert (done.route, done.served_by, done.stream, done.error_class) == ("embed", "local/nomic", False, None)


async def test_breaker_opens_and_later_requests_skip_the_primary(build, openai_fake, ollama_fake):
    """Failures open the primary's breaker like chat's; then embeddings skip it without a call."""
    breaker = "  breaker: {failure_threshold: 2, recovery_timeout: 60s}"
    openai_fake.default("embeddings", openai_fake.error(ErrorClass.SERVER_ERROR))
    ollama_fake.default("embeddings", ollama_fake.embeddings(dimensions=8))
    router = build(routes(openai_fake.url, ollama_fake.url, defaults=breaker))
    async with router:
        for _ in range(2):
            await router.embed(model="embed", input="x")
        reply = await router.embed(model="embed", input="x")
    assert len(openai_fake.requests_to("embeddings")) == 2
    assert (reply.attempts[0].outcome, reply.attempts[0].detail) == ("skipped", "breaker open")


async def test_retry_after_is_honoured_on_the_same_deployment(build, clock, openai_fake, ollama_fake):
    """A 429 with Retry-After is retried on the same deployment after that wait (injected sleep), then served."""
    openai_fake.script("embeddings", openai_fake.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "3"}))
    openai_fake.script("embeddings", openai_fake.embeddings(dimensions=8))
    router = build(routes(openai_fake.url, ollama_fake.url, retry=1))
    async with router:
        reply = await router.embed(model="embed", input="x")
    assert reply.served_by == "openai/small"
    assert clock.sleeps == [3.0]
    assert ollama_fake.requests_to("embeddings") == []


async def test_rate_limited_deployment_is_skipped(build, openai_fake, ollama_fake):
    """A deployment at its rpm limit is skipped (no call) and the next one serves."""
    openai_fake.default("embeddings", openai_fake.embeddings(dimensions=8))
    ollama_fake.default("embeddings", ollama_fake.embeddings(dimensions=8))
    router = build(routes(openai_fake.url, ollama_fake.url, openai_extra="    limits: {rpm: 1}"))
    async with router:
        first = await router.embed(model="embed", input="x")
        second = await router.embed(model="embed", input="x")
    assert (first.served_by, second.served_by) == ("openai/small", "local/nomic")
    assert second.attempts[0].outcome == "skipped" and "rpm" in second.attempts[0].detail


async def test_shorter_length_skips_deployments_that_cannot_shorten(build, openai_fake, ollama_fake):
    """A request for 4 dimensions goes only where 4 can be returned; the others are skipped with the reason."""
    openai_fake.default("embeddings", openai_fake.error(ErrorClass.SERVER_ERROR))
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        with pytest.raises(AllUpstreamsFailed) as info:
            await router.embed(model="embed", input="x", dimensions=4)
    trail = [(a.deployment, a.outcome, a.detail) for a in info.value.attempts]
    assert trail[0][:2] == ("openai/small", "error")
    assert trail[1] == ("local/nomic", "skipped", "returns 8 dimensions, not 4")
    assert openai_fake.last.json["dimensions"] == 4
    assert ollama_fake.requests_to("embeddings") == []


async def test_a_length_no_deployment_returns_is_a_bad_request(build, openai_fake, ollama_fake):
    """Asking for more dimensions than the route returns is the client's mistake: InvalidRequest, nothing sent."""
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        with pytest.raises(InvalidRequest, match="returns 8-dimension vectors or 2 to 8 on request") as info:
            await router.embed(model="embed", input="x", dimensions=16)
    assert info.value.param == "dimensions"
    assert openai_fake.requests == [] and ollama_fake.requests == []


async def test_token_arrays_skip_text_only_deployments(build, openai_fake, ollama_fake):
    """Token-id input goes to an upstream that takes it; a text-only one is skipped, not called."""
    openai_fake.script("embeddings", openai_fake.error(ErrorClass.SERVER_ERROR))
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        with pytest.raises(AllUpstreamsFailed) as info:
            await router.embed(model="embed", input=[[1, 2, 3]])
    assert info.value.attempts[-1].detail == "does not take token-id arrays as input"
    assert openai_fake.last.json["input"] == [[1, 2, 3]]
    assert ollama_fake.requests == []


async def test_a_vector_of_the_wrong_length_is_refused_and_fails_over(build, openai_fake, ollama_fake):
    """An upstream answering with vectors of another length (a wrong `dimensions` in the file) never reaches the
    caller: a protocol error, and the next deployment serves."""
    openai_fake.default("embeddings", openai_fake.embeddings(dimensions=16))  # the file says 8
    ollama_fake.default("embeddings", ollama_fake.embeddings(dimensions=8))
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        reply = await router.embed(model="embed", input="x")
    first = reply.attempts[0]
    assert (first.outcome, first.error_class) == ("error", "protocol")
    assert "16-dimension vector" in first.detail and "models.small.dimensions" in first.detail
    assert reply.served_by == "local/nomic" and len(reply.embeddings[0]) == 8


async def test_too_few_vectors_is_a_protocol_error(build, openai_fake, ollama_fake):
    """One vector for two inputs is refused (protocol), never passed on."""
    openai_fake.default("embeddings", openai_fake.embeddings(dimensions=8, vectors=[expected_vector("x")]))
    ollama_fake.default("embeddings", ollama_fake.error(ErrorClass.SERVER_ERROR))
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        with pytest.raises(AllUpstreamsFailed) as info:
            await router.embed(model="embed", input=TEXTS)
    assert "1 vectors for 2 inputs" in info.value.attempts[0].detail


async def test_bad_request_fails_now_like_chat(build, openai_fake, ollama_fake):
    """An upstream 400 is the request's fault: it fails at once (default action) and is not sent elsewhere."""
    openai_fake.script("embeddings", openai_fake.error(ErrorClass.BAD_REQUEST))
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        with pytest.raises(ProviderError) as info:
            await router.embed(model="embed", input="x")
    assert info.value.error_class is ErrorClass.BAD_REQUEST
    assert ollama_fake.requests == []


async def test_upstream_without_usage_is_priced_from_the_estimate(build, gemini_fake):
    """Gemini reports no usage: the request is priced from its token estimate, flagged, never unknown or 0."""
    gemini_fake.default("embeddings", gemini_fake.embeddings(dimensions=8))
    router = build(
        f"""
version: 1
providers:
  gemini: {{driver: gemini, base_url: "{gemini_fake.url}", api_key: g-test}}
models:
  gem: {{provider: gemini, name: gemini-embedding-001, kind: embeddings, dimensions: 8, price: {{input: 0.15}}}}
routes:
  embed: {{kind: embeddings, chain: [gem]}}
"""
    )
    async with router:
        reply = await router.embed(model="embed", input=["a" * 40, "b" * 8])
    assert reply.usage_estimated is True
    assert reply.usage.prompt_tokens == 12  # ceil(40/4) + ceil(8/4)
    assert reply.cost_usd == pytest.approx(12 * 0.15 / 1e6)
    assert reply.attempts[0].estimated is True
    assert reply.to_openai()["usage"] == {"prompt_tokens": 12, "total_tokens": 12, "estimated": True}


async def test_context_window_is_per_input(build, openai_fake, ollama_fake):
    """A window smaller than the largest input's estimate skips the deployment (the inputs are not summed)."""
    openai_fake.default("embeddings", openai_fake.embeddings(dimensions=8))
    ollama_fake.default("embeddings", ollama_fake.embeddings(dimensions=8))
    router = build(routes(openai_fake.url, ollama_fake.url, openai_extra="    context_window: 10"))
    async with router:
        short = await router.embed(model="embed", input=["x" * 36] * 5)  # 9 tokens each, 45 in all
        long = await router.embed(model="embed", input=["x" * 44])  # 11 tokens
    assert short.served_by == "openai/small"
    assert long.served_by == "local/nomic"
    assert "context window 10 < estimated 11 tokens" in long.attempts[0].detail


async def test_kinds_are_kept_apart(build, openai_fake, ollama_fake):
    """Chat to an embeddings route, and embeddings to a chat route (by name or alias), are 400s; unknown names 404."""
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        with pytest.raises(InvalidRequest, match="serves embeddings") as info:
            await router.chat(model="text-embedding-3-small", messages=[{"role": "user", "content": "hi"}])
        assert (info.value.code, info.value.param) == ("wrong_endpoint", "model")
        with pytest.raises(InvalidRequest, match="serves embeddings"):
            router.stream(model="embed", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(InvalidRequest, match="serves chat completions"):
            await router.embed(model="chat", input="x")
        with pytest.raises(RouteNotFound):
            await router.embed(model="nope", input="x")
    assert openai_fake.requests == []


async def test_an_alias_reaches_its_route(build, openai_fake, ollama_fake):
    """A hard-coded model name listed in `aliases` is served by its route, which is what the answer names."""
    openai_fake.default("embeddings", openai_fake.embeddings(dimensions=8))
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        reply = await router.embed(model="text-embedding-3-small", input="x")
        request = EmbeddingRequest.create(model="text-embedding-3-small", input="x", encoding_format="base64")
        packed = await router.embed(request)
    assert reply.route == "embed"
    assert router.route_of("text-embedding-3-small") == "embed" and router.route_of("nope") is None
    assert isinstance(packed.to_openai()["data"][0]["embedding"], str)
    assert close_to(as_floats(packed.vectors[0]), expected_vector("x"))


async def test_embed_arguments_are_checked(build, openai_fake, ollama_fake):
    """embed() takes a request or keywords, not both, and refuses malformed input before any call."""
    router = build(routes(openai_fake.url, ollama_fake.url))
    async with router:
        with pytest.raises(InvalidRequest, match="not both"):
            await router.embed(EmbeddingRequest.create(model="embed", input="x"), model="embed")
        with pytest.raises(InvalidRequest, match="needs an EmbeddingRequest"):
            await router.embed(model="embed")
        with pytest.raises(InvalidRequest, match="empty string"):
            await router.embed(model="embed", input="")
    assert openai_fake.requests == []


def test_compile_refuses_a_code_built_config_mixing_lengths():
    """A Config built in code that chains embeddings of two lengths is refused when compiled, not served."""
    config = load_text(
        """
version: 1
providers:
  m: {driver: mock}
models:
  a: {provider: m, kind: embeddings, dimensions: 8}
  b: {provider: m, kind: embeddings, dimensions: 16}
routes:
  e: {kind: embeddings, chain: [a]}
  f: {kind: embeddings, chain: [b]}
"""
    )
    mixed = dataclasses.replace(config.routes["e"], chain=("a", "b"))
    bad = dataclasses.replace(config, routes={**config.routes, "e": mixed})
    with pytest.raises(ConfigError, match="same dimensions"):
        compile_graph(bad)
    clash = dataclasses.replace(config.routes["f"], aliases=("e",))
    with pytest.raises(ConfigError, match="already names route 'e'"):
        compile_graph(dataclasses.replace(config, routes={**config.routes, "f": clash}))
