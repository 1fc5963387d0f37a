"""A client's Responses request body -> the canonical request (`ChatRequest`). Pure: no I/O.

The canonical body is OpenAI chat JSON that every driver understands; the client's own body rides along as
`ChatRequest.native`, which the `openai` driver sends as is to a Responses upstream (nothing is lost: reasoning
items, encrypted content, built-in tools). The translation is for every other upstream:

| Responses                                   | canonical (OpenAI chat)                                       |
|---------------------------------------------|---------------------------------------------------------------|
| `instructions`                              | a leading system message                                      |
| `input`                                     | messages (`items.py`)                                         |
| `tools`, `tool_choice`                      | function tools and their choice (`tools.py`)                  |
| `parallel_tool_calls`                       | `parallel_tool_calls` (with tools only, as OpenAI chat wants) |
| `max_output_tokens`                         | `max_tokens`                                                  |
| `temperature`, `top_p`                      | `temperature`, `top_p`                                        |
| `text.format` json_schema / json_object     | `response_format`                                             |
| `safety_identifier` (or `user`)             | `user`                                                        |
| `reasoning` (`effort`, `summary`)           | `ChatRequest.reasoning` (`turnout.reasoning`): sent only to   |
|                                             | models that declare `reasoning`, in their dialect             |
| `include`, `store`, `metadata`,             | dropped: no OpenAI chat equivalent every model accepts (and   |
| `prompt_cache_key`, `text.verbosity`,       | the sidecar itself keeps stored responses, see               |
| `truncation`, `service_tier`, `top_logprobs`| `turnout.server.ingress.openai_responses`)                    |
| `client_metadata`, `stream_options`, ...    |                                                               |

`conversation` and `prompt` (a conversation or prompt template stored at OpenAI) make the request untranslatable,
as do the input items in `items.py`. `background: true` is refused: turnout has no background mode.
`previous_response_id` is resolved by the sidecar before this runs (`with_history`).

Only what turnout must read is checked, with OpenAI's own wording (`Missing required parameter: 'input[0].role'.`):
a request the real API accepts is never refused here; unknown fields pass through to a Responses upstream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from turnout.drivers.openai_responses.items import Notes, input_messages
from turnout.drivers.openai_responses.tools import invalid, tool_choice, tool_table
from turnout.drivers.openai_responses.wire import NATIVE_FORMAT
from turnout.errors import InvalidRequest
from turnout.reasoning import RESPONSES, Reasoning
from turnout.types import ChatRequest, NativeRequest, is_mapping

PLACEHOLDER = {"role": "user", "content": ""}  # the canonical body of a request only a Responses upstream can serve
_JSON_FORMATS = frozenset({"json_schema", "json_object"})


def responses_request(body: Any, headers: Mapping[str, str] | None = None) -> ChatRequest:
    """Validate a Responses request body and build its ChatRequest (canonical body + the native one)."""
    if not is_mapping(body):
        raise InvalidRequest("The request body must be a JSON object.", param=None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model' (a string naming a route).", param="model")
    if body.get("background") is True:
        raise InvalidRequest(
            "Background responses are not supported by turnout: send the request without 'background'.",
            param="background",
        )
    notes = Notes()
    table = tool_table(body.get("tools"))
    notes.dropped.extend(f"{kind} tools" for kind in table.dropped)
    canonical: dict[str, Any] = {"model": model, "messages": _messages(body, table, notes)}
    _tools(body, table, canonical)
    _parameters(body, canonical)
    for name in ("conversation", "prompt"):
        if body.get(name) is not None:
            notes.untranslatable.append(f"a stored {name} (only OpenAI holds it)")
    untranslatable = ", ".join(dict.fromkeys(notes.untranslatable))
    if not canonical["messages"]:
        if not untranslatable:
            raise InvalidRequest("Missing required parameter: 'input' (a string or input items).", param="input")
        canonical["messages"] = [dict(PLACEHOLDER)]
    native = NativeRequest(
        NATIVE_FORMAT, body, untranslatable=untranslatable, dropped=tuple(dict.fromkeys(notes.dropped))
    )
    return ChatRequest.from_openai(canonical, native=native, reasoning=_reasoning(body))


def with_history(body: Mapping[str, Any], history: Sequence[Any]) -> dict[str, Any]:
    """The body of a request that continues a stored conversation: `history` (the items it continues: earlier
    inputs and outputs, oldest first) before the request's own input, and no `previous_response_id`."""
    own = body.get("input")
    if isinstance(own, str):
        own = [{"role": "user", "content": own}]
    elif own is None:
        own = []
    elif not isinstance(own, list):
        raise invalid("input", "a string or an array of input items", own)
    out = {key: value for key, value in body.items() if key != "previous_response_id"}
    out["input"] = [*history, *own]
    return out


def _messages(body: Mapping[str, Any], table: Any, notes: Notes) -> list[dict[str, Any]]:
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid("instructions", "a string", instructions)
    head = [{"role": "system", "content": instructions}] if instructions else []
    return head + input_messages(body.get("input"), table, notes)


def _tools(body: Mapping[str, Any], table: Any, out: dict[str, Any]) -> None:
    choice, functions = tool_choice(body.get("tool_choice"), table)
    if not functions:
        return
    out["tools"] = list(functions)
    if choice is not None:
        out["tool_choice"] = choice
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise invalid("parallel_tool_calls", "a boolean", parallel)
        out["parallel_tool_calls"] = parallel


def _parameters(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise invalid("stream", "a boolean", stream)
        out["stream"] = stream
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            message = "Invalid 'max_output_tokens': expected an integer of at least 1."
            raise InvalidRequest(message, param="max_output_tokens")
        out["max_tokens"] = limit
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]  # ChatRequest checks the range
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["user"] = user
    text = body.get("text")
    if text is not None and not is_mapping(text):
        raise invalid("text", "an object", text)
    fmt = text.get("format") if text else None
    if is_mapping(fmt) and fmt.get("type") in _JSON_FORMATS:
        out["response_format"] = _response_format(fmt)


def _reasoning(body: Mapping[str, Any]) -> Reasoning | None:
    """`reasoning` as the canonical reasoning request (see `turnout.reasoning`); `{}` asks for nothing."""
    reasoning = body.get("reasoning")
    if reasoning is None:
        return None
    if not is_mapping(reasoning):
        raise invalid("reasoning", "an object", reasoning)
    effort = reasoning.get("effort")
    if effort is not None and not isinstance(effort, str):
        raise invalid("reasoning.effort", "one of none, minimal, low, medium, high, xhigh or max", effort)
    summary = reasoning.get("summary", reasoning.get("generate_summary"))
    if summary is not None and not isinstance(summary, str):
        raise invalid("reasoning.summary", "one of auto, concise or detailed", summary)
    if effort is None and summary is None:
        return None
    return Reasoning(effort=effort, summary=summary, source=RESPONSES)


def _response_format(fmt: Mapping[str, Any]) -> dict[str, Any]:
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = fmt.get("schema")
    if not is_mapping(schema):
        raise invalid("text.format.schema", "a JSON Schema object", schema)
    spec: dict[str, Any] = {"name": str(fmt.get("name") or "output"), "schema": dict(schema)}
    if isinstance(fmt.get("description"), str):
        spec["description"] = fmt["description"]
    if fmt.get("strict") is True:
        spec["strict"] = True
    return {"type": "json_schema", "json_schema": spec}
