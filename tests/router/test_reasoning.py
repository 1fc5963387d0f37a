"""What of a request's reasoning each deployment receives (`turnout.router.reasoning`), through the library Router."""

from __future__ import annotations

import pytest

from turnout.testing import AnthropicFake, OpenAIFake

HI = [{"role": "user", "content": "hi"}]
THINKS = "[tools, vision, json, streaming, reasoning]"


@pytest.fixture
async def claude():
    async with AnthropicFake(model="claude-upstream") as fake:
        fake.default("chat", fake.text("ok"))
        yield fake


@pytest.fixture
async def compat():
    async with OpenAIFake(model="gpt-compat") as fake:
        fake.default("chat", fake.text("ok"))
        yield fake


def routes(claude: AnthropicFake, compat: OpenAIFake) -> str:
    return f"""
version: 1
defaults: {{retry: {{attempts: 0}}}}
providers:
  mock: {{driver: mock}}
  claude: {{driver: anthropic, base_url: "{claude.url}", api_key: sk-ant-test}}
  compat: {{driver: openai, base_url: "{compat.url}/v1", api_key: sk-test}}
models:
  echo: {{provider: mock, name: echo}}
  sonnet: {{provider: claude, name: claude-upstream, supports: {THINKS}}}
  gpt: {{provider: compat, name: gpt-compat}}
routes:
  echo: {{chain: [echo]}}
  sonnet: {{chain: [sonnet]}}
  gpt: {{chain: [gpt]}}
"""


async def test_the_answer_names_what_its_deployment_did_not_receive(build, claude, compat):
    """ChatResponse.dropped and ChatStream.dropped name reasoning a model does not declare; nothing otherwise."""
    async with build(routes(claude, compat), real_time=True) as router:
        answer = await router.chat(model="echo", messages=HI, reasoning_effort="high")
        assert answer.dropped == ("reasoning (the model does not declare it)",)
        stream = router.stream(model="echo", messages=HI, reasoning_effort="high")
        async for _ in stream:
            pass
        assert stream.dropped == ("reasoning (the model does not declare it)",)
        plain = await router.chat(model="echo", messages=HI)
        assert plain.dropped == ()


async def test_an_openai_clients_own_field_reaches_an_undeclared_openai_model_as_written(build, claude, compat):
    """A chat body's reasoning_effort on an OpenAI-compatible upstream is the client's own body: sent, not named."""
    async with build(routes(claude, compat), real_time=True) as router:
        answer = await router.chat(model="gpt", messages=HI, reasoning_effort="minimal")
    assert answer.dropped == ()
    assert compat.last.json["reasoning_effort"] == "minimal"


async def test_a_tool_call_without_its_thinking_blocks_is_sent_without_thinking(build, claude, compat):
    """Anthropic refuses thinking after a tool call whose thinking blocks are gone: sent without, and named."""
    call = {"id": "toolu_1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
    history = [
        *HI,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "a.txt"},
    ]
    tools = [{"type": "function", "function": {"name": "ls", "parameters": {"type": "object", "properties": {}}}}]
    async with build(routes(claude, compat), real_time=True) as router:
        answer = await router.chat(model="sonnet", messages=history, tools=tools, reasoning_effort="low")
        assert answer.dropped == ("reasoning (a tool call without its thinking blocks)",)
        assert "thinking" not in claude.last.json
        blocks = [{"type": "thinking", "thinking": "List it.", "signature": "sig=="}]
        history[1] = {**history[1], "thinking_blocks": blocks}
        answer = await router.chat(model="sonnet", messages=history, tools=tools, reasoning_effort="low")
    assert answer.dropped == ()
    sent = claude.last.json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["messages"][1]["content"][0] == blocks[0]


async def test_a_prefilled_answer_is_sent_without_thinking(build, claude, compat):
    """A final assistant message (prefill) cannot be combined with thinking at Anthropic: sent without, named."""
    async with build(routes(claude, compat), real_time=True) as router:
        prefilled = [*HI, {"role": "assistant", "content": "Sure:"}]
        answer = await router.chat(model="sonnet", messages=prefilled, reasoning_effort="medium")
    assert answer.dropped == ("reasoning (a prefilled answer)",)
    assert "thinking" not in claude.last.json
