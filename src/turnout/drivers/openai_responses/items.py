"""A Responses request's `input` (a string, or input items) -> canonical OpenAI chat messages. Pure: no I/O.

| Responses input item                        | canonical (OpenAI chat)                                        |
|---------------------------------------------|----------------------------------------------------------------|
| a string                                    | one user message                                               |
| `message` user: input_text, input_image     | a user message: text and `image_url` parts                     |
| input_file with text data (text/*, JSON...) | a text part holding the file's text                            |
| `message` system / developer                | a system message (text)                                        |
| `message` assistant: output_text, refusal   | an assistant message (text)                                    |
| `function_call`, `custom_tool_call`         | the assistant message's `tool_calls` (calls in a row, and calls|
|                                             | right after an assistant message, join that message)           |
| `function_call_output`,                     | `tool` messages; images they return follow in one user message|
| `custom_tool_call_output`                   | after the last of them                                         |
| `reasoning`                                 | dropped: only OpenAI can read (or check) its own reasoning     |
| built-in tool calls and their outputs       | dropped, as their tools are (web_search_call, mcp_call...)     |

Content with no canonical form makes the request `untranslatable` (`Notes.untranslatable`): an image or a file given
by id or URL, a binary file (a PDF), audio, `item_reference` and `compaction` items (only OpenAI holds them), item
and part types added to the API later. Only a deployment that speaks the Responses API can serve such a request.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from turnout.drivers.openai_responses.tools import CUSTOM_INPUT, ToolTable, invalid, missing, shown
from turnout.errors import InvalidRequest
from turnout.types import is_mapping

Message = dict[str, Any]
ROLES = ("user", "assistant", "system", "developer")
BUILT_IN_ITEMS = frozenset(
    {
        "web_search_call",
        "file_search_call",
        "computer_call",
        "computer_call_output",
        "code_interpreter_call",
        "image_generation_call",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "mcp_call",
        "tool_search_call",
        "tool_search_output",
    }
)
OPENAI_HELD_ITEMS = frozenset({"item_reference", "compaction"})
TEXT_MEDIA = ("text/", "application/json", "application/xml", "application/x-yaml", "application/yaml")
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_DETAILS = frozenset({"auto", "low", "high"})


@dataclass(slots=True)
class Notes:
    """What the translation could not carry (`untranslatable`) and what it left out by rule (`dropped`)."""

    untranslatable: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def input_messages(value: Any, table: ToolTable, notes: Notes) -> list[Message]:
    """The canonical messages for a request's `input` (see the module docstring)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid("input", "a string or an array of input items", value)
    return _Builder(table, notes).build(value)


