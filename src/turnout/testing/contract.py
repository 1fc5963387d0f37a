"""The driver contract suite: behaviour every turnout driver must show against its format's fake upstream.

Use it from a test module:

    from turnout.testing import DriverContract, OpenAIFake

    class TestMyDriver(DriverContract):
        model = "gpt-test"

        def make_fake(self):
            return OpenAIFake()

        def make_driver(self, base_url):
            return MyDriver(ProviderSpec(name="mine", driver="mine", base_url=base_url, api_key=Secret("sk-test")))

Tests that need a capability the driver does not declare (tools, vision) are skipped. A driver that serves
embeddings adds the `EmbeddingsContract` mixin: `class TestMyDriver(DriverContract, EmbeddingsContract)`.
Every test talks to the fake over loopback; the slowest waits `hang_timeout` seconds (default 0.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
import pytest
import pytest_asyncio

from turnout.drivers.base import CallContext, CredentialCheck, Driver
from turnout.errors import (
    ErrorClass,
    ProtocolError,
    ProviderError,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from turnout.testing.fake import FakeUpstream, Framing, ToolCall, drop, hang, reply_raw
from turnout.types import ChatChunk, ChatRequest, Usage

HTTP_CLASSES: tuple[ErrorClass, ...] = tuple(
    c for c in ErrorClass if c not in (ErrorClass.CONNECTION, ErrorClass.PROTOCOL)
)
FRAMINGS: tuple[Framing, ...] = (
    Framing(split_every=3),
    Framing(split_every=17, crlf=True),
    Framing(crlf=True),
    Framing(comments=True),
    Framing(comments=True, split_every=5, crlf=True),
)
WEATHER = ToolCall("get_weather", {"city": "Paris", "units": "c"}, id="call_w1")
CLOCK = ToolCall("get_time", {"tz": "Europe/Paris"}, id="call_t2")
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
PNG = f"data:image/png;base64,{PNG_BASE64}"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def text_of(chunks: list[ChatChunk]) -> str:
    return "".join(c.content or "" for c in chunks)


def tool_calls_of(chunks: list[ChatChunk]) -> list[dict[str, Any]]:
    """Reassemble streamed OpenAI tool-call deltas by index (what every OpenAI client does)."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for delta in chunk.tool_calls:
            call = calls.setdefault(delta.get("index", 0), {"id": None, "name": None, "arguments": ""})
            call["id"] = delta.get("id") or call["id"]
            fn = delta.get("function") or {}
            call["name"] = fn.get("name") or call["name"]
            call["arguments"] += fn.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


