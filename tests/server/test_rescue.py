"""Rescuing broken streams through the sidecar, read with the official `openai` SDK.

Every upstream is a loopback OpenAIFake that knows one canonical answer and continues a partial one in its own
prefill dialect (or not at all). Each row of the scenario table breaks the primary's stream in some way, and every
rescued stream must deliver exactly the canonical text, once: no missing and no repeated words.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from turnout.testing import OpenAIFake

CANONICAL = (
    "Turnout keeps the answer whole. When a stream breaks after its first token, the route decides what happens "
    "next:\n\nit ends with an error, continues from the text so far on a fallback that can prefill, or holds the "
    "answer back and restarts it cleanly. Either way, every word arrives exactly once."
)
ASK = [{"role": "user", "content": "How does turnout rescue a stream?"}]
FALLBACKS = {  # fake name -> (upstream model, prefill dialect)
    "llamacpp": ("llama-3.1-8b", "assistant"),
    "vllm": ("Qwen2.5-7B-Instruct", "vllm"),
    "mistral": ("mistral-small-latest", "prefix"),
    "plain": ("gpt-backup", None),
}
ROUTES = """\
version: 1
defaults:
  retry: {attempts: 0}
  breaker: {failure_threshold: 100}
  first_token_timeout: 5s
  stall_timeout: 400ms
providers:
  primary: {driver: openai, base_url: "@primary@/v1", api_key: sk-primary}
  llamacpp: {driver: openai, base_url: "@llamacpp@/v1", options: {prefill: assistant}}
  vllm: {driver: openai, base_url: "@vllm@/v1", options: {prefill: vllm}}
  mistral: {driver: openai, base_url: "@mistral@/v1", api_key: sk-mistral}
  plain: {driver: openai, base_url: "@plain@/v1", api_key: sk-backup}
models:
  gpt: {provider: primary, name: gpt-primary, price: {input: 1, output: 2}}
  llama: {provider: llamacpp, name: llama-3.1-8b, price: {input: 0.1, output: 0.1}}
  qwen: {provider: vllm, name: Qwen2.5-7B-Instruct, price: {input: 0.1, output: 0.1}}
  small:
    provider: mistral
    name: mistral-small-latest
    options: {prefill: prefix}
    supports: [tools, json, prefill, streaming]
    price: {input: 0.2, output: 0.6}
  backup: {provider: plain, name: gpt-backup, price: {input: 1, output: 2}}
routes:
  via-llamacpp: {chain: [gpt, llama], mid_stream: continue}
  via-vllm: {chain: [gpt, qwen], mid_stream: continue}
  via-mistral: {chain: [gpt, small], mid_stream: continue}
  twice: {chain: [gpt, qwen, llama], mid_stream: continue}
  no-prefill: {chain: [gpt, backup], mid_stream: continue}
  restart: {chain: [gpt, backup], mid_stream: restart}
server:
  watch: false
"""


@dataclass
class Upstreams:
    primary: OpenAIFake
    fallbacks: dict[str, OpenAIFake] = field(default_factory=dict)

    def __getitem__(self, name: str) -> OpenAIFake:
        return self.primary if name == "primary" else self.fallbacks[name]


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    async with contextlib.AsyncExitStack() as stack:
        primary = await stack.enter_async_context(OpenAIFake(model="gpt-primary"))
        fakes = {
            name: await stack.enter_async_context(OpenAIFake(model=model, prefill=dialect))  # type: ignore[arg-type]
            for name, (model, dialect) in FALLBACKS.items()
        }
        yield Upstreams(primary, fakes)


@pytest.fixture
async def sidecar(upstreams: Upstreams, tmp_path: Path, server_kit: Any) -> AsyncIterator[Any]:
    text = ROUTES.replace("@primary@", upstreams.primary.url)
    for name, fake in upstreams.fallbacks.items():
        text = text.replace(f"@{name}@", fake.url)
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    async with server_kit.serving(path) as served:
        yield served


@dataclass
class Read:
    """What the client got: the text, each content chunk's `model`, and the error it raised (if any)."""

    text: str
    models: list[str]
    error: openai.APIError | None


