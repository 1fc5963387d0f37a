"""Shared driver HTTP helpers: framing, Retry-After, classification and the transport boundary."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.drivers._http import (
    SSEEvent,
    SSEParser,
    classify_status,
    dumps,
    error_details,
    iter_ndjson,
    iter_sse,
    json_dumps,
    loads,
    open_request,
    parse_retry_after,
    request_timeout,
    strip_directives,
    transport_error,
    validate_options,
)
from turnout.drivers.base import CallContext
from turnout.errors import ErrorClass, ProtocolError, UpstreamConnectionError, UpstreamTimeout
from turnout.testing import FakeUpstream, reply_json

NOW = 1_700_000_000.0


async def pieces(data: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in data:
        yield piece


async def events(data: Iterable[bytes]) -> list[SSEEvent]:
    return [event async for event in iter_sse(pieces(data))]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# ---------------------------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "bogus", "retry-after": "9"}, 9.0),
        ({"retry-after": email.utils.formatdate(NOW + 42, usegmt=True)}, 42.0),
        ({"retry-after": email.utils.formatdate(NOW - 42, usegmt=True)}, 0.0),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "inf"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers: dict | None, expected: float | None) -> None:
    """retry-after-ms wins over retry-after; seconds, floats and HTTP-dates parse; nonsense gives None."""
    assert parse_retry_after(headers, now=NOW) == expected


# ---------------------------------------------------------------------------------------------- SSE / NDJSON

STREAM = (
    b": connected\n\n"
    b'data: {"a": 1}\n\n'
    b'event: message_start\ndata: {"b": 2}\n\n'
    b"id: 7\nretry: 100\ndata: line one\ndata: line two\n\n"
    b"event: ping\n\n"
    b"data:nospace\n\n"
    b"data: [DONE]"
)
EXPECTED = [
    SSEEvent(None, b'{"a": 1}'),
    SSEEvent("message_start", b'{"b": 2}'),
    SSEEvent(None, b"line one\nline two"),
    SSEEvent(None, b"nospace"),
    SSEEvent(None, b"[DONE]"),
]


async def test_sse_parses_fields_comments_and_unterminated_tail() -> None:
    """Comments are skipped, multi-line data joins, event names apply to one event, EOF flushes the last event."""
    assert await events([STREAM]) == EXPECTED


async def test_sse_crlf() -> None:
    """CRLF line endings give the same events."""
    assert await events([STREAM.replace(b"\n", b"\r\n")]) == EXPECTED


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12), crlf=st.booleans())
async def test_sse_any_split(cuts: list[int], crlf: bool) -> None:
    """However the bytes are split across reads, the events are the same."""
    data = STREAM.replace(b"\n", b"\r\n") if crlf else STREAM
    assert await events(split_at(data, cuts)) == EXPECTED


PLAIN = b"".join(b'data: {"n": %d, "s": "data: x"}\n\n' % i for i in range(6))


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12), crlf=st.booleans(), plain=st.booleans())
def test_sse_payloads_any_split(cuts: list[int], crlf: bool, plain: bool) -> None:
    """feed_payloads (whose fast path takes whole plain reads with one split) gives the payloads feed() gives."""
    data = PLAIN if plain else STREAM
    data = data.replace(b"\n", b"\r\n") if crlf else data
    parser = SSEParser()
    got = [payload for piece in split_at(data, cuts) for payload in parser.feed_payloads(piece)]
    got += [event.data for event in parser.end()]
    assert got == [event.data for event in _all_events(data)]
    assert len(got) == (6 if plain else len(EXPECTED))


def _all_events(data: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    return parser.feed(data) + parser.end()


async def test_sse_byte_by_byte() -> None:
    """One byte per read still parses (lines straddle every read)."""
    assert await events([bytes([b]) for b in STREAM]) == EXPECTED


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=100), max_size=8), crlf=st.booleans())
async def test_ndjson_any_split(cuts: list[int], crlf: bool) -> None:
    """NDJSON lines come out whole regardless of splits, blank lines, CRLF or a missing final newline."""
    data = b'{"a":1}\n\n{"b":2}\n  \n{"c":3}'
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    lines = [line async for line in iter_ndjson(pieces(split_at(data, cuts)))]
    assert lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


# ---------------------------------------------------------------------------------------------- small helpers


def test_loads_raises_protocol_error_with_excerpt() -> None:
    """Invalid JSON is a ProtocolError quoting a truncated excerpt."""
    with pytest.raises(ProtocolError) as info:
        loads(b'{"id": "x", ' + b"y" * 500, provider="p", model="m")
    assert "upstream sent invalid JSON" in info.value.message
    assert len(info.value.message) < 300
    assert info.value.deployment == "p/m"


def test_json_round_trips_what_orjson_refuses() -> None:
    """dumps handles non-string keys and huge integers; loads accepts NaN; both agree with the stdlib."""
    body = {"model": "m", "messages": [{"role": "user", "content": "Grüße 🚀"}], "logit_bias": {50256: -100}}
    assert json.loads(dumps(body)) == json.loads(json_dumps(body))
    assert json.loads(dumps({"n": 2**70})) == {"n": 2**70}
    assert rb"\u00fc" not in dumps({"t": "ü"})
    assert math.isnan(loads(b'{"x": NaN}', provider="p", model="m")["x"])


def test_strip_directives() -> None:
    """Only top-level turnout_* keys are removed."""
    body = {"model": "x", "turnout_mock": {}, "metadata": {"turnout_keep": 1}}
    assert strip_directives(body) == {"model": "x", "metadata": {"turnout_keep": 1}}


def test_validate_options_names_the_problem() -> None:
    """Bad options raise ValueError naming provider, driver and option path."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}
    validate_options("d", "prov", schema, {"n": 1})
    with pytest.raises(ValueError, match=r"provider 'prov' \(driver d\): options.n: 'x' is not of type 'integer'"):
        validate_options("d", "prov", schema, {"n": "x"})
    with pytest.raises(ValueError, match="Additional properties"):
        validate_options("d", "prov", schema, {"m": 1})


