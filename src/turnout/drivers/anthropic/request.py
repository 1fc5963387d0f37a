"""Canonical OpenAI chat body -> Anthropic Messages request body. Pure: no I/O.

What changes shape on the way (wire-formats.md sections 3 and 10):
- `system`/`developer` messages, wherever they appear, are hoisted in order into the top-level `system` blocks
  (their position in the conversation is lost).
- Consecutive same-role turns are merged into one; in a merged user turn the `tool_result` blocks come first
  (Anthropic rejects a turn after `tool_use` that does not begin with its results). All results of one round of
  parallel tool calls therefore travel in a single user message.
- `temperature` is clamped to Anthropic's 0..1; `max_tokens` is required, so a default is always sent;
  whitespace-only stop sequences (which Anthropic rejects with a 400) are dropped.
- `response_format: json_object` has no Anthropic equivalent: it becomes a system instruction (lossy);
  `json_schema` becomes `output_config.format`.
- Extended thinking: the request's reasoning (`ChatRequest.reasoning`: `reasoning_effort`, or Anthropic's own
  `thinking` object in the chat body) becomes `thinking` (`thinking.py`: the budget, the sampling limits, when
  Anthropic cannot think); an assistant message's `thinking_blocks` (returned by this driver, the convention LiteLLM
  also uses) are sent back first in its turn, signatures intact.
- `request.assistant_prefix` becomes a final assistant message (prefill). Anthropic rejects a final assistant
  turn ending in whitespace, so trailing whitespace of the prefix is dropped.
- Parameters without an Anthropic equivalent (penalties, logprobs, seed, logit_bias) are dropped; `n > 1` is
  refused rather than silently answered once. Top-level `turnout_*` keys never reach the wire.
Everything the client got wrong in a way Anthropic would reject is raised as a `bad_request` ProviderError
before anything is sent.

A request that came in as a Messages request (`ChatRequest.native` of format `NATIVE_FORMAT`) is not translated at
all: `native_body` is the client's body with the model and stream flag replaced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from turnout.drivers._translate import Failer, merge_turns, split_data_url, tool_arguments
from turnout.drivers.anthropic.thinking import add_thinking, thinking_blocks
from turnout.reasoning import MESSAGES
from turnout.types import ChatRequest

NATIVE_FORMAT = MESSAGES  # `NativeRequest.format` of a request that came in as a Messages request
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose before or after it, no code fences."
)
_TOOL_ID_OK = re.compile(r"^[A-Za-z0-9_-]+$")
_TOOL_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}

Block = dict[str, Any]
Turn = tuple[str, list[Block]]


def _is_result(block: Block) -> bool:
    """Tool results lead a merged user turn: Anthropic rejects a turn after tool_use that starts otherwise."""
    return block.get("type") == "tool_result"


def build_request(
    request: ChatRequest,
    *,
    model: str,
    provider: str,
    default_max_tokens: int,
    stream: bool,
    model_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Messages API body for `request`, addressed to upstream `model` (`model_options`: the model's options in
    the routing file, which name its thinking dialect)."""
    fail = Failer(provider, model)
    body = request.body
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise fail("Anthropic does not support n > 1 (several choices per request).")
    system, turns = _convert_messages(request.messages, fail)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    if request.assistant_prefix:
        prefix = request.assistant_prefix.rstrip()
        if prefix:
            turns.append(("assistant", [{"type": "text", "text": prefix}]))
    out: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_output_tokens or default_max_tokens,
        "messages": [{"role": role, "content": blocks} for role, blocks in merge_turns(turns, is_result=_is_result)],
    }
    if system:
        out["system"] = system
    _add_tools(out, body, fail)
    _add_sampling(out, body)
    output_format = _output_format(response_format)
    if output_format is not None:
        out["output_config"] = {"format": output_format}
    if request.reasoning is not None:
        add_thinking(out, request, model_options or {}, default_max_tokens)
    if stream:
        out["stream"] = True
    return out


def native_body(request: ChatRequest, *, model: str, stream: bool) -> dict[str, Any]:
    """The client's own Messages body for upstream `model`: only `model` and `stream` replaced (top-level
    `turnout_*` keys dropped), and a continuation's `assistant_prefix` added as the final assistant text."""
    assert request.native is not None
    body = {k: v for k, v in request.native.body.items() if not k.startswith("turnout_")}
    body["model"] = model
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    prefix = (request.assistant_prefix or "").rstrip()
    if prefix:
        body["messages"] = _with_prefix(body["messages"], prefix)
    return body


def _with_prefix(messages: Sequence[Mapping[str, Any]], prefix: str) -> list[Mapping[str, Any]]:
    """Messages ending with `prefix` as assistant text (after the client's own prefill, when it has one)."""
    last = messages[-1] if messages else None
    if last is None or last.get("role") != "assistant":
        return [*messages, {"role": "assistant", "content": prefix}]
    content = last.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) and content else list(content or ())
    return [*messages[:-1], {**last, "content": [*blocks, {"type": "text", "text": prefix}]}]


def _convert_messages(messages: Sequence[Mapping[str, Any]], fail: Failer) -> tuple[list[Block], list[Turn]]:
    system: list[Block] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_text_blocks(content, f"messages[{i}]", fail))
        elif role == "user":
            turns.append(("user", _user_blocks(content, f"messages[{i}]", fail)))
        elif role == "assistant":
            turns.append(("assistant", _assistant_blocks(message, f"messages[{i}]", fail)))
        elif role == "tool":
            turns.append(("user", [_tool_result(message, f"messages[{i}]", fail)]))
        else:
            raise fail(f"messages[{i}]: role '{role}' is not supported by Anthropic; use 'tool' messages.")
    return system, turns


