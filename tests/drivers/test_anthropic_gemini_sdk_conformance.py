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
from turnout.testing.anthropic_rules import problems
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


@pytest.mark.parametrize(
    "path",
    sorted(p for p in GOLDEN.glob("gemini/*.json") if not p.stem.startswith("embeddings_")),
    ids=lambda p: p.stem,
)
def test_gemini_golden_bodies_match_the_sdk_models(path: Path):
    """Every golden Gemini body validates against google-genai's models (which forbid unknown fields)."""
    types = pytest.importorskip("google.genai.types")
    body = json.loads(path.read_text())["body"]
    assert set(body) <= set(GEMINI_FIELDS)
    for field, value in body.items():
        model = getattr(types, GEMINI_FIELDS[field])
        for item in value if isinstance(value, list) else [value]:
            model.model_validate(item)


def _strictly(value):
    """Consume pydantic's lazily validated iterables (`Iterable[...]` fields), so every item is checked."""
    if isinstance(value, dict):
        return {key: _strictly(item) for key, item in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "ValidatorIterator":
        return [_strictly(item) for item in value]
    return value


def _sdk_params():
    params = pytest.importorskip("anthropic.types.message_create_params")
    pydantic = pytest.importorskip("pydantic")
    adapter = pydantic.TypeAdapter(params.MessageCreateParamsStreaming | params.MessageCreateParamsNonStreaming)
    return lambda body: _strictly(adapter.validate_python(body)), pydantic.ValidationError


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("anthropic/*.json")), ids=lambda p: p.stem)
def test_anthropic_golden_bodies_match_the_sdk_params(path: Path):
    """Every golden Anthropic body validates, item by item, against anthropic-sdk-python's MessageCreateParams
    types, and the fake's own checks accept it too."""
    validate, _ = _sdk_params()
    body = json.loads(path.read_text())["body"]
    validate(body)
    assert problems(body) == []


GOOD = {"model": "claude-test", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
TOOL = {"name": "w", "input_schema": {"type": "object"}}
# Bodies the Messages API refuses for their shape: the SDK's types and the fake's checks must both say so.
MALFORMED = {
    "robot_role": {**GOOD, "messages": [{"role": "robot", "content": 42}]},
    "content_not_text_or_blocks": {**GOOD, "messages": [{"role": "user", "content": 42}]},
    "block_without_type": {**GOOD, "messages": [{"role": "user", "content": [{"text": "hi"}]}]},
    "text_block_without_text": {**GOOD, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
    "unknown_block_type": {**GOOD, "messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]},
    "tool_without_name": {**GOOD, "tools": [{"input_schema": {"type": "object"}}]},
    "tool_without_schema": {**GOOD, "tools": [{"name": "w"}]},
    "tool_use_without_input": {
        **GOOD,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w"}]},
        ],
    },
    "tool_choice_unknown": {**GOOD, "tools": [TOOL], "tool_choice": {"type": "sometimes"}},
    "system_not_text": {**GOOD, "system": [{"type": "image", "source": {}}]},
    "max_tokens_missing": {"model": "claude-test", "messages": GOOD["messages"]},
}
# Refused by the API for how messages relate (the SDK's types cannot tell): the fake's checks must catch them.
UNPAIRED = {
    "tool_use_left_unanswered": {
        **GOOD,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
            {"role": "user", "content": "and?"},
        ],
    },
    "result_after_text": {
        **GOOD,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "x"}, {"type": "tool_result", "tool_use_id": "t1"}],
            },
        ],
    },
    "empty_text_block": {**GOOD, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
    "bad_tool_id": {
        **GOOD,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call:1", "name": "w", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call:1"}]},
        ],
    },
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_bodies_fail_the_sdk_types_and_the_fake(name: str):
    """A body whose messages, blocks or tools have the wrong shape fails the SDK's types and the fake's checks."""
    validate, invalid = _sdk_params()
    with pytest.raises(invalid):
        validate(MALFORMED[name])
    assert problems(MALFORMED[name])


@pytest.mark.parametrize("name", sorted(UNPAIRED))
def test_the_fake_refuses_what_the_api_refuses_across_messages(name: str):
    """Tool results must answer the calls first thing in the next user turn; text blocks are non-empty; ids are
    plain: the SDK's types accept these bodies, the fake's checks do not."""
    validate, _ = _sdk_params()
    validate(UNPAIRED[name])
    assert problems(UNPAIRED[name])


async def test_the_fake_answers_a_refused_body_with_a_400_and_keeps_its_script():
    """Over HTTP, a malformed body gets Anthropic's 400 naming the problem, and the scripted answer stays queued."""
    anthropic = pytest.importorskip("anthropic")
    async with (
        AnthropicFake() as fake,
        anthropic.AsyncAnthropic(api_key="k", base_url=fake.url, max_retries=0) as client,
    ):
        fake.script("chat", fake.text("kept"))
        with pytest.raises(anthropic.BadRequestError, match=r"messages\.0\.role") as info:
            await client.messages.create(**MALFORMED["robot_role"])
        assert info.value.body["error"]["type"] == "invalid_request_error"
        assert fake.refused and "messages.0.role" in fake.refused[0][0]
        message = await client.messages.create(**GOOD)
        assert message.content[0].text == "kept"
