"""The mock driver's embeddings: deterministic unit vectors, Matryoshka-style shortening, token input, faults."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from turnout.config import ProviderSpec
from turnout.drivers.base import EmbeddingContext
from turnout.drivers.mock import MockDriver
from turnout.drivers.mock_vectors import mock_vector
from turnout.embeddings import EmbeddingRequest
from turnout.errors import BadRequest, ErrorClass, ProviderError, UpstreamConnectionError, UpstreamTimeout


def driver(**options) -> MockDriver:
    return MockDriver(ProviderSpec(name="mock", driver="mock", options=options))


def ctx(dimensions: int | None = 16, **fields) -> EmbeddingContext:
    fields = {"attempt_timeout": 5.0, **fields}
    return EmbeddingContext(session=None, model="embed-mock", dimensions=dimensions, **fields)  # type: ignore[arg-type]


def request(value, **params) -> EmbeddingRequest:
    return EmbeddingRequest.create(model="route", input=value, **params)


async def test_vectors_are_unit_length_and_per_input():
    """One unit vector of the model's length per input, the same text always giving the same vector."""
    reply = await driver().embed(request(["alpha", "beta", "alpha"]), ctx())
    first, second, again = reply.vectors
    assert all(len(v) == 16 for v in reply.vectors)
    assert all(abs(math.fsum(x * x for x in v) - 1.0) < 1e-4 for v in reply.vectors)
    assert first == again and first != second
    assert reply.model == "embed-mock"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 0)  # ceil(5/4) + ceil(4/4) + ceil(5/4)


def test_vectors_are_the_same_in_another_process():
    """The vectors depend on the input alone (no per-process hash seed): a new interpreter computes the same."""
    code = "from turnout.drivers.mock_vectors import mock_vector; print(mock_vector('stable', 8))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(mock_vector("stable", 8))


async def test_shorter_vectors_are_the_renormalised_prefix():
    """Asking for fewer dimensions gives the full vector's prefix at unit length, as Matryoshka models do."""
    full = (await driver().embed(request("text"), ctx())).vectors[0]
    short = (await driver().embed(request("text", dimensions=4), ctx())).vectors[0]
    norm = math.sqrt(math.fsum(x * x for x in full[:4]))
    assert short == pytest.approx([x / norm for x in full[:4]], abs=1e-5)


async def test_a_length_beyond_the_model_is_a_bad_request():
    """The mock refuses more dimensions than its model returns, as real upstreams do."""
    with pytest.raises(BadRequest, match="at most 16"):
        await driver().embed(request("x", dimensions=32), ctx())


async def test_token_arrays_are_embedded():
    """The mock takes token-id arrays (and reports one token per id)."""
    reply = await driver().embed(request([[1, 2, 3], [4]]), ctx())
    assert reply.vectors[0] == mock_vector([1, 2, 3], 16)
    assert reply.usage.prompt_tokens == 4


async def test_without_a_model_length_the_default_is_used():
    """A call context naming no length (a driver used by hand) gets the mock's default length."""
    reply = await driver().embed(request("x"), ctx(dimensions=None))
    assert len(reply.vectors[0]) == 16


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"kind": "status", "status": 429, "retry_after": "2s"}, ErrorClass.RATE_LIMIT),
        ({"kind": "status", "status": 503}, ErrorClass.OVERLOADED),
        ({"kind": "drop"}, ErrorClass.CONNECTION),
        ({"kind": "malformed"}, ErrorClass.PROTOCOL),
        ({"kind": "context_length"}, ErrorClass.CONTEXT_WINDOW),
    ],
)
async def test_faults_apply_to_embeddings(fault, error):
    """The mock's faults (options or per-request directive) strike embeddings as they strike chat."""
    with pytest.raises(ProviderError) as from_options:
        await driver(faults=[fault]).embed(request("x"), ctx())
    with pytest.raises(ProviderError) as from_directive:
        await driver(request_directives=True).embed(request("x", turnout_mock={"faults": [fault]}), ctx())
    assert from_options.value.error_class is error is from_directive.value.error_class


async def test_hang_times_out_within_the_attempt():
    """A hanging mock times out at the attempt's budget."""
    with pytest.raises(UpstreamTimeout):
        await driver(faults=[{"kind": "hang"}]).embed(request("x"), ctx(attempt_timeout=0.05))


async def test_cut_answer_is_a_connection_error():
    """A body cut half-way is a connection error (the attempt may fail over)."""
    with pytest.raises(UpstreamConnectionError):
        await driver(faults=[{"kind": "cut"}]).embed(request("x"), ctx())
