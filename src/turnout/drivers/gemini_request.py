"""Canonical OpenAI chat body -> Gemini generateContent request body. Pure: no I/O.

What changes shape on the way (wire-formats.md sections 4 and 10):
- `system`/`developer` messages are hoisted in order into `systemInstruction.parts` (position lost).
- Roles become `user`/`model`; consecutive same-role turns are merged (Gemini expects alternation). Tool results
  become `functionResponse` parts of a user turn, first in it, so one round of parallel results is one turn.
- Gemini keys function results by function *name*: the name is looked up from the earlier assistant tool call with
  the same id. Results are strings in OpenAI and must be objects here: they travel as `{"output": <string>}`.
- Tool arguments go from JSON strings to objects.
- Thought signatures (Gemini 3 requires the `thoughtSignature` of each function call to come back with it): a
  response's signature is carried on the OpenAI tool call as `extra_content.google.thought_signature` (the shape
  Google's own OpenAI-compatible endpoint uses, which OpenAI SDKs keep when the message is echoed back); here it is
  put back on the `functionCall` part. When a model turn has none (history from another provider), Google's
  documented placeholder `skip_thought_signature_validator` is put on its first call unless disabled.
- Images: data URLs become `inlineData`; http(s) URLs must be fetched by the driver first (`remote_image_urls`)
  and are inlined from the `images` map it passes in. `detail` is dropped.
- `response_format` json_object/json_schema -> `responseMimeType` (+ `responseJsonSchema`); `n` ->
  `candidateCount`. `assistant_prefix` (prefill) is not supported and is refused.
- Reasoning (`ChatRequest.reasoning`, sent only to a model that declares it) -> `generationConfig.thinkingConfig`:
  `thinkingBudget` fitted by `turnout.reasoning` (at most 24,576, which every Gemini 2.5 model accepts; Gemini 3
  still takes a budget), or -1 (dynamic: the model decides) when the client named neither a level nor a budget;
  `includeThoughts: true` when the client asked for a summary of the reasoning (the Responses API's
  `reasoning.summary`). Reasoning turned off sends nothing (the model's default: a budget of 0 is refused by
  models that always think), as does an output limit with too little room to think in (`thinking_conflict`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from turnout.drivers._translate import Failer, merge_turns, split_data_url, tool_arguments
from turnout.reasoning import thinking_budget
from turnout.types import ChatRequest

SKIP_SIGNATURE = "skip_thought_signature_validator"
MAX_THINKING_BUDGET = 24576  # the most every Gemini 2.5 model accepts (Flash's ceiling; Pro's is 32,768)
DYNAMIC_THINKING = -1

Part = dict[str, Any]
Turn = tuple[str, list[Part]]
# url -> (mime type, base64 data), filled by the driver for http(s) image URLs.
Images = Mapping[str, tuple[str, str]]


def _is_result(part: Part) -> bool:
    """Function responses lead a merged user turn, so one round of parallel results follows its calls."""
    return "functionResponse" in part


def remote_image_urls(request: ChatRequest) -> list[str]:
    """The distinct http(s) image URLs in the request, which the driver must fetch and inline."""
    seen: dict[str, None] = {}
    for part in _image_parts(request.messages):
        url = _image_url(part)
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            seen.setdefault(url)
    return list(seen)


def _image_parts(messages: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            yield from (p for p in content if isinstance(p, Mapping) and p.get("type") == "image_url")


def _image_url(part: Mapping[str, Any]) -> Any:
    image = part.get("image_url")
    return image.get("url") if isinstance(image, Mapping) else image


def build_request(
    request: ChatRequest,
    *,
    model: str,
    provider: str,
    images: Images | None = None,
    signature_fallback: bool = True,
) -> dict[str, Any]:
    """The generateContent body for `request` (the model is in the URL, not the body)."""
    fail = Failer(provider, model)
    if request.assistant_prefix:
        raise fail("Gemini does not support continuing a partial assistant answer (prefill).")
    converter = _Converter(fail, images or {}, signature_fallback)
    system, turns = converter.messages(request.messages)
    merged = merge_turns(turns, is_result=_is_result)
    out: dict[str, Any] = {"contents": [{"role": role, "parts": parts} for role, parts in merged]}
    if system:
        out["systemInstruction"] = {"parts": system}
    body = request.body
    _add_tools(out, body, fail)
    config = _generation_config(request)
    if config:
        out["generationConfig"] = config
    return out


class _Converter:
    """Message conversion with the state it needs: tool-call id -> function name, fetched images."""

    def __init__(self, fail: Failer, images: Images, signature_fallback: bool) -> None:
        self.fail = fail
        self.images = images
        self.signature_fallback = signature_fallback
        self.names: dict[str, str] = {}

    def messages(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[Part], list[Turn]]:
        system: list[Part] = []
        turns: list[Turn] = []
        for i, message in enumerate(messages):
            role, content, where = message.get("role"), message.get("content"), f"messages[{i}]"
            if role in ("system", "developer"):
                system.extend(self.text_parts(content, where))
            elif role == "user":
                turns.append(("user", self.user_parts(content, where)))
            elif role == "assistant":
                turns.append(("model", self.model_parts(message, where)))
            elif role == "tool":
                turns.append(("user", [self.function_response(message, where)]))
            else:
                raise self.fail(f"{where}: role '{role}' is not supported by Gemini; use 'tool' messages.")
        return system, turns

    def text_parts(self, content: Any, where: str) -> list[Part]:
        if isinstance(content, str):
            return [{"text": content}] if content else []
        parts = []
        for j, part in enumerate(content or ()):
            if part.get("type") != "text":
                raise self.fail(f"{where}.content[{j}]: only text parts are allowed in system messages for Gemini.")
            if part["text"]:
                parts.append({"text": part["text"]})
        return parts

    def user_parts(self, content: Any, where: str) -> list[Part]:
        if isinstance(content, str):
            return [{"text": content}] if content else []
        parts = []
        for j, part in enumerate(content or ()):
            kind = part.get("type")
            if kind == "text":
                if part["text"]:
                    parts.append({"text": part["text"]})
            elif kind == "image_url":
                parts.append(self.image(_image_url(part), f"{where}.content[{j}]"))
            else:
                raise self.fail(f"{where}.content[{j}]: content part type '{kind}' is not supported by Gemini.")
        return parts

    def image(self, url: str, where: str) -> Part:
        if url in self.images:
            mime, data = self.images[url]
            return {"inlineData": {"mimeType": mime, "data": data}}
        if url.startswith(("https://", "http://")):
            raise self.fail(f"{where}: image URL was not fetched before translation.")
        if not url.startswith("data:"):
            raise self.fail(f"{where}: image URL must be http(s) or a base64 data URL.")
        parsed = split_data_url(url)
        if parsed is None or not parsed[0]:
            raise self.fail(f"{where}: data URL images must be base64-encoded (data:<type>;base64,<data>).")
        mime, data = parsed
        return {"inlineData": {"mimeType": mime, "data": data}}

    def model_parts(self, message: Mapping[str, Any], where: str) -> list[Part]:
        content = message.get("content")
        parts: list[Part] = []
        if isinstance(content, str):
            if content:
                parts.append({"text": content})
        else:
            for part in content or ():
                text = part.get("text") if part.get("type") == "text" else part.get("refusal")
                if text:
                    parts.append({"text": text})
        calls = [
            self.function_call(call, f"{where}.tool_calls[{k}]")
            for k, call in enumerate(message.get("tool_calls") or ())
        ]
        if calls and self.signature_fallback and not any("thoughtSignature" in c for c in calls):
            calls[0]["thoughtSignature"] = SKIP_SIGNATURE
        return parts + calls

    def function_call(self, call: Mapping[str, Any], where: str) -> Part:
        function = call["function"]
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(f"{where}.function.name must be a non-empty string.")
        call_id = call.get("id")
        if isinstance(call_id, str) and call_id:
            self.names[call_id] = name
        args = tool_arguments(function.get("arguments"), where, self.fail)
        part: Part = {"functionCall": {"name": name, "args": args}}
        signature = _signature(call)
        if signature:
            part["thoughtSignature"] = signature
        return part

    def function_response(self, message: Mapping[str, Any], where: str) -> Part:
        call_id = message.get("tool_call_id")
        name = self.names.get(call_id) if isinstance(call_id, str) else None
        name = name or message.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(
                f"{where}: tool result for id {call_id!r} has no matching assistant tool call, so its function "
                "name (which Gemini needs) is unknown."
            )
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
        return {"functionResponse": {"name": name, "response": {"output": content or ""}}}


def _signature(call: Mapping[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, Mapping) else None
    signature = google.get("thought_signature") if isinstance(google, Mapping) else None
    return signature if isinstance(signature, str) and signature else None


def _add_tools(out: dict[str, Any], body: Mapping[str, Any], fail: Failer) -> None:
    tools = body.get("tools")
    if not tools:
        return
    declarations = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) and tool.get("type") == "function" else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
            raise fail(f"tools[{i}]: only tools of type 'function' with a name are supported by Gemini.")
        declaration: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            declaration["parametersJsonSchema"] = dict(function["parameters"])
        declarations.append(declaration)
    out["tools"] = [{"functionDeclarations": declarations}]
    choice = body.get("tool_choice")
    if choice is not None:
        out["toolConfig"] = {"functionCallingConfig": _calling_config(choice, fail)}


def _calling_config(choice: Any, fail: Failer) -> dict[str, Any]:
    modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
    if isinstance(choice, str) and choice in modes:
        return {"mode": modes[choice]}
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
        if isinstance(name, str) and name:
            return {"mode": "ANY", "allowedFunctionNames": [name]}
    raise fail("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}.")


_SAMPLING = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)


def _generation_config(request: ChatRequest) -> dict[str, Any]:
    body = request.body
    config: dict[str, Any] = {}
    for name, wire in _SAMPLING:
        if body.get(name) is not None:
            config[wire] = body[name]
    if request.max_output_tokens:
        config["maxOutputTokens"] = request.max_output_tokens
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    sequences = [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []
    if sequences:
        config["stopSequences"] = sequences
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        config["candidateCount"] = n
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if isinstance(schema, Mapping):
            config["responseJsonSchema"] = dict(schema)
    thinking = _thinking_config(request) if request.reasoning is not None else None
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def _thinking_config(request: ChatRequest) -> dict[str, Any] | None:
    reasoning = request.reasoning
    if reasoning is None or reasoning.off:
        return None
    if reasoning.default_depth:
        budget: int | None = DYNAMIC_THINKING
    else:
        budget = thinking_budget(reasoning, request.max_output_tokens, ceiling=MAX_THINKING_BUDGET)
        if budget is None:
            return None
    config: dict[str, Any] = {"thinkingBudget": budget}
    if reasoning.summary is not None:
        config["includeThoughts"] = True
    return config


def thinking_conflict(request: ChatRequest) -> str | None:
    """Why the request's reasoning cannot be sent to Gemini (its output limit leaves too little room to think in),
    or None."""
    reasoning = request.reasoning
    if reasoning is None or reasoning.off or _thinking_config(request) is not None:
        return None
    return "max_tokens too small to think in"
