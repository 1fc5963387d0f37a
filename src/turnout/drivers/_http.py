"""Shared HTTP plumbing for drivers: framing (SSE, NDJSON), error classification, and the one transport boundary.

Every driver talks to its upstream through `open_request`, which applies the call context's time budget and turns
every foreign failure (non-2xx statuses, aiohttp/asyncio/OS exceptions) into a `turnout.errors.ProviderError`
subclass, so nothing aiohttp-specific escapes a driver. Streamed bodies are read with `iter_sse` / `iter_ndjson`;
errors raised while reading them are mapped with `transport_error` by the driver (which knows whether content was
already produced, for `after_first_token`).

Classification (`classify_status`) is the generic mapping every driver falls back to after pre-classifying its own
provider-specific cases:

| status | class |
|---|---|
| 429 | rate_limit; quota_exceeded for quota/billing/"Request too large" codes or messages, or `x-should-retry: false` |
| 402 | quota_exceeded |
| 401, 403 | auth |
| 404 | not_found |
| 408, 504 | timeout |
| 413 | bad_request (request too large) |
| 409, other 5xx | server_error; 503, 529 and "overloaded" messages: overloaded |
| 400, 422 | context_window / content_policy / auth (bad key phrasing) by message and code, else bad_request |
| other 4xx | bad_request; 1xx/3xx: protocol |
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
import jsonschema

try:  # optional speedup (`pip install turnout[fast]`); everything works without it
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

from turnout.errors import (
    ErrorClass,
    ProtocolError,
    ProviderError,
    UpstreamConnectionError,
    UpstreamTimeout,
    provider_error,
)

if TYPE_CHECKING:
    from turnout.drivers.base import CallContext

__all__ = [
    "ErrorParser",
    "SSEEvent",
    "classify_status",
    "dumps",
    "error_class_for",
    "error_details",
    "iter_ndjson",
    "iter_sse",
    "json_dumps",
    "loads",
    "open_request",
    "parse_retry_after",
    "read_json",
    "request_timeout",
    "strip_directives",
    "transport_error",
    "validate_options",
]

# (status, body, headers) -> the classified error; a driver's own parser for its error bodies.
ErrorParser = Callable[[int, bytes, Mapping[str, str]], ProviderError]

_MAX_MESSAGE = 200
_NEVER_ROUND = 1e9
_TAG = re.compile(rb"<[^>]*>")
_SPACE = re.compile(rb"\s+")

_CONTEXT_PHRASES = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "input token count",
    "too many tokens",
    "exceeds the maximum number of tokens",
)
_POLICY_PHRASES = (
    "invalid_prompt",
    "content_filter",
    "content_policy",
    "content management policy",
    "flagged",
    "safety",
    "responsibleaipolicyviolation",
)
_QUOTA_PHRASES = ("insufficient_quota", "exceeded your current quota", "billing", "request too large")
_BAD_KEY_PHRASES = ("incorrect api key", "invalid api key", "api key not valid", "api_key_invalid", "invalid x-api-key")


# ---------------------------------------------------------------------------------------------------- small helpers


def json_dumps(obj: Any) -> bytes:
    """The stdlib encoder: compact, UTF-8 kept as is."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


if _orjson is None:
    _fast_loads: Callable[[bytes | str], Any] = json.loads

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes (no spaces, UTF-8 kept as is): what every driver sends upstream."""
        return json_dumps(obj)

else:
    _fast_loads = _orjson.loads

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes (no spaces, UTF-8 kept as is): what every driver sends upstream.

        orjson when installed (`turnout[fast]`; ~10x faster on a typical chat body), the stdlib for what orjson
        refuses (non-string keys, integers beyond 64 bits).
        """
        try:
            return _orjson.dumps(obj)
        except TypeError:
            return json_dumps(obj)


def loads(data: bytes | str, *, provider: str, model: str, after_first_token: bool = False) -> Any:
    """Parse upstream JSON or raise ProtocolError quoting (a truncated copy of) what was received.

    orjson when installed (~5x faster per streamed line), with the stdlib as the judge before calling a body
    invalid (it also accepts NaN and lone surrogates, which orjson rejects).
    """
    try:
        return _fast_loads(data)
    except ValueError:
        pass
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        shown = data[:_MAX_MESSAGE] if isinstance(data, str) else data[:_MAX_MESSAGE].decode("utf-8", "replace")
        raise ProtocolError(
            f"upstream sent invalid JSON: {shown!r}",
            provider=provider,
            model=model,
            after_first_token=after_first_token,
        ) from exc


