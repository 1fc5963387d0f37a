"""`turnout models`: lists from the fake upstreams via the drivers, the disk cache (TTL, --sync, new models),
typos caught with "did you mean", and the exit codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from turnout.cli import main
from turnout.ops.catalogue import Catalogue, cache_dir
from turnout.testing import AnthropicFake, GeminiFake, OllamaFake, OpenAIFake

OPENAI_IDS = ["gpt-4o-mini", "gpt-4o", "o3-mini", "text-embedding-3-small"]
ANTHROPIC_IDS = ["claude-haiku-4-5", "claude-sonnet-4-5"]
GEMINI_IDS = ["gemini-2.5-flash", "gemini-2.5-pro"]
OLLAMA_IDS = ["llama3.1:8b", "qwen2.5:latest"]


class Fakes:
    def __init__(self) -> None:
        self.openai = OpenAIFake()
        self.anthropic = AnthropicFake()
        self.gemini = GeminiFake()
        self.ollama = OllamaFake()

    def all(self) -> list:
        return [self.openai, self.anthropic, self.gemini, self.ollama]

    def serve_lists(self, openai_ids: list[str] = OPENAI_IDS) -> None:
        self.openai.default("models", self.openai.models(openai_ids))
        self.anthropic.default("models", self.anthropic.models(ANTHROPIC_IDS))
        self.gemini.default("models", self.gemini.models(GEMINI_IDS))
        self.ollama.default("models", self.ollama.models(OLLAMA_IDS))

    def listed(self) -> int:
        return sum(len(f.requests_to("models")) for f in self.all())


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    kit = Fakes()
    for fake in kit.all():
        await fake.start()
    kit.serve_lists()
    yield kit
    for fake in kit.all():
        await fake.close()


def routes(kit: Fakes, *, mini: str = "gpt-4o-mini", llama: str = "llama3.1:8b") -> str:
    return f"""\
version: 1
providers:
  openai: {{driver: openai, base_url: "{kit.openai.url}/v1", api_key: sk-test-models}}
  anthropic: {{driver: anthropic, base_url: "{kit.anthropic.url}", api_key: sk-ant-test}}
  gemini: {{driver: gemini, base_url: "{kit.gemini.url}", api_key: g-test}}
  local: {{driver: ollama, base_url: "{kit.ollama.url}"}}
  nokey: {{driver: openai, api_key: "{{{{ env.TURNOUT_MODELS_TEST_UNSET | default('') }}}}"}}
  echo: {{driver: mock}}
models:
  mini:
    provider: openai
    name: {mini}
  haiku: {{provider: anthropic, name: claude-haiku-4-5}}
  flash: {{provider: gemini, name: models/gemini-2.5-flash}}
  qwen: {{provider: local, name: qwen2.5}}
  llama: {{provider: local, name: "{llama}"}}
  ghost: {{provider: nokey, name: anything-goes}}
  echo: {{provider: echo, name: whatever}}
routes:
  chat: {{chain: [mini, haiku, flash, qwen, llama, ghost, echo]}}
