"""What the built-in drivers share for embeddings: reading vectors off the wire, the length to ask for, and refusing
token-id input an upstream cannot take.

A vector read from an upstream is kept as it came (floats, or OpenAI's base64 text) after a check that costs one
C-speed pass: a float list must hold only finite numbers, base64 text must decode to whole float32 values. Anything
else is a protocol error (the attempt fails over), never a malformed vector passed on to a client.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from turnout.embeddings import Vector, finite_floats
from turnout.errors import BadRequest, ProtocolError
from turnout.types import Usage

if TYPE_CHECKING:
    from turnout.drivers.base import EmbeddingContext
    from turnout.embeddings import EmbeddingRequest


def parse_vector(value: Any, *, index: int, provider: str, model: str) -> Vector:
    """One vector from an upstream answer: a list of finite numbers, or base64 of packed float32."""
    if isinstance(value, str):
        try:
            size = len(binascii.a2b_base64(value, strict_mode=True))
        except (binascii.Error, ValueError):
            size = -1
        if size > 0 and size % 4 == 0:
            return value
    elif finite_floats(value) and value:
        return value  # type: ignore[no-any-return]
    raise ProtocolError(
        f"upstream sent an invalid vector for input {index} (not a list of finite numbers nor base64 float32)",
        provider=provider,
        model=model,
    )


def wanted_dimensions(request: EmbeddingRequest, ctx: EmbeddingContext) -> int | None:
    """The length to ask the upstream for: the request's, unless it is the model's own length (then none is sent:
    models that return only their own length, such as text-embedding-ada-002, refuse the parameter)."""
    asked = request.dimensions
    return None if asked is None or asked == ctx.dimensions else asked


def refuse_token_input(request: EmbeddingRequest, *, provider: str, model: str) -> None:
    """A BadRequest (never sent) for token-id input to an upstream that takes text only."""
    if request.tokens:
        raise BadRequest(
            "this upstream embeds text only, not token-id arrays", provider=provider, model=model, code="token_input"
        )


def texts(request: EmbeddingRequest) -> list[str]:
    """The inputs as strings (after `refuse_token_input`)."""
    return [item for item in request.inputs if isinstance(item, str)]


def prompt_usage(value: Any) -> Usage:
    """Usage from a reported prompt-token count (embeddings produce no output tokens); unknown when absent."""
    if type(value) is int and value >= 0:
        return Usage(value, 0)
    return Usage.UNKNOWN


def expect_mapping(data: Any, key: str, *, provider: str, model: str) -> Any:
    """`data[key]` of an upstream JSON object, or a protocol error naming what is missing."""
    value = data.get(key) if isinstance(data, Mapping) else None
    if value is None:
        raise ProtocolError(f"upstream answer has no '{key}'", provider=provider, model=model)
    return value