def strip_directives(body: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of the body without top-level `turnout_*` keys (per-request test directives meant for the mock)."""
    return {k: v for k, v in body.items() if not k.startswith("turnout_")}


def validate_options(driver: str, provider: str, schema: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Check provider options against the driver's schema; ValueError naming the first problem's path."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(_plain_json(options)), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path)
        where = f"options.{where}" if where else "options"
        raise ValueError(f"provider '{provider}' (driver {driver}): {where}: {err.message}")


def _plain_json(value: Any) -> Any:
    """The loaded config freezes options (MappingProxyType, tuples); jsonschema only knows dict and list."""
    if isinstance(value, Mapping):
        return {key: _plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(item) for item in value]
    return value


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup that works for CIMultiDict and plain dicts alike."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds the upstream asked us to wait: `retry-after-ms`, else `retry-after` (seconds or an HTTP-date).

    Negative, non-finite or unparsable values give None; a date in the past gives 0. `now` is wall-clock epoch
    seconds (injectable for tests).
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        with contextlib.suppress(ValueError):
            ms = float(raw_ms)
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000.0
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# ---------------------------------------------------------------------------------------------------- classification


def _plain_text(body: bytes) -> str:
    """First 200 characters of a non-JSON body (HTML error pages lose their tags)."""
    text = _SPACE.sub(b" ", _TAG.sub(b" ", body[:4096])).strip()
    return text[:_MAX_MESSAGE].decode("utf-8", "replace")


def error_details(body: bytes) -> tuple[str, str | None]:
    """(message, code) from any error body shape turnout knows, or the body's plain text.

    Shapes: OpenAI/Azure/Gemini `{"error": {"message", "code"|"type"|"status"}}`, Anthropic
    `{"type": "error", "error": {"type", "message"}}`, vLLM/Mistral `{"object": "error", "message", "type"}`,
    xAI `{"code": "...", "error": "text"}`, Ollama `{"error": "text"}`.
    """
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, Mapping):
        return (_plain_text(body) or "(empty body)"), None
    err = data.get("error")
    if isinstance(err, Mapping):
        message = err.get("message")
        code = err.get("code")
        if not isinstance(code, str) or not code:
            code = err.get("status") if isinstance(err.get("status"), str) else err.get("type")
        return (str(message) if message is not None else _plain_text(body)), (str(code) if code else None)
    if isinstance(err, str):
        code = data.get("code")
        return err, (str(code) if code is not None else None)
    message = data.get("message") or data.get("detail")
    if message is not None:
        code = data.get("code") if isinstance(data.get("code"), str) else data.get("type")
        return str(message), (str(code) if code else None)
    return _plain_text(body), None


def _has(haystack: str, phrases: tuple[str, ...]) -> bool:
    return any(p in haystack for p in phrases)


def _class_for(status: int, code: str, text: str, should_retry: str | None) -> ErrorClass:
    if status == 429:
        if _has(text, _QUOTA_PHRASES) or "quota" in code or should_retry == "false":
            return ErrorClass.QUOTA_EXCEEDED
        return ErrorClass.RATE_LIMIT
    if status == 402:
        return ErrorClass.QUOTA_EXCEEDED
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 404:
        return ErrorClass.NOT_FOUND
    if status in (408, 504):
        return ErrorClass.TIMEOUT
    if status in (503, 529) or (status >= 500 and "overloaded" in text):
        return ErrorClass.OVERLOADED
    if status == 409 or status >= 500:
        return ErrorClass.SERVER_ERROR
    if status in (400, 422):
        if _has(text, _CONTEXT_PHRASES):
            return ErrorClass.CONTEXT_WINDOW
        if _has(text, _POLICY_PHRASES):
            return ErrorClass.CONTENT_POLICY
        if _has(text, _BAD_KEY_PHRASES):
            return ErrorClass.AUTH
        return ErrorClass.BAD_REQUEST
    if 400 <= status < 500:
        return ErrorClass.BAD_REQUEST
    return ErrorClass.PROTOCOL


def error_class_for(
    status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None
) -> ErrorClass:
    """The taxonomy class for an error status plus the provider's message/code (table in the module docstring)."""
    # The code goes first so a bare code like "insufficient_quota" is matched by the phrase lists.
    text = f"{code or ''} {message}".lower()
    should_retry = _header(headers, "x-should-retry")
    return _class_for(status, (code or "").lower(), text, should_retry.lower() if should_retry else None)


def classify_status(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None,
    *,
    provider: str,
    model: str,
    message: str | None = None,
    code: str | None = None,
    after_first_token: bool = False,
) -> ProviderError:
    """The generic status/body -> ProviderError mapping (table in the module docstring).

    Drivers pass their own parsed `message`/`code` when they have them; otherwise they are read from the body.
    """
    if message is None:
        message, parsed_code = error_details(body)
        code = code or parsed_code
    error_class = error_class_for(status, message, code, headers)
    if status == 413 and not message.lower().startswith("request too large"):
        message = f"request too large: {message}"
    if error_class is ErrorClass.PROTOCOL:
        message = f"unexpected HTTP status {status}: {message}"
    return provider_error(
        error_class,
        message[:1000],
        provider=provider,
        model=model,
        status=status,
        code=code,
        retry_after=parse_retry_after(headers),
        after_first_token=after_first_token,
        body=body[:2000] if body else None,
    )


def transport_error(exc: BaseException, *, provider: str, model: str, after_first_token: bool = False) -> ProviderError:
    """Map one foreign exception (aiohttp, asyncio, OS) to the taxonomy; ProviderErrors pass through unchanged."""
    if isinstance(exc, ProviderError):
        return exc
    fields: dict[str, Any] = {"provider": provider, "model": model, "after_first_token": after_first_token}
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError | TimeoutError):
        return UpstreamTimeout(f"upstream did not answer in time ({detail})", **fields)
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.http_exceptions.HttpProcessingError):
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamConnectionError(f"connection broke while reading the body: {detail}", **fields)
        return ProtocolError(f"upstream sent invalid HTTP: {detail}", **fields)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return UpstreamConnectionError(f"connection broke while reading the body: {detail}", **fields)
    if isinstance(exc, aiohttp.InvalidURL):
        return UpstreamConnectionError(f"invalid upstream URL: {detail}", **fields)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return UpstreamConnectionError(f"cannot reach upstream: {detail}", **fields)
    if isinstance(exc, UnicodeDecodeError | ValueError):
        return ProtocolError(f"upstream sent undecodable data: {detail}", **fields)
    return UpstreamConnectionError(f"unexpected transport failure: {type(exc).__name__}: {detail}", **fields)


