"""`turnout check`: one credential probe per enabled provider, as a table or JSON, failing the pipeline on a bad key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from turnout.cli import main
from turnout.testing import AnthropicFake, OpenAIFake, hang


def routes(openai: OpenAIFake, anthropic: AnthropicFake, silent: OpenAIFake) -> str:
    return f"""\
version: 1
defaults: {{attempt_timeout: 500ms}}
providers:
  good: {{driver: openai, base_url: "{openai.url}/v1", api_key: sk-good-SECRET}}
  badkey: {{driver: anthropic, base_url: "{anthropic.url}", api_key: sk-ant-bad-SECRET}}
  silent: {{driver: openai, base_url: "{silent.url}/v1", api_key: sk-silent-SECRET}}
  nokey: {{driver: openai, api_key: "{{{{ env.TURNOUT_CHECK_TEST_UNSET | default('') }}}}"}}
  echo: {{driver: mock}}
models:
  a: {{provider: good}}
  b: {{provider: badkey}}
  c: {{provider: silent}}
  d: {{provider: nokey}}
  e: {{provider: echo}}
routes:
  r: {{chain: [a, b, c, d, e]}}
"""


async def check(tmp_path: Path, capsys, text: str, *flags: str) -> tuple[int, str, str]:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    code = await asyncio.to_thread(main, ["check", str(path), *flags])
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_table_shows_each_provider_and_a_bad_key_fails(tmp_path, capsys):
    """ok / failed (auth, timeout) / disabled rows with latency and error class; exit 1; no key in the output."""
    async with OpenAIFake() as good, AnthropicFake() as bad, OpenAIFake() as silent:
        good.default("models", good.models(["gpt-test"]))
        bad.default("models", bad.error("auth"))
        silent.default("models", hang())
        code, out, err = await check(tmp_path, capsys, routes(good, bad, silent))
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0].split() == ["provider", "result", "latency", "error", "class", "detail"]
    rows = {line.split()[0]: line for line in lines[1:6]}
    assert rows["good"].split()[1:4] == ["ok", rows["good"].split()[2], "ms"]
    assert (
        rows["badkey"].split()[1] == "failed" and " auth " in rows["badkey"] and "invalid x-api-key" in rows["badkey"]
    )
    assert rows["silent"].split()[1] == "failed" and " timeout " in rows["silent"]
    assert rows["nokey"].split()[1] == "disabled" and "TURNOUT_CHECK_TEST_UNSET is not set" in rows["nokey"]
    assert rows["echo"].split()[1] == "ok"
    assert lines[-1] == "2 providers ok, 2 failed, 1 disabled"
    assert "SECRET" not in out


async def test_all_good_exits_0_and_strict_counts_disabled_providers(tmp_path, capsys):
    """Every enabled provider passing exits 0; --strict makes a disabled provider a failure; --json says the same."""
    async with OpenAIFake() as good, AnthropicFake() as other, OpenAIFake() as third:
        good.default("models", good.models(["gpt-test"]))
        other.default("models", other.models(["claude-test"]))
        third.default("models", third.models(["gpt-test"]))
        text = routes(good, other, third)
        code, out, _ = await check(tmp_path, capsys, text, "--json")
        assert code == 0
        data = json.loads(out)
        assert data["ok"] is True
        assert [(p["provider"], p["result"]) for p in data["providers"]] == [
            ("good", "ok"),
            ("badkey", "ok"),
            ("silent", "ok"),
            ("nokey", "disabled"),
            ("echo", "ok"),
        ]
        assert all(p["latency"] is not None for p in data["providers"] if p["result"] == "ok")
        code, out, _ = await check(tmp_path, capsys, text, "--strict")
    assert code == 1 and "1 disabled" in out


def test_an_invalid_file_is_reported_like_validate(tmp_path, capsys):
    """An invalid file exits 1 with located problems; a missing file is a usage error (2)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nproviders: {m: {driver: mock}}\nmodels: {x: {provider: n}}\nroutes: {r: {chain: [x]}}\n"
    )
    assert main(["check", str(bad)]) == 1
    assert f"{bad}:3:24: models.x.provider: unknown provider 'n'" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "missing.yaml")]) == 2
