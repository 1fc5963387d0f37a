"""A client's Messages request body -> the canonical request (`ChatRequest`). Pure: no I/O.

The inverse of `request.py`, for the sidecar's `/v1/messages`: the canonical body is OpenAI chat JSON that every
driver understands, and the client's own body rides along as `ChatRequest.native`, which the `anthropic` driver
sends as is (so an Anthropic deployment loses nothing). The translation is for every other upstream:

| Messages                                    | canonical (OpenAI chat)                                        |
|---------------------------------------------|----------------------------------------------------------------|
| `system` (string or text blocks), `system`  | a leading system message; system messages where they stand     |
| messages                                    |                                                                |
| text, image (base64 or URL) blocks          | text and `image_url` parts (`cache_control`, citations dropped)|
| document with a text source                 | text parts                                                     |
| `tool_use` blocks                           | the assistant message's `tool_calls` (input as a JSON string)  |
| `tool_result` blocks                        | `tool` messages right after the calls (images in them follow as|
|                                             | a user message; `is_error` dropped)                            |
| `thinking` / `redacted_thinking` blocks     | dropped (only an Anthropic upstream can check their signature) |
| `tools` (custom), `tool_choice`             | function tools; auto/any/tool/none -> auto/required/named/none,|
|                                             | `disable_parallel_tool_use` -> `parallel_tool_calls: false`    |
| server and Anthropic-defined tools          | dropped (web search, bash, text editor... exist only there)    |
| `max_tokens` (0 pre-warms a cache)          | `max_tokens` (at least 1)                                      |
| `stop_sequences`, `temperature`, `top_p`    | `stop` (the first 4, OpenAI's limit), `temperature`, `top_p`   |
| `metadata.user_id`                          | `user`                                                         |
| `output_config.format` (json_schema)        | `response_format` json_schema                                  |
| `thinking`, `output_config.effort`          | `ChatRequest.reasoning` (`turnout.reasoning`): sent only to    |
|                                             | models that declare `reasoning`, in their dialect              |
| `top_k`, `service_tier`,                    | dropped: no OpenAI chat equivalent that every model accepts    |
| `context_management`, `container`, ...      |                                                                |

Content blocks with no canonical form at all (a PDF document, server tool calls and their results, container
uploads, blocks added to the API later) make the request `untranslatable` (`NativeRequest.untranslatable` names
them): only a deployment that speaks Messages can serve it, and the router skips the others with that reason.

Only what turnout must read is checked, and only as strictly as the Messages API itself: a request the real API
accepts is never refused here (unknown fields and block types pass through to an Anthropic upstream). A
malformed one (a role the API does not have, content that is not a string or blocks, a tool without a name)
raises InvalidRequest naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from turnout.drivers.anthropic.request import NATIVE_FORMAT
from turnout.errors import InvalidRequest
from turnout.reasoning import MESSAGES, OFF, Reasoning
from turnout.types import ChatRequest, NativeRequest, is_mapping

ROLES = ("user", "assistant", "system")
OPENAI_MAX_STOP = 4
FORWARDED_HEADERS = ("anthropic-beta",)  # client headers an Anthropic upstream receives with the native body
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})

Message = dict[str, Any]


def messages_request(
    body: Any, headers: Mapping[str, str] | None = None, *, require_max_tokens: bool = True
) -> ChatRequest:
    """Validate a Messages request body and build its ChatRequest (canonical body + the native one).

    `headers` are the client's request headers (any case): those in `FORWARDED_HEADERS` travel with the native
    body. `require_max_tokens=False` for `count_tokens`, whose body has no `max_tokens`.
    """
    if not is_mapping(body):
        raise InvalidRequest("The request body must be a JSON object.", param=None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required (a non-empty string naming a route).", param="model")
    canonical: dict[str, Any] = {"model": model}
    untranslatable: list[str] = []
    canonical["messages"] = _messages(body, untranslatable)
    _max_tokens(body, canonical, required=require_max_tokens)
    _stream(body, canonical)
    _sampling(body, canonical)
    _tools(body, canonical)
    _output_format(body, canonical)
    native = NativeRequest(
        NATIVE_FORMAT, body, _forwarded(headers), untranslatable=", ".join(dict.fromkeys(untranslatable))
    )
    return ChatRequest.from_openai(canonical, native=native, reasoning=_reasoning(body))


def _forwarded(headers: Mapping[str, str] | None) -> Mapping[str, str]:
    if not headers:
        return {}
    return {name: headers[name] for name in FORWARDED_HEADERS if headers.get(name)}


# -- messages -------------------------------------------------------------------------------------------------


def _messages(body: Mapping[str, Any], untranslatable: list[str]) -> list[Message]:
    out: list[Message] = []
    system = body.get("system")
    if system is not None:
        text = _system_text(system, "system")
        if text:
            out.append({"role": "system", "content": text})
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: Field required (a non-empty array of messages).", param="messages")
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not is_mapping(message):
            raise InvalidRequest(f"{where}: Input should be an object with 'role' and 'content'.", param=where)
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(
                f"{where}.role: Input should be 'user', 'assistant' or 'system', got {role!r}.", param=f"{where}.role"
            )
        content = message.get("content")
        if not isinstance(content, str | list):
            raise InvalidRequest(
                f"{where}.content: Input should be a string or an array of content blocks.", param=f"{where}.content"
            )
        blocks = _blocks(content, f"{where}.content")
        if role == "system":
            out.append({"role": "system", "content": _system_text(content, f"{where}.content")})
        elif role == "user":
            out.extend(_user_turn(blocks, f"{where}.content", untranslatable))
        else:
            out.append(_assistant_turn(blocks, f"{where}.content", untranslatable))
    return out


def _blocks(content: str | list[Any], where: str) -> list[Mapping[str, Any]]:
    """Content as blocks (a string is one text block); every block an object with a string `type`."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    for j, block in enumerate(content):
        if not is_mapping(block) or not isinstance(block.get("type"), str):
            raise InvalidRequest(
                f"{where}.{j}: a content block must be an object with a string 'type'.", param=f"{where}.{j}"
            )
    return content


