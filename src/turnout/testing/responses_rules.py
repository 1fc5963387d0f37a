"""What the Responses API refuses: the request checks `OpenAIFake` applies on `/responses` before it answers.

A fake that accepts anything cannot catch a pass-through that leaks turnout's own keys upstream, forwards a
`previous_response_id` the upstream never stored, sends `stream_options` without a stream, or mangles an input item.
`problems(body)` lists what the real API answers 400 (`invalid_request_error`) for, in its own wording where it is
known: unknown top-level parameters (the API is strict about them), the shape of every input item and content part,
tools and tool choice, `max_output_tokens` (at least 16), and reasoning items passed back without their encrypted
content while `store` is false (OpenAI then cannot find them). Item and tool types it does not know are left alone,
as the API's own versioning lets newer ones through.

The parameters and item types follow openai-python's request types (`ResponseCreateParams`, `ResponseInputItemParam`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PARAMETERS = frozenset(
    {
        "model", "input", "instructions", "stream", "stream_options", "store", "include", "reasoning", "tools",
        "tool_choice", "parallel_tool_calls", "max_output_tokens", "max_tool_calls", "temperature", "top_p",
        "top_logprobs", "text", "truncation", "metadata", "user", "safety_identifier", "prompt_cache_key",
        "prompt_cache_retention", "prompt_cache_options", "service_tier", "previous_response_id", "conversation",
        "prompt", "background", "background_options", "context_management", "client_metadata", "moderation",
        "access_programs", "image",
    }
)  # fmt: skip
ROLES = ("user", "assistant", "system", "developer")
USER_PARTS = frozenset({"input_text", "input_image", "input_file", "input_audio"})
ASSISTANT_PARTS = frozenset({"output_text", "refusal", "input_text"})
MIN_OUTPUT_TOKENS = 16


def problems(body: Any) -> list[str]:
    """Every reason the Responses API would refuse `body` (empty when it would accept it)."""
    if not isinstance(body, Mapping):
        return ["The request body must be a JSON object."]
    found = [f"Unknown parameter: '{key}'." for key in body if key not in PARAMETERS]
    if not isinstance(body.get("model"), str) or not body["model"]:
        found.append("Missing required parameter: 'model'.")
    if body.get("stream_options") is not None and body.get("stream") is not True:
        found.append("Invalid 'stream_options': only allowed when 'stream' is true.")
    if body.get("previous_response_id") is not None:
        found.append(f"Previous response with id '{body['previous_response_id']}' not found.")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or limit < MIN_OUTPUT_TOKENS):
        found.append(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= {MIN_OUTPUT_TOKENS}, "
            f"but got {limit} instead."
        )
    _input(body.get("input"), body.get("store") is False, found)
    _tools(body.get("tools"), found)
    return found


def _input(value: Any, stateless: bool, found: list[str]) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list):
        found.append("Invalid type for 'input': expected a string or an array of input items.")
        return
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, Mapping):
            found.append(f"Invalid type for '{where}': expected an object.")
            continue
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            _message(item, where, found)
        elif kind == "function_call":
            _strings(item, where, ("call_id", "name", "arguments"), found)
        elif kind == "function_call_output":
            _strings(item, where, ("call_id",), found)
            if not isinstance(item.get("output"), str | list):
                found.append(f"Missing required parameter: '{where}.output'.")
        elif kind == "reasoning":
            if not isinstance(item.get("summary"), list):
                found.append(f"Missing required parameter: '{where}.summary'.")
            if stateless and not item.get("encrypted_content"):
                found.append(
                    f"Item with id '{item.get('id')}' not found. Items are not persisted when `store` is set to "
                    "false. Try again with `store` set to true, or remove this item from your input."
                )
        elif not isinstance(kind, str):
            found.append(f"Missing required parameter: '{where}.type'.")


def _message(item: Mapping[str, Any], where: str, found: list[str]) -> None:
    role = item.get("role")
    if role not in ROLES:
        found.append(
            f"Invalid value: '{role}'. Supported values are: 'user', 'assistant', 'system', and 'developer'. "
            f"({where}.role)"
        )
        return
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        found.append(f"Invalid type for '{where}.content': expected a string or an array of content parts.")
        return
    allowed = ASSISTANT_PARTS if role == "assistant" else USER_PARTS
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind not in allowed:
            found.append(f"Invalid value: '{kind}'. Supported values are: {', '.join(sorted(allowed))}. ({at}.type)")
        elif kind in ("input_text", "output_text") and not isinstance(part.get("text"), str):
            found.append(f"Missing required parameter: '{at}.text'.")
        elif kind == "input_image" and not (part.get("image_url") or part.get("file_id")):
            found.append(f"Missing required parameter: '{at}.image_url'.")


def _strings(item: Mapping[str, Any], where: str, keys: tuple[str, ...], found: list[str]) -> None:
    for key in keys:
        if not isinstance(item.get(key), str):
            found.append(f"Missing required parameter: '{where}.{key}'.")


def _tools(tools: Any, found: list[str]) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        found.append("Invalid type for 'tools': expected an array.")
        return
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("type"), str):
            found.append(f"Missing required parameter: 'tools[{i}].type'.")
        elif tool["type"] in ("function", "custom", "namespace") and not isinstance(tool.get("name"), str):
            found.append(f"Missing required parameter: 'tools[{i}].name'.")
