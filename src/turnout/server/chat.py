"""`POST /v1/chat/completions`: parse and check the body, dispatch through the Router, answer OpenAI's way.

The hot path is kept short: no middleware, one JSON decode of the client body (with a pre-built decoder), one
JSON encode of the answer, headers built from plain strings. For streams the first chunk is awaited *before*
the response is prepared, so every failure before the commit point is a proper JSON error with the right
status, and the headers already name the deployment that serves the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from turnout import _json
from turnout.errors import InvalidRequest, ProtocolError, TurnoutError
from turnout.server import errors
from turnout.server.auth import UNAUTHORIZED_MESSAGE
from turnout.server.sse import SSE_HEADERS, SSEResponse, relay
from turnout.server.trail import trail_comment
from turnout.types import Attempt, ChatRequest, Usage

if TYPE_CHECKING:
    from turnout.server.app import Settings, Sidecar

CLIENT_CLOSED = 499  # nginx's convention for "the client went away before the answer"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def encode_body(obj: Any) -> bytes:
    """Compact JSON bytes of an answer (orjson when installed); `str()` of anything JSON has no type for."""
    return _json.dumps_escaped(obj, default=str)


def _strict_decode(body: bytes) -> Any:
    return _decode(body.decode("utf-8"))


def decode_body(body: bytes) -> Any:
    """A client body as JSON; what orjson refuses is judged by the stdlib decoder, which names the reason
    (invalid UTF-8, NaN, nesting)."""
    return _json.loads(body, _strict_decode)


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


FORM = "application/x-www-form-urlencoded"


def body_kind(content_type: str | None, from_browser: bool) -> str | None:
    """How to read a chat body: "json", "form" (accepted only if it is a JSON object), or None (refuse: 415).

    `application/json` (or `+json`) is read as JSON. Plain `curl -d '{...}'` sends `application/x-www-form-urlencoded`
    and a client that sends no Content-Type at all leaves it to the body; both are accepted when the body is a JSON
    object, as many OpenAI-compatible servers do. Not from a browser (an `Origin` header), though: a web page may
    send those two (unlike `application/json`) cross-origin without a CORS preflight, so accepting them would let
    any page the user visits spend provider money through a sidecar on localhost. Every other type is refused.
    """
    if content_type is None:
        return None if from_browser else "json"  # the body decides (a 400 when it is not JSON)
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media == FORM and not from_browser:
        return "form"
    return None


def _unsupported_type() -> errors.Failure:
    return errors.simple(
        415,
        "Content-Type must be application/json (with curl: -H 'Content-Type: application/json').",
        code="unsupported_media_type",
        param=None,
    )


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send `response` and close the connection now: a client too slow to send its body gets no more time
    (aiohttp would otherwise keep reading the rest of the body for its lingering time)."""
    response.force_close()
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()
    return response


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The request body, or None as soon as more than `limit` bytes arrived: a body over the cap is never buffered
    (a chunked body has no Content-Length to refuse up front). `limit` is the *current* `server.max_request_size`,
    so a reload that changes it applies to the next request; aiohttp's own `client_max_size` is not used here."""
    content = request.content
    first = await content.readany()
    if len(first) > limit:
        return None
    rest = await content.readany() if first else b""
    if not rest:
        return first  # the usual case: the whole body arrived in one read
    pieces = [first, rest]
    size = len(first) + len(rest)
    while size <= limit:
        piece = await content.readany()
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)
        size += len(piece)
    return None


