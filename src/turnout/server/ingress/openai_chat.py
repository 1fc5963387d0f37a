"""`POST /v1/chat/completions`: the OpenAI chat format, which *is* the canonical one (nothing to translate).

The body is validated as it is (`ChatRequest.from_openai`), answers are the canonical ones rendered as OpenAI JSON,
streams are relayed by `turnout.server.sse.relay` (chunk bytes of OpenAI-compatible upstreams forwarded untouched,
`data: [DONE]` at the end) and errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web

from turnout.server.auth import UNAUTHORIZED_MESSAGE
from turnout.server.body import encode_body
from turnout.server.errors import Failure, Scrub
from turnout.server.ingress import Trailer
from turnout.server.sse import RelayOutcome, relay
from turnout.types import ChatChunk, ChatRequest, ChatResponse


class OpenAIChat:
    """The OpenAI chat completions ingress."""

    format: ClassVar[str] = "openai.chat"
    batched: ClassVar[bool] = True
    unauthorized: ClassVar[str] = UNAUTHORIZED_MESSAGE

    def parse(self, data: Any, headers: Mapping[str, str]) -> ChatRequest:
        return ChatRequest.from_openai(data)

    def error_response(self, fail: Failure) -> web.Response:
        return web.Response(
            status=fail.status, body=fail.body(), headers={"Content-Type": "application/json", **fail.headers}
        )

    def answer(self, reply: ChatResponse, chat: ChatRequest) -> bytes:
        return encode_body(reply.to_openai())

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
        return await relay(
            response,
            stream,
            first,
            include_usage=chat.include_usage,
            keep_text=keep_text,
            trailer=trailer,
            scrub=scrub,
        )
