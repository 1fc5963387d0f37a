"""OllamaFake: canonical scenarios rendered as Ollama's native `/api/chat` wire bytes (NDJSON streams)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from turnout.errors import ErrorClass
from turnout.testing.embeddings_fake import OllamaEmbeddings
from turnout.testing.fake import Behaviour, Framing, ToolCall, reply_json, reply_ndjson, reply_stream
from turnout.testing.format_fake import DEFAULT_USAGE, NO_FRAMING, FormatFake
from turnout.types import Usage

_CREATED = "2024-08-04T08:52:19.385406455-07:00"

# class -> (status, error text as Ollama (or a proxy in front of it) says it)
_ERRORS: Mapping[ErrorClass, tuple[int, str]] = {
    ErrorClass.RATE_LIMIT: (429, "too many requests, please slow down"),
    ErrorClass.QUOTA_EXCEEDED: (402, "payment required: you have exceeded your usage quota"),
    ErrorClass.OVERLOADED: (503, "server busy, please try again.  maximum pending requests exceeded"),
    ErrorClass.SERVER_ERROR: (500, "llama runner process has terminated: exit status 2"),
    ErrorClass.TIMEOUT: (504, "gateway timeout"),
    ErrorClass.AUTH: (401, "unauthorized"),
    ErrorClass.NOT_FOUND: (404, "model 'llama-test' not found, try pulling it first"),
    ErrorClass.CONTEXT_WINDOW: (400, "the input length exceeds the context length"),
    ErrorClass.CONTENT_POLICY: (400, "request flagged by the safety filter"),
    ErrorClass.BAD_REQUEST: (400, "invalid options: num_predict must be an integer"),
}


class OllamaFake(OllamaEmbeddings, FormatFake):
    """A loopback Ollama server. Endpoints: "chat" (`/api/chat`), "models" (`/api/tags`)."""

    chat_paths = ("/api/chat",)
    models_path = "/api/tags"
    html_page = b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"

    def __init__(self, *, model: str = "llama-test") -> None:
        super().__init__(model=model)

    # -- building blocks

    def line(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return {"model": self.model, "created_at": _CREATED, "message": dict(message), "done": False}

    def done(self, usage: Usage | None, *, reason: str = "stop", content: str = "", **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "created_at": _CREATED,
            "message": {"role": "assistant", "content": content, **extra},
            "done_reason": reason,
            "done": True,
            "total_duration": 4883583458,
            "load_duration": 1334875,
        }
        if usage is not None:
            if usage.prompt_tokens:  # omitempty: a fully cached prompt has no prompt_eval_count
                out["prompt_eval_count"] = usage.prompt_tokens
                out["prompt_eval_duration"] = 342546000
            out["eval_count"] = usage.completion_tokens
            out["eval_duration"] = 4535599000
        return out

    @staticmethod
    def _calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
        return [{"function": {"name": c.name, "arguments": dict(c.arguments)}} for c in calls]

    # -- scenarios

    def text(self, reply: str, *, usage: Usage | None = DEFAULT_USAGE, finish_reason: str = "stop") -> Behaviour:
        reason = "length" if finish_reason == "length" else "stop"
        return reply_json(self.done(usage, reason=reason, content=reply))

    def tool_calls(self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE) -> Behaviour:
        return reply_json(self.done(usage, tool_calls=self._calls(calls)))

    def stream_text(
        self,
        pieces: Sequence[str],
        *,
        usage: Usage | None = DEFAULT_USAGE,
        finish_reason: str = "stop",
        framing: Framing = NO_FRAMING,
    ) -> Behaviour:
        lines: list[Mapping[str, Any]] = [self.line({"role": "assistant", "content": p}) for p in pieces]
        lines.append(self.done(usage, reason="length" if finish_reason == "length" else "stop"))
        return reply_ndjson(lines, **framing.options())

    def stream_tool_calls(
        self, calls: Sequence[ToolCall], *, usage: Usage | None = DEFAULT_USAGE, framing: Framing = NO_FRAMING
    ) -> Behaviour:
        lines = [self.line({"role": "assistant", "content": "", "tool_calls": self._calls(calls)}), self.done(usage)]
        return reply_ndjson(lines, **framing.options())

    def stream_error(self, pieces: Sequence[str], error_class: ErrorClass, *, message: str | None = None) -> Behaviour:
        lines: list[Mapping[str, Any]] = [self.line({"role": "assistant", "content": p}) for p in pieces]
        lines.append({"error": message or _ERRORS[ErrorClass(error_class)][1]})
        return reply_ndjson(lines)

    def stream_malformed(self, pieces: Sequence[str]) -> Behaviour:
        lines: list[bytes | Mapping[str, Any]] = [self.line({"role": "assistant", "content": p}) for p in pieces]
        lines.append(b'{"model":"llama-test","message":{"role":"assis')
        return reply_ndjson(lines)

    def stream_unterminated(self, pieces: Sequence[str]) -> Behaviour:
        return reply_ndjson([self.line({"role": "assistant", "content": p}) for p in pieces])

    def stream_raw(self, lines: Sequence[bytes], framing: Framing = NO_FRAMING) -> Behaviour:
        """Exact NDJSON bytes (each line already ending in a newline, or not)."""
        return reply_stream(lines, content_type="application/x-ndjson", **framing.options())

    def error_body(self, error_class: ErrorClass, message: str | None = None) -> tuple[int, dict[str, Any]]:
        status, text = _ERRORS[ErrorClass(error_class)]
        return status, {"error": message or text}

    def models(self, ids: Sequence[str]) -> Behaviour:
        models = [
            {
                "name": i,
                "model": i,
                "modified_at": "2024-08-04T08:52:19.385406455-07:00",
                "size": 2019393189,
                "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
            }
            for i in ids
        ]
        return reply_json({"models": models})
