"""Fixtures for the Messages ingress: the sidecar on a strict Anthropic fake and two OpenAI fakes.

`messages_serve(server=..., extra_routes=...)` runs the real app on a routing file whose routes start at Anthropic
(`claude`: native pass-through, then OpenAI), at OpenAI (`gpt`: translated both ways, then the backup) or mix them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from turnout.testing import AnthropicFake

ANTHROPIC_KEY = "sk-ant-SECRET-0004"
ROUTES = """\
version: 1
defaults:
  retry: {attempts: 0}
  breaker: {failure_threshold: 50}
  first_token_timeout: 5s
  stall_timeout: 5s
providers:
  claude: {driver: anthropic, base_url: "@CLAUDE@", api_key: "@ANTHROPIC_KEY@"}
  oai: {driver: openai, base_url: "@PRIMARY@/v1", api_key: "@PRIMARY_KEY@"}
  oai2: {driver: openai, base_url: "@BACKUP@/v1", api_key: "@BACKUP_KEY@"}
  nokey: {driver: openai, api_key: "{{ env.TURNOUT_TEST_MISSING_KEY | default('') }}"}
@EXTRA_PROVIDERS@
models:
  c1:
    provider: claude
    name: claude-upstream
    price: {input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75}
  g1: {provider: oai, name: gpt-test, price: {input: 1.0, output: 2.0}}
  g2: {provider: oai2, name: gpt-backup, price: {input: 1.0, output: 2.0}}
  dead: {provider: nokey, name: gpt-none}
@EXTRA_MODELS@
routes:
  claude: {chain: [c1, g1]}
  gpt: {chain: [g1, g2]}
  gpt-then-claude: {chain: [g1, c1]}
  claude-only: {chain: [c1]}
  unavailable: {chain: [dead]}
@EXTRA_ROUTES@
server:
  watch: false
@SERVER@
@CLIENTS@
"""


@pytest.fixture
async def claude() -> AsyncIterator[AnthropicFake]:
    async with AnthropicFake(model="claude-upstream") as fake:
        yield fake


def _write_routes(
    tmp_path: Path, template: str, claude: Any, primary: Any, backup: Any, keys: Any, **fields: str
) -> Path:
    """`template` with the fakes' URLs and keys and each `@NAME@` of `fields` filled in, written to routes.yaml."""
    values = {
        "CLAUDE": claude.url,
        "PRIMARY": primary.url,
        "BACKUP": backup.url,
        "ANTHROPIC_KEY": ANTHROPIC_KEY,
        "PRIMARY_KEY": keys.primary,
        "BACKUP_KEY": keys.backup,
        **fields,
    }
    text = template
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def messages_serve(
    tmp_path: Path, claude: AnthropicFake, primary: Any, backup: Any, keys: Any, server_kit: Any
) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
    """`async with messages_serve(server=..., extra_routes=...) as s:` (raw indented YAML; `extra_providers` and
    `extra_models` too; `clients` a whole `clients:` section)."""

    def start(
        *,
        extra_routes: str = "",
        server: str = "",
        extra_providers: str = "",
        extra_models: str = "",
        clients: str = "",
        **app_options: Any,
    ) -> Any:
        fields = {"EXTRA_PROVIDERS": extra_providers, "EXTRA_MODELS": extra_models, "EXTRA_ROUTES": extra_routes}
        path = _write_routes(tmp_path, ROUTES, claude, primary, backup, keys, SERVER=server, CLIENTS=clients, **fields)
        return server_kit.serving(path, **app_options)

    return start


def anthropic_client(served: Any, api_key: str = "unused", **options: Any) -> Any:
    import anthropic

    return anthropic.AsyncAnthropic(base_url=served.url, api_key=api_key, max_retries=0, timeout=10, **options)


@pytest.fixture(scope="session")
def sdk() -> Any:
    """`sdk.client(served, api_key=...)`: the official `anthropic` SDK pointed at a running sidecar."""
    from types import SimpleNamespace

    return SimpleNamespace(client=anthropic_client)


# -- the Responses API ingress ----------------------------------------------------------------------------------
RESPONSES_ROUTES = """\
version: 1
defaults:
  retry: {attempts: 0}
  breaker: {failure_threshold: 50}
  first_token_timeout: 5s
  stall_timeout: 5s
providers:
  oai: {driver: openai, base_url: "@PRIMARY@/v1", api_key: "@PRIMARY_KEY@", options: {responses: true}}
  oai2: {driver: openai, base_url: "@BACKUP@/v1", api_key: "@BACKUP_KEY@", options: {responses: true}}
  compat: {driver: openai, base_url: "@BACKUP@/v1", api_key: "@BACKUP_KEY@"}
  claude: {driver: anthropic, base_url: "@CLAUDE@", api_key: "@ANTHROPIC_KEY@"}
  nokey: {driver: openai, api_key: "{{ env.TURNOUT_TEST_MISSING_KEY | default('') }}"}
models:
  r1: {provider: oai, name: gpt-test, price: {input: 1.0, output: 2.0}}
  r2: {provider: oai2, name: gpt-backup, price: {input: 1.0, output: 2.0}}
  c1: {provider: compat, name: gpt-backup, price: {input: 1.0, output: 2.0}}
  a1: {provider: claude, name: claude-upstream, price: {input: 3.0, output: 15.0}}
  dead: {provider: nokey, name: gpt-none}
routes:
  native: {chain: [r1, r2]}
  native-solo: {chain: [r1]}
  compat: {chain: [c1]}
  claude: {chain: [a1]}
  native-then-claude: {chain: [r1, a1]}
  native-then-compat: {chain: [r1, c1]}
  unavailable: {chain: [dead]}
@EXTRA_ROUTES@
server:
  watch: false
@SERVER@
@STATE@
@CLIENTS@
"""


@pytest.fixture
def responses_serve(
    tmp_path: Path, claude: AnthropicFake, primary: Any, backup: Any, keys: Any, server_kit: Any
) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
    """`async with responses_serve(server=..., state=..., clients=..., extra_routes=...) as s:` runs the sidecar with
    routes that start at a Responses upstream (`native`: pass-through), a chat-completions upstream (`compat`) or
    Anthropic (`claude`), and mixes of them. The primary fake serves both /responses and /chat/completions."""

    def start(
        *, extra_routes: str = "", server: str = "", state: str = "", clients: str = "", **app_options: Any
    ) -> Any:
        path = _write_routes(
            tmp_path, RESPONSES_ROUTES, claude, primary, backup, keys,
            EXTRA_ROUTES=extra_routes, SERVER=server, STATE=state, CLIENTS=clients,
        )  # fmt: skip
        return server_kit.serving(path, **app_options)

    return start
