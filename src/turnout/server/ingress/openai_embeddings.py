"""`POST /v1/embeddings`: OpenAI's embeddings format, one more peer on the shared request path.

The body is validated as it is (`EmbeddingRequest.from_openai`) and the answer is OpenAI's `list` of vectors in the
`encoding_format` the client asked for (a base64 vector from an OpenAI-format upstream is passed on untouched);
errors use OpenAI's shape, as for chat. Embeddings never stream, so the shared path (`IngressHandler`: auth,
`server.max_in_flight` admission counted together with chat, the body's size cap and client timeout, routing headers,
metrics, the access log with `ingress: "openai.embeddings"`, draining) serves them up to the parsed request, and
`EmbeddingsHandler.respond` dispatches it through `router.embed`: the same fallback, breakers, limits and pricing.
A chat route named here, or an embeddings route named at a chat endpoint, is a 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web

from turnout.embeddings import EmbeddingRequest, EmbeddingResponse
from turnout.server.auth import UNAUTHORIZED_MESSAGE
from turnout.server.body import encode_body
from turnout.server.callers import Caller
from turnout.server.handler import IngressHandler, Shared, routing_headers
from turnout.server.ingress.openai_chat import OpenAIChat

_JSON = {"Content-Type": "application/json"}


class OpenAIEmbeddings:
    """The OpenAI embeddings ingress: parsing and answers (it never streams, so it has no relay)."""

    format: ClassVar[str] = "openai.embeddings"
    batched: ClassVar[bool] = False
    unauthorized: ClassVar[str] = UNAUTHORIZED_MESSAGE
    error_response = OpenAIChat.error_response  # the same OpenAI error shape as chat

    def parse(self, data: Any, headers: Mapping[str, str]) -> EmbeddingRequest:
        return EmbeddingRequest.from_openai(data)

    def answer(self, reply: EmbeddingResponse) -> bytes:
        return encode_body(reply.to_openai())


class EmbeddingsHandler(IngressHandler):
    """`POST /v1/embeddings`: the shared path up to the parsed request, then `router.embed`."""

    def __init__(self, sidecar: Shared) -> None:
        super().__init__(sidecar, OpenAIEmbeddings())  # type: ignore[arg-type]  # no relay: it never streams

    async def respond(  # type: ignore[override]
        self, request: web.Request, embed: EmbeddingRequest, started: float, caller: Caller
    ) -> web.StreamResponse:
        sc = self.sc
        request_id = request.headers.get("x-request-id")
        try:
            reply = await sc.router.embed(embed, request_id=request_id, client=caller.client, tag=caller.tag)
        except asyncio.CancelledError:
            self._client_gone(request, embed.model, started, caller)
            raise
        except Exception as exc:
            return self._failed(request, embed.model, exc, started, caller)
        body = self.ingress.answer(reply)  # type: ignore[call-arg]
        headers = {**_JSON, **routing_headers(reply.route, reply.served_by, reply.attempts, reply.cost_usd)}
        self._served(request, reply, started, caller, _content(embed, reply) if sc.settings.log_content else None)
        return web.Response(body=body, headers=headers)


def _content(embed: EmbeddingRequest, reply: EmbeddingResponse) -> dict[str, Any]:
    """What `server.log_content` logs: the request, and the answer's shape (the vectors themselves are noise)."""
    return {"request": embed.body, "response": {"vectors": len(reply.vectors), "dimensions": reply.dimensions}}
