"""A Responses upstream's answer -> the canonical answer, with the upstream's own body kept. Pure: no I/O.

What turnout must read of a Response (the served text for the access log, tool calls, the finish reason, usage for
accounting) becomes the canonical `ChatResponse`; the body itself rides along as `ChatResponse.native` and is what
a Responses client gets, untouched. A `failed` Response is raised as its classified error (`wire.failure_of`); a
body that is not a Response is a ProtocolError (a retryable, fail-over-able upstream fault).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from turnout.drivers.openai_responses.tools import NAMESPACE_SEPARATOR
from turnout.drivers.openai_responses.wire import failure_of, finish_of, usage_of
from turnout.errors import ProtocolError
from turnout.types import ChatResponse, is_mapping


def tool_call(item: Mapping[str, Any]) -> dict[str, Any]:
    """A `function_call` or `custom_tool_call` output item -> a canonical tool call (a custom tool's input as the
    `input` argument; a namespace's tool named `<namespace>__<name>`, as `tools.py` names it)."""
    name = str(item.get("name") or "")
    namespace = item.get("namespace")
    if isinstance(namespace, str) and namespace:
        name = f"{namespace}{NAMESPACE_SEPARATOR}{name}"
    if item.get("type") == "custom_tool_call":
        arguments = json.dumps({"input": str(item.get("input") or "")}, ensure_ascii=False)
    else:
        arguments = item.get("arguments") if isinstance(item.get("arguments"), str) else "{}"
    call_id = str(item.get("call_id") or item.get("id") or "")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def canonical_message(output: Iterable[Any]) -> tuple[dict[str, Any], bool]:
    """(the canonical assistant message, whether it calls tools) of a Response's output items."""
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in output:
        if not is_mapping(item):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if not is_mapping(part):
                    continue
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    refusals.append(part["refusal"])
        elif kind in ("function_call", "custom_tool_call"):
            calls.append(tool_call(item))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if refusals:
        message["refusal"] = "".join(refusals)
    if calls:
        message["tool_calls"] = calls
    return message, bool(calls)


def parse_answer(data: Any, *, provider: str, model: str, raw: bytes | None = None) -> ChatResponse:
    """A Responses answer -> ChatResponse (the body kept as `native`). Raises the classified error of a failed one."""
    if not is_mapping(data) or not isinstance(data.get("output"), list):
        if is_mapping(data) and data.get("error") is not None:  # an error object inside a 200
            raise failure_of(data["error"], provider=provider, model=model, after_first_token=False, body=raw)
        raise ProtocolError("upstream answered with something that is not a Response", provider=provider, model=model)
    if data.get("status") == "failed":
        raise failure_of(data.get("error"), provider=provider, model=model, after_first_token=False, body=raw)
    message, calls = canonical_message(data["output"])
    finish = finish_of(data, calls)
    created = data.get("created_at")
    created = int(created) if isinstance(created, int | float) and not isinstance(created, bool) else int(time.time())
    return ChatResponse(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or model),
        choices=({"index": 0, "message": message, "logprobs": None, "finish_reason": finish},),
        usage=usage_of(data.get("usage")),
        created=created,
        native=data,
    )