def _text_blocks(content: Any, where: str, fail: Failer) -> list[Block]:
    """System/developer content: text only (Anthropic's `system` takes no images)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content or ()):
        if part.get("type") != "text":
            raise fail(f"{where}.content[{j}]: only text parts are allowed in system messages for Anthropic.")
        if part["text"]:
            blocks.append(_text_block(part))
    return blocks


def _text_block(part: Mapping[str, Any]) -> Block:
    block: Block = {"type": "text", "text": part["text"]}
    if isinstance(part.get("cache_control"), Mapping):  # Anthropic prompt caching marker, passed through
        block["cache_control"] = dict(part["cache_control"])
    return block


def _user_blocks(content: Any, where: str, fail: Failer) -> list[Block]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content or ()):
        kind = part.get("type")
        if kind == "text":
            if part["text"]:
                blocks.append(_text_block(part))
        elif kind == "image_url":
            blocks.append(image_block(part["image_url"], f"{where}.content[{j}]", fail))
        else:
            raise fail(f"{where}.content[{j}]: content part type '{kind}' is not supported by Anthropic.")
    return blocks


def image_block(image: Any, where: str, fail: Failer) -> Block:
    """An OpenAI `image_url` value -> Anthropic image block (URL source or base64 source)."""
    url = image.get("url") if isinstance(image, Mapping) else image
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if not url.startswith("data:"):
        raise fail(f"{where}: image URL must be http(s) or a base64 data URL.")
    parsed = split_data_url(url)
    if parsed is None:
        raise fail(f"{where}: data URL images must be base64-encoded (data:<type>;base64,<data>).")
    media_type, data = parsed
    if media_type not in IMAGE_MEDIA_TYPES:
        shown = ", ".join(sorted(IMAGE_MEDIA_TYPES))
        raise fail(f"{where}: image type '{media_type}' is not supported by Anthropic (supported: {shown}).")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(message: Mapping[str, Any], where: str, fail: Failer) -> list[Block]:
    content = message.get("content")
    blocks: list[Block] = thinking_blocks(message.get("thinking_blocks"))
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    else:
        for part in content or ():
            text = part.get("text") if part.get("type") == "text" else part.get("refusal")
            if text:
                blocks.append({"type": "text", "text": text})
    for k, call in enumerate(message.get("tool_calls") or ()):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{k}]", fail))
    return blocks


def _tool_use(call: Mapping[str, Any], where: str, fail: Failer) -> Block:
    function = call["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise fail(f"{where}.function.name must be a non-empty string.")
    return {
        "type": "tool_use",
        "id": tool_id(call.get("id"), where, fail),
        "name": name,
        "input": tool_arguments(function.get("arguments"), where, fail),
    }


def tool_id(value: Any, where: str, fail: Failer) -> str:
    """A tool-call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`); foreign characters become `_`.

    The rewrite is deterministic, so a `tool_use` id and its `tool_result` reference stay equal.
    """
    if not isinstance(value, str) or not value:
        raise fail(f"{where}: a tool call id is required.")
    return clean_tool_id(value)


def clean_tool_id(value: str) -> str:
    """`value` with every character Anthropic refuses in an id replaced by `_` (deterministic)."""
    return value if _TOOL_ID_OK.match(value) else _TOOL_ID_BAD_CHARS.sub("_", value)


def _tool_result(message: Mapping[str, Any], where: str, fail: Failer) -> Block:
    content = message.get("content")
    block: Block = {"type": "tool_result", "tool_use_id": tool_id(message.get("tool_call_id"), where, fail)}
    if isinstance(content, str):
        block["content"] = content
    elif content:
        block["content"] = _user_blocks(content, where, fail)
    else:
        block["content"] = ""
    return block


def _add_tools(out: dict[str, Any], body: Mapping[str, Any], fail: Failer) -> None:
    tools = body.get("tools")
    if not tools:
        return
    out["tools"] = [_tool_definition(tool, f"tools[{i}]", fail) for i, tool in enumerate(tools)]
    choice = _tool_choice(body.get("tool_choice"), fail)
    if body.get("parallel_tool_calls") is False and choice.get("type") != "none":
        choice["disable_parallel_tool_use"] = True
    if body.get("tool_choice") is not None or len(choice) > 1:
        out["tool_choice"] = choice


def _tool_definition(tool: Any, where: str, fail: Failer) -> Block:
    if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(tool.get("function"), Mapping):
        raise fail(f"{where}: only tools of type 'function' are supported by Anthropic.")
    function = tool["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise fail(f"{where}.function.name must be a non-empty string.")
    out: Block = {"name": name}
    if function.get("description"):
        out["description"] = function["description"]
    out["input_schema"] = dict(function.get("parameters") or _EMPTY_SCHEMA)
    if function.get("strict") is True:
        out["strict"] = True
    return out


def _tool_choice(choice: Any, fail: Failer) -> Block:
    if choice is None or choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise fail("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}.")


def _add_sampling(out: dict[str, Any], body: Mapping[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        out["temperature"] = min(max(float(temperature), 0.0), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    if isinstance(body.get("top_k"), int) and not isinstance(
        body["top_k"], bool
    ):  # not OpenAI, but Anthropic-native and commonly sent
        out["top_k"] = body["top_k"]
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    # Anthropic rejects whitespace-only stop sequences ("each stop sequence must contain non-whitespace")
    sequences = [s for s in stop if isinstance(s, str) and s.strip()] if isinstance(stop, list) else []
    if sequences:
        out["stop_sequences"] = sequences
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}


def _output_format(response_format: Mapping[str, Any]) -> dict[str, Any] | None:
    if response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    return {"type": "json_schema", "schema": dict(schema or _EMPTY_SCHEMA)}
