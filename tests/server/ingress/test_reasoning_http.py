"""A client's reasoning request, from each ingress to each upstream dialect, through the real sidecar.

Each ingress (OpenAI chat, Messages, Responses) asks in its own words; each upstream fake records what it received.
Models that declare `reasoning` get it in their dialect, a client's own body on its own format's upstream keeps its
field as written, and a model that must not receive it gets none, named in `x-turnout-dropped`. The Anthropic fake
refuses thinking that breaks the real API's rules (budget under 1,024 or not under max_tokens, temperature, forced
tools), so every translated body below is one Anthropic would accept.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from turnout.errors import ErrorClass
from turnout.testing import AnthropicFake, GeminiFake, OllamaFake, OpenAIFake

REASONS = ["tools", "vision", "json", "streaming", "reasoning"]
ROUTES = f"""\
version: 1
defaults:
  retry: {{attempts: 0}}
  breaker: {{failure_threshold: 50}}
providers:
  claude: {{driver: anthropic, base_url: "@CLAUDE@", api_key: sk-ant-test}}
  gem: {{driver: gemini, base_url: "@GEMINI@", api_key: gm-test}}
  oll: {{driver: ollama, base_url: "@OLLAMA@"}}
  compat: {{driver: openai, base_url: "@COMPAT@/v1", api_key: sk-compat}}
  resp: {{driver: openai, base_url: "@RESP@/v1", api_key: sk-resp, options: {{responses: true}}}}
models:
  a-think: {{provider: claude, name: claude-upstream, supports: {REASONS}}}
  a-adaptive: {{provider: claude, name: claude-upstream, supports: {REASONS}, options: {{thinking: adaptive}}}}
  a-plain: {{provider: claude, name: claude-upstream}}
  a-listed: {{provider: claude, name: claude-upstream, supports: [tools, vision, json, prefill, streaming]}}
  r-listed: {{provider: resp, name: gpt-resp, supports: [tools, vision, json, streaming]}}
  g-think: {{provider: gem, name: gemini-test, supports: {REASONS}}}
  o-think: {{provider: oll, name: llama-test, supports: {REASONS}}}
  c-think: {{provider: compat, name: gpt-compat, supports: {REASONS}}}
  c-plain: {{provider: compat, name: gpt-compat, supports: [tools, streaming]}}
  c-undeclared: {{provider: compat, name: gpt-compat}}
  r-think: {{provider: resp, name: gpt-resp, supports: {REASONS}}}
routes:
  a-think: {{chain: [a-think]}}
  a-adaptive: {{chain: [a-adaptive]}}
  a-plain: {{chain: [a-plain]}}
  a-listed: {{chain: [a-listed]}}
  r-listed: {{chain: [r-listed]}}
  g-think: {{chain: [g-think]}}
  o-think: {{chain: [o-think]}}
  c-think: {{chain: [c-think]}}
  c-plain: {{chain: [c-plain]}}
  c-undeclared: {{chain: [c-undeclared]}}
  r-think: {{chain: [r-think]}}
  plain-then-gemini: {{chain: [c-plain, g-think]}}
server:
  watch: false
"""
USER = [{"role": "user", "content": "Why is the sky blue?"}]


class Upstreams:
    def __init__(self, claude: AnthropicFake, gemini: GeminiFake, ollama: OllamaFake, compat: OpenAIFake, resp: Any):
        self.claude, self.gemini, self.ollama, self.compat, self.resp = claude, gemini, ollama, compat, resp

    def sent(self, route: str) -> dict[str, Any]:
        """The body the route's upstream received last."""
        fake = {"a": self.claude, "g": self.gemini, "o": self.ollama, "c": self.compat, "r": self.resp}[route[0]]
        return fake.last.json


@pytest.fixture
async def up() -> AsyncIterator[Upstreams]:
    async with (
        AnthropicFake(model="claude-upstream") as claude,
        GeminiFake(model="gemini-test") as gemini,
        OllamaFake(model="llama-test") as ollama,
        OpenAIFake(model="gpt-compat") as compat,
        OpenAIFake(model="gpt-resp") as resp,
    ):
        for fake in (claude, gemini, ollama, compat, resp):
            fake.default("chat", fake.text("Rayleigh scattering."))
        resp.default("responses", resp.response_text("Rayleigh scattering."))
        yield Upstreams(claude, gemini, ollama, compat, resp)


