"""The embeddings half of the driver contract suite: what every driver that serves embeddings must do against its
format's fake upstream (`embeddings_fake`). A test class opts in by mixing it in beside `DriverContract`
(`class TestMine(DriverContract, EmbeddingsContract)`); a driver that opts in but does not serve embeddings fails
every test, so a driver without `embed` simply leaves the mixin out (nothing is collected, nothing skipped).

The fake's vectors are deterministic (`expected_vector`), so the tests check values and order, not just shapes.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import aiohttp
import pytest

from turnout.drivers.base import Driver, EmbeddingContext, offers_embeddings
from turnout.embeddings import EmbeddingRequest, as_floats
from turnout.errors import (
    BadRequest,
    ErrorClass,
    ProtocolError,
    ProviderError,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from turnout.testing.embeddings_fake import DEFAULT_DIMENSIONS, expected_vector, word_tokens
from turnout.testing.fake import drop, hang, reply_raw

HTTP_CLASSES: tuple[ErrorClass, ...] = tuple(
    c for c in ErrorClass if c not in (ErrorClass.CONNECTION, ErrorClass.PROTOCOL)
)
TEXTS = ("The quick brown fox", "jumps over", "the lazy dog ✓")


def close_to(actual: list[float], expected: list[float]) -> bool:
    """Equal within float32 precision (a base64 answer carries float32 values)."""
    return len(actual) == len(expected) and all(abs(a - b) < 1e-6 for a, b in zip(actual, expected, strict=True))


class EmbeddingsContract:
    """Embeddings tests; the class using it provides `ctx`, `fake`, `driver`, `session` (see DriverContract)."""

    embed_dimensions: ClassVar[int] = DEFAULT_DIMENSIONS
    hang_timeout: ClassVar[float] = 0.3
    ctx: Any
    make_driver: Any

    def embed_ctx(self, session: aiohttp.ClientSession, **overrides: Any) -> EmbeddingContext:
        """A call context for an embeddings model of `embed_dimensions`."""
        fields: dict[str, Any] = {"attempt_timeout": 10.0, "dimensions": self.embed_dimensions, **overrides}
        return EmbeddingContext(session=session, model=self.model, **fields)

    @staticmethod
    def embed_request(input: Any = TEXTS[0], **params: Any) -> EmbeddingRequest:
        return EmbeddingRequest.create(model="route", input=input, **params)

    def needs_embeddings(self, driver: Driver) -> None:
        assert offers_embeddings(driver), "the class mixes in EmbeddingsContract, but the driver has no embed()"

    # -- answers

    @pytest.mark.asyncio
    async def test_embed_one_text(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """One text gives one vector of the model's length, with the upstream's usage when it reports any."""
        self.needs_embeddings(driver)
        fake.script("embeddings", fake.embeddings(dimensions=self.embed_dimensions))
        response = await driver.embed(self.embed_request(), self.embed_ctx(session))  # type: ignore[attr-defined]
        assert len(response.vectors) == 1
        assert close_to(as_floats(response.vectors[0]), expected_vector(TEXTS[0], self.embed_dimensions))
        assert response.model
        usage = response.usage
        assert usage.prompt_tokens in (None, word_tokens(TEXTS[0]))  # Gemini reports none: unknown, never 0
        assert fake.requests_to("embeddings")

    @pytest.mark.asyncio
    async def test_embed_batch_keeps_order(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """Several texts give one vector each, in the order of the inputs."""
        self.needs_embeddings(driver)
        fake.script("embeddings", fake.embeddings(dimensions=self.embed_dimensions))
        response = await driver.embed(self.embed_request(list(TEXTS)), self.embed_ctx(session))  # type: ignore[attr-defined]
        got = [as_floats(v) for v in response.vectors]
        assert all(close_to(g, expected_vector(t, self.embed_dimensions)) for g, t in zip(got, TEXTS, strict=True))
        assert response.usage.prompt_tokens in (None, sum(word_tokens(t) for t in TEXTS))

    @pytest.mark.asyncio
    async def test_embed_many_inputs(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """250 inputs (more than some upstreams take per call) all come back, in order."""
        self.needs_embeddings(driver)
        fake.default("embeddings", fake.embeddings(dimensions=self.embed_dimensions))
        texts = [f"document number {i}" for i in range(250)]
        response = await driver.embed(self.embed_request(texts), self.embed_ctx(session))  # type: ignore[attr-defined]
        assert len(response.vectors) == 250
        assert close_to(as_floats(response.vectors[249]), expected_vector(texts[249], self.embed_dimensions))
        assert close_to(as_floats(response.vectors[100]), expected_vector(texts[100], self.embed_dimensions))

    @pytest.mark.asyncio
    async def test_embed_shorter_dimensions(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A request for fewer dimensions asks the upstream for them and gets the shortened vectors."""
        self.needs_embeddings(driver)
        fake.script("embeddings", fake.embeddings(dimensions=self.embed_dimensions))
        request = self.embed_request(list(TEXTS[:2]), dimensions=4)
        response = await driver.embed(request, self.embed_ctx(session))  # type: ignore[attr-defined]
        assert fake.asked_dimensions(fake.last) == 4
        assert [len(as_floats(v)) for v in response.vectors] == [4, 4]
        assert close_to(as_floats(response.vectors[1]), expected_vector(TEXTS[1], self.embed_dimensions, 4))

    @pytest.mark.asyncio
    async def test_embed_own_dimensions_not_sent(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession
    ) -> None:
        """Asking for the model's own length sends no length at all (models without shortening refuse one)."""
        self.needs_embeddings(driver)
        fake.script("embeddings", fake.embeddings(dimensions=self.embed_dimensions))
        request = self.embed_request(dimensions=self.embed_dimensions)
        await driver.embed(request, self.embed_ctx(session))  # type: ignore[attr-defined]
        assert fake.asked_dimensions(fake.last) is None

    @pytest.mark.asyncio
    async def test_embed_directives_not_sent(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """Top-level turnout_* keys (mock directives) never reach the upstream (which would refuse them)."""
        self.needs_embeddings(driver)
        fake.script("embeddings", fake.embeddings(dimensions=self.embed_dimensions))
        request = self.embed_request(turnout_mock={"latency": 0})
        await driver.embed(request, self.embed_ctx(session))  # type: ignore[attr-defined]
        assert b"turnout_" not in fake.last.body

    @pytest.mark.asyncio
    async def test_embed_token_arrays(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """Token-id arrays reach an upstream that takes them; any other driver refuses them without a call."""
        self.needs_embeddings(driver)
        fake.script("embeddings", fake.embeddings(dimensions=self.embed_dimensions))
        tokens = [[9906, 1917], [15339]]
        request = self.embed_request(tokens)
        if not getattr(driver, "embedding_token_input", False):
            with pytest.raises(BadRequest):
                await driver.embed(request, self.embed_ctx(session))  # type: ignore[attr-defined]
            assert fake.requests_to("embeddings") == []
            return
        response = await driver.embed(request, self.embed_ctx(session))  # type: ignore[attr-defined]
        assert fake.last.json["input"] == tokens
        assert close_to(as_floats(response.vectors[0]), expected_vector(tokens[0], self.embed_dimensions))

    @pytest.mark.asyncio
    async def test_embed_without_usage_is_unknown(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession
    ) -> None:
        """An answer without usage reports usage as unknown, never as zero."""
        self.needs_embeddings(driver)
        fake.script("embeddings", fake.embeddings(dimensions=self.embed_dimensions, usage=None))
        response = await driver.embed(self.embed_request(), self.embed_ctx(session))  # type: ignore[attr-defined]
        assert response.usage.prompt_tokens is None

    # -- failures

    @pytest.mark.asyncio
    @pytest.mark.parametrize("error_class", HTTP_CLASSES, ids=str)
    async def test_embed_error_classes(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession, error_class: ErrorClass
    ) -> None:
        """Each provider error answer from the embeddings endpoint is classified into its taxonomy class."""
        self.needs_embeddings(driver)
        fake.script("embeddings", fake.error(error_class, headers={"retry-after": "2"}))
        with pytest.raises(ProviderError) as info:
            await driver.embed(self.embed_request(), self.embed_ctx(session))  # type: ignore[attr-defined]
        error = info.value
        assert error.error_class is error_class
        assert error.status is not None and error.status >= 400
        assert error.message and "sk-test" not in str(error) + repr(error)
        if error_class is ErrorClass.RATE_LIMIT:
            assert error.retry_after == 2.0

    @pytest.mark.asyncio
    async def test_embed_beyond_the_model(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A length beyond what the model returns (a file claiming too much) is the upstream's bad request, or, from
        an upstream that ignores it (Ollama), the model's own length: never a crash or a made-up vector."""
        self.needs_embeddings(driver)
        fake.script("embeddings", fake.embeddings(dimensions=self.embed_dimensions))
        ctx = self.embed_ctx(session, dimensions=self.embed_dimensions * 4)
        request = self.embed_request(dimensions=self.embed_dimensions * 2)
        if not fake.refuses_excess_dimensions:
            response = await driver.embed(request, ctx)  # type: ignore[attr-defined]
            assert len(as_floats(response.vectors[0])) == self.embed_dimensions
            return
        with pytest.raises(ProviderError) as info:
            await driver.embed(request, ctx)  # type: ignore[attr-defined]
        assert info.value.error_class is ErrorClass.BAD_REQUEST
        assert info.value.status == 400

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "body", [b"\x00\xffnot json", b'{"data": [{"embedd', b"", b"[1, 2, 3]", b'{"object": "list"}'], ids=repr
    )
    async def test_embed_garbage_body(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession, body: bytes
    ) -> None:
        """A 200 with garbage, truncated JSON, nothing, or JSON without vectors is a protocol error."""
        self.needs_embeddings(driver)
        fake.script("embeddings", reply_raw(body, content_type="application/json"))
        with pytest.raises(ProtocolError):
            await driver.embed(self.embed_request(), self.embed_ctx(session))  # type: ignore[attr-defined]

    @pytest.mark.asyncio
    @pytest.mark.parametrize("vector", [["a", "b"], [1.0, None], [], "not base64!", {"values": 1}], ids=repr)
    async def test_embed_invalid_vector(
        self, fake: Any, driver: Driver, session: aiohttp.ClientSession, vector: Any
    ) -> None:
        """A vector that is not a list of finite numbers (or base64 float32) is a protocol error."""
        self.needs_embeddings(driver)
        fake.script("embeddings", fake.embeddings(dimensions=self.embed_dimensions, vectors=[vector]))
        with pytest.raises(ProtocolError):
            await driver.embed(self.embed_request(), self.embed_ctx(session))  # type: ignore[attr-defined]

    @pytest.mark.asyncio
    async def test_embed_connection_drop(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """A connection closed without an answer is a connection error."""
        self.needs_embeddings(driver)
        fake.script("embeddings", drop())
        with pytest.raises(UpstreamConnectionError):
            await driver.embed(self.embed_request(), self.embed_ctx(session))  # type: ignore[attr-defined]

    @pytest.mark.asyncio
    async def test_embed_connection_refused(self, driver: Driver, session: aiohttp.ClientSession) -> None:
        """An upstream that refuses connections is a connection error."""
        self.needs_embeddings(driver)
        refusing = self.make_driver("http://127.0.0.1:9")
        with pytest.raises(UpstreamConnectionError):
            await refusing.embed(self.embed_request(), self.embed_ctx(session))

    @pytest.mark.asyncio
    async def test_embed_hang_times_out(self, fake: Any, driver: Driver, session: aiohttp.ClientSession) -> None:
        """An upstream that never answers fails with a timeout within the attempt's budget."""
        self.needs_embeddings(driver)
        fake.script("embeddings", hang())
        ctx = self.embed_ctx(session, attempt_timeout=self.hang_timeout)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await driver.embed(self.embed_request(), ctx)  # type: ignore[attr-defined]
        assert time.monotonic() - started < self.hang_timeout + 1.5
