"""Golden wire bodies for `/v1/responses`, both directions.

Requests: for each client body below, the exact body each kind of upstream receives (a chat-completions server and
Anthropic, translated; a Responses upstream, as written) and the `x-turnout-dropped` header of the translated answer.
Answers: the Response objects and event sequences a client receives for canonical answers (text and tool calls,
streamed and not), with generated ids and times normalised.

The files live in `golden/responses/`; `TURNOUT_UPDATE_GOLDEN=1` rewrites them (review the diff before committing).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from turnout.testing import ToolCall
from turnout.testing.golden import PNG_DATA_URL, check_golden
from turnout.types import Usage

GOLDEN = Path(__file__).parent / "golden" / "responses"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLIENT_BODIES: dict[str, dict[str, Any]] = {
    "plain": {"input": "Hello!"},
    "instructions_multiturn": {
        "instructions": "You are terse.",
        "input": [
            {"role": "user", "content": "Name a colour."},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Blue."}]},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Answer in French."}]},
            {"role": "user", "content": [{"type": "input_text", "text": "Another one."}]},
        ],
        "temperature": 0.4,
        "top_p": 0.9,
        "max_output_tokens": 64,
    },
    "tools_round_trip": {
        "input": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city": "Rome"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": "24C cloudy"},
        ],
        "tools": [WEATHER],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    },
    "vision": {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is in this image?"},
                    {"type": "input_image", "image_url": PNG_DATA_URL, "detail": "low"},
                ],
            }
        ]
    },
    "json_schema": {
        "input": "Give me a JSON object with a key 'ok'.",
        "text": {
            "format": {
                "type": "json_schema",
                "name": "answer",
                "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
                "strict": True,
            }
        },
    },
    "agent_stateless": {
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the test."}]},
            {
                "type": "reasoning",
                "id": "rs_01",
                "summary": [{"type": "summary_text", "text": "Look at the test first."}],
                "encrypted_content": "gAAAAAB-opaque==",
            },
            {"type": "function_call", "call_id": "call_sh", "name": "shell", "arguments": '{"command": ["ls"]}'},
            {"type": "function_call_output", "call_id": "call_sh", "output": "tests\nsrc"},
            {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done"},
        ],
        "tools": [
            {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}, "strict": False},
            {"type": "custom", "name": "apply_patch", "description": "Apply a patch."},
            {
                "type": "namespace",
                "name": "docs",
                "description": "Docs",
                "tools": [{"type": "function", "name": "find"}],
            },
            {"type": "web_search"},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "session-1",
        "stream": True,
    },
}
_GENERATED = re.compile(r"^(resp|msg|fc|ctc)_[0-9a-f]{48}$")


def normalised(value: Any) -> Any:
    """Generated ids as `<prefix>_*` and creation times as 0, so a golden file compares across runs."""
    if isinstance(value, dict):
        return {k: 0 if k == "created_at" else normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if isinstance(value, str) and _GENERATED.match(value):
        return value.split("_")[0] + "_*"
    return value


def parse_sse(raw: bytes) -> list[dict]:
    out = []
    for frame in raw.decode().split("\n\n"):
        data = [line[6:] for line in frame.split("\n") if line.startswith("data: ")]
        if data:
            out.append(json.loads(data[0]))
    return out


@pytest.mark.parametrize("case", sorted(CLIENT_BODIES))
async def test_request_bodies_each_upstream_receives(responses_serve, primary, backup, claude, http, case):
    """The body a chat-completions upstream, Anthropic and a Responses upstream each receive for one client body,
    and what the translated answers name as dropped."""
    body = CLIENT_BODIES[case]
    stream = bool(body.get("stream"))
    backup.script("chat", backup.stream_text(["ok"]) if stream else backup.text("ok"))
    claude.script("chat", claude.stream_text(["ok"]) if stream else claude.text("ok"))
    primary.script("responses", primary.stream_response_text(["ok"]) if stream else primary.response_text("ok"))
    record: dict[str, Any] = {"client": body, "upstream": {}, "dropped": {}}
    async with responses_serve() as s:
        for route, fake, endpoint in (
            ("compat", backup, "chat"),
            ("claude", claude, "chat"),
            ("native-solo", primary, "responses"),
        ):
            async with http.post(f"{s.url}/v1/responses", json={"model": route, **body}) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
                dropped = resp.headers.get("x-turnout-dropped")
            sent = fake.requests_to(endpoint)[-1]
            name = {"compat": "openai_chat", "claude": "anthropic", "native-solo": "openai_responses"}[route]
            record["upstream"][name] = {"path": sent.path, "body": sent.json}
            record["dropped"][name] = dropped
    assert claude.refused == [] and primary.refused == []
    check_golden(GOLDEN / f"request_{case}.json", record)


async def test_answers_a_client_receives(responses_serve, backup, claude, http):
    """A text answer (from a chat-completions upstream) and a tool-call answer (from Anthropic) as Responses, and the
    event sequences of the same answers streamed."""
    backup.script(
        "chat", backup.text("Paris.", usage=Usage(12, 2)), backup.stream_text(["Par", "is."], usage=Usage(12, 2))
    )
    calls = [ToolCall("get_weather", {"city": "Paris"}, id="toolu_01")]
    claude.script("chat", claude.tool_calls(calls), claude.stream_tool_calls(calls))
    record: dict[str, Any] = {}
    async with responses_serve() as s:
        for name, route, extra in (("text", "compat", {}), ("tool_calls", "claude", {"tools": [WEATHER]})):
            request = {"model": route, "input": "Capital of France?", "instructions": "Be brief.", **extra}
            async with http.post(f"{s.url}/v1/responses", json=request) as resp:
                record[name] = normalised(await resp.json())
            async with http.post(f"{s.url}/v1/responses", json={**request, "stream": True}) as resp:
                record[f"{name}_stream"] = normalised(parse_sse(await resp.read()))
    check_golden(GOLDEN / "answers.json", record)


def test_the_golden_answers_validate_against_the_sdks_types():
    """Every golden Response and stream event validates (pydantic, not the SDK's lenient construct) against the
    openai SDK's own types: every required field present, every value of the right type."""
    from openai.types.responses import Response, ResponseStreamEvent
    from pydantic import TypeAdapter

    answers = json.loads((GOLDEN / "answers.json").read_text())
    events = TypeAdapter(ResponseStreamEvent)
    for name, value in answers.items():
        if name.endswith("_stream"):
            for event in value:
                assert events.validate_python(event).type == event["type"]
        else:
            assert Response.model_validate(value).id == "resp_*"