def _system_text(value: Any, where: str) -> str:
    """A system prompt (a string, or text blocks joined) as one string."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise InvalidRequest(f"{where}: Input should be a string or an array of text blocks.", param=where)
    texts = []
    for j, block in enumerate(value):
        if not is_mapping(block) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise InvalidRequest(
                f"{where}.{j}: system blocks must be text blocks with a string 'text'.", param=f"{where}.{j}"
            )
        texts.append(block["text"])
    return "\n\n".join(texts)


def _text_of(block: Mapping[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}.text: Field required (a string).", param=where)
    return text


def _user_turn(blocks: Sequence[Mapping[str, Any]], where: str, untranslatable: list[str]) -> list[Message]:
    """Tool results become `tool` messages (first, as they answer the previous turn's calls); the rest one user
    message, images returned by tools included."""
    results: list[Message] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block["type"]
        at = f"{where}.{j}"
        if kind == "tool_result":
            tool_id = block.get("tool_use_id")
            if not isinstance(tool_id, str) or not tool_id:
                raise InvalidRequest(f"{at}.tool_use_id: Field required (a string).", param=at)
            text, images = _tool_result_content(block.get("content"), at, untranslatable)
            results.append({"role": "tool", "tool_call_id": tool_id, "content": text})
            parts.extend(images)
        else:
            part = _part(block, at, untranslatable)
            if part is not None:
                parts.append(part)
    if parts:
        results.append({"role": "user", "content": parts})
    elif not results:
        results.append({"role": "user", "content": ""})
    return results


def _tool_result_content(content: Any, where: str, untranslatable: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """A tool result's content as the tool message's text, plus the images it returned (as user parts)."""
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: Input should be a string or an array of blocks.", param=where)
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for k, block in enumerate(_blocks(content, f"{where}.content")):
        part = _part(block, f"{where}.content.{k}", untranslatable)
        if part is None:
            continue
        if part["type"] == "text":
            texts.append(part["text"])
        else:
            images.append(part)
    return "\n".join(texts), images


def _part(block: Mapping[str, Any], where: str, untranslatable: list[str]) -> dict[str, Any] | None:
    """A user-side block as an OpenAI content part; None for what is dropped or cannot be translated."""
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": _text_of(block, where)}
    if kind == "image":
        url = _image_url(block.get("source"), where)
        if url is None:
            untranslatable.append("an image from the Files API")
            return None
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "document":
        text = _document_text(block.get("source"), where)
        if text is None:
            untranslatable.append("a document that is not plain text")
            return None
        return {"type": "text", "text": text}
    if kind in _DROPPED_BLOCKS:
        return None
    untranslatable.append(f"'{kind}' blocks")
    return None


def _image_url(source: Any, where: str) -> str | None:
    if not is_mapping(source) or not isinstance(source.get("type"), str):
        raise InvalidRequest(f"{where}.source: Field required (an object with a 'type').", param=where)
    if source["type"] == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise InvalidRequest(f"{where}.source: base64 images need 'media_type' and 'data' strings.", param=where)
        return f"data:{media};base64,{data}"
    if source["type"] == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f"{where}.source.url: Field required (a string).", param=where)
        return url
    return None  # a Files API id: only Anthropic can resolve it


def _document_text(source: Any, where: str) -> str | None:
    if not is_mapping(source):
        raise InvalidRequest(f"{where}.source: Field required (an object).", param=where)
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return source["data"]
    if source.get("type") == "content" and isinstance(source.get("content"), list):
        texts = [b.get("text") for b in source["content"] if is_mapping(b) and b.get("type") == "text"]
        return "\n".join(t for t in texts if isinstance(t, str))
    return None


def _assistant_turn(blocks: Sequence[Mapping[str, Any]], where: str, untranslatable: list[str]) -> Message:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block["type"]
        at = f"{where}.{j}"
        if kind == "text":
            texts.append(_text_of(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind not in _DROPPED_BLOCKS:
            untranslatable.append(f"'{kind}' blocks")
    message: Message = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A `tool_use` block -> an OpenAI tool call (the inverse of `response.tool_call`)."""
    tool_id, name, tool_input = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(tool_id, str) or not tool_id:
        raise InvalidRequest(f"{where}.id: Field required (a string).", param=where)
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where}.name: Field required (a non-empty string).", param=where)
    if not is_mapping(tool_input):
        raise InvalidRequest(f"{where}.input: Input should be an object.", param=where)
    return {"id": tool_id, "type": "function", "function": {"name": name, "arguments": json.dumps(tool_input)}}