@pytest.fixture
def serve(tmp_path: Path, up: Upstreams, server_kit: Any) -> Callable[[], contextlib.AbstractAsyncContextManager[Any]]:
    def start() -> Any:
        text = (
            ROUTES.replace("@CLAUDE@", up.claude.url)
            .replace("@GEMINI@", up.gemini.url)
            .replace("@OLLAMA@", up.ollama.url)
            .replace("@COMPAT@", up.compat.url)
            .replace("@RESP@", up.resp.url)
        )
        path = tmp_path / "routes.yaml"
        path.write_text(text)
        return server_kit.serving(path)

    return start


PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}


async def post(s: Any, http: Any, ingress: str, body: dict[str, Any]) -> tuple[int, str | None, bytes]:
    async with http.post(s.url + PATHS[ingress], json=body) as resp:
        return resp.status, resp.headers.get("x-turnout-dropped"), await resp.read()


def messages(route: str, **fields: Any) -> dict[str, Any]:
    return {"model": route, "max_tokens": 16000, "messages": USER, **fields}


def chat(route: str, **fields: Any) -> dict[str, Any]:
    return {"model": route, "messages": USER, **fields}


def responses(route: str, **fields: Any) -> dict[str, Any]:
    return {"model": route, "input": "Why is the sky blue?", **fields}


THINK_8000 = {"type": "enabled", "budget_tokens": 8000}
UNDECLARED = "reasoning (the model does not declare it)"


@pytest.mark.parametrize(
    ("route", "field", "expected"),
    [
        ("g-think", ("generationConfig", "thinkingConfig"), {"thinkingBudget": 8000}),
        ("c-think", ("reasoning_effort",), "medium"),
        ("r-think", ("reasoning_effort",), "medium"),  # a Messages body is translated to chat even there
        ("o-think", ("think",), True),
        ("a-adaptive", ("thinking",), THINK_8000),  # the client's own body: as written, whatever the model's dialect
    ],
)
async def test_messages_thinking_reaches_every_dialect(serve, up, http, route, field, expected):
    """Messages `thinking: {enabled, 8000}` becomes each upstream's own reasoning field, with nothing named dropped."""
    async with serve() as s:
        status, dropped, _ = await post(s, http, "messages", messages(route, thinking=THINK_8000))
    assert (status, dropped) == (200, None)
    value: Any = up.sent(route)
    for key in field:
        value = value[key]
    assert value == expected
    assert "thinking" not in up.sent(route) or route.startswith("a-")


async def test_messages_to_anthropic_is_passed_through_whatever_its_supports(serve, up, http):
    """A Messages request keeps thinking and output_config.effort as written on an Anthropic deployment, also one
    whose supports list (written before reasoning existed) does not name reasoning."""
    body = messages("a-think", thinking=THINK_8000, output_config={"effort": "high"}, temperature=1)
    async with serve() as s:
        for route in ("a-think", "a-plain", "a-listed"):
            status, dropped, _ = await post(s, http, "messages", {**body, "model": route})
            assert (status, dropped) == (200, None)
            assert up.claude.last.json == {**body, "model": "claude-upstream"}


