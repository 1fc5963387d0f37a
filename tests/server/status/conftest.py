"""A routing file for the status page tests, on the mock driver only, served on 127.0.0.1:0.

`drill` takes per-request `turnout_mock` faults (so a test opens its breaker with a few scripted 500s), `limited`
has an rpm limit of 1, `missing` has a provider whose key is not set (disabled), and the `shady` route's
description is markup that must only ever be shown as text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HOSTILE_DESCRIPTION = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'

STATUS_ROUTES = """\
version: 1
defaults:
  retry: {attempts: 0}
  breaker: {failure_threshold: 2, recovery_timeout: 10m}
providers:
  echo: {driver: mock, options: {reply: echo, tokens_per_second: 0}}
  drill: {driver: mock, options: {reply: echo, tokens_per_second: 0, request_directives: true}}
  limited: {driver: mock, options: {reply: echo}}
  missing: {driver: openai, api_key: "{{ env.TURNOUT_TEST_NEVER_SET | default('') }}"}
models:
  echo: {provider: echo, name: echo-1, price: {input: 1, output: 2}}
  drill: {provider: drill, name: drill-1, price: {input: 1, output: 2}}
  limited: {provider: limited, limits: {rpm: 1}}
  gone: {provider: missing, name: gpt-none}
pools:
  front: {strategy: priority, members: [gone, drill]}
routes:
  drill:
    description: Fault drills; the breaker opens after two scripted failures.
    chain: [front, echo]
  limit: {chain: [limited, echo]}
  shady:
    description: '@HOSTILE@'
    chain: [echo]
server:
  watch: false
@SERVER@
"""


def status_routes(server: str = "") -> str:
    return STATUS_ROUTES.replace("@HOSTILE@", HOSTILE_DESCRIPTION.replace("'", "''")).replace("@SERVER@", server)


def fault(status: int = 500) -> dict[str, Any]:
    """A chat body that makes the drill provider fail with `status` (its breaker counts it)."""
    return {
        "model": "drill",
        "messages": [{"role": "user", "content": "hi"}],
        "turnout_mock": {"faults": [{"kind": "status", "status": status}]},
    }


@pytest.fixture
def serve_status(tmp_path: Path, server_kit: Any) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
    """`async with serve_status(server="  admin_keys: [...]\\n") as s:` serves `status_routes`."""

    def start(server: str = "", **options: Any) -> Any:
        path = tmp_path / "routes.yaml"
        path.write_text(status_routes(server))
        return server_kit.serving(path, **options)

    return start


@pytest.fixture
def status_kit() -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(fault=fault, hostile=HOSTILE_DESCRIPTION, routes=status_routes)