class _Builder:
    """Appends one item at a time, joining calls to their assistant turn and images to the tool outputs."""

    def __init__(self, table: ToolTable, notes: Notes) -> None:
        self.table = table
        self.notes = notes
        self.out: list[Message] = []
        self.images: list[dict[str, Any]] = []  # returned by the tool outputs in a row so far

    def build(self, items: list[Any]) -> list[Message]:
        for i, item in enumerate(items):
            where = f"input[{i}]"
            if not is_mapping(item):
                raise invalid(where, "an input item object", item)
            kind = item.get("type")
            if kind is None and "role" in item:
                kind = "message"
            if not isinstance(kind, str) or not kind:
                raise missing(f"{where}.type")
            if kind not in ("function_call_output", "custom_tool_call_output"):
                self._flush_images()
            self._item(kind, item, where)
        self._flush_images()
        return self.out

    def _item(self, kind: str, item: Mapping[str, Any], where: str) -> None:
        if kind == "message":
            self._message(item, where)
        elif kind in ("function_call", "custom_tool_call"):
            self._call(kind, item, where)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self._output(item, where)
        elif kind == "reasoning":
            self.notes.dropped.append("reasoning items")
        elif kind in BUILT_IN_ITEMS:
            self.notes.dropped.append(f"{kind} items")
        elif kind in OPENAI_HELD_ITEMS:
            self.notes.untranslatable.append(f"'{kind}' items (only OpenAI holds them)")
        else:
            self.notes.untranslatable.append(f"'{shown(kind)}' items")

    def _flush_images(self) -> None:
        if self.images:
            self.out.append({"role": "user", "content": self.images})
            self.images = []

    # -- messages --------------------------------------------------------------------------------------------

    def _message(self, item: Mapping[str, Any], where: str) -> None:
        role = item.get("role")
        if role not in ROLES:
            raise InvalidRequest(
                f"Invalid value for '{where}.role': expected one of 'user', 'assistant', 'system' or 'developer', "
                f"got {role!r}.",
                param=f"{where}.role",
            )
        content = item.get("content")
        if isinstance(content, str) and role == "user":
            self.out.append({"role": "user", "content": content})
            return
        if isinstance(content, str):
            parts: list[Any] = [{"type": "input_text", "text": content}] if content else []
        elif isinstance(content, list):
            parts = content
        else:
            raise invalid(f"{where}.content", "a string or an array of content parts", content)
        translated = [p for j, part in enumerate(parts) if (p := self._part(part, f"{where}.content[{j}]"))]
        if role == "user":
            self.out.append({"role": "user", "content": translated})
            return
        texts = [p["text"] for p in translated if p["type"] == "text"]
        if len(texts) < len(translated):  # images in a system or assistant message: no canonical place for them
            self.notes.untranslatable.append(f"images in {role} messages")
        self.out.append({"role": "assistant" if role == "assistant" else "system", "content": "".join(texts)})

    def _part(self, part: Any, where: str) -> dict[str, Any] | None:
        """A content part -> a canonical part; None for what is untranslatable (noted)."""
        if not is_mapping(part):
            raise invalid(where, "a content part object", part)
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            text = part.get("text")
            if not isinstance(text, str):
                raise missing(f"{where}.text")
            return {"type": "text", "text": text}
        if kind == "refusal":
            refusal = part.get("refusal")
            return {"type": "text", "text": refusal} if isinstance(refusal, str) else None
        if kind == "input_image":
            return self._image(part, where)
        if kind == "input_file":
            return self._file(part, where)
        if not isinstance(kind, str) or not kind:
            raise missing(f"{where}.type")
        self.notes.untranslatable.append("audio" if kind == "input_audio" else f"'{shown(kind)}' content parts")
        return None

    def _image(self, part: Mapping[str, Any], where: str) -> dict[str, Any] | None:
        url = part.get("image_url")
        if url is not None and not isinstance(url, str):
            raise invalid(f"{where}.image_url", "a string", url)
        if not url:
            if part.get("file_id") is None:
                raise missing(f"{where}.image_url")
            self.notes.untranslatable.append("an image given by file_id")
            return None
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in _DETAILS:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}

    def _file(self, part: Mapping[str, Any], where: str) -> dict[str, Any] | None:
        """A text file given as data becomes text; any other file only a Responses upstream can read."""
        data = part.get("file_data")
        if data is not None and not isinstance(data, str):
            raise invalid(f"{where}.file_data", "a string", data)
        text = _text_file(data) if data else None
        if text is None:
            self.notes.untranslatable.append("a file that is not text (or given by id or URL)")
            return None
        name = part.get("filename")
        return {"type": "text", "text": f"--- {name} ---\n{text}" if isinstance(name, str) and name else text}

    # -- tool calls and their outputs -------------------------------------------------------------------------

    def _call(self, kind: str, item: Mapping[str, Any], where: str) -> None:
        call_id, name = _string(item, "call_id", where), _string(item, "name", where)
        if kind == "custom_tool_call":
            arguments = json.dumps({CUSTOM_INPUT: _string(item, "input", where, empty=True)}, ensure_ascii=False)
        else:
            arguments = _string(item, "arguments", where, empty=True)
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": self.table.canonical(name, item.get("namespace")), "arguments": arguments},
        }
        last = self.out[-1] if self.out else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            self.out.append({"role": "assistant", "content": "", "tool_calls": [call]})

    def _output(self, item: Mapping[str, Any], where: str) -> None:
        call_id = _string(item, "call_id", where)
        output = item.get("output")
        if isinstance(output, str):
            text = output
        elif isinstance(output, list):
            texts = []
            for j, part in enumerate(output):
                translated = self._part(part, f"{where}.output[{j}]")
                if translated is None:
                    continue
                if translated["type"] == "text":
                    texts.append(translated["text"])
                else:
                    self.images.append(translated)
            text = "\n".join(texts)
        else:
            raise invalid(f"{where}.output", "a string or an array of content parts", output)
        self.out.append({"role": "tool", "tool_call_id": call_id, "content": text})


def _string(item: Mapping[str, Any], key: str, where: str, *, empty: bool = False) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (not value and not empty):
        raise missing(f"{where}.{key}") if value is None else invalid(f"{where}.{key}", "a string", value)
    return value


def _text_file(data: str) -> str | None:
    """The text of a `data:<media>;base64,...` file whose media type is text, else None."""
    head, sep, payload = data.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        return None
    media = head[5:-7].split(";")[0].strip().lower()
    if not media.startswith(TEXT_MEDIA):
        return None
    try:
        return base64.b64decode(payload, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
