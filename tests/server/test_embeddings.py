"""`POST /v1/embeddings` through the sidecar with the official `openai` SDK: floats and base64, failover between
loopback fakes, aliases, routing headers, the access log and metrics, kinds kept apart, and the shared admission."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from turnout.embeddings import as_floats
from turnout.errors import ErrorClass
from turnout.testing import GeminiFake, OpenAIFake, expected_vector

TEXTS = ["The quick brown fox", "jumps over the lazy dog"]
ROUTES = """\
version: 1
defaults:
  retry: {{attempts: 0}}
  breaker: {{failure_threshold: 50}}
providers:
  primary: {{driver: openai, base_url: "{primary}/v1", api_key: sk-primary-SECRET}}
  backup: {{driver: openai, base_url: "{backup}/v1", api_key: sk-backup-SECRET}}
  gemini: {{driver: gemini, base_url: "{gemini}", api_key: g-SECRET}}
  mock: {{driver: mock, options: {{request_directives: true}}}}
models:
  small:
    provider: primary
    name: text-embedding-3-small
    kind: embeddings
    dimensions: 8
    min_dimensions: 2
    price: {{input: 0.02}}
  small-backup:
    provider: backup
    name: text-embedding-3-small
    kind: embeddings
    dimensions: 8
    price: {{input: 0.02}}
  gem: {{provider: gemini, name: gemini-embedding-001, kind: embeddings, dimensions: 8, price: {{input: 0.15}}}}
  chat: {{provider: mock}}
routes:
  embed:
    description: primary then backup
    kind: embeddings
    aliases: [text-embedding-3-small, text-embedding-ada-002]
    chain: [small, small-backup]
  gemini: {{kind: embeddings, chain: [gem]}}
  chat: {{chain: [chat], aliases: [gpt-4o]}}
server:
  watch: false
{server}
"""


def close_to(actual: list[float], expected: list[float]) -> bool:
    return len(actual) == len(expected) and all(abs(a - b) < 1e-6 for a, b in zip(actual, expected, strict=True))


@pytest.fixture
async def primary() -> AsyncIterator[OpenAIFake]:
    async with OpenAIFake(model="text-embedding-3-small") as fake:
        yield fake


@pytest.fixture
async def backup() -> AsyncIterator[OpenAIFake]:
    async with OpenAIFake(model="text-embedding-3-small-backup") as fake:
        yield fake


@pytest.fixture
async def gemini() -> AsyncIterator[GeminiFake]:
    async with GeminiFake(model="gemini-embedding-001") as fake:
        yield fake


@pytest.fixture
def serve_embeddings(tmp_path: Path, server_kit: Any, primary, backup, gemini) -> Callable[..., Any]:
    def start(server: str = "") -> Any:
        path = tmp_path / "routes.yaml"
        path.write_text(ROUTES.format(primary=primary.url, backup=backup.url, gemini=gemini.url, server=server))
        return server_kit.serving(path)

    return start


async def test_sdk_default_base64_and_float(serve_embeddings, primary):
    """client.embeddings.create works unchanged: its default (base64, decoded by the SDK) and explicit floats."""
    primary.default("embeddings", primary.embeddings(dimensions=8))
    async with serve_embeddings() as s:
        client = s.client()
        default = await client.embeddings.create(model="embed", input=TEXTS)
        sent_default = primary.last.json
        floats = await client.embeddings.create(model="embed", input=TEXTS[0], encoding_format="float")
        sent_float = primary.last.json
    assert sent_default["encoding_format"] == "base64"  # the SDK's default, passed through: no float parsed
    assert sent_float["encoding_format"] == "float"
    assert all(close_to(d.embedding, expected_vector(t)) for d, t in zip(default.data, TEXTS, strict=True))
    assert close_to(floats.data[0].embedding, expected_vector(TEXTS[0]))
    assert default.model == "text-embedding-3-small"
    assert default.usage.prompt_tokens == 9 and default.usage.total_tokens == 9


async def test_base64_answer_on_the_wire(serve_embeddings, primary, http):
    """Asked for base64, the sidecar answers base64 text (little-endian float32), even from a float upstream."""
    primary.default("embeddings", primary.embeddings(dimensions=8))
    async with serve_embeddings() as s:
        body = {"model": "embed", "input": ["a b"], "encoding_format": "base64", "dimensions": 4}
        async with http.post(f"{s.url}/v1/embeddings", json=body) as resp:
            payload = await resp.json()
            headers = resp.headers
    vector = payload["data"][0]["embedding"]
    assert isinstance(vector, str) and close_to(as_floats(vector), expected_vector("a b", 8, 4))
    assert primary.last.json["dimensions"] == 4
    assert payload["object"] == "list" and payload["data"][0]["object"] == "embedding"
    assert headers["x-turnout-route"] == "embed"


async def test_failover_headers_cost_access_log_and_metrics(serve_embeddings, primary, backup, http):
    """A failing primary fails over to the backup; headers, access log and metrics tell the route's story."""
    primary.default("embeddings", primary.error(ErrorClass.SERVER_ERROR))
    backup.default("embeddings", backup.embeddings(dimensions=8, usage=1000))
    async with serve_embeddings() as s:
        raw = await s.client().embeddings.with_raw_response.create(model="text-embedding-3-small", input=TEXTS)
        reply = raw.parse()
        async with http.get(f"{s.url}/metrics") as resp:
            metrics = await resp.text()
        log = [json.loads(line) for line in s.access_lines()]
    assert close_to(reply.data[1].embedding, expected_vector(TEXTS[1]))
    assert raw.headers["x-turnout-route"] == "embed"  # the alias is reported as its route
    assert raw.headers["x-turnout-served-by"] == "backup/small-backup"
    assert raw.headers["x-turnout-attempts"] == "2"
    assert float(raw.headers["x-turnout-cost-usd"]) == pytest.approx(1000 * 0.02 / 1e6)
    entry = log[-1]
    assert (entry["path"], entry["status"], entry["route"], entry["stream"]) == ("/v1/embeddings", 200, "embed", False)
    assert entry["ingress"] == "openai.embeddings"
    assert [a["outcome"] for a in entry["attempts"]] == ["error", "success"]
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (1000, 0)
    assert 'turnout_requests_total{route="embed",status="200"} 1.0' in metrics
    assert re.search(r'turnout_attempts_total\{.*deployment="primary/small".*outcome="error"', metrics)
    assert "SECRET" not in json.dumps(log) + metrics