# -- parameters -----------------------------------------------------------------------------------------------


def _max_tokens(body: Mapping[str, Any], out: dict[str, Any], *, required: bool) -> None:
    value = body.get("max_tokens")
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest("max_tokens: Field required (an integer, 0 or more).", param="max_tokens")
    out["max_tokens"] = max(1, value)  # 0 pre-warms Anthropic's cache; elsewhere the least answer is one token


def _stream(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    stream = body.get("stream")
    if stream is None:
        return
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean.", param="stream")
    out["stream"] = stream


def _sampling(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InvalidRequest(f"{name}: Input should be a number between 0 and 1.", param=name)
        out[name] = value
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidRequest("stop_sequences: Input should be an array of strings.", param="stop_sequences")
        if stop:
            out["stop"] = stop[:OPENAI_MAX_STOP]
    metadata = body.get("metadata")
    if metadata is not None:
        if not is_mapping(metadata):
            raise InvalidRequest("metadata: Input should be an object.", param="metadata")
        user = metadata.get("user_id")
        if isinstance(user, str) and user:
            out["user"] = user


def _tools(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequest("tools: Input should be an array of tools.", param="tools")
    functions = [f for i, tool in enumerate(tools) if (f := _function(tool, f"tools.{i}")) is not None]
    if not functions:
        return
    out["tools"] = functions
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not is_mapping(choice) or not isinstance(choice.get("type"), str):
        raise InvalidRequest("tool_choice: Input should be an object with a 'type'.", param="tool_choice")
    kind = choice["type"]
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("tool_choice.name: Field required for type 'tool'.", param="tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif kind in _TOOL_CHOICES:
        out["tool_choice"] = _TOOL_CHOICES[kind]
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False


def _function(tool: Any, where: str) -> dict[str, Any] | None:
    """A custom tool -> an OpenAI function tool; None for server and Anthropic-defined tools (no equivalent)."""
    if not is_mapping(tool):
        raise InvalidRequest(f"{where}: Input should be a tool object.", param=where)
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where}.name: Field required (a non-empty string).", param=f"{where}.name")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        if not isinstance(kind, str):
            raise InvalidRequest(f"{where}.type: Input should be a string.", param=f"{where}.type")
        return None
    schema = tool.get("input_schema")
    if not is_mapping(schema):
        raise InvalidRequest(
            f"{where}.input_schema: Field required (a JSON Schema object).", param=f"{where}.input_schema"
        )
    function: dict[str, Any] = {"name": name, "parameters": dict(schema)}
    if isinstance(tool.get("description"), str) and tool["description"]:
        function["description"] = tool["description"]
    if tool.get("strict") is True:
        function["strict"] = True
    return {"type": "function", "function": function}


def _reasoning(body: Mapping[str, Any]) -> Reasoning | None:
    """`thinking` and `output_config.effort` as the canonical reasoning request (see `turnout.reasoning`); a
    thinking type added to the API later is not translated."""
    thinking = body.get("thinking")
    config = body.get("output_config")
    effort = config.get("effort") if is_mapping(config) else None
    if effort is not None and not isinstance(effort, str):
        raise InvalidRequest(
            "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'.",
            param="output_config.effort",
        )
    if thinking is None:
        return Reasoning(effort=effort, source=MESSAGES) if effort is not None else None
    if not is_mapping(thinking) or not isinstance(thinking.get("type"), str):
        raise InvalidRequest("thinking.type: Field required (enabled, adaptive or disabled).", param="thinking.type")
    kind = thinking["type"]
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise InvalidRequest(
                "thinking.enabled.budget_tokens: Field required (an integer).", param="thinking.budget_tokens"
            )
        return Reasoning(effort=effort, budget_tokens=budget, source=MESSAGES)
    if kind == "adaptive":
        return Reasoning(effort=effort, source=MESSAGES)
    if kind in ("disabled", "between_tools"):
        return Reasoning(effort=OFF, source=MESSAGES)
    return None


def _output_format(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    config = body.get("output_config")
    fmt = config.get("format") if is_mapping(config) else None
    if is_mapping(fmt) and fmt.get("type") == "json_schema" and is_mapping(fmt.get("schema")):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
