"""The repository's own routes.yaml served with no API keys: the README's main command works on the mock."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

ROUTES = Path(__file__).resolve().parents[2] / "routes.yaml"
ASK = [{"role": "user", "content": "echo me back please"}]


@pytest.fixture
async def served(server_kit, monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    copy = tmp_path / "routes.yaml"  # served as is, from a directory where its spend ledger may be written
    copy.write_bytes(ROUTES.read_bytes())
    async with server_kit.serving(copy, watch=False) as s:
        yield s


async def test_echo_route_answers_without_keys(served):
    """With no provider keys set the echo route is served by the mock provider."""
    reply = await served.client().chat.completions.create(model="echo", messages=ASK)
    assert reply.choices[0].message.content == "echo me back please"
    assert reply.model == "echo-1"


async def test_mock_stream_cut_is_raised_by_the_sdk(served):
    """On the drill route a mock stream cut after two chunks ends with an error event that the SDK raises."""
    stream = await served.client().chat.completions.create(
        model="drill",
        messages=ASK,
        stream=True,
        extra_body={"turnout_mock": {"faults": [{"kind": "cut", "after_chunks": 2}]}},
    )
    received: list[str] = []

    async def drain() -> None:
        async for chunk in stream:
            received.append((chunk.choices[0].delta.content or "") if chunk.choices else "")

    with pytest.raises(openai.APIError):
        await drain()
    assert "".join(received).strip()  # some content arrived before the cut


async def test_mock_refusal_is_400_with_reason(served):
    """A content-policy refusal scripted on the drill route is a 400 BadRequestError carrying the provider's reason."""
    with pytest.raises(openai.BadRequestError) as caught:
        await served.client().chat.completions.create(
            model="drill", messages=ASK, extra_body={"turnout_mock": {"faults": [{"kind": "refusal"}]}}
        )
    assert caught.value.code == "content_filter"
    assert "refused" in caught.value.message


async def test_drill_fault_fails_over_to_the_plain_mock(served):
    """A server-error drill on the drill route fails over to the echo provider; the answer says who served it."""
    raw = await served.client().chat.completions.with_raw_response.create(
        model="drill", messages=ASK, extra_body={"turnout_mock": {"faults": [{"kind": "status", "status": 500}]}}
    )
    assert raw.headers["x-turnout-served-by"] == "echo/echo"
    assert raw.parse().choices[0].message.content == "echo me back please"


async def test_everyday_routes_ignore_directives(served):
    """The routes everyone uses never take per-request faults: a directive sent to them changes nothing."""
    fault = {"turnout_mock": {"faults": [{"kind": "status", "status": 401}]}}
    for route in ("echo", "chat", "echo"):
        reply = await served.client().chat.completions.create(model=route, messages=ASK, extra_body=fault)
        assert reply.choices[0].message.content == "echo me back please"
    assert served.sidecar.router.health.open_breakers() == []


async def test_mock_stream_usage_chunk_when_asked(served):
    """A client asking for stream usage gets a final usage chunk (choices: []) from the mock provider too."""
    stream = await served.client().chat.completions.create(
        model="echo", messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert sum(1 for c in chunks if not c.choices) == 1  # exactly one usage chunk
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo me back please"


async def test_embed_route_answers_without_keys(served):
    """The repo's embeddings route answers through the mock with no keys: by name and by alias, SDK default
    (base64) and floats, shorter vectors on request; deterministic, so two calls agree."""
    client = served.client()
    by_name = await client.embeddings.create(model="embed", input=["index me", "and me"])
    by_alias = await client.embeddings.create(model="text-embedding-3-small", input="index me", encoding_format="float")
    short = await client.embeddings.create(model="embed", input="index me", dimensions=256)
    assert [len(d.embedding) for d in by_name.data] == [1536, 1536]
    assert by_alias.data[0].embedding == pytest.approx(by_name.data[0].embedding, abs=1e-6)
    assert len(short.data[0].embedding) == 256
    assert by_name.model == "echo-embed-1" and by_name.usage.prompt_tokens > 0