@pytest.mark.parametrize(
    ("route", "check"),
    [
        ("a-think", lambda b: (b["thinking"], b["max_tokens"]) == ({"type": "enabled", "budget_tokens": 24576}, 28672)),
        ("a-adaptive", lambda b: (b["thinking"], b["output_config"]) == ({"type": "adaptive"}, {"effort": "high"})),
        ("g-think", lambda b: b["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 24576}),
        ("o-think", lambda b: b["think"] is True),
        ("c-think", lambda b: b["reasoning_effort"] == "xhigh"),  # an OpenAI client's own level, as written
    ],
)
async def test_chat_reasoning_effort_reaches_every_dialect(serve, up, http, route, check):
    """OpenAI chat `reasoning_effort: xhigh` is each dialect's deepest portable level (as written for OpenAI)."""
    async with serve() as s:
        status, dropped, _ = await post(s, http, "chat", chat(route, reasoning_effort="xhigh"))
    assert (status, dropped) == (200, None)
    assert check(up.sent(route))


@pytest.mark.parametrize(
    ("route", "check"),
    [
        ("a-think", lambda b: (b["thinking"], b["max_tokens"]) == ({"type": "enabled", "budget_tokens": 1024}, 4000)),
        (
            "g-think",
            lambda b: b["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True},
        ),
        ("c-think", lambda b: b["reasoning_effort"] == "low" and "reasoning" not in b),
        ("o-think", lambda b: b["think"] is True),
    ],
)
async def test_responses_reasoning_reaches_every_dialect(serve, up, http, route, check):
    """Responses `reasoning: {effort: low, summary: auto}` is translated for every other upstream."""
    body = responses(route, reasoning={"effort": "low", "summary": "auto"}, max_output_tokens=4000)
    async with serve() as s:
        status, dropped, _ = await post(s, http, "responses", body)
    assert (status, dropped) == (200, None)
    assert check(up.sent(route))


async def test_responses_to_a_responses_upstream_keeps_reasoning_as_written(serve, up, http):
    """A Responses request on a Responses upstream keeps `reasoning` and `include` byte for byte, whatever its
    supports."""
    body = responses(
        "r-think", reasoning={"effort": "minimal", "summary": "detailed"}, include=["reasoning.encrypted_content"]
    )
    async with serve() as s:
        for route in ("r-think", "r-listed"):
            status, dropped, _ = await post(s, http, "responses", {**body, "model": route})
            assert (status, dropped) == (200, None)
            assert up.resp.last.path.endswith("/responses")
            assert up.resp.last.json == {**body, "model": "gpt-resp"}


async def test_an_openai_chat_clients_own_field_goes_as_written_to_an_openai_compatible_model(serve, up, http):
    """reasoning_effort in a chat body reaches an OpenAI-compatible model as written, whatever its supports."""
    async with serve() as s:
        for route in ("c-plain", "c-undeclared"):
            status, dropped, _ = await post(s, http, "chat", chat(route, reasoning_effort="minimal"))
            assert (status, dropped) == (200, None)
            assert up.compat.last.json["reasoning_effort"] == "minimal"


@pytest.mark.parametrize(
    ("ingress", "body", "route", "named"),
    [
        ("chat", chat("a-listed", reasoning_effort="high"), "a-listed", UNDECLARED),
        ("messages", messages("c-plain", thinking=THINK_8000), "c-plain", UNDECLARED),
        ("messages", messages("c-undeclared", thinking=THINK_8000), "c-undeclared", UNDECLARED),
        ("responses", responses("c-plain", reasoning={"effort": "high"}), "c-plain", UNDECLARED),
    ],
)
async def test_a_model_without_reasoning_gets_none_and_the_header_says_so(serve, up, http, ingress, body, route, named):
    """A model that does not declare reasoning is sent no reasoning field; x-turnout-dropped names it."""
    async with serve() as s:
        status, dropped, _ = await post(s, http, ingress, body)
    assert (status, dropped) == (200, named)
    sent = up.sent(route)
    assert not {"reasoning_effort", "thinking", "reasoning"} & set(sent)


async def test_a_streamed_answer_names_the_dropped_reasoning_too(serve, up, http):
    """The header is on a streamed answer as well (set before the first event)."""
    up.compat.script("chat", up.compat.stream_text(["Ray", "leigh."]))
    async with serve() as s:
        status, dropped, raw = await post(s, http, "messages", messages("c-plain", thinking=THINK_8000, stream=True))
    assert (status, dropped) == (200, UNDECLARED)
    assert b"message_stop" in raw and "reasoning_effort" not in up.compat.last.json


async def test_the_header_follows_the_deployment_that_served(serve, up, http):
    """After failing over from a model that would drop it, a reasoning model serves with its budget: nothing named."""
    up.compat.script("chat", up.compat.error(ErrorClass.OVERLOADED))
    async with serve() as s:
        status, dropped, _ = await post(s, http, "chat", chat("plain-then-gemini", reasoning_effort="medium"))
    assert (status, dropped) == (200, None)
    assert up.gemini.last.json["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 8192}


@pytest.mark.parametrize(
    ("max_tokens", "anthropic", "gemini"),
    [
        (3000, {"type": "enabled", "budget_tokens": 1500}, {"thinkingBudget": 1500}),  # a level takes half
        (60000, {"type": "enabled", "budget_tokens": 24576}, {"thinkingBudget": 24576}),  # under half: its own budget
    ],
)
async def test_a_levels_budget_is_fitted_under_max_tokens(serve, up, http, max_tokens, anthropic, gemini):
    """A level's budget takes at most half the output limit, which is sent unchanged."""
    async with serve() as s:
        for route in ("a-think", "g-think"):
            body = chat(route, reasoning_effort="high", max_tokens=max_tokens)
            assert (await post(s, http, "chat", body))[:2] == (200, None)
    assert (up.claude.last.json["thinking"], up.claude.last.json["max_tokens"]) == (anthropic, max_tokens)
    config = up.gemini.last.json["generationConfig"]
    assert (config["thinkingConfig"], config["maxOutputTokens"]) == (gemini, max_tokens)


async def test_a_named_budget_over_max_tokens_is_cut_under_it(serve, up, http):
    """A client's budget at or over the limit is cut to one token under it (Anthropic refuses anything more)."""
    async with serve() as s:
        body = {**chat("a-think", max_tokens=5000), "thinking": THINK_8000}
        assert (await post(s, http, "chat", body))[:2] == (200, None)
        assert (await post(s, http, "messages", messages("g-think", thinking=THINK_8000, max_tokens=5000)))[1] is None
    assert up.claude.last.json["thinking"] == {"type": "enabled", "budget_tokens": 4999}
    assert up.gemini.last.json["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 4999}


async def test_too_small_a_limit_to_think_in_sends_no_thinking(serve, up, http):
    """Under 1,024 tokens to think in, no thinking is sent, and that is named."""
    async with serve() as s:
        for route in ("a-think", "g-think"):
            status, dropped, _ = await post(s, http, "chat", chat(route, reasoning_effort="high", max_tokens=1500))
            assert (status, dropped) == (200, "reasoning (max_tokens too small to think in)")
    assert "thinking" not in up.claude.last.json
    assert "thinkingConfig" not in up.gemini.last.json["generationConfig"]


async def test_anthropic_thinks_only_where_it_can(serve, up, http):
    """A forced tool choice is sent without thinking (Anthropic refuses both), named; sampling is fitted otherwise."""
    tool = {"type": "function", "function": {"name": "look", "parameters": {"type": "object", "properties": {}}}}
    async with serve() as s:
        forced = chat("a-think", reasoning_effort="low", tools=[tool], tool_choice="required")
        status, dropped, _ = await post(s, http, "chat", forced)
        assert (status, dropped) == (200, "reasoning (a forced tool choice)")
        assert "thinking" not in up.claude.last.json and up.claude.last.json["tool_choice"] == {"type": "any"}
        sampled = chat("a-think", reasoning_effort="low", temperature=0.2, top_p=0.5, max_tokens=4000)
        assert (await post(s, http, "chat", sampled))[:2] == (200, None)
    sent = up.claude.last.json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert "temperature" not in sent and sent["top_p"] == 0.95


async def test_reasoning_turned_off_sends_no_reasoning_to_other_dialects(serve, up, http):
    """Messages `thinking: {type: disabled}` sends no thinking field to Gemini, Ollama false, nothing to OpenAI."""
    async with serve() as s:
        for route in ("g-think", "o-think", "c-think"):
            status, dropped, _ = await post(s, http, "messages", messages(route, thinking={"type": "disabled"}))
            assert (status, dropped) == (200, None)
    assert "thinkingConfig" not in up.gemini.last.json.get("generationConfig", {})
    assert up.ollama.last.json["think"] is False
    assert "reasoning_effort" not in up.compat.last.json
