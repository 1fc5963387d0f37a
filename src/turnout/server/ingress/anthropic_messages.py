"""`POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API, for `anthropic` SDKs and agents.

The translation is the Anthropic wire format's own (`turnout.drivers.anthropic.ingress_request`, `_response`,
`_stream`: the inverse of what the `anthropic` driver does); this module is the HTTP glue on the shared path:

- the body: a Messages request (`model` names a route), `?beta=true` and `anthropic-version` accepted as they come;
  `anthropic-beta` is forwarded to Anthropic upstreams with the client's own body;
- a non-streamed answer is a Messages response (an Anthropic upstream's own, untouched, when it served);
- a stream is the Messages event sequence, written by `relay_messages` through the same coalescing writer as
  OpenAI streams; a failure after the first event ends it with an `error` event;
- errors use `{"type": "error", "error": {"type", "message"}}` with Anthropic's statuses (`error_status`); turnout's
  attempt trail and error class ride inside `error`, as they do in OpenAI-shaped errors.

`count_tokens` answers `{"input_tokens": N}` at once, without an upstream: an estimate from the text (about four
characters a token, tool definitions included), as the router's context-window checks use.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web

from turnout.drivers.anthropic.ingress_request import messages_request
from turnout.drivers.anthropic.ingress_response import (
    error_body,
    error_status,
    estimate_tokens,
    message_body,
)
from turnout.drivers.anthropic.ingress_stream import MessagesEncoder
from turnout.errors import ProviderError, RouteNotAllowed, RouteNotFound, UpstreamConnectionError
from turnout.router.graph import wrong_kind
from turnout.server import errors
from turnout.server.body import encode_body
from turnout.server.callers import Caller
from turnout.server.errors import Failure, Scrub
from turnout.server.handler import IngressHandler, Shared, routing_headers
from turnout.server.ingress import Trailer
from turnout.server.sse import CoalescingWriter, RelayOutcome
from turnout.types import ChatChunk, ChatRequest, ChatResponse

log = logging.getLogger("turnout.server")

UNAUTHORIZED = (
    "Missing or invalid API key. Send 'x-api-key: <key>' (or 'Authorization: Bearer <key>') with the key of a "
    "client declared in the routing file's clients section."
)
_JSON = {"Content-Type": "application/json"}


class AnthropicMessages:
    """The Messages API ingress."""

    format: ClassVar[str] = "anthropic.messages"
    batched: ClassVar[bool] = False
    unauthorized: ClassVar[str] = UNAUTHORIZED

    def parse(self, data: Any, headers: Mapping[str, str]) -> ChatRequest:
        return messages_request(data, headers)

    def error_response(self, fail: Failure) -> web.Response:
        status, body = anthropic_error(fail)
        return web.Response(status=status, body=encode_body(body), headers={**_JSON, **fail.headers})

    def answer(self, reply: ChatResponse, chat: ChatRequest) -> bytes:
        return encode_body(message_body(reply, input_estimate=input_estimate(chat)))

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
        encoder = MessagesEncoder(model=chat.model, input_estimate=input_estimate(chat))
        return await relay_messages(response, stream, first, encoder, keep_text=keep_text, trailer=trailer, scrub=scrub)


def anthropic_error(fail: Failure) -> tuple[int, dict[str, Any]]:
    """A failure as (status, Anthropic error body); the attempt trail and class kept inside `error`."""
    status, kind = error_status(fail.status, fail.error_class)
    error = fail.error
    extra = {key: error[key] for key in ("error_class", "attempts") if error.get(key) is not None}
    return status, error_body(kind, str(error.get("message") or kind), **extra)


def input_estimate(chat: ChatRequest) -> int:
    """Input tokens as turnout estimates them: the messages (the router's estimate) plus the tool definitions."""
    tools = chat.native.body.get("tools") if chat.native is not None else chat.body.get("tools")
    extra = len(json.dumps(tools, separators=(",", ":"), default=str)) if tools else 0
    return chat.estimated_prompt_tokens + estimate_tokens(extra)


async def relay_messages(
    response: web.StreamResponse,
    stream: Any,
    first: ChatChunk,
    encoder: MessagesEncoder,
    *,
    keep_text: bool,
    trailer: Trailer,
    scrub: Scrub,
) -> RelayOutcome:
    """Write `first` and the rest of `stream` as Messages events; end with message_stop or an `error` event (its
    text passed through `scrub`, as every error a client sees)."""
    outcome = RelayOutcome(chunks=1)
    texts: list[str] | None = [] if keep_text else None
    await response.write(encoder.feed(first))  # the first event goes out with the headers (time to first token)
    out = CoalescingWriter(response)
    if texts is not None:
        texts.append(_text(first))
    try:
        async for chunk in stream:
            events = encoder.feed(chunk)
            if events and out.add(events):
                await out.room()  # a slow client: wait for it (the upstream read waits too)
            if not chunk.usage_only:
                outcome.chunks += 1
                if texts is not None:
                    texts.append(_text(chunk))
    except ProviderError as exc:  # first: UpstreamConnectionError is also a builtin ConnectionError
        return await _failed(out, encoder, exc, outcome, texts, trailer, scrub)
    except (asyncio.CancelledError, ConnectionError):  # the client went away: nothing left to tell it
        out.abort()
        raise
    except Exception as exc:  # after the first event every failure becomes an error event, never message_stop
        log.exception("stream failed after the first chunk")
        error = UpstreamConnectionError(f"stream failed: {type(exc).__name__}", after_first_token=True)
        return await _failed(out, encoder, error, outcome, texts, trailer, scrub)
    await out.close(trailer() + encoder.finish(stream.usage))
    outcome.text = "".join(texts) if texts is not None else None
    return outcome


def _text(chunk: Any) -> str:
    return (chunk.content or "") if chunk.is_content else ""


async def _failed(
    out: CoalescingWriter,
    encoder: MessagesEncoder,
    exc: ProviderError,
    outcome: RelayOutcome,
    texts: list[str] | None,
    trailer: Trailer,
    scrub: Scrub,
) -> RelayOutcome:
    """End the stream with the `error` event (never message_stop) and record why."""
    fail = errors.failure(exc, scrub)
    _, body = anthropic_error(fail)
    outcome.error_class = fail.error_class or "server_error"
    outcome.error_message = str(fail.error.get("message", ""))
    error = body["error"]
    event = encoder.error(error.pop("type"), error.pop("message"), **error)
    await out.close(trailer() + event)
    outcome.text = "".join(texts) if texts is not None else None
    return outcome


class CountTokens(IngressHandler):
    """`POST /v1/messages/count_tokens`: the shared path up to the parsed request, then the estimate."""

    def __init__(self, sidecar: Shared) -> None:
        super().__init__(sidecar, _Counting())

    async def respond(
        self, request: web.Request, chat: ChatRequest, started: float, caller: Caller
    ) -> web.StreamResponse:
        router = self.sc.router
        route = router.graph.by_name.get(chat.model)  # a route's name or one of its aliases
        if route is None:
            fail = errors.route_not_found(RouteNotFound(chat.model, router.routes_for(caller.client)))
            return self._refuse(request, fail, started, route=chat.model, caller=caller)
        if route.kind != "chat":
            fail = errors.invalid_request(wrong_kind(route, chat.model))
            return self._refuse(request, fail, started, route.name, caller=caller)
        if not router.may_use(caller.client, route.name):
            fail = errors.failure(RouteNotAllowed(caller.client or "", chat.model))
            return self._refuse(request, fail, started, route=route.name, caller=caller)
        headers = {**_JSON, **routing_headers(route.name, None, (), None)}
        self.sc.finished(
            request, 200, route=route.name, started=started, ingress=self.format, client=caller.client, tag=caller.tag
        )
        return web.Response(body=encode_body({"input_tokens": input_estimate(chat)}), headers=headers)


class _Counting(AnthropicMessages):
    """A count_tokens body: a Messages request without `max_tokens`."""

    def parse(self, data: Any, headers: Mapping[str, str]) -> ChatRequest:
        return messages_request(data, headers, require_max_tokens=False)
