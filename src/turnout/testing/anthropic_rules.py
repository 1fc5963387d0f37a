"""What the Messages API refuses: the request checks `AnthropicFake` applies before it answers.

A fake that accepts anything cannot catch a translator that sends `{"role": "robot", "content": 42}`, a tool
without a name or a `tool_use` left without its result. `problems(body)` lists what the real API would answer 400
(`invalid_request_error`) for, in its own wording where it is known (wire-formats.md 3.2 and 3.5): the shape of
every message, content block, tool and tool choice, the sampling ranges, and the observed cross-message rules
(non-empty text, a `tool_use` answered first thing in the next user turn, ids Anthropic accepts). Fields and block
types it does not know are left alone, as the API's own versioning lets newer ones through.

The block types and required fields follow anthropic-sdk-python's request types (`MessageCreateParams`);
`tests/drivers/test_anthropic_gemini_sdk_conformance.py` checks this module against them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ROLES = ("user", "assistant", "system")
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Content block types of `messages[].content` (ContentBlockParam); those with fields checked below first.
BLOCK_TYPES = frozenset(
    {
        "text",
        "image",
        "document",
        "thinking",
        "redacted_thinking",
        "tool_use",
        "tool_result",
        "search_result",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
    }
)
RESULT_BLOCK_TYPES = frozenset({"text", "image", "document", "search_result", "tool_reference"})
TOOL_CHOICES = ("auto", "any", "tool", "none")
_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def problems(body: Any) -> list[str]:
    """Every reason the Messages API would refuse `body` (empty when it would accept it)."""
    found: list[str] = []
    if not isinstance(body, Mapping):
        return ["body: Input should be a valid dictionary"]
    if not isinstance(body.get("model"), str) or not body["model"]:
        found.append("model: Field required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        found.append("max_tokens: Field required (an integer)")
    _system(body.get("system"), found)
    _messages(body.get("messages"), found)
    _tools(body.get("tools"), body.get("tool_choice"), found)
    _sampling(body, found)
    _thinking(body, found)
    return found


def _system(system: Any, found: list[str]) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        found.append("system: Input should be a valid string or list of text blocks")
        return
    for i, block in enumerate(system):
        if not isinstance(block, Mapping) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            found.append(f"system.{i}: Input should be a text block")


def _messages(messages: Any, found: list[str]) -> None:
    if not isinstance(messages, list) or not messages:
        found.append("messages: Field required (at least one message)")
        return
    pending: set[str] = set()  # tool_use ids the next user turn must answer
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, Mapping):
            found.append(f"{where}: Input should be a valid dictionary")
            continue
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            found.append(f"{where}.{extra[0]}: Extra inputs are not permitted")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            found.append(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        last = i == len(messages) - 1
        if isinstance(content, str):
            if not content and not (last and role == "assistant"):
                found.append(f"{where}: all messages must have non-empty content except the final assistant message")
            blocks: list[Any] = []
        elif isinstance(content, list):
            blocks = content
            if not blocks and not (last and role == "assistant"):
                found.append(f"{where}: all messages must have non-empty content except the final assistant message")
        else:
            found.append(f"{where}.content: Input should be a valid string or list of content blocks")
            continue
        for j, block in enumerate(blocks):
            _block(block, f"{where}.content.{j}", role, found)
        pending = _tool_pairing(role, blocks, pending, where, found)
    if pending:
        unanswered = sorted(pending)
        found.append(f"messages: tool_use ids were found without tool_result blocks immediately after: {unanswered}")


def _block(block: Any, where: str, role: Any, found: list[str], allowed: frozenset[str] = BLOCK_TYPES) -> None:
    if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
        found.append(f"{where}: Input should be a content block with a 'type'")
        return
    kind = block["type"]
    if kind not in allowed:
        found.append(f"{where}.type: Input tag '{kind}' does not match any of the expected tags")
        return
    if kind == "text":
        if not isinstance(block.get("text"), str):
            found.append(f"{where}.text: Field required")
        elif not block["text"]:
            found.append(f"{where}: text content blocks must be non-empty")
    elif kind == "image":
        _image_source(block.get("source"), where, found)
    elif kind == "tool_use":
        if role != "assistant":
            found.append(f"{where}: tool_use blocks are only allowed in assistant messages")
        if not isinstance(block.get("id"), str) or not _ID.match(block["id"]):
            found.append(f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("name"), str) or not block["name"]:
            found.append(f"{where}.name: Field required")
        if not isinstance(block.get("input"), Mapping):
            found.append(f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        _tool_result(block, where, role, found)
    elif kind == "thinking":
        if not isinstance(block.get("thinking"), str) or not isinstance(block.get("signature"), str):
            found.append(f"{where}: thinking blocks need 'thinking' and 'signature' strings")
    elif kind == "redacted_thinking" and not isinstance(block.get("data"), str):
        found.append(f"{where}.data: Field required")


def _image_source(source: Any, where: str, found: list[str]) -> None:
    kind = source.get("type") if isinstance(source, Mapping) else None
    if kind == "base64":
        if source.get("media_type") not in IMAGE_MEDIA_TYPES:
            found.append(f"{where}.source.media_type: Input should be one of {', '.join(IMAGE_MEDIA_TYPES)}")
        if not isinstance(source.get("data"), str) or not source["data"]:
            found.append(f"{where}.source.data: Field required")
    elif kind == "url":
        if not isinstance(source.get("url"), str) or not source["url"]:
            found.append(f"{where}.source.url: Field required")
    elif kind != "file":
        found.append(f"{where}.source: Input should be a base64, url or file source")


def _tool_result(block: Mapping[str, Any], where: str, role: Any, found: list[str]) -> None:
    if role != "user":
        found.append(f"{where}: tool_result blocks are only allowed in user messages")
    if not isinstance(block.get("tool_use_id"), str) or not _ID.match(block["tool_use_id"]):
        found.append(f"{where}.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'")
    if "is_error" in block and not isinstance(block["is_error"], bool):
        found.append(f"{where}.is_error: Input should be a valid boolean")
    content = block.get("content")
    if isinstance(content, list):
        for k, inner in enumerate(content):
            _block(inner, f"{where}.content.{k}", role, found, RESULT_BLOCK_TYPES)
    elif content is not None and not isinstance(content, str):
        found.append(f"{where}.content: Input should be a valid string or list of blocks")


def _tool_pairing(role: Any, blocks: list[Any], pending: set[str], where: str, found: list[str]) -> set[str]:
    """The tool_use ids still unanswered after this message (results must lead the turn after the calls)."""
    kinds = [b.get("type") for b in blocks if isinstance(b, Mapping)]
    results = [b.get("tool_use_id") for b in blocks if isinstance(b, Mapping) and b.get("type") == "tool_result"]
    if pending:
        if role != "user" or not pending <= set(results):
            found.append(
                f"{where}: tool_use ids were found without tool_result blocks immediately after: "
                f"{sorted(pending - set(results))}"
            )
        elif kinds[: len(results)] != ["tool_result"] * len(results):
            found.append(f"{where}: messages following tool_use blocks must begin with their tool_result blocks")
    unexpected = [r for r in results if r not in pending]
    if unexpected:
        found.append(f"{where}: unexpected tool_use_id found in tool_result blocks: {unexpected[0]}")
    if role == "assistant":
        return {b["id"] for b in blocks if isinstance(b, Mapping) and b.get("type") == "tool_use" and "id" in b}
    return set()


def _tools(tools: Any, choice: Any, found: list[str]) -> None:
    if tools is not None:
        if not isinstance(tools, list):
            found.append("tools: Input should be a valid list")
            tools = []
        for i, tool in enumerate(tools):
            _tool(tool, f"tools.{i}", found)
    if choice is None:
        return
    if not isinstance(choice, Mapping) or choice.get("type") not in TOOL_CHOICES:
        found.append(f"tool_choice.type: Input should be one of {', '.join(TOOL_CHOICES)}")
    elif choice["type"] == "tool" and (not isinstance(choice.get("name"), str) or not choice["name"]):
        found.append("tool_choice.name: Field required")
    elif "disable_parallel_tool_use" in choice and not isinstance(choice["disable_parallel_tool_use"], bool):
        found.append("tool_choice.disable_parallel_tool_use: Input should be a valid boolean")


def _tool(tool: Any, where: str, found: list[str]) -> None:
    if not isinstance(tool, Mapping):
        found.append(f"{where}: Input should be a valid dictionary")
        return
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        found.append(f"{where}.name: Field required")
    elif not _TOOL_NAME.match(name):
        found.append(f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
    kind = tool.get("type")
    if kind in (None, "custom"):
        schema = tool.get("input_schema")
        if not isinstance(schema, Mapping):
            found.append(f"{where}.input_schema: Field required")
        elif schema.get("type") != "object":
            found.append(f"{where}.input_schema.type: Input should be 'object'")
    elif not isinstance(kind, str):
        found.append(f"{where}.type: Input should be a valid string")


def _sampling(body: Mapping[str, Any], found: list[str]) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1):
            found.append(f"{name}: Input should be less than or equal to 1")
    top_k = body.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        found.append("top_k: Input should be a non-negative integer")
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            found.append("stop_sequences: Input should be a valid list of strings")
        elif any(not s.strip() for s in stop):
            found.append("stop_sequences: each stop sequence must contain non-whitespace")
    if "stream" in body and not isinstance(body["stream"], bool):
        found.append("stream: Input should be a valid boolean")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, Mapping) or set(metadata) - {"user_id"}):
        found.append("metadata: Input should be an object with only 'user_id'")


def _thinking(body: Mapping[str, Any], found: list[str]) -> None:
    """Extended thinking's own rules (a budget of at least 1,024 under max_tokens; while thinking, no temperature
    but 1, no top_k, top_p from 0.95, no forced tool use), in the API's wording."""
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, Mapping) or not isinstance(thinking.get("type"), str):
        found.append("thinking.type: Field required")
        return
    kind = thinking["type"]
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int):
            found.append("thinking.enabled.budget_tokens: Field required")
            return
        if budget < 1024:
            found.append("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, int) and budget >= max_tokens:
            found.append("`max_tokens` must be greater than `thinking.budget_tokens`")
    if kind not in ("enabled", "adaptive"):
        return
    if body.get("temperature") not in (None, 1, 1.0):
        found.append("`temperature` may only be set to 1 when thinking is enabled")
    if body.get("top_k") is not None:
        found.append("`top_k` is not supported when thinking is enabled")
    top_p = body.get("top_p")
    if isinstance(top_p, int | float) and not isinstance(top_p, bool) and top_p < 0.95:
        found.append("`top_p` must be greater than or equal to 0.95 when thinking is enabled")
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") in ("any", "tool"):
        found.append("Thinking may not be enabled when tool_choice forces tool use.")
