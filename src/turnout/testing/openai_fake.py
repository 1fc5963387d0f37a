"""OpenAIFake: canonical scenarios rendered as exact OpenAI Chat Completions wire bytes.

Flavours reproduce the compatible servers' quirks: `azure` (string error codes, content_filter bodies, the
empty-`choices` prompt-filter chunk first in streams), `xai` (errors as `{"code", "error": "text"}`), `vllm`
(top-level `{"object": "error", ...}` bodies, context errors without a code), `groq` (usage in the final chunk's
`x_groq.usage` instead of a usage chunk).

`prefill` names the dialect in which the fake continues a partial answer (`turnout.drivers.openai_prefill`), as the
real servers do; `stream_answer` then streams the part of a canonical answer that follows the prefix it was given,
and a request in another dialect is refused (or misread) the way that server would (`continuation`).

The Responses API (`.../responses`, endpoint "responses") is `responses_fake.ResponsesEndpoint`: `response_text`,
`response_calls`, `stream_response_text` (optionally with a reasoning item carrying encrypted content),
`stream_response_calls`, `stream_response_failed`, `stream_response_cut`. Its requests are checked as strictly as
OpenAI checks them (`responses_rules`); a refused one is answered 400 and its reasons kept in `refused`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from aiohttp import web

from turnout.errors import ErrorClass
from turnout.testing.embeddings_fake import OpenAIEmbeddings
from turnout.testing.fake import Behaviour, FakeUpstream, Framing, ToolCall, reply_json, reply_sse, sse_frame
from turnout.testing.format_fake import DEFAULT_USAGE, NO_FRAMING, FormatFake
from turnout.testing.responses_fake import ResponsesEndpoint
from turnout.testing.responses_rules import problems
from turnout.types import Usage

Flavor = Literal["openai", "azure", "xai", "vllm", "groq"]
Prefill = Literal["assistant", "vllm", "prefix"]
Fault = Literal["cut", "stall", "malformed", "error"]
# A token carries the whitespace before it, as GPT-style tokenizers do ("before"), or after it ("after").
_TOKENS = {"before": re.compile(r"\s*\S+|\s+"), "after": re.compile(r"\S+\s*|\s+")}

# class -> (status, OpenAI code, type, message)
_ERRORS: Mapping[ErrorClass, tuple[int, str | None, str, str]] = {
    ErrorClass.RATE_LIMIT: (
        429,
        "rate_limit_exceeded",
        "requests",
        "Rate limit reached for gpt-test on requests per min (RPM): Limit 3, Used 3. Please try again in 644ms.",
    ),
    ErrorClass.QUOTA_EXCEEDED: (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    ErrorClass.OVERLOADED: (503, None, "server_error", "The engine is currently overloaded, please try again later."),
    ErrorClass.SERVER_ERROR: (500, None, "server_error", "The server had an error while processing your request."),
    ErrorClass.TIMEOUT: (504, None, "server_error", "Gateway timeout."),
    ErrorClass.AUTH: (401, "invalid_api_key", "invalid_request_error", "Incorrect API key provided: sk-te**st."),
    ErrorClass.NOT_FOUND: (
        404,
        "model_not_found",
        "invalid_request_error",
        "The model `gpt-test` does not exist or you do not have access to it.",
    ),
    ErrorClass.CONTEXT_WINDOW: (
        400,
        "context_length_exceeded",
        "invalid_request_error",
        "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
    ),
    ErrorClass.CONTENT_POLICY: (
        400,
        "invalid_prompt",
        "invalid_request_error",
        "Invalid prompt: your prompt was flagged as potentially violating our usage policy.",
    ),
    ErrorClass.BAD_REQUEST: (
        400,
        "unsupported_parameter",
        "invalid_request_error",
        "Unsupported parameter: 'max_tokens' is not supported with this model.",
    ),
}


class OpenAIFake(ResponsesEndpoint, OpenAIEmbeddings, FormatFake):
    """A loopback OpenAI-compatible server. Endpoints: "chat" (any `.../chat/completions`), "responses" (any
    `.../responses`), "embeddings", "models"."""

    chat_paths = ("/chat/completions",)
    models_path = "/models"

    def __init__(self, *, flavor: Flavor = "openai", model: str = "gpt-test", prefill: Prefill | None = None) -> None:
        super().__init__(model=model)
        self.flavor = flavor
        self.prefill = prefill
        self.refused: list[list[str]] = []  # the problems of each refused Responses request, in order

    def endpoint(self, method: str, path: str) -> str:
        if path.endswith("/responses"):
            return "responses"
        return super().endpoint(method, path)

    def refusal(self, endpoint: str, body: Any) -> Behaviour | None:
        if endpoint != "responses":
            return None
        found = problems(body)
        if not found:
            return None
        self.refused.append(found)
        error = {"message": "; ".join(found), "type": "invalid_request_error", "param": None, "code": None}
        return reply_json({"error": error}, status=400)

    # -- non-streaming

    def completion(self, message: Mapping[str, Any], *, finish_reason: str, usage: Usage | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1727346143,
            "model": self.model,
            "choices": [{"index": 0, "message": dict(message), "logprobs": None, "finish_reason": finish_reason}],
            "system_fingerprint": "fp_fake",
        }
        if usage is not None:
            body["usage"] = usage.to_openai()
        if self.flavor == "azure":
            body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": {}}]
        return body

    def text(self, reply: str, *, usage: Usage | None = DEFAULT_USAGE, finish_reason: str = "stop") -> Behaviour:
        message = {"role": "assistant", "content": reply, "refusal": None}
        return reply_json(self.completion(message, finish_reason=finish_reason, usage=usage))

    def tool_calls(self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE) -> Behaviour:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id or f"call_{i}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for i, call in enumerate(calls)
            ],
        }
        return reply_json(self.completion(message, finish_reason="tool_calls", usage=usage))

    def models(self, ids: Sequence[str]) -> Behaviour:
        data = [{"id": i, "object": "model", "created": 1715367049, "owned_by": "system"} for i in ids]
        return reply_json({"object": "list", "data": data})

    # -- streaming

    def chunk(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> bytes:
        data = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1727346180,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}],
        }
        return sse_frame(json.dumps(data))

    def _head(self) -> list[bytes]:
        frames = []
        if self.flavor == "azure":
            frames.append(
                sse_frame(
                    json.dumps(
                        {
                            "id": "",
                            "choices": [],
                            "created": 0,
                            "model": "",
                            "prompt_filter_results": [{"prompt_index": 0}],
                        }
                    )
                )
            )
        frames.append(self.chunk({"role": "assistant", "content": "", "refusal": None}))
        return frames

    def _tail(self, finish_reason: str, usage: Usage | None) -> list[bytes]:
        finish = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1727346180,
            "model": self.model,
            "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.flavor == "groq" and usage is not None:
            finish["x_groq"] = {"usage": usage.to_openai()}
        frames = [sse_frame(json.dumps(finish))]
        if usage is not None and self.flavor != "groq":
            frames.append(
                sse_frame(
                    json.dumps(
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion.chunk",
                            "created": 1727346180,
                            "model": self.model,
                            "choices": [],
                            "usage": usage.to_openai(),
                        }
                    )
                )
            )
        return frames

    def stream_text(
        self,
        pieces: Sequence[str],
        *,
        usage: Usage | None = DEFAULT_USAGE,
        finish_reason: str = "stop",
        framing: Framing = NO_FRAMING,
    ) -> Behaviour:
        frames = self._head() + [self.chunk({"content": p}) for p in pieces]
        frames += [*self._tail(finish_reason, usage), b"data: [DONE]\n\n"]
        return self.send_sse(frames, framing)

    def stream_tool_calls(
        self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE, framing: Framing = NO_FRAMING
    ) -> Behaviour:
        frames = self._head()
        for index, call in enumerate(calls):
            start = {
                "index": index,
                "id": call.id or f"call_{index}",
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            frames.append(self.chunk({"tool_calls": [start]}))
            args = json.dumps(call.arguments)
            for cut in range(0, len(args), 7):  # fragments split mid-token, as OpenAI does
                frames.append(
                    self.chunk({"tool_calls": [{"index": index, "function": {"arguments": args[cut : cut + 7]}}]})
                )
        frames += [*self._tail("tool_calls", usage), b"data: [DONE]\n\n"]
        return self.send_sse(frames, framing)

    def stream_error(self, pieces: Sequence[str], error_class: ErrorClass, *, message: str | None = None) -> Behaviour:
        """Content, then a `data: {"error": ...}` event after the 200 (and no terminator)."""
        _, code, kind, text = _ERRORS[ErrorClass(error_class)]
        error = {"error": {"message": message or text, "type": kind, "param": None, "code": code}}
        frames = self._head() + [self.chunk({"content": p}) for p in pieces] + [sse_frame(json.dumps(error))]
        return reply_sse(frames)

    def stream_malformed(self, pieces: Sequence[str]) -> Behaviour:
        """Content, then a chunk that is not JSON."""
        frames = self._head() + [self.chunk({"content": p}) for p in pieces] + [b'data: {"id": "chatcmpl-fa\n\n']
        return reply_sse([*frames, b"data: [DONE]\n\n"])

    def stream_unterminated(self, pieces: Sequence[str]) -> Behaviour:
        """Content, then a clean end of body without a finish reason or `[DONE]`."""
        return reply_sse(self._head() + [self.chunk({"content": p}) for p in pieces])

    # -- continuing a partial answer

    def stream_answer(
        self,
        answer: str,
        *,
        fault: Fault | None = None,
        after: int = 0,
        echo_prefix: bool = False,
        with_usage: bool = True,
        whitespace: Literal["before", "after"] = "before",
    ) -> Behaviour:
        """Stream `answer` one token per chunk, or only what follows the partial answer the request asks this
        server to continue (in its `prefill` dialect; see `continuation`). `fault` strikes after `after` content
        chunks: `cut` aborts the connection, `stall` goes silent, `malformed` sends broken JSON, `error` an error
        event. `echo_prefix` repeats the prefix before the continuation, as some servers do; `whitespace` says which
        side of a token its whitespace travels on."""

        async def behave(request: web.Request, upstream: FakeUpstream) -> web.StreamResponse | None:
            body = await request.json()
            prefix, refusal = self.continuation(body)
            if refusal is not None:
                status, error = refusal
                return web.json_response(error, status=status)
            rest = answer[len(prefix) :] if prefix and answer.startswith(prefix) else answer
            tokens = _TOKENS[whitespace].findall((prefix + rest) if prefix and echo_prefix else rest)
            frames = self._head() + [self.chunk({"content": token}) for token in tokens]
            usage = Usage(prompt_tokens=_words(body["messages"]), completion_tokens=len(tokens))
            tail = [*self._tail("stop", usage if with_usage else None), b"data: [DONE]\n\n"]
            return await self._play(request, upstream, frames, tail, fault, len(self._head()) + after)

        return behave

    def continuation(self, body: Mapping[str, Any]) -> tuple[str, tuple[int, Any] | None]:
        """(the prefix this server continues, "" for a fresh answer; or the (status, body) it refuses with)."""
        messages = body.get("messages") or [{}]
        last = messages[-1]
        trailing = last.get("role") == "assistant" and isinstance(last.get("content"), str)
        text = last.get("content") if trailing else ""
        if self.prefill is None:  # OpenAI: strict about unknown fields; a last assistant message opens a new reply
            return "", _openai_refusal(body)
        if self.prefill == "vllm":  # vLLM: protocol.py's check_generation_prompt, then the chat template
            if body.get("continue_final_message") and body.get("add_generation_prompt", True):
                message = "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
                return "", (400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400})
            return (text if body.get("continue_final_message") else ""), None
        if self.prefill == "prefix":  # Mistral (DeepSeek's beta answers alike): strict fields, `prefix` required
            refusal = _prefix_refusal(body, trailing and not last.get("prefix"))
            return ("" if refusal else text), refusal
        return text, None  # `assistant`: llama.cpp's --prefill-assistant continues a last assistant message

    async def _play(
        self,
        request: web.Request,
        upstream: FakeUpstream,
        frames: list[bytes],
        tail: list[bytes],
        fault: Fault | None,
        at: int,
    ) -> web.StreamResponse | None:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for index, frame in enumerate([*frames, *tail]):
            if fault is not None and index == min(at, len(frames)):
                if fault == "cut":
                    if request.transport is not None:
                        request.transport.abort()
                    return None
                if fault == "stall":
                    await upstream.sleep(3600)
                    return resp
                if fault == "malformed":
                    await resp.write(b'data: {"id": "chatcmpl-fa\n\n')
                else:
                    error = {"error": {"message": "The engine is overloaded.", "type": "server_error", "code": None}}
                    await resp.write(sse_frame(json.dumps(error)))
                await resp.write_eof()
                return resp
            await resp.write(frame)
        await resp.write_eof()
        return resp

    # -- errors

    def error_body(self, error_class: ErrorClass, message: str | None = None) -> tuple[int, dict[str, Any]]:
        """(status, body) for an error of `error_class` in this flavour's shape."""
        status, code, kind, text = _ERRORS[ErrorClass(error_class)]
        text = message or text
        if self.flavor == "azure":
            if error_class is ErrorClass.CONTENT_POLICY:
                code, text = (
                    "content_filter",
                    (
                        "The response was filtered due to the prompt triggering Azure OpenAI's "
                        "content management policy."
                    ),
                )
            elif error_class is ErrorClass.NOT_FOUND:
                code, text = "DeploymentNotFound", "The API deployment for this resource does not exist."
            elif error_class is ErrorClass.RATE_LIMIT:
                code, text = "429", "Requests have exceeded token rate limit. Please retry after 6 seconds."
            return status, {"error": {"code": code or str(status), "message": text, "status": status}}
        if self.flavor == "xai":
            if error_class is ErrorClass.AUTH:
                status = 400
            return status, {"code": "Client specified an invalid argument", "error": text}
        if self.flavor == "vllm":
            if error_class is ErrorClass.CONTEXT_WINDOW:
                code = None
            return status, {"object": "error", "message": text, "type": code or kind, "param": None, "code": status}
        return status, {"error": {"message": text, "type": kind, "param": None, "code": code}}


