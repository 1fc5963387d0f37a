"""Golden wire tests: the exact request each driver sends upstream for a fixed set of canonical requests.

    record = await capture(driver, fake, CANONICAL_REQUESTS["tools"], session=session, model="gpt-test")
    check_golden(Path("tests/drivers/golden/openai/tools.json"), record)

Embeddings likewise: `capture_embeddings(driver, fake, CANONICAL_EMBEDDINGS["batch"], ...)` records the request an
embeddings call sends (the fake must serve embeddings: `turnout.testing.embeddings_fake`).

A record holds the method, path, query, the headers that matter (credentials masked as "***") and the parsed
body. `check_golden` compares with the stored file; with `TURNOUT_UPDATE_GOLDEN=1` in the environment it
rewrites the file instead (review the diff before committing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from turnout.drivers.base import CallContext, Driver, EmbeddingContext
from turnout.embeddings import EmbeddingRequest
from turnout.types import ChatRequest

UPDATE_ENV = "TURNOUT_UPDATE_GOLDEN"
PNG_DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _call(ident: str, arguments: str) -> dict[str, Any]:
    return {"id": ident, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


# name -> the client's OpenAI chat body. Drivers of every wire format are recorded against the same set.
CANONICAL_REQUESTS: Mapping[str, Mapping[str, Any]] = {
    "plain": {"model": "route", "messages": [{"role": "user", "content": "Hello!"}]},
    "system_multiturn": {
        "model": "route",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Another one."},
        ],
        "temperature": 0.4,
        "top_p": 0.9,
    },
    "tools": {
        "model": "route",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "24C cloudy"},
        ],
        "tools": [_WEATHER_TOOL],
        "tool_choice": "auto",
    },
    "vision": {
        "model": "route",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}},
                ],
            }
        ],
    },
    "streaming": {
        "model": "route",
        "messages": [{"role": "user", "content": "Count to three."}],
        "stream": True,
        "stream_options": {"include_usage": False},
    },
    "json_mode": {
        "model": "route",
        "messages": [{"role": "user", "content": "Give me a JSON object with a key 'ok'."}],
        "response_format": {"type": "json_object"},
        "seed": 7,
    },
    "stop_max_tokens": {
        "model": "route",
        "messages": [{"role": "user", "content": "Write a list."}],
        "stop": ["\n\n", "END"],
        "max_tokens": 64,
        "turnout_mock": {"reply": "directives never go upstream"},
    },
}

# name -> the client's OpenAI embeddings body, recorded for every driver that serves embeddings ("tokens" only for
# those whose upstream takes token-id arrays). The model behind them returns 8 dimensions.
CANONICAL_EMBEDDINGS: Mapping[str, Mapping[str, Any]] = {
    "one": {"model": "route", "input": "Hello, vectors!"},
    "batch": {"model": "route", "input": ["first", "second ✓"], "encoding_format": "base64", "user": "user-7"},
    "shorter": {"model": "route", "input": ["short"], "dimensions": 4, "encoding_format": "float"},
    "own_length": {"model": "route", "input": "own length", "dimensions": 8, "turnout_mock": {"latency": 0}},
    "tokens": {"model": "route", "input": [[9906, 1917], [15339]]},
}
GOLDEN_EMBEDDING_DIMENSIONS = 8

_DROPPED_HEADERS = frozenset(
    {"host", "user-agent", "content-length", "accept", "accept-encoding", "connection", "content-type"}
)
_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "x-goog-api-key"})


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _DROPPED_HEADERS:
            continue
        if lower in _SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] + " " if lower == "authorization" and " " in value else ""
            value = f"{scheme}***"
        out[lower] = value
    return dict(sorted(out.items()))


async def capture(
    driver: Driver,
    fake: Any,
    body: Mapping[str, Any],
    *,
    session: aiohttp.ClientSession,
    model: str,
    prefix: str | None = None,
    model_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Send `body` through `driver` to `fake` (scripting a plain answer) and return the recorded request.

    `prefix` makes it a continuation (`assistant_prefix`: what `mid_stream: continue` sends); `model_options` are
    the model's options from the routing file."""
    request = ChatRequest.from_openai(dict(body))
    if prefix is not None:
        request = request.with_prefix(prefix)
    ctx = CallContext(session=session, model=model, attempt_timeout=10.0, model_options=model_options or {})
    before = len(fake.requests)
    if request.stream:
        fake.script("chat", fake.stream_text(["ok"]))
        async for _ in driver.stream(request, ctx):
            pass
    else:
        fake.script("chat", fake.text("ok"))
        await driver.send(request, ctx)
    recorded = fake.requests[before:]
    return _record([r for r in recorded if r.endpoint == "chat"][-1])


async def capture_embeddings(
    driver: Driver, fake: Any, body: Mapping[str, Any], *, session: aiohttp.ClientSession, model: str
) -> dict[str, Any]:
    """Send the embeddings `body` through `driver` to `fake` (which answers as a model of
    GOLDEN_EMBEDDING_DIMENSIONS) and return the recorded request."""
    request = EmbeddingRequest.from_openai(dict(body))
    ctx = EmbeddingContext(session=session, model=model, attempt_timeout=10.0, dimensions=GOLDEN_EMBEDDING_DIMENSIONS)
    before = len(fake.requests)
    fake.script("embeddings", fake.embeddings(dimensions=GOLDEN_EMBEDDING_DIMENSIONS))
    await driver.embed(request, ctx)  # type: ignore[attr-defined]
    return _record([r for r in fake.requests[before:] if r.endpoint == "embeddings"][-1])


def _record(request: Any) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "query": dict(sorted(request.query.items())),
        "headers": _headers(request.headers),
        "body": request.json,
    }


def check_golden(path: Path, record: Mapping[str, Any]) -> None:
    """Assert `record` equals the golden file at `path` (or rewrite it when TURNOUT_UPDATE_GOLDEN=1)."""
    text = json.dumps(record, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    if os.environ.get(UPDATE_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        raise AssertionError(f"golden file {path} is missing; run with {UPDATE_ENV}=1 to create it")
    expected = json.loads(path.read_text())
    assert json.loads(text) == expected, f"request differs from {path}; rerun with {UPDATE_ENV}=1 if intended"