async def test_gemini_usage_is_estimated_and_flagged(serve_embeddings, gemini):
    """Gemini reports no usage: the answer carries the estimate, flagged, and a cost (never 0 or missing)."""
    gemini.default("embeddings", gemini.embeddings(dimensions=8))
    async with serve_embeddings() as s:
        raw = await s.client().embeddings.with_raw_response.create(
            model="gemini", input=["x" * 40, "y" * 40], encoding_format="float"
        )
        entry = json.loads(s.access_lines()[-1])
    body = json.loads(raw.content)
    assert body["usage"] == {"prompt_tokens": 20, "total_tokens": 20, "estimated": True}
    assert float(raw.headers["x-turnout-cost-usd"]) == pytest.approx(20 * 0.15 / 1e6)
    assert entry["attempts"][0]["usage_estimated"] is True
    assert gemini.last.path.endswith("gemini-embedding-001:batchEmbedContents")


async def test_kinds_are_kept_apart_with_400s(serve_embeddings, primary):
    """Chat to an embeddings route (or its alias) and embeddings to a chat route are 400s; nothing goes upstream."""
    async with serve_embeddings() as s:
        client = s.client()
        with pytest.raises(openai.BadRequestError) as chat_to_embed:
            await client.chat.completions.create(
                model="text-embedding-ada-002", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.BadRequestError) as stream_to_embed:
            await client.chat.completions.create(
                model="embed", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        with pytest.raises(openai.BadRequestError) as embed_to_chat:
            await client.embeddings.create(model="gpt-4o", input="x")
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model="nope", input="x")
    assert chat_to_embed.value.code == "wrong_endpoint" and "POST /v1/embeddings" in chat_to_embed.value.message
    assert stream_to_embed.value.code == "wrong_endpoint"
    assert embed_to_chat.value.code == "wrong_endpoint" and "POST /v1/chat/completions" in embed_to_chat.value.message
    assert chat_to_embed.value.response.headers["x-turnout-route"] == "embed"
    assert primary.requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "embed", "input": ""}, "input"),
        ({"model": "embed", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "embed", "input": "x", "dimensions": 99}, "dimensions"),
        ({"model": "embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "embed"}, "input"),
    ],
)
async def test_malformed_embeddings_requests_are_400(serve_embeddings, primary, http, openai_error, body, param):
    """A malformed body (or a length the route cannot return) is a 400 in OpenAI's shape naming the field."""
    async with serve_embeddings() as s, http.post(f"{s.url}/v1/embeddings", json=body) as resp:
        assert resp.status == 400
        error = openai_error(await resp.json(), 400)
    assert error["param"] == param
    assert primary.requests == []


async def test_models_lists_aliases_and_kinds(serve_embeddings, http):
    """/v1/models lists routes with their aliases and kind, then each alias; an alias can be fetched by id."""
    async with serve_embeddings() as s:
        listed = await s.client().models.list()
        async with http.get(f"{s.url}/v1/models/text-embedding-ada-002") as resp:
            alias = await resp.json()
    entries = {m.id: m.model_dump() for m in listed.data}
    assert entries["embed"]["kind"] == "embeddings"
    assert entries["embed"]["aliases"] == ["text-embedding-3-small", "text-embedding-ada-002"]
    assert entries["chat"]["kind"] == "chat"
    assert entries["gpt-4o"]["alias_of"] == "chat"
    assert alias["alias_of"] == "embed" and alias["kind"] == "embeddings"