@pytest.mark.parametrize(
    ("body", "message", "code"),
    [
        (b'{"error": {"message": "m", "type": "t", "code": "c"}}', "m", "c"),
        (b'{"error": {"message": "m", "type": "t", "code": null}}', "m", "t"),
        (
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            "Overloaded",
            "overloaded_error",
        ),
        (b'{"error": {"code": 429, "message": "q", "status": "RESOURCE_EXHAUSTED"}}', "q", "RESOURCE_EXHAUSTED"),
        (b'{"object": "error", "message": "v", "type": "BadRequestError", "code": 400}', "v", "BadRequestError"),
        (
            b'{"code": "Client specified an invalid argument", "error": "bad key"}',
            "bad key",
            "Client specified an invalid argument",
        ),
        (b'{"error": "model not found"}', "model not found", None),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "502 Bad Gateway", None),
        (b"", "(empty body)", None),
    ],
)
def test_error_details_shapes(body: bytes, message: str, code: str | None) -> None:
    """Every known error body shape yields the provider's message and code."""
    assert error_details(body) == (message, code)


# ---------------------------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (429, b'{"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}', {}, "rate_limit"),
        (
            429,
            b'{"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}',
            {},
            "quota_exceeded",
        ),
        (429, b'{"error": {"message": "Request too large for gpt-4o on tokens per min (TPM)"}}', {}, "quota_exceeded"),
        (429, b'{"error": {"message": "slow down"}}', {"x-should-retry": "false"}, "quota_exceeded"),
        (402, b"{}", {}, "quota_exceeded"),
        (401, b"{}", {}, "auth"),
        (403, b"{}", {}, "auth"),
        (404, b"{}", {}, "not_found"),
        (408, b"", {}, "timeout"),
        (504, b"", {}, "timeout"),
        (413, b"too big", {}, "bad_request"),
        (409, b"", {}, "server_error"),
        (500, b"", {}, "server_error"),
        (502, b"<html>bad gateway</html>", {}, "server_error"),
        (500, b'{"error": {"message": "The engine is currently overloaded"}}', {}, "overloaded"),
        (503, b"", {}, "overloaded"),
        (529, b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}', {}, "overloaded"),
        (400, b'{"error": {"message": "x", "code": "context_length_exceeded"}}', {}, "context_window"),
        (
            400,
            b'{"object": "error", "message": "This model\'s maximum context length is 4096 tokens."}',
            {},
            "context_window",
        ),
        (
            400,
            b'{"type": "error", "error": {"type": "invalid_request_error", '
            b'"message": "prompt is too long: 210000 tokens > 200000 maximum"}}',
            {},
            "context_window",
        ),
        (
            400,
            b'{"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of '
            b'tokens allowed (1048576)."}}',
            {},
            "context_window",
        ),
        (
            400,
            b'{"error": {"message": "Invalid prompt: your prompt was flagged", "code": "invalid_prompt"}}',
            {},
            "content_policy",
        ),
        (400, b'{"error": {"code": "content_filter", "message": "filtered"}}', {}, "content_policy"),
        (
            400,
            b'{"code": "Client specified an invalid argument", "error": "Incorrect API key provided: xa***"}',
            {},
            "auth",
        ),
        (400, b'{"error": {"message": "Unsupported parameter: max_tokens"}}', {}, "bad_request"),
        (422, b'{"detail": "unprocessable"}', {}, "bad_request"),
        (405, b"", {}, "bad_request"),
        (302, b"", {}, "protocol"),
    ],
)
def test_classify_status(status: int, body: bytes, headers: dict, expected: str) -> None:
    """The generic status/body mapping puts each case in its taxonomy class."""
    error = classify_status(status, body, headers, provider="p", model="m")
    assert error.error_class == ErrorClass(expected)
    assert error.status == status
    assert error.message


