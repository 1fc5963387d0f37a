"""Prefill on OpenAI-compatible upstreams: each dialect's exact wire body, and what each server does with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from turnout.config import ProviderSpec, Secret
from turnout.drivers.base import CallContext
from turnout.drivers.openai import AzureOpenAIDriver, OpenAIDriver
from turnout.errors import BadRequest, ErrorClass, ProviderError
from turnout.testing import OpenAIFake
from turnout.testing.golden import capture, check_golden
from turnout.types import ChatRequest

GOLDEN = Path(__file__).parent / "golden" / "openai"
ANSWER = "The quick brown fox jumps over the lazy dog."
ASK = {"model": "route", "messages": [{"role": "user", "content": "Say the pangram."}], "stream": True}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def driver(url: str, **options: Any) -> OpenAIDriver:
    return OpenAIDriver(
        ProviderSpec(name="oa", driver="openai", base_url=f"{url}/v1", api_key=Secret("sk-secret"), options=options)
    )


def continuation(prefix: str, **body: Any) -> ChatRequest:
    return ChatRequest.from_openai({**ASK, **body}).with_prefix(prefix)


async def text_of(d: OpenAIDriver, request: ChatRequest, session: aiohttp.ClientSession, **ctx: Any) -> str:
    out = []
    async for chunk in d.stream(request, CallContext(session=session, model="gpt-test", attempt_timeout=5, **ctx)):
        out.append(chunk.content or "")
    return "".join(out)


@pytest.mark.parametrize("dialect", ["assistant", "vllm", "prefix"])
async def test_golden_continuation_body_per_dialect(dialect: str, session: aiohttp.ClientSession) -> None:
    """A continuation goes upstream in the provider's dialect, exactly as in the golden file."""
    async with OpenAIFake(prefill=dialect) as fake:  # type: ignore[arg-type]
        record = await capture(driver(fake.url, prefill=dialect), fake, ASK, session=session, model="gpt-test",
                               prefix="The quick brown")  # fmt: skip
    check_golden(GOLDEN / f"prefill_{dialect}.json", record)


async def test_golden_continuation_extends_the_clients_own_prefill(session: aiohttp.ClientSession) -> None:
    """A client's trailing assistant message (its own prefill) is extended by the answer so far, not followed by a
    second assistant turn; the model's own dialect option overrides the provider's."""
    body = {**ASK, "messages": [*ASK["messages"], {"role": "assistant", "content": "Sure: "}]}
    async with OpenAIFake(prefill="prefix") as fake:
        record = await capture(driver(fake.url, prefill="vllm"), fake, body, session=session, model="gpt-test",
                               prefix="The quick brown", model_options={"prefill": "prefix"})  # fmt: skip
    check_golden(GOLDEN / "prefill_extends_client_prefill.json", record)


@pytest.mark.parametrize("dialect", ["assistant", "vllm", "prefix"])
async def test_a_server_of_the_same_dialect_continues_the_prefix(dialect: str, session: aiohttp.ClientSession) -> None:
    """Each dialect's server continues exactly from the prefix: prefix + continuation is the whole answer."""
    async with OpenAIFake(prefill=dialect) as fake:  # type: ignore[arg-type]
        fake.default("chat", fake.stream_answer(ANSWER))
        rest = await text_of(driver(fake.url, prefill=dialect), continuation("The quick brown"), session)
    assert "The quick brown" + rest == ANSWER


# (what the driver sends, what the server speaks) -> what happens: "continues", "starts over", or an HTTP status
MISMATCHES = [
    ("vllm", None, 400),  # OpenAI: "Unrecognized request argument supplied: continue_final_message"
    ("prefix", None, 400),  # OpenAI: "Additional properties are not allowed ('prefix' was unexpected)"
    ("assistant", None, "starts over"),  # OpenAI opens a new reply after a trailing assistant message
    ("assistant", "vllm", "starts over"),  # vLLM without continue_final_message: a new assistant turn
    ("prefix", "vllm", "starts over"),  # vLLM ignores the unknown `prefix` field
    ("assistant", "prefix", 400),  # Mistral: "Expected last role User or Tool (or Assistant with prefix True)"
    ("vllm", "prefix", 422),  # Mistral forbids extra fields
    ("vllm", "assistant", "continues"),  # llama.cpp continues the last assistant message, extras ignored
    ("prefix", "assistant", "continues"),
]


@pytest.mark.parametrize(("sent", "spoken", "outcome"), MISMATCHES)
async def test_a_server_of_another_dialect_refuses_or_misreads(sent, spoken, outcome, session) -> None:
    """The fake answers a continuation in the wrong dialect the way that server does: a 4xx the driver classifies
    as bad_request, or an answer that starts over (which a caller would see as repeated words)."""
    async with OpenAIFake(prefill=spoken) as fake:
        fake.default("chat", fake.stream_answer(ANSWER))
        d = driver(fake.url, prefill=sent)
        if isinstance(outcome, int):
            with pytest.raises(ProviderError) as info:
                await text_of(d, continuation("The quick brown"), session)
            assert (info.value.status, info.value.error_class) == (outcome, ErrorClass.BAD_REQUEST)
            return
        rest = await text_of(d, continuation("The quick brown"), session)
    assert rest == (ANSWER[len("The quick brown") :] if outcome == "continues" else ANSWER)


async def test_without_a_dialect_a_prefix_is_refused_before_anything_is_sent(session) -> None:
    """OpenAI has no prefill: the driver refuses a continuation (bad_request) and sends nothing."""
    async with OpenAIFake() as fake:
        with pytest.raises(BadRequest, match="no prefill dialect"):
            await text_of(driver(fake.url), continuation("The quick"), session)
        assert fake.requests == []
    azure = AzureOpenAIDriver(
        ProviderSpec(name="az", driver="azure", base_url="https://x", options={"api_version": "2024-10-21"})
    )
    with pytest.raises(BadRequest, match="Azure OpenAI cannot continue"):
        await text_of(azure, continuation("The quick"), session)  # type: ignore[arg-type]


def test_capabilities_follow_the_dialect_option() -> None:
    """prefill is offered exactly when the provider or the model names a known dialect; Azure never offers it."""
    assert "prefill" not in driver("http://x").capabilities
    assert "prefill" in driver("http://x", prefill="vllm").capabilities
    assert "prefill" in OpenAIDriver.capabilities_for({}, {"prefill": "assistant"})
    assert "prefill" not in OpenAIDriver.capabilities_for({"prefill": "vllm"}, {"prefill": "none-such"})
    assert "prefill" not in AzureOpenAIDriver.capabilities_for({"prefill": "vllm"}, {"prefill": "vllm"})
    with pytest.raises(ValueError, match=r"options\.prefill"):
        driver("http://x", prefill="deepseek")


async def test_an_echoing_server_repeats_the_prefix_first(session) -> None:
    """`echo_prefix` makes the fake repeat the prefix before continuing, as some servers do (the router drops it)."""
    async with OpenAIFake(prefill="prefix") as fake:
        fake.default("chat", fake.stream_answer(ANSWER, echo_prefix=True))
        text = await text_of(driver(fake.url, prefill="prefix"), continuation("The quick brown"), session)
    assert text == ANSWER
