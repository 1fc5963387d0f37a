"""`POST /v1/responses` and `GET|DELETE /v1/responses/{id}`: OpenAI's Responses API, for the clients that no longer
speak chat completions (coding agents with `wire_api = "responses"`, the Agents SDK, `client.responses.*`).

The translation is the Responses wire format's own (`turnout.drivers.openai_responses`); this module is the HTTP glue
on the shared path:

- the body: a Responses request (`model` names a route); `previous_response_id` is resolved from the stored responses
  before routing (`responses_state.Keeper.continued`);
- a deployment that serves the Responses API gets the client's body as written and its answer (or its event stream,
  byte for byte) goes back untouched; any other gets the canonical translation, and what it cannot take by rule
  (built-in tools such as web_search, reasoning items) is named in `x-turnout-dropped`;
- a non-streamed answer is a Response object; a stream is the Responses event sequence, each event with its
  `sequence_number`, ending with `response.completed` (or `.incomplete`), or after a failure past the first event
  with `response.failed` and an `error` event;
- the answer is kept (unless `store: false` or `state.responses.enabled: false`) before the client sees its end,
  as the calling client's: a client continues, reads and deletes only the responses it kept itself;
- errors use OpenAI's shape, as for chat completions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar

from aiohttp import web

from turnout import _json
from turnout.drivers.openai_responses.answer import response_body
from turnout.drivers.openai_responses.encoder import ResponsesEncoder
from turnout.drivers.openai_responses.request import responses_request
from turnout.drivers.openai_responses.tools import tool_table
from turnout.errors import ProviderError, UpstreamConnectionError
from turnout.server import errors
from turnout.server.auth import UNAUTHORIZED_MESSAGE
from turnout.server.body import encode_body
from turnout.server.callers import Caller
from turnout.server.errors import Failure, Scrub
from turnout.server.handler import IngressHandler, Shared
from turnout.server.ingress import Trailer
from turnout.server.ingress.responses_state import CLIENT, Keeper
from turnout.server.sse import CoalescingWriter, RelayOutcome
from turnout.types import ChatChunk, ChatRequest, ChatResponse

log = logging.getLogger("turnout.server")
_JSON = {"Content-Type": "application/json"}
# error codes a Responses client knows in a failed response (its agent retries, waits or compacts on them)
_FAILURE_CODES = frozenset({"rate_limit_exceeded", "insufficient_quota", "context_length_exceeded", "invalid_prompt"})


class OpenAIResponses:
    """The Responses API ingress (stateless per request; `keeper` reaches the Sidecar's state backend)."""

    format: ClassVar[str] = "openai.responses"
    batched: ClassVar[bool] = False
    unauthorized: ClassVar[str] = UNAUTHORIZED_MESSAGE

    def __init__(self, keeper: Keeper) -> None:
        self.keeper = keeper

    def parse(self, data: Any, headers: Mapping[str, str]) -> ChatRequest:
        return responses_request(data, headers)

    def error_response(self, fail: Failure) -> web.Response:
        error = fail.error
        if error.get("param") == "messages":  # the chat-shaped name of the conversation
            error = {**error, "param": "input"}
        body = _json.dumps_escaped({"error": error}, default=str)
        return web.Response(status=fail.status, body=body, headers={**_JSON, **fail.headers})

    def answer(self, reply: ChatResponse, chat: ChatRequest) -> bytes | Awaitable[bytes]:
        body = _native_body(chat)
        storing = self.keeper.storing(body)
        rendered = response_body(reply, body, tool_table(body.get("tools")), store=storing)
        encoded = encode_body(rendered)
        if not storing:
            return encoded
        return self._kept(body, rendered, encoded, reply.native is None)

    async def _kept(self, body: Mapping[str, Any], response: Mapping[str, Any], encoded: bytes, ours: bool) -> bytes:
        await self.keeper.keep(body, response, rendered=ours, encoded=encoded)
        return encoded

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
        body = _native_body(chat)
        storing = self.keeper.storing(body)
        encoder = ResponsesEncoder(body, tool_table(body.get("tools")), model=chat.model, store=storing)
        relay = _Relay(response, encoder, self.keeper if storing else None, body, keep_text=keep_text)
        return await relay.run(stream, first, trailer, scrub)


def _native_body(chat: ChatRequest) -> Mapping[str, Any]:
    assert chat.native is not None  # every request of this ingress carries the client's body
    return chat.native.body


class _Relay:
    """One stream's relay: events through the coalescing writer, the Response kept before its terminal event."""

    def __init__(
        self,
        response: web.StreamResponse,
        encoder: ResponsesEncoder,
        keeper: Keeper | None,
        body: Mapping[str, Any],
        *,
        keep_text: bool,
    ) -> None:
        self.response = response
        self.encoder = encoder
        self.keeper = keeper  # None: nothing to keep
        self.body = body
        self.outcome = RelayOutcome(chunks=1)
        self.texts: list[str] | None = [] if keep_text else None

    async def run(self, stream: Any, first: ChatChunk, trailer: Trailer, scrub: Scrub) -> RelayOutcome:
        encoder = self.encoder
        events = encoder.feed(first)
        await self._keep_if_final()
        await self.response.write(events)  # the first events go out with the headers (time to first token)
        out = CoalescingWriter(self.response)
        self._note(first)
        try:
            async for chunk in stream:
                events = encoder.feed(chunk)
                if events:
                    await self._keep_if_final()
                    if out.add(events):
                        await out.room()  # a slow client: wait for it (the upstream read waits too)
                if not chunk.usage_only:
                    self.outcome.chunks += 1
                    self._note(chunk)
        except ProviderError as exc:  # first: UpstreamConnectionError is also a builtin ConnectionError
            return await self._failed(out, exc, trailer, scrub)
        except (asyncio.CancelledError, ConnectionError):  # the client went away: nothing left to tell it
            out.abort()
            raise
        except Exception as exc:  # after the first event every failure becomes response.failed, never completed
            log.exception("stream failed after the first chunk")
            error = UpstreamConnectionError(f"stream failed: {type(exc).__name__}", after_first_token=True)
            return await self._failed(out, error, trailer, scrub)
        ending = encoder.finish(stream.usage)
        await self._keep_if_final()
        await out.close(trailer() + ending)
        self._done()
        return self.outcome

    async def _keep_if_final(self) -> None:
        """Keep the finished Response before its terminal event can reach the client (once)."""
        final = self.encoder.final
        if final is not None and self.keeper is not None:
            keeper, self.keeper = self.keeper, None
            await keeper.keep(self.body, final, rendered=not self.encoder.final_is_native)

    def _note(self, chunk: ChatChunk) -> None:
        if self.texts is not None and chunk.is_content:
            self.texts.append(chunk.content or "")

    def _done(self) -> None:
        self.outcome.text = "".join(self.texts) if self.texts is not None else None

    async def _failed(self, out: CoalescingWriter, exc: ProviderError, trailer: Trailer, scrub: Scrub) -> RelayOutcome:
        """End the stream with response.failed and the `error` event (never response.completed); record why."""
        fail = errors.failure(exc, scrub)
        error = dict(fail.error)
        self.outcome.error_class = fail.error_class or "server_error"
        self.outcome.error_message = str(error.get("message", ""))
        code = str(error.pop("code", None) or "")
        message = str(error.pop("message", "") or "the upstream failed")
        error.pop("param", None)
        events = self.encoder.error(code if code in _FAILURE_CODES else "server_error", message, **error)
        await out.close(trailer() + events)
        self._done()
        return self.outcome


class ResponsesHandler(IngressHandler):
    """`POST /v1/responses`: the shared path, with `previous_response_id` resolved before routing."""

    def __init__(self, sidecar: Shared, keeper: Keeper) -> None:
        super().__init__(sidecar, OpenAIResponses(keeper))
        self.keeper = keeper

    async def respond(
        self, request: web.Request, chat: ChatRequest, started: float, caller: Caller
    ) -> web.StreamResponse:
        token = CLIENT.set(caller.client or "")  # whose responses this request may continue and keeps (a task each)
        try:
            native = chat.native
            if native is not None and native.body.get("previous_response_id") is not None:
                continued = await self.keeper.continued(chat)
                if isinstance(continued, Failure):
                    return self._refuse(request, continued, started, route=chat.model, caller=caller)
                chat = continued
            return await super().respond(request, chat, started, caller)
        finally:
            CLIENT.reset(token)