def test_classify_status_html_and_retry_after() -> None:
    """HTML bodies become short tag-free messages; Retry-After is carried."""
    page = b"<html><head><title>Oops</title></head><body>" + b"<p>down for maintenance</p>" * 50 + b"</body></html>"
    error = classify_status(503, page, {"Retry-After": "12"}, provider="p", model="m")
    assert "<" not in error.message and "down for maintenance" in error.message
    assert len(error.message) <= 200
    assert error.retry_after == 12.0


def test_classify_status_prefers_driver_message() -> None:
    """A driver's own parsed message and code win over the body."""
    error = classify_status(400, b"junk", {}, provider="p", model="m", message="prompt is too long", code="x")
    assert error.error_class is ErrorClass.CONTEXT_WINDOW
    assert (error.message, error.code) == ("prompt is too long", "x")


# ---------------------------------------------------------------------------------------------- transport


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), UpstreamTimeout),
        (aiohttp.ServerTimeoutError("read"), UpstreamTimeout),
        (aiohttp.ServerDisconnectedError(), UpstreamConnectionError),
        (aiohttp.ClientPayloadError("cut"), UpstreamConnectionError),
        (ConnectionResetError(), UpstreamConnectionError),
        (aiohttp.ClientConnectionError("refused"), UpstreamConnectionError),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), ProtocolError),
    ],
)
def test_transport_error_mapping(exc: BaseException, expected: type) -> None:
    """Foreign exceptions map to the taxonomy; after_first_token is carried."""
    error = transport_error(exc, provider="p", model="m", after_first_token=True)
    assert isinstance(error, expected)
    assert error.after_first_token is True


def test_request_timeout_for_streams() -> None:
    """Streams read with the longer of first-token and stall timeouts; totals follow the attempt budget."""
    ctx = CallContext(session=None, model="m", attempt_timeout=9, first_token_timeout=4, stall_timeout=2)  # type: ignore[arg-type]
    assert request_timeout(ctx, stream=True).sock_read == 4
    assert request_timeout(ctx).sock_read is None
    assert request_timeout(ctx).total == 9


async def test_open_request_invalid_http_is_protocol_error() -> None:
    """A server that answers with something that is not HTTP gives a ProtocolError."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        writer.write(b"SMTP ready, not HTTP at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, aiohttp.ClientSession() as session:
        ctx = CallContext(session=session, model="m", attempt_timeout=5)
        with pytest.raises(ProtocolError):
            async with open_request(ctx, "GET", f"http://127.0.0.1:{port}/", provider="p", model="m"):
                pass


async def test_open_request_no_time_left() -> None:
    """An attempt whose deadline already passed times out without sending."""
    async with FakeUpstream() as fake, aiohttp.ClientSession() as session:
        fake.default("/x", reply_json({}))
        ctx = CallContext(session=session, model="m", deadline=0.0, clock=lambda: 5.0)
        with pytest.raises(UpstreamTimeout):
            async with open_request(ctx, "GET", f"{fake.url}/x", provider="p", model="m"):
                pass
        assert fake.requests == []


def test_works_without_orjson() -> None:
    """Without orjson installed the stdlib encoder and decoder are used, with the same results."""
    code = (
        "import sys; sys.modules['orjson'] = None\n"
        "from turnout import _json\n"
        "from turnout.drivers import _http\n"
        "assert not _json.FAST\n"
        "assert _http.loads(_http.dumps({'a': [1, 'ü']}), provider='p', model='m') == {'a': [1, 'ü']}\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