async def test_embeddings_and_chat_share_max_in_flight(serve_embeddings, primary):
    """Embeddings count against server.max_in_flight with chat: at the limit a chat request gets 503 at once."""
    gate = asyncio.Event()

    async def held(request, upstream):
        await gate.wait()
        return await primary.embeddings(dimensions=8)(request, upstream)

    primary.default("embeddings", held)
    async with serve_embeddings(server="  max_in_flight: 1") as s:
        client = s.client()
        pending = asyncio.ensure_future(client.embeddings.create(model="embed", input="x"))
        while not primary.requests_to("embeddings"):
            await asyncio.sleep(0.01)
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        gate.set()
        done = await pending
    assert info.value.status_code == 503 and info.value.response.headers["Retry-After"] == "1"
    assert len(done.data) == 1


async def test_client_keys_guard_embeddings(serve_embeddings, primary, http):
    """With clients declared, embeddings need a client key like chat (401 otherwise), run as that client (its
    routes: 403 for another; its spend is counted under its name, by the alias's route)."""
    primary.default("embeddings", primary.embeddings(dimensions=8))
    clients = (
        '\nclients:\n  indexer: {keys: ["client-key-0000001"], routes: [embed]}\n'
        '  chatter: {keys: ["client-key-0000002"], routes: [chat]}\n'
    )
    async with serve_embeddings(server=f'  admin_keys: ["admin-key-000000001"]{clients}') as s:
        with pytest.raises(openai.AuthenticationError):
            await s.client("wrong").embeddings.create(model="embed", input="x")
        with pytest.raises(openai.PermissionDeniedError):
            await s.client("client-key-0000002").embeddings.create(model="embed", input="x")
        reply = await s.client("client-key-0000001").embeddings.create(model="text-embedding-3-small", input="x")
        admin = {"Authorization": "Bearer admin-key-000000001"}
        async with http.get(f"{s.url}/admin/spend", headers=admin) as resp:
            rows = (await resp.json())["rows"]
    assert len(reply.data) == 1
    assert [(r["client"], r["route"], r["requests"]) for r in rows] == [("indexer", "embed", 1)]


async def test_a_chat_alias_is_reported_as_its_route(serve_embeddings, http):
    """Chat by alias (plain and streamed) is served by the route, which headers, access log and metrics name."""
    async with serve_embeddings() as s:
        client = s.client()
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "echo this"}]
        )
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "and this"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "no"}],
                extra_body={"turnout_mock": {"faults": [{"kind": "refusal"}]}},
            )
        async with http.get(f"{s.url}/metrics") as resp:
            metrics = await resp.text()
        routes = [json.loads(line)["route"] for line in s.access_lines()]
    assert raw.parse().choices[0].message.content == "echo this" and text == "and this"
    assert raw.headers["x-turnout-route"] == "chat"
    assert refused.value.response.headers["x-turnout-route"] == "chat"
    assert routes == ["chat", "chat", "chat"]
    assert 'turnout_requests_total{route="chat",status="200"} 2.0' in metrics
    assert 'route="gpt-4o"' not in metrics


async def test_log_content_logs_the_request_and_the_answers_shape(serve_embeddings, primary):
    """With server.log_content the access line holds the request and the answer's shape, never the vectors."""
    primary.default("embeddings", primary.embeddings(dimensions=8))
    async with serve_embeddings(server="  log_content: true") as s:
        await s.client().embeddings.create(model="embed", input=TEXTS, encoding_format="float")
        entry = json.loads(s.access_lines()[-1])
    assert entry["content"]["request"]["input"] == TEXTS
    assert entry["content"]["response"] == {"vectors": 2, "dimensions": 8}


async def test_anthropic_clients_reach_routes_by_alias(serve_embeddings, http):
    """The Messages ingress resolves aliases too (count_tokens included), and refuses an embeddings route (400)."""
    headers = {"x-api-key": "unused", "anthropic-version": "2023-06-01"}
    ask = {"max_tokens": 32, "messages": [{"role": "user", "content": "echo from claude"}]}
    async with serve_embeddings() as s:
        async with http.post(f"{s.url}/v1/messages", json={"model": "gpt-4o", **ask}, headers=headers) as resp:
            message, route = await resp.json(), resp.headers["x-turnout-route"]
        async with http.post(
            f"{s.url}/v1/messages/count_tokens", json={"model": "gpt-4o", **ask}, headers=headers
        ) as resp:
            counted = (resp.status, await resp.json(), resp.headers["x-turnout-route"])
        async with http.post(
            f"{s.url}/v1/messages/count_tokens", json={"model": "text-embedding-3-small", **ask}, headers=headers
        ) as resp:
            refused = (resp.status, await resp.json())
    assert message["content"][0]["text"] == "echo from claude" and route == "chat"
    assert counted[0] == 200 and counted[1]["input_tokens"] > 0 and counted[2] == "chat"
    assert refused[0] == 400 and refused[1]["type"] == "error"
    assert "POST /v1/embeddings" in refused[1]["error"]["message"]
