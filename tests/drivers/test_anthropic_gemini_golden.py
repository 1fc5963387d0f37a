"""Golden files: the exact requests the anthropic and gemini drivers send upstream for canonical requests.

The shared canonical set (`turnout.testing.golden.CANONICAL_REQUESTS`, recorded for every driver) plus a few
requests that exercise translation-only mappings (temperature clamp, named tool choice, JSON schema, turn merging).
Regenerate after an intended change with `TURNOUT_UPDATE_GOLDEN=1 python -m pytest tests/drivers -k golden` and
review the diff of `tests/drivers/golden/{anthropic,gemini}/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from turnout.config import ProviderSpec, Secret
from turnout.drivers.anthropic import AnthropicDriver
from turnout.drivers.gemini import GeminiDriver
from turnout.testing import AnthropicFake, GeminiFake
from turnout.testing.golden import CANONICAL_REQUESTS, capture, check_golden

GOLDEN = Path(__file__).parent / "golden"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TRANSLATION_REQUESTS: Mapping[str, Mapping[str, Any]] = {
    "x_sampling_clamp": {
        "model": "route",
        "messages": [{"role": "user", "content": "Count to ten."}],
        "temperature": 1.8,
        "top_p": 0.5,
        "stop": "five",
        "max_completion_tokens": 32,
        "presence_penalty": 0.5,
        "user": "user-123",
    },
    "x_tool_choice_named_serial": {
        "model": "route",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    },
    "x_tool_results_then_user": {
        "model": "route",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "user", "content": "In Paris."},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {"id": "call:9", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
                ],
            },
            {"role": "user", "content": "Quickly please."},
            {"role": "tool", "tool_call_id": "call:9", "content": [{"type": "text", "text": "18C"}]},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
    },
    "x_json_schema": {
        "model": "route",
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
}
REQUESTS = {**CANONICAL_REQUESTS, **TRANSLATION_REQUESTS}
SETUPS = {
    "anthropic": (AnthropicFake, AnthropicDriver, "claude-test"),
    "gemini": (GeminiFake, GeminiDriver, "gemini-test"),
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
@pytest.mark.parametrize("driver_name", sorted(SETUPS))
async def test_golden_request(driver_name: str, name: str) -> None:
    """The upstream request (method, path, query, headers, body) for each canonical request equals its golden file."""
    fake_cls, driver_cls, model = SETUPS[driver_name]
    async with fake_cls() as fake, aiohttp.ClientSession() as session:
        spec = ProviderSpec(name=driver_name, driver=driver_name, base_url=fake.url, api_key=Secret("k-secret"))
        record = await capture(driver_cls(spec), fake, REQUESTS[name], session=session, model=model)
    check_golden(GOLDEN / driver_name / f"{name}.json", record)
