"""Shared HTTP plumbing for drivers: framing (SSE, NDJSON), error classification, and the one transport boundary.

Every driver talks to its upstream through `open_request`, which applies the call context's time budget and turns
every foreign failure (non-2xx statuses, aiohttp/asyncio/OS exceptions) into a `turnout.errors.ProviderError`
subclass, so nothing aiohttp-specific escapes a driver. Streamed bodies are read with `iter_sse` / `iter_ndjson`;
errors raised while reading them are mapped with `transport_error` by the driver (which knows whether content was
already produced, for `after_first_token`).

The pieces live in small modules and are re-exported here, the one import drivers (built-in and plug-in) use:
`_classify` (error bodies, Retry-After, `classify_status`) and `_framing` (`iter_sse`, `iter_ndjson`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import jsonschema

from turnout import _json
from turnout.drivers._classify import (
    MAX_MESSAGE,
    classify_status,
    error_class_for,
    error_details,
    parse_retry_after,
)
from turnout.drivers._framing import SSEEvent, SSEParser, iter_ndjson, iter_sse, iter_sse_payloads
from turnout.drivers.base import CredentialCheck
from turnout.errors import ProtocolError, ProviderError, UpstreamConnectionError, UpstreamTimeout

if TYPE_CHECKING:
    from turnout.drivers.base import CallContext

__all__ = [
    "ErrorParser",
    "SSEEvent",
    "SSEParser",
    "classify_status",
    "dumps",
    "error_class_for",
    "error_details",
    "iter_ndjson",
    "iter_sse",
    "iter_sse_payloads",
    "json_dumps",
    "loads",
    "open_request",
    "open_response",
    "parse_retry_after",
    "probe_credentials",
    "read_json",
    "request_json",
    "request_timeout",
    "settle",
    "strip_directives",
    "transport_error",
    "validate_options",
]

# (status, body, headers) -> the classified error; a driver's own parser for its error bodies.
ErrorParser = Callable[[int, bytes, Mapping[str, str]], ProviderError]

_NEVER_ROUND = 1e9

# ---------------------------------------------------------------------------------------------------- small helpers


json_dumps = _json.stdlib_dumps  # the stdlib encoder: compact, UTF-8 kept as is


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (no spaces, UTF-8 kept as is): what every driver sends upstream.

    orjson when a safe release is installed (`turnout[fast]`; ~10x faster on a typical chat body), the stdlib
    for what orjson refuses (see `turnout._json`).
    """
    return _json.dumps(obj)


def loads(data: bytes | str, *, provider: str, model: str, after_first_token: bool = False) -> Any:
    """Parse upstream JSON or raise ProtocolError quoting (a truncated copy of) what was received.

    orjson when installed (~5x faster per streamed line), with the stdlib as the judge before calling a body
    invalid (it also accepts NaN and lone surrogates, which orjson rejects).
    """
    try:
        return _json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        shown = data[:MAX_MESSAGE] if isinstance(data, str) else data[:MAX_MESSAGE].decode("utf-8", "replace")
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
    try:
        errors = sorted(validator.iter_errors(_plain_json(options)), key=lambda e: list(e.absolute_path))
    except RecursionError:
        raise ValueError(f"provider '{provider}' (driver {driver}): options: nested too deeply") from None
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


def _describe(exc: BaseException) -> str:
    """What went wrong, without the upstream's address: aiohttp's texts name the host, port and URL, and these
    messages travel to clients (who see deployment names only) and logs."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate verification failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return "the host name could not be resolved"
        return os.strerror(cause.errno) if cause.errno else type(cause).__name__
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}: {exc.message}" if exc.status else exc.message or type(exc).__name__
    if isinstance(exc, aiohttp.InvalidURL):
        return "the configured URL is not valid"
    return str(exc) or type(exc).__name__


def transport_error(exc: BaseException, *, provider: str, model: str, after_first_token: bool = False) -> ProviderError:
    """Map one foreign exception (aiohttp, asyncio, OS) to the taxonomy; ProviderErrors pass through unchanged."""
    if isinstance(exc, ProviderError):
        return exc
    fields: dict[str, Any] = {"provider": provider, "model": model, "after_first_token": after_first_token}
    detail = _describe(exc)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(f"could not connect in time ({detail})", code="connect_timeout", **fields)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectionError(f"cannot connect to upstream: {detail}", code="connect_failed", **fields)
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
    if ctx.guarded:
        return _connect_only_timeout(ctx.connect_timeout)
    remaining = ctx.remaining()
    sock_read = None
    if stream:
        limits = [t for t in (ctx.first_token_timeout, ctx.stall_timeout) if t is not None]
        sock_read = max(limits) if limits else None
    # aiohttp rounds timeouts >= ceil_threshold up to whole seconds; a deadline must not grow, so never round.
    return aiohttp.ClientTimeout(
        total=remaining, sock_connect=ctx.connect_timeout, sock_read=sock_read, ceil_threshold=_NEVER_ROUND
    )


@functools.lru_cache(maxsize=64)
def _connect_only_timeout(connect: float | None) -> aiohttp.ClientTimeout:
    """The timeout for a guarded call: only the connect phase, which the caller's timer does not see apart."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, ceil_threshold=_NEVER_ROUND)