async def read(served: Any, route: str) -> Read:
    client = served.client()
    parts: list[str] = []
    models: list[str] = []
    try:
        stream = await client.chat.completions.create(model=route, messages=ASK, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
                models.append(chunk.model)
    except openai.APIError as exc:
        return Read("".join(parts), models, exc)
    return Read("".join(parts), models, None)


# route, primary's break, after how many tokens, fallback (name, which side of a token its whitespace travels on,
# whether it echoes the prefix), expected outcome. With whitespace "after", a cut leaves the caller a trailing
# space the continuation (asked to extend the text without it) starts with again: the seam must not double it.
SCENARIOS = [
    ("via-llamacpp", "cut", 7, ("llamacpp", "before", False), "whole"),
    ("via-vllm", "cut", 12, ("vllm", "before", False), "whole"),
    ("via-mistral", "cut", 20, ("mistral", "before", False), "whole"),
    ("via-mistral", "cut", 9, ("mistral", "after", True), "whole"),  # trailing-space tokens, echoing server
    ("via-vllm", "stall", 15, ("vllm", "after", False), "whole"),
    ("via-llamacpp", "malformed", 5, ("llamacpp", "before", False), "whole"),
    ("via-llamacpp", "cut", 19, ("llamacpp", "after", False), "whole"),  # cut right after "next:\n\n"
    ("via-mistral", "error", 25, ("mistral", "before", False), "whole"),
    ("no-prefill", "cut", 10, ("plain", "before", False), "clean error"),
    ("restart", "cut", 10, ("plain", "before", False), "whole"),
    ("restart", "stall", 3, ("plain", "after", False), "whole"),
]


@pytest.mark.parametrize(("route", "fault", "after", "fallback", "outcome"), SCENARIOS)
async def test_a_broken_stream_delivers_the_canonical_answer_exactly_once(
    upstreams, sidecar, route, fault, after, fallback, outcome
):
    """The primary breaks after `after` tokens; a rescued stream delivers the canonical text exactly, and one that
    cannot be rescued ends with a clean error after a prefix of it (nothing repeated, nothing passed off as whole)."""
    name, whitespace, echo = fallback
    primary = upstreams.primary
    primary.script("chat", primary.stream_answer(CANONICAL, fault=fault, after=after, whitespace=whitespace))
    backup = upstreams[name]
    backup.script("chat", backup.stream_answer(CANONICAL, whitespace=whitespace, echo_prefix=echo))
    got = await read(sidecar, route)
    if outcome == "whole":
        assert got.error is None, got.error
        assert got.text == CANONICAL
    else:
        assert isinstance(got.error, openai.APIError) and not isinstance(got.error, openai.APIStatusError)
        assert CANONICAL.startswith(got.text) and 0 < len(got.text) < len(CANONICAL)
        assert backup.requests_to("chat") == []  # no prefill: the fallback is never asked to continue
    line = json.loads(sidecar.access_lines()[-1])
    if route == "restart":  # held back: the client only ever saw the fallback's answer, served whole
        assert set(got.models) == {"gpt-backup"}
        assert line["ttft_ms"] == pytest.approx(line["latency_ms"], rel=0.5)
        assert "splices" not in line
    elif outcome == "whole":  # each chunk names the model that produced it: the primary, then the fallback
        split = got.models.index(backup.model)
        assert set(got.models[:split]) == {"gpt-primary"} and set(got.models[split:]) == {backup.model}
        [splice] = line["splices"]
        assert splice["continued_from"] == "primary/gpt" and splice["chars_kept"] > 0
        assert CANONICAL.startswith(backup.last.json["messages"][-1]["content"])  # the prefix it was asked to extend
        assert line["attempts"][0]["usage_estimated"] is True
        assert line["completion_tokens"] > after and line["cost_usd"] > 0  # summed over both attempts


async def test_a_continuation_that_breaks_too_is_continued_again(upstreams, sidecar):
    """Primary cut, first fallback cut as well: the second fallback finishes; two splices, one exact answer."""
    upstreams.primary.script("chat", upstreams.primary.stream_answer(CANONICAL, fault="cut", after=6))
    vllm, llama = upstreams["vllm"], upstreams["llamacpp"]
    vllm.script("chat", vllm.stream_answer(CANONICAL, fault="cut", after=8))
    llama.script("chat", llama.stream_answer(CANONICAL))
    got = await read(sidecar, "twice")
    assert got.error is None and got.text == CANONICAL
    line = json.loads(sidecar.access_lines()[-1])
    assert [(s["continued_from"], s["continued_by"]) for s in line["splices"]] == [
        ("primary/gpt", "vllm/qwen"),
        ("vllm/qwen", "llamacpp/llama"),
    ]
    assert line["splices"][0]["chars_kept"] < line["splices"][1]["chars_kept"]


async def test_a_restart_whose_fallback_also_breaks_leaks_nothing(upstreams, sidecar):
    """Under restart, when the fallback breaks before its end too, the client gets a clean error status and not one
    word of either partial answer."""
    upstreams.primary.script("chat", upstreams.primary.stream_answer(CANONICAL, fault="cut", after=10))
    backup = upstreams["plain"]
    backup.script("chat", backup.stream_answer(CANONICAL, fault="malformed", after=20))
    got = await read(sidecar, "restart")
    assert isinstance(got.error, openai.APIStatusError) and got.error.status_code >= 500
    assert got.text == "" and got.models == []
    line = json.loads(sidecar.access_lines()[-1])
    assert [a["outcome"] for a in line["attempts"]] == ["error", "error"]


async def test_a_misconfigured_dialect_ends_with_the_original_cut(upstreams, sidecar, tmp_path, server_kit):
    """A fallback told the wrong dialect refuses the continuation (Mistral's 422 for vLLM's fields): the client gets
    a clean error naming the original cut, never a repeated answer."""
    upstreams.primary.script("chat", upstreams.primary.stream_answer(CANONICAL, fault="cut", after=8))
    mistral = upstreams["mistral"]
    mistral.script("chat", mistral.stream_answer(CANONICAL))
    path = Path(sidecar.path)
    path.write_text(path.read_text().replace("options: {prefill: prefix}", "options: {prefill: vllm}"))
    async with server_kit.serving(path) as served:
        got = await read(served, "via-mistral")
        line = json.loads(served.access_lines()[-1])
    assert got.error is not None and CANONICAL.startswith(got.text) and len(got.text) < len(CANONICAL)
    assert line["error_class"] == "connection"
    assert [(a["outcome"], a.get("status")) for a in line["attempts"]] == [("error", None), ("error", 422)]


async def test_the_trail_comment_tells_a_raw_client_what_happened(upstreams, sidecar, http):
    """A continued stream ends with `: turnout-trail {...}` before [DONE]; a stream served as its headers said
    ends without it."""
    upstreams.primary.script(
        "chat",
        upstreams.primary.stream_answer(CANONICAL, fault="cut", after=5),
        upstreams.primary.stream_answer(CANONICAL),
    )
    vllm = upstreams["vllm"]
    vllm.script("chat", vllm.stream_answer(CANONICAL))
    bodies = []
    for _ in range(2):
        body = {"model": "via-vllm", "messages": ASK, "stream": True}
        async with http.post(f"{sidecar.url}/v1/chat/completions", json=body) as resp:
            bodies.append(await resp.read())
    rescued, plain = bodies
    assert rescued.endswith(b"data: [DONE]\n\n") and plain.endswith(b"data: [DONE]\n\n")
    assert b": turnout-trail " not in plain
    comment = next(line for line in rescued.split(b"\n") if line.startswith(b": turnout-trail "))
    trail = json.loads(comment[len(b": turnout-trail ") :])
    assert trail["served_by"] == "primary/gpt"
    assert [a["deployment"] for a in trail["attempts"]] == ["primary/gpt", "vllm/qwen"]
    assert trail["splices"][0]["continued_by"] == "vllm/qwen"


async def test_a_restarted_answer_arrives_with_its_full_headers(upstreams, sidecar, http):
    """A held-back answer is complete when its headers leave: they count every attempt and carry the cost."""
    upstreams.primary.script("chat", upstreams.primary.stream_answer(CANONICAL, fault="cut", after=10))
    backup = upstreams["plain"]
    backup.script("chat", backup.stream_answer(CANONICAL))
    body = {"model": "restart", "messages": ASK, "stream": True}
    async with http.post(f"{sidecar.url}/v1/chat/completions", json=body) as resp:
        headers = resp.headers
        raw = await resp.read()
    assert headers["x-turnout-served-by"] == "plain/backup" and headers["x-turnout-attempts"] == "2"
    line = json.loads(sidecar.access_lines()[-1])
    assert float(headers["x-turnout-cost-usd"]) == pytest.approx(line["cost_usd"])
    assert b": turnout-trail " not in raw  # the headers told the whole story
