"""Canonical answers -> Responses objects (`{"object": "response", ...}`). Pure: no I/O.

The inverse of `upstream.py`, for the sidecar's `/v1/responses`. An answer a Responses upstream gave to the
client's own body (`ChatResponse.native`) is returned as it came; any other is rendered from the canonical answer:

- text becomes one `message` item (`output_text`, or `refusal` when the model refused), tool calls become
  `function_call` items (`custom_tool_call` for custom tools, with `namespace` for a namespace's tools: `tools.py`);
- the status follows the finish reason (`wire.status_of`), usage is in the Responses shape, or null when the
  upstream reported none;
- the request's settings are echoed as OpenAI echoes them (instructions, tools, tool_choice, text, reasoning, store,
  temperature...), with OpenAI's defaults for what the request did not set. `model` names the upstream model that
  served, as for chat completions (the route is in `x-turnout-route`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from turnout.drivers.openai_responses.tools import CUSTOM_INPUT, ToolTable
from turnout.drivers.openai_responses.wire import new_id, status_of, wire_usage
from turnout.types import ChatResponse

# Request settings a Response echoes, with the value OpenAI reports when the request did not set one.
ECHOED: Mapping[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "reasoning": {"effort": None, "summary": None},
    "safety_identifier": None,
    "service_tier": "default",
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}
CONTINUES = "turnout_continues"  # in a continued request's body: {"id": what the client sent, "history", "chain"}


def skeleton(
    body: Mapping[str, Any],
    *,
    response_id: str,
    model: str,
    created_at: int,
    status: str = "in_progress",
    store: bool | None = None,
) -> dict[str, Any]:
    """The Response object before any output: identity, status and the request's settings (`store`: whether it is
    kept, when that differs from what the request asked)."""
    out: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
    }
    for key, default in ECHOED.items():
        value = body.get(key)
        out[key] = default if value is None else value
    continues = body.get(CONTINUES)
    if isinstance(continues, dict) and continues.get("id") is not None:
        out["previous_response_id"] = continues["id"]
    if store is not None:
        out["store"] = store
    out["model"] = model
    out["output"] = []
    out["usage"] = None
    return out


def message_item(text: str, *, item_id: str, refusal: bool = False, status: str = "completed") -> dict[str, Any]:
    part = (
        {"type": "refusal", "refusal": text}
        if refusal
        else {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    )
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": [part]}


def call_item(call: Mapping[str, Any], table: ToolTable, *, item_id: str, status: str = "completed") -> dict[str, Any]:
    """A canonical tool call -> a `function_call` item (or `custom_tool_call` for a custom tool)."""
    function = call.get("function") or {}
    namespace, name, custom = table.origin(str(function.get("name") or ""))
    arguments = function.get("arguments")
    arguments = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    item: dict[str, Any] = {"id": item_id, "status": status, "call_id": str(call.get("id") or new_id("call"))}
    if custom:
        item.update(type="custom_tool_call", name=name, input=custom_input(arguments))
    else:
        item.update(type="function_call", name=name, arguments=arguments)
    if namespace is not None:
        item["namespace"] = namespace
    return item


def custom_input(arguments: str) -> str:
    """A custom tool's free-form input from the arguments of its function stand-in (`{"input": "..."}`)."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return arguments  # not JSON: the model wrote the input itself
    if isinstance(value, dict) and isinstance(value.get(CUSTOM_INPUT), str):
        return value[CUSTOM_INPUT]
    return arguments


def output_items(reply: ChatResponse, table: ToolTable) -> list[dict[str, Any]]:
    message = reply.message
    items: list[dict[str, Any]] = []
    text = reply.text
    refusal = message.get("refusal")
    if text:
        items.append(message_item(text, item_id=new_id("msg")))
    elif isinstance(refusal, str) and refusal:
        items.append(message_item(refusal, item_id=new_id("msg"), refusal=True))
    for call in reply.tool_calls:
        items.append(call_item(call, table, item_id=new_id("fc")))
    return items


def response_body(
    reply: ChatResponse, body: Mapping[str, Any], table: ToolTable, *, store: bool | None = None
) -> Mapping[str, Any]:
    """The Response for `reply` to the request `body`: the upstream's own when it spoke Responses, else rendered."""
    if reply.native is not None:
        return reply.native
    status, details = status_of(reply.finish_reason)
    out = skeleton(body, response_id=new_id("resp"), model=reply.model, created_at=reply.created, store=store)
    out["status"] = status
    out["incomplete_details"] = details
    out["output"] = output_items(reply, table)
    out["usage"] = wire_usage(reply.usage)
    return out