def _default_parser(provider: str, model: str) -> ErrorParser:
    def parse(status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
        return classify_status(status, body, headers, provider=provider, model=model)

    return parse


async def _send(
    ctx: CallContext,
    method: str,
    url: str,
    provider: str,
    model: str,
    headers: Mapping[str, str] | None,
    data: bytes | None,
    params: Mapping[str, str] | None,
    stream: bool,
) -> aiohttp.ClientResponse:
    """Send one request on the shared session (JSON content type when there is a body); any status comes back,
    every transport failure is mapped by `transport_error`."""
    if ctx.remaining() == 0:
        raise UpstreamTimeout("no time left for this attempt", provider=provider, model=model)
    send_headers = {"Content-Type": "application/json"} if data is not None else {}
    if headers:
        send_headers.update(headers)
    if ctx.headers:
        send_headers.update(ctx.headers)
    try:
        return await ctx.session.request(
            method, url, headers=send_headers, data=data, params=params, timeout=request_timeout(ctx, stream=stream)
        )
    except Exception as exc:
        raise transport_error(exc, provider=provider, model=model) from exc


async def open_response(
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
) -> aiohttp.ClientResponse:
    """Send one request on the shared session and return the 2xx response; the caller must `settle()` it.

    A non-2xx answer is read once and raised as the classified ProviderError (`error_parser` or
    `classify_status`); every transport failure is mapped by `transport_error`. `open_request` wraps this in an
    async context manager; a streaming hot path calls it directly (the wrapper costs microseconds per stream).
    """
    payload = dumps(json) if json is not None else data
    resp = await _send(ctx, method, url, provider, model, headers, payload, params, stream)
    if 200 <= resp.status < 300:
        return resp
    try:
        body = await resp.read()
    except Exception:
        body = b""
    finally:
        resp.close()
    parser = error_parser or _default_parser(provider, model)
    raise parser(resp.status, body, resp.headers)


def settle(resp: aiohttp.ClientResponse, completed: bool) -> None:
    """Release the connection for reuse if the body was read to its end, close it otherwise (e.g. the consumer
    cancelled mid-stream), so the upstream sees the disconnect."""
    if completed and resp.content.is_eof():
        resp.release()
    else:
        resp.close()


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
    """`open_response` as an async context manager: yields the 2xx response and settles it on exit."""
    resp = await open_response(
        ctx, method, url, provider=provider, model=model, headers=headers, json=json, data=data, params=params,
        stream=stream, error_parser=error_parser,
    )  # fmt: skip
    completed = False
    try:
        yield resp
        completed = True
    finally:
        settle(resp, completed)


async def request_json(
    ctx: CallContext,
    method: str,
    url: str,
    *,
    provider: str,
    model: str,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    params: Mapping[str, str] | None = None,
    error_parser: ErrorParser | None = None,
) -> Any:
    """One non-streamed call: send, read the whole body, and return its parsed JSON (2xx) or raise.

    The same contract as `open_request` + `read_json`, without the async context manager: this is the
    non-streaming hot path, and the generic wrapper costs a few microseconds per call.
    """
    resp = await _send(ctx, method, url, provider, model, headers, data, params, False)
    ok = 200 <= resp.status < 300
    try:
        body = await resp.read()
    except BaseException as exc:
        resp.close()  # a half-read connection is not reused
        if not ok and isinstance(exc, Exception):
            body = b""
        elif isinstance(exc, Exception):
            raise transport_error(exc, provider=provider, model=model) from exc
        else:
            raise
    else:
        resp.release()
    if not ok:
        raise (error_parser or _default_parser(provider, model))(resp.status, body, resp.headers)
    return loads(body, provider=provider, model=model)


async def read_json(resp: aiohttp.ClientResponse, *, provider: str, model: str) -> Any:
    """Read a whole 2xx body and parse it, mapping read failures and bad JSON."""
    try:
        body = await resp.read()
    except Exception as exc:
        raise transport_error(exc, provider=provider, model=model) from exc
    return loads(body, provider=provider, model=model)


async def probe_credentials(provider: str, ctx: CallContext, probe: Awaitable[object]) -> CredentialCheck:
    """Run a cheap authenticated call and report how it went; a ProviderError (bad key...) is a result, not raised."""
    started = ctx.clock()
    try:
        await probe
    except ProviderError as err:
        return CredentialCheck(provider, False, err.status, err.error_class.value, err.message, ctx.clock() - started)
    return CredentialCheck(provider, True, 200, None, "ok", ctx.clock() - started)
