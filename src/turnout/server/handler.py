"""The one request path every ingress shares: `IngressHandler(sidecar, ingress)` serves one endpoint.

In order: client identification (`turnout.server.callers`: with clients declared, the key names the client the
request runs as, else 401; with none, only loopback or `server.allowed_hosts` Hosts, see `hosts.py`) and its
`x-turnout-tag`, admission (`server.max_in_flight`, refused before the body is read so that overload stays cheap),
the body (`turnout.server.body`: type, size cap, client timeout, JSON), the ingress's translation into the canonical
request, dispatch through the Router as that client (its routes, rate limits and budget: 403, 429; non-streamed or
streamed), the answer in the ingress's format with the `x-turnout-*` routing headers (`x-turnout-dropped` naming
what the serving deployment did not receive: what a translation leaves out of a request in another format,
`NativeRequest.dropped`, and reasoning a model does not declare, `ChatResponse.dropped`), and the
bookkeeping (metrics, one access-log line with the ingress's `format`, `Connection: close` while draining). Every
error text a client sees passes through the Sidecar's redactor (`turnout.redaction`: no upstream address, no
secret). An ingress (`turnout.server.ingress`) only translates; nothing here depends on a wire format.

The hot path is kept short: no middleware, one JSON decode of the client body, one JSON encode of the answer,
headers built from plain strings. For streams the first chunk is awaited *before* the response is prepared, so every
failure before the commit point is a proper error answer with the right status, and the headers already name the
deployment that serves the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from aiohttp import web

from turnout.errors import InvalidRequest, ProtocolError, TurnoutError
from turnout.router.clients import clean_tag
from turnout.server import errors
from turnout.server.body import read_json
from turnout.server.callers import ANONYMOUS, Caller
from turnout.server.ingress import Ingress
from turnout.server.sse import SSE_HEADERS, ClientStalled, SSEResponse
from turnout.server.trail import trail_comment
from turnout.types import Attempt, ChatRequest, Usage

CLIENT_CLOSED = 499  # nginx's convention for "the client went away before the answer"


class Shared(Protocol):
    """What the handler uses of its Sidecar (`turnout.server.app`), which owns it."""

    router: Any
    settings: Any
    metrics: Any
    redactor: Any
    log: logging.Logger
    in_flight: int
    draining: bool
    callers: Any

    def finished(self, request: web.Request, status: int, **fields: Any) -> None: ...

    def identify(self, request: web.Request, unauthorized: str) -> str | errors.Failure | None: ...


def _tried(attempts: tuple[Attempt, ...]) -> int:
    return sum(1 for a in attempts if a.outcome != "skipped")


def routing_headers(
    route: str, served_by: str | None, attempts: tuple[Attempt, ...], cost: float | None
) -> dict[str, str]:
    headers = {
        "x-turnout-route": route,
        "x-turnout-served-by": served_by or "",
        "x-turnout-attempts": str(_tried(attempts)),
    }
    if cost is not None:
        headers["x-turnout-cost-usd"] = format(cost, ".10g")
    return headers


DROPPED_HEADER = "x-turnout-dropped"


def _name_dropped(chat: ChatRequest, translated: bool, served: tuple[str, ...], headers: dict[str, str]) -> None:
    """Name what the serving deployment did not receive: what a `translated` request leaves out by rule
    (`NativeRequest.dropped`: say, tools only OpenAI runs) and what the router kept from that deployment (`served`:
    reasoning a model does not declare, `turnout.router.reasoning`)."""
    native = chat.native
    dropped = native.dropped + served if translated and native is not None else served
    if dropped:
        headers[DROPPED_HEADER] = ", ".join(dropped)


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send `response` and close the connection now: a client too slow to send its body gets no more time
    (aiohttp would otherwise keep reading the rest of the body for its lingering time)."""
    response.force_close()
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()
    return response