"""


async def models(tmp_path: Path, capsys, text: str, *flags: str) -> tuple[int, str, str]:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    argv = ["models", str(path), "--cache-dir", str(tmp_path / "cache"), *flags]
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_typo_is_caught_with_its_location_and_suggestion(fakes, tmp_path, capsys):
    """'gpt4o-mini' is not offered: exit 1 and FILE:LINE:COL with "did you mean 'gpt-4o-mini'"."""
    code, out, err = await models(tmp_path, capsys, routes(fakes, mini="gpt4o-mini"))
    assert (code, err) == (1, "")
    where = tmp_path / "routes.yaml"
    assert (
        f"{where}:12:11: models.mini.name: provider 'openai' does not offer 'gpt4o-mini'; did you mean 'gpt-4o-mini'?"
        in out
    )
    assert out.rstrip().endswith("4 providers checked, 1 model not offered")


async def test_every_offered_name_passes_in_each_wire_format(fakes, tmp_path, capsys):
    """Names offered by each fake pass (Gemini's models/ prefix, Ollama's implicit :latest); disabled providers and
    the mock are reported but not checked; exit 0."""
    code, out, _ = await models(tmp_path, capsys, routes(fakes), "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["not_offered"] == []
    status = {p["provider"]: (p["status"], p["models"]) for p in data["providers"]}
    assert status == {
        "openai": ("synced", 4),
        "anthropic": ("synced", 2),
        "gemini": ("synced", 2),
        "local": ("synced", 2),
        "nokey": ("disabled", None),
        "echo": ("skipped", None),
    }
    assert data["cache_dir"] == str(tmp_path / "cache" / "models")


async def test_the_cache_is_used_until_its_age_then_refreshed_and_new_models_reported(fakes, tmp_path, capsys):
    """A second run reads the cache (no request); --sync fetches again and names the models new since the last
    sync; --max-age 0 refreshes too."""
    text = routes(fakes)
    await models(tmp_path, capsys, text)
    assert fakes.listed() == 4
    code, out, _ = await models(tmp_path, capsys, text)
    assert code == 0 and fakes.listed() == 4
    assert "(cached)" in out and "(first sync)" in out
    fakes.serve_lists([*OPENAI_IDS, "gpt-5", "gpt-5-mini"])
    code, out, _ = await models(tmp_path, capsys, text, "--sync", "--json")
    assert fakes.listed() == 8
    openai = next(p for p in json.loads(out)["providers"] if p["provider"] == "openai")
    assert (openai["status"], openai["models"], openai["new_since_last_sync"]) == ("synced", 6, ["gpt-5", "gpt-5-mini"])
    code, out, _ = await models(tmp_path, capsys, text)
    assert "2: gpt-5, gpt-5-mini" in out and fakes.listed() == 8  # still known from the cache
    await models(tmp_path, capsys, text, "--max-age", "0s")
    assert fakes.listed() == 12


async def test_a_provider_that_refuses_its_list_fails_the_check(fakes, tmp_path, capsys):
    """A 401 on the list: the row says auth and why, exit 1; with an older cached list it is used, marked stale."""
    fakes.openai.default("models", fakes.openai.error("auth"))
    code, out, _ = await models(tmp_path, capsys, routes(fakes))
    assert code == 1
    assert "auth: Incorrect API key provided" in out and "1 list could not be fetched" in out
    fakes.serve_lists()
    await models(tmp_path, capsys, routes(fakes), "--sync")
    fakes.openai.default("models", fakes.openai.error("auth"))
    code, out, _ = await models(tmp_path, capsys, routes(fakes, mini="gpt4o-mini"), "--sync", "--json")
    openai = next(p for p in json.loads(out)["providers"] if p["provider"] == "openai")
    assert (code, openai["status"]) == (1, "stale")
    assert openai["detail"].startswith("refresh failed (auth: ")
    assert [f["did_you_mean"] for f in json.loads(out)["not_offered"]] == ["gpt-4o-mini"]


async def test_usage_errors_and_unreadable_cache(fakes, tmp_path, capsys):
    """A bad --max-age is a usage error (2); a corrupt cache file is ignored and replaced."""
    code, _, err = await models(tmp_path, capsys, routes(fakes), "--max-age", "soon")
    assert code == 2 and "--max-age: not a duration" in err
    catalogue = Catalogue(tmp_path / "cache" / "models")
    await models(tmp_path, capsys, routes(fakes))
    for path in catalogue.folder.iterdir():
        path.write_text("{not json")
    code, out, _ = await models(tmp_path, capsys, routes(fakes))
    assert code == 0 and "(synced)" in out and fakes.listed() == 8


def test_cache_dir_precedence(monkeypatch, tmp_path):
    """--cache-dir beats $TURNOUT_CACHE_DIR beats $XDG_CACHE_HOME/turnout beats ~/.cache/turnout."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TURNOUT_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "turnout" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "turnout" / "models"
    monkeypatch.setenv("TURNOUT_CACHE_DIR", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env" / "models"
    assert cache_dir(str(tmp_path / "flag")) == tmp_path / "flag" / "models"