class DriverContract:
    """Subclass and implement `make_fake` and `make_driver`; pytest collects the inherited tests."""

    model: ClassVar[str] = "test-model"
    hang_timeout: ClassVar[float] = 0.3
    stream_error_classes: ClassVar[tuple[ErrorClass, ...]] = (ErrorClass.SERVER_ERROR, ErrorClass.OVERLOADED)

    def make_fake(self) -> Any:
        """A not-yet-started per-format fake (see `turnout.testing` for the interface)."""
        raise NotImplementedError

    def make_driver(self, base_url: str) -> Driver:
        """The driver under test, pointed at `base_url` (the fake's URL)."""
        raise NotImplementedError

    # -- fixtures and helpers

    @pytest_asyncio.fixture
    async def fake(self) -> AsyncIterator[Any]:
        async with self.make_fake() as upstream:
            yield upstream

    @pytest_asyncio.fixture
    async def session(self) -> AsyncIterator[aiohttp.ClientSession]:
        async with aiohttp.ClientSession() as client:
            yield client

    @pytest.fixture
    def driver(self, fake: FakeUpstream) -> Driver:
        return self.make_driver(fake.url)

    def ctx(self, session: aiohttp.ClientSession, **overrides: Any) -> CallContext:
        fields: dict[str, Any] = {"attempt_timeout": 10.0, "first_token_timeout": 5.0, "stall_timeout": 5.0}
        fields.update(overrides)
        return CallContext(session=session, model=self.model, **fields)

    @staticmethod
    def request(content: Any = "Say hello.", **params: Any) -> ChatRequest:
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]
        return ChatRequest.create(model="route", messages=messages, **params)

    async def collect(self, driver: Driver, request: ChatRequest, ctx: CallContext) -> list[ChatChunk]:
        return [chunk async for chunk in driver.stream(request, ctx)]

    async def stream_failure(self, driver: Driver, request: ChatRequest, ctx: CallContext) -> tuple[list, Exception]:
        chunks: list[ChatChunk] = []

        async def consume() -> None:
            async for chunk in driver.stream(request, ctx):
                chunks.append(chunk)

        with pytest.raises(ProviderError) as info:
            await consume()
        return chunks, info.value

    def needs(self, driver: Driver, capability: str) -> None:
        if capability not in driver.capabilities:
            pytest.skip(f"driver does not declare {capability!r}")

    # -- protocol shape

    def test_driver_protocol(self, driver: Driver) -> None:
        """The driver satisfies the Driver protocol and declares its capabilities and options schema."""
        assert isinstance(driver, Driver)
        assert isinstance(driver.capabilities, frozenset)
        assert "streaming" in driver.capabilities
        assert driver.options_schema.get("type") == "object"

    # -- non-streaming

    @pytest.mark.asyncio
    async def test_send_text(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A plain answer comes back as text with finish reason and the provider's usage."""
        fake.script("chat", fake.text("Hello there!", usage=Usage(21, 4)))
        response = await driver.send(self.request(), self.ctx(session))
        assert response.text == "Hello there!"
        assert response.finish_reason == "stop"
        assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (21, 4)
        assert response.message["role"] == "assistant"

    @pytest.mark.asyncio
    async def test_send_without_usage_is_unknown(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession
    ) -> None:
        """An answer without usage reports usage as unknown, never as zero."""
        fake.script("chat", fake.text("Hi", usage=None))
        response = await driver.send(self.request(), self.ctx(session))
        assert response.usage.known is False

    @pytest.mark.asyncio
    async def test_directives_are_not_sent(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """Top-level turnout_* keys (mock directives) never reach the upstream."""
        fake.script("chat", fake.text("ok"))
        await driver.send(self.request(turnout_mock={"reply": "x"}), self.ctx(session))
        assert b"turnout_" not in fake.last.body

    @pytest.mark.asyncio
    async def test_send_tool_calls(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """Tool calls come back in OpenAI shape with JSON-string arguments and finish reason tool_calls."""
        self.needs(driver, "tools")
        fake.script("chat", fake.tool_calls([WEATHER, CLOCK]))
        response = await driver.send(self.request("Weather and time?", tools=TOOLS), self.ctx(session))
        calls = response.tool_calls
        assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
        assert json.loads(calls[0]["function"]["arguments"]) == dict(WEATHER.arguments)
        assert json.loads(calls[1]["function"]["arguments"]) == dict(CLOCK.arguments)
        assert all(c["id"] and c["type"] == "function" for c in calls)
        assert len({c["id"] for c in calls}) == 2
        assert response.finish_reason == "tool_calls"

    @pytest.mark.asyncio
    async def test_vision_request_accepted(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A request with a data-URL image is sent (the image travels in the upstream body) and answered."""
        self.needs(driver, "vision")
        fake.script("chat", fake.text("A pixel."))
        parts = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]
        response = await driver.send(self.request(parts), self.ctx(session))
        assert response.text == "A pixel."
        assert PNG_BASE64.encode() in fake.last.body

    # -- streaming

    @pytest.mark.asyncio
    async def test_stream_text(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """Streamed content concatenates to the answer; only the last chunk carries usage, with the finish reason."""
        fake.script("chat", fake.stream_text(["Hel", "lo", " world"], usage=Usage(9, 3)))
        chunks = await self.collect(driver, self.request(stream=True), self.ctx(session))
        assert text_of(chunks) == "Hello world"
        assert [c.usage is not None for c in chunks].count(True) == 1
        final = chunks[-1]
        assert final.finish_reason == "stop"
        assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (9, 3)
        assert any(c.is_content for c in chunks)
        assert all(c.is_content == bool(c.content or c.tool_calls) for c in chunks if not c.usage_only)

    @pytest.mark.asyncio
    async def test_stream_without_usage_is_unknown(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession
    ) -> None:
        """A stream that reports no usage ends with Usage.UNKNOWN on its final chunk."""
        fake.script("chat", fake.stream_text(["a", "b"], usage=None))
        chunks = await self.collect(driver, self.request(stream=True), self.ctx(session))
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.known is False
        assert text_of(chunks) == "ab"

    @pytest.mark.asyncio
    async def test_stream_length_finish(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A stream cut by the token limit ends with finish reason length."""
        fake.script("chat", fake.stream_text(["one", " two"], finish_reason="length"))
        chunks = await self.collect(driver, self.request(stream=True, max_tokens=2), self.ctx(session))
        assert chunks[-1].finish_reason == "length"

    @pytest.mark.asyncio
    async def test_stream_tool_calls(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """Streamed tool-call deltas reassemble by index into the calls with complete JSON arguments."""
        self.needs(driver, "tools")
        fake.script("chat", fake.stream_tool_calls([WEATHER, CLOCK]))
        chunks = await self.collect(driver, self.request("Both?", tools=TOOLS, stream=True), self.ctx(session))
        calls = tool_calls_of(chunks)
        assert [c["name"] for c in calls] == ["get_weather", "get_time"]
        assert [json.loads(c["arguments"]) for c in calls] == [dict(WEATHER.arguments), dict(CLOCK.arguments)]
        assert all(c["id"] for c in calls)
        assert chunks[-1].finish_reason == "tool_calls"
        assert any(c.is_content for c in chunks)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("framing", FRAMINGS, ids=repr)
    async def test_stream_framing(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession, framing: Framing
    ) -> None:
        """Lines split across reads, CRLF endings and keep-alive comments do not change the result."""
        pieces = ["Über", " straße ", "ok 🚀", "\n\ndone"]
        fake.script("chat", fake.stream_text(pieces, framing=framing))
        chunks = await self.collect(driver, self.request(stream=True), self.ctx(session))
        assert text_of(chunks) == "".join(pieces)
        assert chunks[-1].finish_reason == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.known

    @pytest.mark.asyncio
    async def test_stream_unterminated(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A stream that ends without finishing is a protocol error after the first token, never a success."""
        fake.script("chat", fake.stream_unterminated(["partial", " answer"]))
        chunks, error = await self.stream_failure(driver, self.request(stream=True), self.ctx(session))
        assert isinstance(error, ProtocolError)
        assert error.after_first_token is True
        assert text_of(chunks) == "partial answer"

    @pytest.mark.asyncio
    async def test_stream_malformed_chunk(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A chunk with broken JSON raises a protocol error."""
        fake.script("chat", fake.stream_malformed(["fine so far"]))
        _, error = await self.stream_failure(driver, self.request(stream=True), self.ctx(session))
        assert isinstance(error, ProtocolError)
        assert error.after_first_token is True

    @pytest.mark.asyncio
    async def test_stream_error_event(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """An error event after the 200 is classified and marked as after the first token."""
        for error_class in self.stream_error_classes:
            fake.script("chat", fake.stream_error(["some"], error_class))
            chunks, error = await self.stream_failure(driver, self.request(stream=True), self.ctx(session))
            assert error.error_class is error_class
            assert error.after_first_token is True
            assert error.message
            assert text_of(chunks) == "some"

    @pytest.mark.asyncio
    async def test_stream_error_before_content(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """An error event before any content is not marked as after the first token."""
        fake.script("chat", fake.stream_error([], ErrorClass.SERVER_ERROR))
        _, error = await self.stream_failure(driver, self.request(stream=True), self.ctx(session))
        assert error.error_class is ErrorClass.SERVER_ERROR
        assert error.after_first_token is False

    @pytest.mark.asyncio
    async def test_stream_cut(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A connection cut mid-stream is a connection error after the first token."""
        fake.script("chat", fake.stream_text(["a", "b", "c", "d", "e"], framing=Framing(cut_after=3)))
        _, error = await self.stream_failure(driver, self.request(stream=True), self.ctx(session))
        assert isinstance(error, UpstreamConnectionError)
        assert error.after_first_token is True

    @pytest.mark.asyncio
    async def test_stream_http_error(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """An HTTP error answering a stream request is classified before any chunk."""
        fake.script("chat", fake.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "7"}))
        chunks, error = await self.stream_failure(driver, self.request(stream=True), self.ctx(session))
        assert chunks == []
        assert error.error_class is ErrorClass.RATE_LIMIT
        assert error.retry_after == 7.0

    @pytest.mark.asyncio
    async def test_cancel_closes_upstream(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """Abandoning a stream closes the upstream connection (the fake sees the disconnect)."""
        fake.script("chat", fake.stream_text(["tick "] * 200, framing=Framing(delay=0.01)))
        stream = driver.stream(self.request(stream=True), self.ctx(session))
        async for chunk in stream:
            if chunk.is_content:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        assert await fake.wait_disconnect(2.0)

    @pytest.mark.asyncio
    async def test_cancel_task_closes_upstream(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """Cancelling the task that consumes a stream (a client hung up) closes the upstream connection."""
        fake.script("chat", fake.stream_text(["tick "] * 200, framing=Framing(delay=0.01)))
        first = asyncio.Event()

        async def consume() -> None:
            async for chunk in driver.stream(self.request(stream=True), self.ctx(session)):
                if chunk.is_content:
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 5.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await fake.wait_disconnect(2.0)

    # -- errors

    @pytest.mark.asyncio
    @pytest.mark.parametrize("error_class", HTTP_CLASSES, ids=str)
    async def test_error_classes(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession, error_class: ErrorClass
    ) -> None:
        """Each provider error answer is classified into its taxonomy class with status and message."""
        fake.script("chat", fake.error(error_class))
        with pytest.raises(ProviderError) as info:
            await driver.send(self.request(), self.ctx(session))
        error = info.value
        assert error.error_class is error_class
        assert error.status is not None and error.status >= 400
        assert error.message
        assert error.after_first_token is False
        assert "sk-test" not in str(error) + repr(error)

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("headers", "expected"),
        [({"retry-after": "3"}, 3.0), ({"retry-after": "1.5"}, 1.5), ({"retry-after-ms": "250"}, 0.25)],
        ids=["seconds", "float", "ms"],
    )
    async def test_retry_after(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession, headers: dict, expected: float
    ) -> None:
        """Retry-After (seconds, float) and retry-after-ms are parsed onto the rate-limit error."""
        fake.script("chat", fake.error(ErrorClass.RATE_LIMIT, headers=headers))
        with pytest.raises(ProviderError) as info:
            await driver.send(self.request(), self.ctx(session))
        assert info.value.error_class is ErrorClass.RATE_LIMIT
        assert info.value.retry_after == pytest.approx(expected)

    @pytest.mark.asyncio
    async def test_retry_after_http_date(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A Retry-After HTTP-date becomes the seconds until that time."""
        when = email.utils.formatdate(time.time() + 30, usegmt=True)
        fake.script("chat", fake.error(ErrorClass.RATE_LIMIT, headers={"Retry-After": when}))
        with pytest.raises(ProviderError) as info:
            await driver.send(self.request(), self.ctx(session))
        assert 27 <= (info.value.retry_after or 0) <= 31

    @pytest.mark.asyncio
    async def test_html_error_page(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """An HTML error page from a proxy is a server error whose message has no markup."""
        fake.script("chat", fake.html_error(502))
        with pytest.raises(ProviderError) as info:
            await driver.send(self.request(), self.ctx(session))
        assert info.value.error_class is ErrorClass.SERVER_ERROR
        assert "<" not in info.value.message and "Bad Gateway" in info.value.message

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "body", [b"\x00\xffnot json at all", b'{"id": "chatcmpl-1", "choi', b"", b"[1, 2, 3]"], ids=repr
    )
    async def test_garbage_success_body(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession, body: bytes
    ) -> None:
        """A 200 with garbage, truncated JSON, nothing or the wrong JSON type is a protocol error."""
        fake.script("chat", reply_raw(body, content_type="application/json"))
        with pytest.raises(ProtocolError):
            await driver.send(self.request(), self.ctx(session))

    @pytest.mark.asyncio
    async def test_garbage_error_body(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """An error status with a non-JSON body is still classified by its status."""
        fake.script("chat", reply_raw(b"upstream connect error or disconnect/reset", 503, "text/plain"))
        with pytest.raises(ProviderError) as info:
            await driver.send(self.request(), self.ctx(session))
        assert info.value.error_class is ErrorClass.OVERLOADED
        assert "upstream connect error" in info.value.message

    @pytest.mark.asyncio
    async def test_connection_drop(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A connection closed without an answer is a connection error."""
        fake.script("chat", drop())
        with pytest.raises(UpstreamConnectionError):
            await driver.send(self.request(), self.ctx(session))

    @pytest.mark.asyncio
    async def test_connection_refused(self, driver: Driver, session: aiohttp.ClientSession) -> None:
        """An upstream that refuses connections is a connection error."""
        refusing = self.make_driver("http://127.0.0.1:9")
        with pytest.raises(UpstreamConnectionError):
            await refusing.send(self.request(), self.ctx(session))

    @pytest.mark.asyncio
    @pytest.mark.parametrize("stream", [False, True], ids=["send", "stream"])
    async def test_hang_times_out(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession, stream: bool
    ) -> None:
        """An upstream that never answers fails with a timeout within the attempt's budget."""
        fake.script("chat", hang())
        ctx = self.ctx(session, attempt_timeout=self.hang_timeout)
        started = time.monotonic()
        call = self.collect(driver, self.request(stream=True), ctx) if stream else driver.send(self.request(), ctx)
        with pytest.raises(UpstreamTimeout):
            await call
        assert time.monotonic() - started < self.hang_timeout + 1.5

    @pytest.mark.asyncio
    async def test_stall_mid_stream_times_out(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A stream that stops sending never hangs past the attempt's time budget."""
        fake.script("chat", fake.stream_text(["a", "b"], framing=Framing(delay=5.0)))
        ctx = self.ctx(session, attempt_timeout=self.hang_timeout, stall_timeout=self.hang_timeout)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await self.collect(driver, self.request(stream=True), ctx)
        assert time.monotonic() - started < self.hang_timeout + 1.5

    # -- models and credentials

    @pytest.mark.asyncio
    async def test_list_models(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """The model list is read from the upstream."""
        fake.script("models", fake.models(["alpha", "beta"]))
        models = await driver.list_models(self.ctx(session))
        assert [m.id for m in models] == ["alpha", "beta"]

    @pytest.mark.asyncio
    async def test_check_credentials(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A credential check reports success, and a rejected key as a result (never an exception)."""
        fake.script("models", fake.models(["alpha"]), fake.error(ErrorClass.AUTH))
        good = await driver.check_credentials(self.ctx(session))
        bad = await driver.check_credentials(self.ctx(session))
        assert isinstance(good, CredentialCheck) and good.ok
        assert bad.ok is False and bad.error_class == ErrorClass.AUTH.value and bad.message
        assert "sk-test" not in repr(bad)
