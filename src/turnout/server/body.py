"""Reading a client's JSON body, the same way for every ingress: content type, size cap, client timeout, JSON.

`read_json` answers the parsed body or the 4xx `Failure` that says what is wrong with it (415 for a type the
sidecar does not read, 413 over `server.max_request_size` (read no further than the cap), 408 when the body does
not arrive within `server.client_timeout`, 400 for invalid JSON). One JSON decode with a pre-built decoder: this
is the hot path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from turnout import _json
from turnout.server import errors

FORM = "application/x-www-form-urlencoded"


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


def body_kind(content_type: str | None, from_browser: bool) -> str | None:
    """How to read a body: "json", "form" (accepted only if it is a JSON object), or None (refuse: 415).

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


def unsupported_type() -> errors.Failure:
    return errors.simple(
        415,
        "Content-Type must be application/json (with curl: -H 'Content-Type: application/json').",
        code="unsupported_media_type",
        param=None,
    )


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


async def read_json(
    request: web.Request, *, limit: int, client_timeout: float, on_timeout: Callable[[], None] | None = None
) -> Any:
    """The request's JSON body, or the Failure explaining why there is none (`on_timeout()` is called on a 408).

    A body still arriving after the headers is read within `client_timeout` seconds; one over `limit` bytes is
    refused as soon as it is over (never buffered whole).
    """
    headers = request.headers
    kind = body_kind(headers.get("Content-Type"), "Origin" in headers)
    if kind is None:
        return unsupported_type()
    size = request.content_length
    if size is not None and size > limit:
        return errors.too_large(size, limit)
    try:
        if request.content.is_eof():  # the usual case: the body came with the headers
            body = await read_body(request, limit)
        else:
            async with asyncio.timeout(client_timeout):
                body = await read_body(request, limit)
    except TimeoutError:
        if on_timeout is not None:
            on_timeout()
        return errors.client_timeout(client_timeout)
    if body is None:
        return errors.too_large(None, limit)
    try:
        data = decode_body(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        if kind == "form":
            return unsupported_type()  # real form data (`-d model=x`): say what the server wants
        if isinstance(exc, UnicodeDecodeError):
            return errors.simple(400, "The request body is not valid UTF-8.", code="invalid_json")
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return errors.simple(400, f"The request body is not valid JSON: {reason}", code="invalid_json")
    if kind == "form" and not isinstance(data, dict):
        return unsupported_type()
    return data
