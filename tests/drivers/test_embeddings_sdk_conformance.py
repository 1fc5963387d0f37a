"""Wire fidelity of the fakes' embeddings endpoints, judged by the official SDKs (skipped when they are absent).

The drivers are tested against the fakes; these tests check the fakes against the vendors' own clients, so a fake
that drifted from the real embeddings wire format shows up here. The golden Gemini embeddings bodies are checked
against google-genai's request types the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from turnout.errors import ErrorClass
from turnout.testing import GeminiFake, OpenAIFake, expected_vector

GOLDEN = Path(__file__).parent / "golden"
TEXTS = ["first document", "second document ✓"]


def close_to(actual: list[float], expected: list[float]) -> bool:
    return len(actual) == len(expected) and all(abs(a - b) < 1e-6 for a, b in zip(actual, expected, strict=True))


async def test_openai_sdk_reads_the_fake_embeddings():
    """openai-python's embeddings.create reads the fake: its default base64, floats, dimensions and errors."""
    openai = pytest.importorskip("openai")
    async with (
        OpenAIFake() as fake,
        openai.AsyncOpenAI(api_key="k", base_url=f"{fake.url}/v1", max_retries=0) as client,
    ):
        fake.default("embeddings", fake.embeddings(dimensions=8))
        default = await client.embeddings.create(model="text-embedding-3-small", input=TEXTS)
        assert fake.last.json["encoding_format"] == "base64"  # the SDK's own default, decoded by the SDK
        assert all(close_to(d.embedding, expected_vector(t)) for d, t in zip(default.data, TEXTS, strict=True))
        assert default.usage.prompt_tokens == 5  # words: 2 + 3

        floats = await client.embeddings.create(
            model="m", input="first document", encoding_format="float", dimensions=4
        )
        assert close_to(floats.data[0].embedding, expected_vector("first document", 8, 4))

        with pytest.raises(openai.BadRequestError, match="Unrecognized request argument"):
            await client.embeddings.create(model="m", input="x", extra_body={"task_type": "query"})
        fake.script("embeddings", fake.error(ErrorClass.RATE_LIMIT))
        with pytest.raises(openai.RateLimitError):
            await client.embeddings.create(model="m", input="x")


async def test_genai_sdk_reads_the_fake_embeddings():
    """google-genai's embed_content (batchEmbedContents) is accepted and read, shortened vectors included."""
    genai = pytest.importorskip("google.genai")
    async with GeminiFake() as fake:
        fake.default("embeddings", fake.embeddings(dimensions=8))
        options = genai.types.HttpOptions(base_url=fake.url)
        client = genai.Client(api_key="k", http_options=options)
        config = genai.types.EmbedContentConfig(output_dimensionality=4)
        result = await client.aio.models.embed_content(model="gemini-embedding-001", contents=TEXTS, config=config)
        assert fake.last.path.endswith(":batchEmbedContents")
        assert all(close_to(e.values, expected_vector(t, 8, 4)) for e, t in zip(result.embeddings, TEXTS, strict=True))
        assert all(len(e.values) == 4 for e in result.embeddings)

        fake.script("embeddings", fake.error(ErrorClass.QUOTA_EXCEEDED))
        with pytest.raises(genai.errors.ClientError) as info:
            await client.aio.models.embed_content(model="gemini-embedding-001", contents="x")
        assert info.value.code == 429


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("gemini/embeddings_*.json")), ids=lambda p: p.stem)
def test_gemini_embeddings_golden_bodies_match_the_sdk_models(path: Path):
    """Every golden Gemini embeddings body holds only EmbedContentRequest fields, with SDK-valid content."""
    types = pytest.importorskip("google.genai.types")
    record = json.loads(path.read_text())
    body = record["body"]
    requests = body.get("requests", [body])
    for request in requests:
        assert set(request) <= {"model", "content", "taskType", "title", "outputDimensionality"}
        types.Content.model_validate(request["content"])
    if "requests" in body:  # a batch: every request names the URL's model, as Gemini requires
        assert set(body) == {"requests"}
        url_model = record["path"].rsplit("/models/", 1)[1].split(":", 1)[0]
        assert {r["model"] for r in requests} == {f"models/{url_model}"}
