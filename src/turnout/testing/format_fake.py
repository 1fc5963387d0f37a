"""FormatFake: the base of the per-format fakes (OpenAI, Ollama, Anthropic, Gemini).

What does not depend on the wire format lives here once: the model a fake answers as, naming requests "chat" /
"models" (and "embeddings", for fakes that serve them: `embeddings_fake`) by path, `error` and `html_error` (from
the subclass's `error_body`), and SSE keep-alive interleaving.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from turnout.errors import ErrorClass
from turnout.testing.fake import Behaviour, FakeUpstream, Framing, reply_json, reply_raw, reply_sse
from turnout.types import Usage

__all__ = ["DEFAULT_USAGE", "NO_FRAMING", "FormatFake"]


NO_FRAMING = Framing()  # no framing edge cases
DEFAULT_USAGE = Usage(prompt_tokens=12, completion_tokens=5)  # what scripted answers report unless told otherwise
_BAD_GATEWAY = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


class FormatFake(FakeUpstream, ABC):
    """The part every per-format fake shares: the model it answers as, endpoint names, errors, SSE keep-alives.

    A subclass names its paths (`chat_paths`, `models_path`), renders its error bodies (`error_body`) and builds
    its scenarios; `error`, `html_error` and `send_sse` are the same for every format.
    """

    chat_paths: ClassVar[tuple[str, ...]]  # path endings of the chat endpoint (streaming or not)
    models_path: ClassVar[str]  # path ending of the model list
    html_page: ClassVar[bytes] = _BAD_GATEWAY  # what `html_error` answers (as from a proxy in front)
    keepalive: ClassVar[bytes] = b": keep-alive\n\n"  # the frame `Framing(comments=True)` puts before each event

    def __init__(self, *, model: str) -> None:
        super().__init__()
        self.model = model

    def endpoint(self, method: str, path: str) -> str:
        embeddings: tuple[str, ...] = getattr(self, "embeddings_paths", ())
        if embeddings and path.endswith(embeddings):
            return "embeddings"
        if path.endswith(self.chat_paths):
            return "chat"
        if path.endswith(self.models_path):
            return "models"
        return path

    @abstractmethod
    def error_body(self, error_class: ErrorClass, message: str | None = None) -> tuple[int, Any]:
        """(status, body) for an HTTP error the driver must classify as `error_class`."""

    def error(
        self, error_class: ErrorClass, *, message: str | None = None, headers: Mapping[str, str] | None = None
    ) -> Behaviour:
        status, body = self.error_body(ErrorClass(error_class), message)
        return reply_json(body, status=status, headers=headers)

    def html_error(self, status: int = 502) -> Behaviour:
        return reply_raw(self.html_page, status=status, content_type="text/html")

    def send_sse(self, frames: list[bytes], framing: Framing) -> Behaviour:
        """Stream `frames` as `framing` says, with this format's keep-alive before each event when it asks."""
        if framing.comments:
            frames = [f for frame in frames for f in (self.keepalive, frame)]
        return reply_sse(frames, **framing.options())