def _openai_refusal(body: Mapping[str, Any]) -> tuple[int, Any] | None:
    """OpenAI rejects the other dialects' fields (400), as it does any unknown parameter."""
    for key in ("continue_final_message", "add_generation_prompt"):
        if key in body:
            return 400, _openai_error(f"Unrecognized request argument supplied: {key}")
    for i, message in enumerate(body.get("messages") or ()):
        if "prefix" in message:
            return 400, _openai_error(
                f"Additional properties are not allowed ('prefix' was unexpected) - 'messages.{i}'"
            )
    return None


def _prefix_refusal(body: Mapping[str, Any], unflagged_assistant: bool) -> tuple[int, Any] | None:
    """Mistral forbids unknown fields (422) and a last assistant message without `prefix: true` (400)."""
    for key in ("continue_final_message", "add_generation_prompt"):
        if key in body:
            detail = [{"type": "extra_forbidden", "loc": ["body", key], "msg": "Extra inputs are not permitted"}]
            return 422, {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error"}
    if unflagged_assistant:
        message = "Expected last role User or Tool (or Assistant with prefix True) for serving but got assistant"
        return 400, {"object": "error", "message": message, "type": "invalid_request_message_order", "code": "3230"}
    return None


def _openai_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def _words(messages: Sequence[Mapping[str, Any]]) -> int:
    """A deterministic prompt token count: the words of every text content."""
    return sum(len(m["content"].split()) for m in messages if isinstance(m.get("content"), str)) + 3 * len(messages)
