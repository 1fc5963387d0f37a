"""Golden request bodies: the exact wire request the openai, azure and ollama drivers send for canonical requests,
and the embeddings request of every driver that serves embeddings (gemini's too)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from turnout.config import ProviderSpec, Secret
from turnout.drivers.gemini import GeminiDriver
from turnout.drivers.ollama import OllamaDriver
from turnout.drivers.openai import AzureOpenAIDriver, OpenAIDriver
from turnout.testing import GeminiFake, OllamaFake, OpenAIFake
from turnout.testing.golden import CANONICAL_EMBEDDINGS, CANONICAL_REQUESTS, capture, capture_embeddings, check_golden

GOLDEN = Path(__file__).parent / "golden"


def openai(url: str) -> OpenAIDriver:
    spec = ProviderSpec(
        name="openai", driver="openai", base_url=f"{url}/v1", api_key=Secret("sk-secret"),
        headers={"X-Team": Secret("search")}, options={"organization": "org-1"},
    )  # fmt: skip
    return OpenAIDriver(spec)


def azure(url: str) -> AzureOpenAIDriver:
    spec = ProviderSpec(
        name="azure", driver="azure", base_url=url, api_key=Secret("az-secret"), options={"api_version": "2024-10-21"}
    )
    return AzureOpenAIDriver(spec)


def ollama(url: str) -> OllamaDriver:
    spec = ProviderSpec(name="local", driver="ollama", base_url=url, options={"keep_alive": "5m"})
    return OllamaDriver(spec)


def gemini(url: str) -> GeminiDriver:
    return GeminiDriver(ProviderSpec(name="gemini", driver="gemini", base_url=url, api_key=Secret("g-secret")))


DRIVERS: dict[str, tuple[Callable[[str], Any], Callable[[], Any], str]] = {
    "openai": (openai, OpenAIFake, "gpt-test"),
    "azure": (azure, lambda: OpenAIFake(flavor="azure"), "my-deployment"),
    "ollama": (ollama, OllamaFake, "llama3.1:8b"),
}
EMBEDDERS: dict[str, tuple[Callable[[str], Any], Callable[[], Any], str]] = {
    "openai": (openai, OpenAIFake, "text-embedding-3-small"),
    "azure": (azure, lambda: OpenAIFake(flavor="azure"), "my-embedding-deployment"),
    "gemini": (gemini, GeminiFake, "gemini-embedding-001"),
    "ollama": (ollama, OllamaFake, "nomic-embed-text"),
}
EMBEDDING_CASES = [
    (name, case)
    for name in sorted(EMBEDDERS)
    for case in sorted(CANONICAL_EMBEDDINGS)
    if case != "tokens" or name in ("openai", "azure")  # only their upstreams take token-id arrays
]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.mark.parametrize("case", sorted(CANONICAL_REQUESTS))
@pytest.mark.parametrize("name", sorted(DRIVERS))
async def test_golden_request(name: str, case: str, session: aiohttp.ClientSession) -> None:
    """The driver's upstream request for a canonical request matches its golden file (secrets masked)."""
    make_driver, make_fake, model = DRIVERS[name]
    async with make_fake() as fake:
        record = await capture(make_driver(fake.url), fake, CANONICAL_REQUESTS[case], session=session, model=model)
    assert "secret" not in str(record["headers"])
    check_golden(GOLDEN / name / f"{case}.json", record)


@pytest.mark.parametrize(("name", "case"), EMBEDDING_CASES)
async def test_golden_embeddings_request(name: str, case: str, session: aiohttp.ClientSession) -> None:
    """The driver's upstream embeddings request for a canonical request matches its golden file (secrets masked)."""
    make_driver, make_fake, model = EMBEDDERS[name]
    async with make_fake() as fake:
        driver = make_driver(fake.url)
        record = await capture_embeddings(driver, fake, CANONICAL_EMBEDDINGS[case], session=session, model=model)
    assert "secret" not in str(record["headers"])
    check_golden(GOLDEN / name / f"embeddings_{case}.json", record)