class ChatHandler:
    """The chat endpoint of one Sidecar; a class so the hot path reads its state as plain attributes."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sc = sidecar

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        sc = self.sc
        settings = sc.settings
        if settings.keys.enabled:
            if not settings.keys.allows(request.headers):
                return self._refuse(request, errors.simple(401, UNAUTHORIZED_MESSAGE, code="invalid_api_key"), started)
        elif not settings.hosts.allows(request.headers.get("Host")):  # no keys: loopback/allowed Hosts only
            return self._refuse(request, errors.host_not_allowed(), started)
        if sc.in_flight >= settings.max_in_flight:  # refuse before reading the body: overload must stay cheap
            sc.metrics.reject("max_in_flight")
            return self._refuse(request, errors.overloaded(settings.max_in_flight), started)
        sc.in_flight += 1
        sc.metrics.in_flight_now(sc.in_flight)
        try:
            chat_request = await self._parse(request, settings)
            if not isinstance(chat_request, ChatRequest):
                response = self._refuse(request, chat_request, started)
                if chat_request.status == 408:
                    return await _answer_and_close(request, response)
                if chat_request.status == 413:  # the body is unread: aiohttp discards the rest (never buffers it)
                    response.force_close()  # for a little while, so a client that sends it all gets this answer
                return response
            if chat_request.stream:
                response = await self._stream(request, chat_request, started)
            else:
                response = await self._complete(request, chat_request, started)
            if sc.draining:  # shutting down: this connection takes no further request
                response.force_close()
            return response
        finally:
            sc.in_flight -= 1
            sc.metrics.in_flight_now(sc.in_flight)

    async def _parse(self, request: web.Request, settings: Settings) -> ChatRequest | errors.Failure:
        """The body as a validated ChatRequest, or the 4xx Failure that explains what is wrong with it."""
        headers = request.headers
        kind = body_kind(headers.get("Content-Type"), "Origin" in headers)
        if kind is None:
            return _unsupported_type()
        limit = settings.max_request_bytes
        size = request.content_length
        if size is not None and size > limit:
            return errors.too_large(size, limit)
        try:
            if request.content.is_eof():  # the usual case: the body came with the headers
                body = await read_body(request, limit)
            else:
                async with asyncio.timeout(settings.client_timeout):
                    body = await read_body(request, limit)
        except TimeoutError:
            self.sc.metrics.reject("body_timeout")
            return errors.client_timeout(settings.client_timeout)
        if body is None:
            return errors.too_large(None, limit)
        try:
            data = decode_body(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            if kind == "form":
                return _unsupported_type()  # real form data (`-d model=x`): say what the server wants
            if isinstance(exc, UnicodeDecodeError):
                return errors.simple(400, "The request body is not valid UTF-8.", code="invalid_json")
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            return errors.simple(400, f"The request body is not valid JSON: {reason}", code="invalid_json")
        if kind == "form" and not isinstance(data, dict):
            return _unsupported_type()
        try:
            return ChatRequest.from_openai(data)
        except InvalidRequest as exc:
            return errors.invalid_request(exc)
        except (TypeError, ValueError, RecursionError, AttributeError) as exc:
            return errors.simple(400, f"The request body is malformed: {type(exc).__name__}.", code="invalid_request")

    def _refuse(
        self, request: web.Request, fail: errors.Failure, started: float, route: str | None = None
    ) -> web.Response:
        self.sc.finished(
            request,
            fail.status,
            route=route,
            started=started,
            error_class=fail.error_class,
            error=str(fail.error.get("message")),
            attempts=fail.attempts,
        )
        return web.Response(
            status=fail.status, body=fail.body(), headers={"Content-Type": "application/json", **fail.headers}
        )

    async def _complete(self, request: web.Request, chat: ChatRequest, started: float) -> web.StreamResponse:
        sc = self.sc
        try:
            reply = await sc.router.chat(chat, request_id=request.headers.get("x-request-id"))
        except asyncio.CancelledError:
            sc.finished(request, CLIENT_CLOSED, route=chat.model, started=started, error=self._cut_reason())
            raise
        except Exception as exc:
            fail = errors.failure(exc, sc.redactor.for_clients)
            if not isinstance(exc, TurnoutError):  # a bug, not an upstream or client problem: keep the traceback
                sc.log.exception("chat request failed unexpectedly")
            response = self._refuse(request, fail, started, route=chat.model)
            if chat.model in sc.router.graph.routes:  # never echo a client-chosen name into a header
                response.headers.update(routing_headers(chat.model, None, fail.attempts, None))
            return response
        body = encode_body(reply.to_openai())
        headers = routing_headers(reply.route, reply.served_by, reply.attempts, reply.cost_usd)
        headers["Content-Type"] = "application/json"
        content = None
        if sc.settings.log_content:
            content = {"request": chat.body, "response": reply.text}
        sc.finished(
            request,
            200,
            route=reply.route,
            started=started,
            served_by=reply.served_by,
            attempts=reply.attempts,
            usage=reply.usage,
            cost=reply.cost_usd,
            content=content,
        )
        return web.Response(body=body, headers=headers)

    async def _stream(self, request: web.Request, chat: ChatRequest, started: float) -> web.StreamResponse:
        sc = self.sc
        try:
            stream = sc.router.stream(chat, request_id=request.headers.get("x-request-id"))
        except Exception as exc:  # RouteNotFound / InvalidRequest are raised at once
            return self._refuse(request, errors.failure(exc, sc.redactor.for_clients), started, route=chat.model)
        chunks = stream.batched()  # plain chunks of one upstream read arrive as one pre-framed batch
        status = CLIENT_CLOSED
        outcome = None
        response = SSEResponse(status=200, headers=SSE_HEADERS)
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
                response = self._refuse(request, fail, started, route=chat.model)
                response.headers.update(routing_headers(stream.route, None, stream.attempts, None))
                status = fail.status
                return response
            trail = stream.attempts
            # A held-back (mid_stream: restart) answer is complete already: its cost is known, so it is sent.
            headers = routing_headers(stream.route, stream.served_by, trail, stream.cost_usd)
            known = len(trail)  # attempts the headers account for: a later one changes the story (trail comment)
            if not any(a.outcome == "success" for a in trail):  # the serving attempt is still in progress
                headers["x-turnout-attempts"] = str(_tried(trail) + 1)
                known += 1
            response.headers.update(headers)
            await response.prepare(request)
            status = 200
            # The ChatStream itself (its iterator is `chunks`): relay reads its accounted `usage` at the end.
            outcome = await relay(
                response,
                stream,
                first,
                include_usage=chat.include_usage,
                keep_text=sc.settings.log_content,
                trailer=lambda: trail_comment(stream, known, sc.redactor.for_clients),
                scrub=sc.redactor.for_clients,
            )
            return response
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        except ConnectionError:  # the client went away while we were writing: nothing more to send
            status = CLIENT_CLOSED
            return response
        finally:
            await stream.aclose()
            if status == 200 or status == CLIENT_CLOSED:
                self._stream_done(request, chat, stream, started, status, outcome)

    def _cut_reason(self) -> str:
        if self.sc.draining:
            return "cut at shutdown: server.drain_timeout reached"
        return "client closed the connection"

    def _stream_done(
        self, request: web.Request, chat: ChatRequest, stream: Any, started: float, status: int, outcome: Any
    ) -> None:
        content = None
        if outcome is not None and outcome.text is not None:
            content = {"request": chat.body, "response": outcome.text}
        error_class = outcome.error_class if outcome is not None else None
        error = outcome.error_message if outcome is not None and outcome.error_class else None
        if status == CLIENT_CLOSED:
            error = self._cut_reason()
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
        )
