"""The canonical embeddings values: what a request may hold (and the 400 for what it may not), vector encodings,
and the OpenAI answer they render to."""

from __future__ import annotations

import base64
import struct

import pytest

from turnout.embeddings import (
    EmbeddingRequest,
    EmbeddingResponse,
    as_base64,
    as_floats,
    dimensions_of,
    finite_floats,
)
from turnout.errors import InvalidRequest
from turnout.types import Usage


@pytest.mark.parametrize(
    ("value", "inputs", "tokens"),
    [
        ("one text", ("one text",), False),
        (["a", "b"], ("a", "b"), False),
        ([1, 2, 3], ([1, 2, 3],), True),
        ([[1, 2], [3]], ([1, 2], [3]), True),
    ],
    ids=["string", "strings", "token ids", "token-id arrays"],
)
def test_every_openai_input_shape_is_read(value, inputs, tokens):
    """A string, strings, token ids and token-id arrays become the items to embed, in order."""
    request = EmbeddingRequest.create(model="embed", input=value)
    assert (request.inputs, request.tokens) == (inputs, tokens)


def test_token_estimates_are_per_input_and_in_total():
    """~4 characters per token for text (at least 1), one per token id; the largest input is kept for the window."""
    text = EmbeddingRequest.create(model="e", input=["x" * 10, "y", "z" * 40])
    assert (text.estimated_prompt_tokens, text.largest_input_tokens) == (3 + 1 + 10, 10)
    ids = EmbeddingRequest.create(model="e", input=[[1] * 7, [2] * 3])
    assert (ids.estimated_total_tokens, ids.largest_input_tokens) == (10, 7)


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"model": "e"}, "input", "'input' is required"),
        ({"model": "e", "input": ""}, "input", "empty string"),
        ({"model": "e", "input": []}, "input", "'input' is required"),
        ({"model": "e", "input": ["a", ""]}, "input", "input[1] must be a non-empty string"),
        ({"model": "e", "input": ["a", 3]}, "input", "mixes token ids"),
        ({"model": "e", "input": [[1], []]}, "input", "input[1] must be a non-empty array of token ids"),
        ({"model": "e", "input": [[1], [-2]]}, "input", "non-negative"),
        ({"model": "e", "input": [True, 1]}, "input", "mixes token ids"),  # a boolean is no token id
        ({"model": "e", "input": ["a"] * 2049}, "input", "at most 2048"),
        ({"model": "e", "input": "a", "dimensions": 0}, "dimensions", "positive integer"),
        ({"model": "e", "input": "a", "dimensions": "8"}, "dimensions", "positive integer"),
        ({"model": "e", "input": "a", "encoding_format": "int8"}, "encoding_format", "'float' or 'base64'"),
        ({"input": "a"}, "model", "'model' is required"),
        ([], None, "JSON object"),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(body, param, fragment):
    """Anything OpenAI would refuse is an InvalidRequest (a 400) naming the offending field; nothing is sent."""
    with pytest.raises(InvalidRequest) as info:
        EmbeddingRequest.from_openai(body)
    assert info.value.param == param
    assert fragment in info.value.message


def test_base64_is_little_endian_float32_and_round_trips():
    """`as_base64` packs little-endian float32 (OpenAI's format); `as_floats` reads it back; lengths agree."""
    floats = [0.5, -1.25, 3.0]
    packed = as_base64(floats)
    assert base64.b64decode(packed) == struct.pack("<3f", *floats)
    assert as_floats(packed) == floats
    assert dimensions_of(packed) == 3 == dimensions_of(floats)
    assert all(dimensions_of(as_base64([0.1] * n)) == n for n in range(1, 9))  # every padding length


@pytest.mark.parametrize(
    ("values", "ok"),
    [([0.1, -2, 3], True), ([0.1, float("nan")], False), ([float("inf")], False), (["1"], False), ("x", False)],
)
def test_finite_floats(values, ok):
    """Only a list of finite numbers passes (strings, NaN and infinity do not)."""
    assert finite_floats(values) is ok


def test_to_openai_renders_the_format_asked_for():
    """The answer is OpenAI's list of embedding objects, vectors as floats or base64, usage as prompt tokens."""
    reply = EmbeddingResponse(model="m", vectors=([0.5, 0.25], as_base64([1.0, 2.0])), usage=Usage(7, 0))
    floats = reply.to_openai()
    assert floats == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, 0.25]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 2.0]},
        ],
        "model": "m",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    packed = reply.to_openai("base64")["data"]
    assert [as_floats(item["embedding"]) for item in packed] == [[0.5, 0.25], [1.0, 2.0]]
    assert reply.dimensions == 2 and reply.embeddings == [[0.5, 0.25], [1.0, 2.0]]
    assert EmbeddingResponse(model="m", vectors=()).to_openai()["usage"] is None  # unknown, never zero
