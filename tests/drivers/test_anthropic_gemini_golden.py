"""Golden files: the exact JSON bodies the anthropic and gemini drivers send upstream for canonical requests.

Regenerate after an intended change with `TURNOUT_UPDATE_GOLDEN=1 python -m pytest tests/drivers -k golden` and
review the diff of `tests/drivers/golden/{anthropic,gemini}/`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from turnout.config import ProviderSpec, Secret
from turnout.drivers.anthropic import AnthropicDriver
from turnout.drivers.base import CallContext
from turnout.drivers.gemini import GeminiDriver
from turnout.testing import AnthropicFake, GeminiFake
from turnout.types import ChatRequest

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}

CANONICAL: dict[str, dict[str, Any]] = {
    "basic": {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
        "temperature": 0.2,
        "max_tokens": 100,
    },
    "multi_turn": {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "developer", "content": "Answer in French from now on."},
            {"role": "user", "content": "Another one."},
            {"role": "user", "content": "And a fruit."},
        ],
    },
    "sampling_and_stop": {
        "messages": [{"role": "user", "content": "Count to ten."}],
        "temperature": 1.8,
        "top_p": 0.9,
        "stop": ["5", "five"],
        "max_completion_tokens": 64,
        "presence_penalty": 0.5,
        "seed": 42,
        "user": "user-123",
    },
    "tools_auto": {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL, TIME_TOOL],
        "tool_choice": "auto",
    },
    "tool_choice_named_serial": {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    },
    "tool_round_trip_parallel": {
        "messages": [
            {"role": "user", "content": "Weather in Paris and the time?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    {
                        "id": "call_w1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {"id": "call_t2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_w1", "content": "18C, sunny"},
            {"role": "tool", "tool_call_id": "call_t2", "content": "12:00"},
            {"role": "user", "content": "Summarise."},
        ],
        "tools": [WEATHER_TOOL, TIME_TOOL],
    },
    "vision_data_url": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                ],
            }
        ],
    },
    "json_schema": {
        "messages": [{"role": "user", "content": "Give me a person."}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "person",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                    "required": ["name", "age"],
                    "additionalProperties": False,
                },
            },
        },
    },
    "json_object": {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A JSON greeting."}],
        "response_format": {"type": "json_object"},
    },
    "stream": {
        "messages": [{"role": "user", "content": "Stream a haiku."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "turnout_mock": {"reply": "never sent upstream"},
    },
}

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TURNOUT_UPDATE_GOLDEN") == "1"
SETUPS = {
    "anthropic": (AnthropicFake, AnthropicDriver, "claude-test"),
    "gemini": (GeminiFake, GeminiDriver, "gemini-test"),
}


async def sent_body(driver_name: str, body: dict) -> dict:
    fake_cls, driver_cls, model = SETUPS[driver_name]
    request = ChatRequest.from_openai({"model": "route", **body})
    async with fake_cls() as fake, aiohttp.ClientSession() as session:
        spec = ProviderSpec(name=driver_name, driver=driver_name, base_url=fake.url, api_key=Secret("k"))
        driver = driver_cls(spec)
        ctx = CallContext(session=session, model=model, attempt_timeout=5.0)
        if request.stream:
            fake.script("chat", fake.stream_text(["ok"]))
            [chunk async for chunk in driver.stream(request, ctx)]
        else:
            fake.script("chat", fake.text("ok"))
            await driver.send(request, ctx)
        return json.loads(fake.last.body)


@pytest.mark.parametrize("name", sorted(CANONICAL))
@pytest.mark.parametrize("driver_name", sorted(SETUPS))
async def test_golden_request_body(driver_name: str, name: str) -> None:
    """The upstream body for each canonical request equals its reviewed golden file."""
    body = await sent_body(driver_name, CANONICAL[name])
    path = GOLDEN / driver_name / f"{name}.json"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    assert path.exists(), f"missing golden file {path}; run with TURNOUT_UPDATE_GOLDEN=1 and review it"
    assert body == json.loads(path.read_text())