class IngressHandler:
    """One endpoint of one Sidecar, speaking `ingress`; a class so the hot path reads its state as attributes."""

    def __init__(self, sidecar: Shared, ingress: Ingress) -> None:
        self.sc = sidecar
        self.ingress = ingress
        self.format = ingress.format

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        sc = self.sc
        settings = sc.settings
        client = sc.identify(request, self.ingress.unauthorized)
        if isinstance(client, errors.Failure):
            unknown = sc.callers.unknown_key_of(request) if client.status == 401 else None
            return self._refuse(request, client, started, caller=Caller(None, None, unknown))
        caller = Caller(client, clean_tag(request.headers.get("x-turnout-tag")))
        if sc.in_flight >= settings.max_in_flight:  # refuse before reading the body: overload must stay cheap
            sc.metrics.reject("max_in_flight")
            return self._refuse(request, errors.overloaded(settings.max_in_flight), started, caller=caller)
        sc.in_flight += 1
        sc.metrics.in_flight_now(sc.in_flight)
        try:
            chat = await self._parse(request, settings)
            if isinstance(chat, errors.Failure):
                response = self._refuse(request, chat, started, caller=caller)
                if chat.status == 408:
                    return await _answer_and_close(request, response)
                if chat.status == 413:  # the body is unread: aiohttp discards the rest (never buffers it)
                    response.force_close()  # for a little while, so a client that sends it all gets this answer
                return response
            response = await self.respond(request, chat, started, caller)
            if sc.draining:  # shutting down: this connection takes no further request
                response.force_close()
            return response
        finally:
            sc.in_flight -= 1
            sc.metrics.in_flight_now(sc.in_flight)

    async def respond(
        self, request: web.Request, chat: ChatRequest, started: float, caller: Caller
    ) -> web.StreamResponse:
        """Serve a parsed request as `caller` (a subclass may answer without an upstream, as `count_tokens` does)."""
        if chat.stream:
            return await self._stream(request, chat, started, caller)
        return await self._complete(request, chat, started, caller)

    def _body_timeout(self) -> None:
        self.sc.metrics.reject("body_timeout")

    async def _parse(self, request: web.Request, settings: Any) -> ChatRequest | errors.Failure:
        """The body as a validated ChatRequest, or the 4xx Failure that explains what is wrong with it."""
        data = await read_json(
            request,
            limit=settings.max_request_bytes,
            client_timeout=settings.client_timeout,
            on_timeout=self._body_timeout,
        )
        if isinstance(data, errors.Failure):
            return data
        try:
            return self.ingress.parse(data, request.headers)
        except InvalidRequest as exc:
            return errors.invalid_request(exc)
        except (TypeError, ValueError, RecursionError, AttributeError) as exc:
            return errors.simple(400, f"The request body is malformed: {type(exc).__name__}.", code="invalid_request")

    def _refuse(
        self,
        request: web.Request,
        fail: errors.Failure,
        started: float,
        route: str | None = None,
        *,
        caller: Caller = ANONYMOUS,
    ) -> web.Response:
        response = self.ingress.error_response(fail)
        self.sc.finished(
            request,
            response.status,
            route=route,
            started=started,
            error_class=fail.error_class,
            error=str(fail.error.get("message")),
            attempts=fail.attempts,
            ingress=self.format,
            client=caller.client,
            tag=caller.tag,
            unknown_key=caller.unknown_key,
        )
        return response

    def _failed(
        self, request: web.Request, model: str, exc: Exception, started: float, caller: Caller = ANONYMOUS
    ) -> web.Response:
        """The answer to a request the router did not serve (call it while handling `exc`). The routing headers
        name the route `model` names, by name or alias: never a client-chosen name."""
        sc = self.sc
        fail = errors.failure(exc, sc.redactor.for_clients)
        if not isinstance(exc, TurnoutError):  # a bug, not an upstream or client problem: keep the traceback
            sc.log.exception("request failed unexpectedly")
        response = self._refuse(request, fail, started, route=model, caller=caller)
        route = sc.router.graph.route_of(model)
        if route is not None:
            response.headers.update(routing_headers(route, None, fail.attempts, None))
        return response

    def _logged(self, chat: ChatRequest, answer: Any) -> dict[str, Any] | None:
        """The content for the access log (`server.log_content`): the client's own body and the answer text."""
        if not self.sc.settings.log_content:
            return None
        return {"request": chat.native.body if chat.native is not None else chat.body, "response": answer}

    async def _complete(
        self, request: web.Request, chat: ChatRequest, started: float, caller: Caller
    ) -> web.StreamResponse:
        sc = self.sc
        request_id = request.headers.get("x-request-id")
        try:
            reply = await sc.router.chat(chat, request_id=request_id, client=caller.client, tag=caller.tag)
        except asyncio.CancelledError:
            self._client_gone(request, chat.model, started, caller)
            raise
        except Exception as exc:
            return self._failed(request, chat.model, exc, started, caller)
        body = self.ingress.answer(reply, chat)
        if type(body) is not bytes:  # an ingress that keeps the answer first (the Responses API's `store`)
            body = await body
        headers = routing_headers(reply.route, reply.served_by, reply.attempts, reply.cost_usd)
        headers["Content-Type"] = "application/json"
        if chat.native is not None or reply.dropped:
            _name_dropped(chat, reply.native is None, reply.dropped, headers)
        self._served(request, reply, started, caller, self._logged(chat, reply.text))
        return web.Response(body=body, headers=headers)

    def _client_gone(self, request: web.Request, model: str, started: float, caller: Caller) -> None:
        """Log a request whose client left (or the drain cut) before the answer, as 499."""
        self.sc.finished(
            request,
            CLIENT_CLOSED,
            route=model,
            started=started,
            error=self._cut_reason(),
            ingress=self.format,
            client=caller.client,
            tag=caller.tag,
        )

    def _served(self, request: web.Request, reply: Any, started: float, caller: Caller, content: Any) -> None:
        """Log a complete non-streamed answer (a ChatResponse or an EmbeddingResponse) as 200."""
        self.sc.finished(
            request,
            200,
            route=reply.route,
            started=started,
            served_by=reply.served_by,
            attempts=reply.attempts,
            usage=reply.usage,
            cost=reply.cost_usd,
            content=content,
            ingress=self.format,
            client=caller.client,
            tag=caller.tag,
        )

    async def _stream(
        self, request: web.Request, chat: ChatRequest, started: float, caller: Caller
    ) -> web.StreamResponse:
        sc = self.sc
        request_id = request.headers.get("x-request-id")
        try:
            stream = sc.router.stream(chat, request_id=request_id, client=caller.client, tag=caller.tag)
        except Exception as exc:  # RouteNotFound, RouteNotAllowed, InvalidRequest are raised at once
            fail = errors.failure(exc, sc.redactor.for_clients)
            return self._refuse(request, fail, started, route=chat.model, caller=caller)
        # Byte-forwarding relays take plain chunks of one upstream read as one pre-framed batch.
        chunks = stream.batched() if self.ingress.batched else aiter(stream)
        status = CLIENT_CLOSED
        outcome = None
        response = SSEResponse(status=200, headers=SSE_HEADERS)
        response.stall_timeout = sc.settings.client_timeout  # a client that reads nothing for this long is cut
        response.transport = request.transport
        stalled: str | None = None
        try:
            # The failure is mapped inside its except block: a local holding the exception would keep this frame
            # (and the request body) alive in a reference cycle through its traceback until the next full GC.
            fail: errors.Failure | None = None
            try:
                first = await chunks.__anext__()
            except StopAsyncIteration:
                first = None
            except asyncio.CancelledError:
                raise
            except Exception as caught:
                first, fail = None, errors.failure(caught, sc.redactor.for_clients)
            if first is None:
                fail = fail or errors.failure(ProtocolError("the upstream stream ended before any content"))
                response = self._refuse(request, fail, started, route=chat.model, caller=caller)
                response.headers.update(routing_headers(stream.route, None, stream.attempts, None))
                status = response.status
                return response
            trail = stream.attempts
            # A held-back (mid_stream: restart) answer is complete already: its cost is known, so it is sent.
            headers = routing_headers(stream.route, stream.served_by, trail, stream.cost_usd)
            known = len(trail)  # attempts the headers account for: a later one changes the story (trail comment)
            if not any(a.outcome == "success" for a in trail):  # the serving attempt is still in progress
                headers["x-turnout-attempts"] = str(_tried(trail) + 1)
                known += 1
            if chat.native is not None or stream.dropped:
                _name_dropped(chat, first.native is None, stream.dropped, headers)
            response.headers.update(headers)
            await response.prepare(request)
            status = 200
            # The ChatStream itself (its iterator is `chunks`): the relay reads its accounted `usage` at the end.
            outcome = await self.ingress.relay(
                response,
                stream,
                first,
                chat,
                keep_text=sc.settings.log_content,
                trailer=lambda: trail_comment(stream, known, sc.redactor.for_clients),
                scrub=sc.redactor.for_clients,
            )
            return response
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        except ClientStalled as exc:  # the client stopped reading: drop the connection, whatever it still holds
            status, stalled = CLIENT_CLOSED, str(exc)
            if request.transport is not None:
                request.transport.abort()
            return response
        except ConnectionError:  # the client went away while we were writing: nothing more to send
            status = CLIENT_CLOSED
            return response
        finally:
            await stream.aclose()
            if status == 200 or status == CLIENT_CLOSED:
                self._stream_done(request, chat, stream, started, status, outcome, caller, stalled)

    def _cut_reason(self) -> str:
        if self.sc.draining:
            return "cut at shutdown: server.drain_timeout reached"
        return "client closed the connection"

    def _stream_done(
        self,
        request: web.Request,
        chat: ChatRequest,
        stream: Any,
        started: float,
        status: int,
        outcome: Any,
        caller: Caller,
        stalled: str | None = None,
    ) -> None:
        content = None
        if outcome is not None and outcome.text is not None:
            content = self._logged(chat, outcome.text)
        error_class = outcome.error_class if outcome is not None else None
        error = outcome.error_message if outcome is not None and outcome.error_class else None
        if status == CLIENT_CLOSED:
            error = stalled or self._cut_reason()
        self.sc.finished(
            request,
            status,
            route=stream.route,
            started=started,
            served_by=stream.served_by,
            attempts=stream.attempts,
            usage=stream.usage if isinstance(stream.usage, Usage) else None,
            cost=stream.cost_usd,
            ttft=stream.time_to_first_token,
            stream=True,
            error_class=error_class,
            error=error,
            content=content,
            splices=stream.splices,
            ingress=self.format,
            client=caller.client,
            tag=caller.tag,
        )