# ---------------------------------------------------------------------------------------------------- transport


def request_timeout(ctx: CallContext, *, stream: bool = False) -> aiohttp.ClientTimeout:
    """The aiohttp timeout for one call: total = what is left of the attempt/deadline, connect = ctx's.

    For streams, `sock_read` bounds every read: the longer of `first_token_timeout` and `stall_timeout`, since one
    aiohttp setting cannot tell the first read from later ones (the router enforces both exactly).
    """
    remaining = ctx.remaining()
    sock_read = None
    if stream:
        limits = [t for t in (ctx.first_token_timeout, ctx.stall_timeout) if t is not None]
        sock_read = max(limits) if limits else None
    # aiohttp rounds timeouts >= ceil_threshold up to whole seconds; a deadline must not grow, so never round.
    return aiohttp.ClientTimeout(
        total=remaining, sock_connect=ctx.connect_timeout, sock_read=sock_read, ceil_threshold=_NEVER_ROUND
    )


def _default_parser(provider: str, model: str) -> ErrorParser:
    def parse(status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
        return classify_status(status, body, headers, provider=provider, model=model)

    return parse


@contextlib.asynccontextmanager
async def open_request(
    ctx: CallContext,
    method: str,
    url: str,
    *,
    provider: str,
    model: str,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    data: bytes | None = None,
    params: Mapping[str, str] | None = None,
    stream: bool = False,
    error_parser: ErrorParser | None = None,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """Send one request on the shared session and yield the 2xx response.

    A non-2xx answer is read once and raised as the classified ProviderError (`error_parser` or
    `classify_status`); every transport failure is mapped by `transport_error`. On exit the connection is
    released for reuse if the body was read, and closed otherwise (e.g. the consumer cancelled mid-stream), so the
    upstream sees the disconnect.
    """
    if ctx.remaining() == 0:
        raise UpstreamTimeout("no time left for this attempt", provider=provider, model=model)
    send_headers = {"Content-Type": "application/json"} if (json is not None or data is not None) else {}
    if headers:
        send_headers.update(headers)
    payload = dumps(json) if json is not None else data
    try:
        resp = await ctx.session.request(
            method, url, headers=send_headers, data=payload, params=params, timeout=request_timeout(ctx, stream=stream)
        )
    except Exception as exc:
        raise transport_error(exc, provider=provider, model=model) from exc
    completed = False
    try:
        if resp.status >= 300 or resp.status < 200:
            try:
                body = await resp.read()
            except Exception:
                body = b""
            parser = error_parser or _default_parser(provider, model)
            raise parser(resp.status, body, resp.headers)
        yield resp
        completed = True
    finally:
        if completed and resp.content.is_eof():
            resp.release()
        else:
            resp.close()


async def read_json(resp: aiohttp.ClientResponse, *, provider: str, model: str) -> Any:
    """Read a whole 2xx body and parse it, mapping read failures and bad JSON."""
    try:
        body = await resp.read()
    except Exception as exc:
        raise transport_error(exc, provider=provider, model=model) from exc
    return loads(body, provider=provider, model=model)


# ---------------------------------------------------------------------------------------------------- framing


class SSEEvent(NamedTuple):
    """One server-sent event: `event` is the `event:` field (None when absent), `data` the joined data lines.

    A named tuple rather than a frozen dataclass: one is built per streamed event, and tuples build fastest.
    """

    event: str | None
    data: bytes


def _chunks(stream: Any) -> AsyncIterable[bytes]:
    """Raw byte pieces from an aiohttp StreamReader (as they arrive) or from any async iterable of bytes."""
    iter_any = getattr(stream, "iter_any", None)
    return iter_any() if iter_any is not None else stream


async def iter_sse(stream: Any) -> AsyncIterator[SSEEvent]:
    """Parse a text/event-stream body into events.

    Reads whatever bytes are available (one await per TCP read, not per line), so lines split across reads, `\\r\\n`
    endings, `:` comments (keep-alive pings), multi-line `data:` and a final event without its blank line at EOF
    are all handled. `id:` and `retry:` fields are ignored; a lone `\\r` is not treated as a line end.
    """
    buf = b""
    event: str | None = None
    data: list[bytes] = []
    async for piece in _chunks(stream):
        if buf:
            piece, buf = buf + piece, b""
        # Fast path: the read holds exactly one plain `data: ...` event (the common case for token streams).
        if piece[:6] == b"data: " and piece[-2:] == b"\n\n" and piece.count(b"\n") == 2 and not data:
            yield SSEEvent(event, piece[6:-2])
            event = None
            continue
        buf = piece
        if b"\n" not in piece:
            continue
        lines = buf.split(b"\n")
        buf = lines.pop()
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    yield SSEEvent(event, data[0] if len(data) == 1 else b"\n".join(data))
                    data = []
                event = None
                continue
            if line[0] == 58:  # b":" comment / keep-alive
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
    if buf.rstrip(b"\r"):
        line = buf.rstrip(b"\r")
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
    if data:
        yield SSEEvent(event, b"\n".join(data))


async def iter_ndjson(stream: Any) -> AsyncIterator[bytes]:
    """Yield each non-blank line of a newline-delimited JSON body (tolerates split reads, CRLF, no final newline)."""
    buf = b""
    async for piece in _chunks(stream):
        buf += piece
        if b"\n" not in piece:
            continue
        lines = buf.split(b"\n")
        buf = lines.pop()
        for line in lines:
            line = line.strip()
            if line:
                yield line
    buf = buf.strip()
    if buf:
        yield buf
