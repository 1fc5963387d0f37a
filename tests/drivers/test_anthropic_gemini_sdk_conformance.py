"""Wire fidelity of the Anthropic and Gemini fakes, judged by the official SDKs (skipped when they are absent).

The drivers are tested against the fakes; these tests check the fakes against the vendors' own parsers
(`pip install anthropic google-genai` to run them), so a fake that drifted from the real wire format shows up here.
The golden request bodies are checked against the SDKs' own request types the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from turnout.errors import ErrorClass
from turnout.testing import AnthropicFake, Framing, GeminiFake, ToolCall
from turnout.types import Usage

HI = [{"role": "user", "content": "hi"}]


async def test_anthropic_sdk_reads_the_fake():
    """anthropic-sdk-python parses the fake's messages, streams (tools, pings, CRLF, splits) and error bodies."""
    anthropic = pytest.importorskip("anthropic")
    async with (
        AnthropicFake() as fake,
        anthropic.AsyncAnthropic(api_key="k", base_url=fake.url, max_retries=0) as client,
    ):
        fake.script("chat", fake.text("Hello!", usage=Usage(21, 4, cached_tokens=5, cache_write_tokens=3)))
        message = await client.messages.create(model="claude-test", max_tokens=10, messages=HI)
        assert (message.content[0].text, message.stop_reason) == ("Hello!", "end_turn")
        assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (13, 5)

        fake.script("chat", fake.stream_tool_calls([ToolCall("w", {"city": "Paris"}), ToolCall("t", {})]))
        async with client.messages.stream(model="claude-test", max_tokens=10, messages=HI) as stream:
            final = await stream.get_final_message()
        assert [block.input for block in final.content] == [{"city": "Paris"}, {}]
        assert (final.stop_reason, final.usage.output_tokens) == ("tool_use", 5)

        framing = Framing(comments=True, crlf=True, split_every=4)
        fake.script("chat", fake.stream_text(["Hel", "lo"], framing=framing))
        async with client.messages.stream(model="claude-test", max_tokens=10, messages=HI) as stream:
            assert (await stream.get_final_message()).content[0].text == "Hello"

        fake.script("chat", fake.error(ErrorClass.OVERLOADED))
        with pytest.raises(anthropic.InternalServerError) as info:
            await client.messages.create(model="claude-test", max_tokens=10, messages=HI)
        assert info.value.status_code == 529

        fake.script("chat", fake.stream_error(["x"], ErrorClass.OVERLOADED))
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            async with client.messages.stream(model="claude-test", max_tokens=10, messages=HI) as stream:
                await stream.get_final_message()


async def test_genai_sdk_reads_the_fake():
    """google-genai parses the fake's responses, SSE streams with function calls, models and Status errors."""
    genai = pytest.importorskip("google.genai")
    async with GeminiFake() as fake:
        client = genai.Client(api_key="k", http_options=genai.types.HttpOptions(base_url=fake.url))
        fake.script("chat", fake.text("Hi!", usage=Usage(21, 4)))
        response = await client.aio.models.generate_content(model="gemini-test", contents="hi")
        assert response.text == "Hi!"
        assert (response.usage_metadata.prompt_token_count, response.usage_metadata.candidates_token_count) == (21, 4)

        fake.script("chat", fake.stream_tool_calls([ToolCall("w", {"city": "Paris"})], framing=Framing(crlf=True)))
        chunks = [c async for c in await client.aio.models.generate_content_stream(model="gemini-test", contents="hi")]
        assert chunks[-1].function_calls[0].args == {"city": "Paris"}
        assert chunks[-1].candidates[0].finish_reason == "STOP"

        fake.script("chat", fake.error(ErrorClass.RATE_LIMIT, retry_delay="15s"))
        with pytest.raises(genai.errors.ClientError) as info:
            await client.aio.models.generate_content(model="gemini-test", contents="hi")
        assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")

        fake.script("models", fake.models(["gemini-a"]))
        assert [m.name async for m in await client.aio.models.list()] == ["models/gemini-a"]


GOLDEN = Path(__file__).parent / "golden"
GEMINI_FIELDS = {
    "contents": "Content",
    "systemInstruction": "Content",
    "tools": "Tool",
    "toolConfig": "ToolConfig",
    "generationConfig": "GenerationConfig",
}


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("gemini/*.json")), ids=lambda p: p.stem)
def test_gemini_golden_bodies_match_the_sdk_models(path: Path):
    """Every golden Gemini body validates against google-genai's models (which forbid unknown fields)."""
    types = pytest.importorskip("google.genai.types")
    body = json.loads(path.read_text())["body"]
    assert set(body) <= set(GEMINI_FIELDS)
    for field, value in body.items():
        model = getattr(types, GEMINI_FIELDS[field])
        for item in value if isinstance(value, list) else [value]:
            model.model_validate(item)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("anthropic/*.json")), ids=lambda p: p.stem)
def test_anthropic_golden_bodies_match_the_sdk_params(path: Path):
    """Every golden Anthropic body validates against anthropic-sdk-python's MessageCreateParams types."""
    params = pytest.importorskip("anthropic.types.message_create_params")
    pydantic = pytest.importorskip("pydantic")
    adapter = pydantic.TypeAdapter(params.MessageCreateParamsStreaming | params.MessageCreateParamsNonStreaming)
    adapter.validate_python(json.loads(path.read_text())["body"])
