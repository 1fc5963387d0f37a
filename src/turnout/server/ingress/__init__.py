"""The sidecar's client wire formats ("ingresses"), peers on one shared path.

An ingress only translates: the client's body into the canonical request (`ChatRequest`, whose `body` is OpenAI
chat JSON, plus the client's own body as `native` when it is another format), and the router's answer, stream and
failures back into the client's format. Everything else is `turnout.server.handler.IngressHandler`, the same
code for every ingress: authentication, admission (`server.max_in_flight`), reading the body (size cap, client
timeout, JSON), routing, fallback, breakers, limits, the `x-turnout-*` headers, metrics, the access log (whose
`ingress` field is the ingress's `format`) and draining.

```
openai_chat.py          POST /v1/chat/completions        OpenAIChat          "openai.chat"
anthropic_messages.py   POST /v1/messages                AnthropicMessages   "anthropic.messages"
                        POST /v1/messages/count_tokens   CountTokens (answered locally, no upstream)
openai_embeddings.py    POST /v1/embeddings              OpenAIEmbeddings    "openai.embeddings"
                                                         (EmbeddingsHandler: router.embed; never streams)
openai_responses.py     POST /v1/responses               OpenAIResponses     "openai.responses"
                        GET|DELETE /v1/responses/{id}    StoredResponses (the state layer, no upstream)
```

A new format is one more module implementing `Ingress` and one line in `turnout.server.app.create_app`:
`IngressHandler(sidecar, TheIngress())` on its path. Its pure translation belongs with its wire format (as
`turnout.drivers.anthropic.ingress_*` does for Messages and `turnout.drivers.openai_responses` for Responses), so
both directions share one set of tables. What a translating deployment leaves out by rule (`NativeRequest.dropped`)
is named in the answer's `x-turnout-dropped` header by the shared path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Protocol

from aiohttp import web

from turnout.server.errors import Failure, Scrub
from turnout.server.sse import RelayOutcome
from turnout.types import ChatChunk, ChatRequest, ChatResponse

Trailer = Callable[[], bytes]


class Ingress(Protocol):
    """One client wire format. Instances are stateless and shared by every request of their endpoint."""

    format: ClassVar[str]  # the access log's `ingress` field, e.g. "openai.chat"
    batched: ClassVar[bool]  # the relay forwards bytes and takes `ChunkBatch` items (`ChatStream.batched()`)
    unauthorized: ClassVar[str]  # the 401 message: which header carries the key in this format

    def parse(self, data: Any, headers: Mapping[str, str]) -> ChatRequest:
        """The client's decoded JSON body -> the canonical request; InvalidRequest names what is wrong."""
        ...

    def error_response(self, fail: Failure) -> web.Response:
        """A failure (turnout's status and OpenAI-shaped error object) as this format's error answer."""
        ...

    def answer(self, reply: ChatResponse, chat: ChatRequest) -> bytes | Awaitable[bytes]:
        """The body of a non-streamed answer (an awaitable of it when the ingress must do I/O first: the Responses
        API keeps a stored answer before the client can ask for it)."""
        ...

    async def relay(
        self,
        response: web.StreamResponse,
        stream: Any,
        first: ChatChunk,
        chat: ChatRequest,
        *,
        keep_text: bool,
        trailer: Trailer,
        scrub: Scrub,
    ) -> RelayOutcome:
        """Write `first` and the rest of `stream` (a ChatStream) in this format's SSE; end with its terminator, or
        with its error event after a failure (never like a complete answer; its text passed through `scrub`).
        `trailer()` is the rescue trail comment to put before either ending."""
        ...
