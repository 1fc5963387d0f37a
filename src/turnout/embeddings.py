"""Canonical embeddings values: what a client asks of `POST /v1/embeddings` (or `router.embed`), and the answer.

The request *is* the OpenAI embeddings body the client sent (kept as is, never copied) plus the few fields routing
needs; the answer renders back to OpenAI's JSON exactly. A vector is kept in the form its upstream sent: a list of
floats, or OpenAI's base64 text (little-endian float32, packed). It is converted only when the client asked for
the other form (`as_floats`, `as_base64`), so a base64 answer from OpenAI reaches a base64 client (the `openai`
SDK's default) without a single float being parsed.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from turnout.errors import InvalidRequest
from turnout.types import Attempt, Usage, is_mapping

Vector = list[float] | str  # floats, or base64 of packed little-endian float32 (OpenAI's encoding_format: base64)
EncodingFormat = Literal["float", "base64"]
ENCODING_FORMATS = ("float", "base64")
MAX_INPUTS = 2048  # OpenAI's limit on the inputs of one request
_CHARS_PER_TOKEN = 4
_SWAP = sys.byteorder != "little"  # OpenAI's base64 is little-endian whatever the machine


# ---------------------------------------------------------------------------------------------- vectors


def as_floats(vector: Vector) -> list[float]:
    """The vector as floats (decoding base64 when that is how it came)."""
    if isinstance(vector, list):
        return vector
    packed = array("f")
    packed.frombytes(base64.b64decode(vector))
    if _SWAP:
        packed.byteswap()
    return packed.tolist()


def as_base64(vector: Vector) -> str:
    """The vector as OpenAI's base64 text (packing floats as little-endian float32 when that is how it came)."""
    if isinstance(vector, str):
        return vector
    packed = array("f", vector)
    if _SWAP:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def dimensions_of(vector: Vector) -> int:
    """The vector's length, without decoding base64 (4 bytes per float32)."""
    if isinstance(vector, list):
        return len(vector)
    size = len(vector) * 3 // 4 - (2 if vector.endswith("==") else 1 if vector.endswith("=") else 0)
    return size // 4


def finite_floats(values: Any) -> bool:
    """True for a list of finite numbers: one C-speed `sum` checks every element's type and finiteness at once
    (a string or null raises TypeError; a NaN or infinity makes the sum non-finite)."""
    if not isinstance(values, list):
        return False
    try:
        return math.isfinite(sum(values))
    except TypeError:
        return False


# ---------------------------------------------------------------------------------------------- request


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """The client's OpenAI embeddings body plus what routing needs to know about it.

    `inputs` are the items to embed, in order: strings, or token-id arrays when `tokens` (a single string or token
    array is one item). `dimensions` is the length the client asked for (None: the model's own);
    `encoding_format` how the client wants the vectors. Token estimates feed rate limits, pricing of an answer
    without usage, and the per-input window check (`largest_input_tokens`).
    """

    body: Mapping[str, Any]
    model: str
    inputs: tuple[str | Sequence[int], ...]
    tokens: bool = False
    dimensions: int | None = None
    encoding_format: EncodingFormat = "float"
    estimated_prompt_tokens: int = 0
    largest_input_tokens: int = 0

    stream: ClassVar[bool] = False  # embeddings never stream; what the shared dispatch code reads
    max_output_tokens: ClassVar[None] = None

    @property
    def estimated_total_tokens(self) -> int:
        return self.estimated_prompt_tokens

    @classmethod
    def create(cls, *, model: str, input: Any, **params: Any) -> EmbeddingRequest:
        """Build from keyword arguments, as `router.embed(model=..., input=..., **openai_params)`."""
        return cls.from_openai({"model": model, "input": input, **params})

    @classmethod
    def from_openai(cls, body: Any) -> EmbeddingRequest:
        """Validate an OpenAI embeddings body and derive routing fields.

        Raises InvalidRequest naming the offending field (`param`), so the sidecar answers 400 in OpenAI's shape
        and nothing malformed is ever sent upstream.
        """
        if not is_mapping(body):
            raise InvalidRequest("The request body must be a JSON object.", param=None)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
        inputs, tokens = _inputs(body.get("input"))
        sizes = [len(item) if tokens else max(1, math.ceil(len(item) / _CHARS_PER_TOKEN)) for item in inputs]
        return cls(
            body=body,
            model=model,
            inputs=inputs,
            tokens=tokens,
            dimensions=_dimensions(body.get("dimensions")),
            encoding_format=_encoding_format(body.get("encoding_format")),
            estimated_prompt_tokens=sum(sizes),
            largest_input_tokens=max(sizes),
        )


def _inputs(value: Any) -> tuple[tuple[str | Sequence[int], ...], bool]:
    """(the items to embed, whether they are token arrays); a 400 for anything OpenAI would refuse."""
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("'input' must not be an empty string.", param="input")
        return (value,), False
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            "'input' is required: a string, an array of strings, an array of token ids or of token-id arrays.",
            param="input",
        )
    if all(_is_token(t) for t in value):
        return (value,), True
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'input' holds {len(value)} items; at most {MAX_INPUTS} are allowed.", param="input")
    if any(_is_token(t) for t in value):
        raise InvalidRequest("'input' mixes token ids with other values.", param="input")
    if isinstance(value[0], str):
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise InvalidRequest(f"input[{i}] must be a non-empty string, like the other inputs.", param="input")
        return tuple(value), False
    for i, item in enumerate(value):
        if not isinstance(item, list) or not item or not all(_is_token(t) for t in item):
            raise InvalidRequest(
                f"input[{i}] must be a non-empty array of token ids (non-negative integers), like the other inputs.",
                param="input",
            )
    return tuple(value), True


def _is_token(value: Any) -> bool:
    return type(value) is int and value >= 0


def _dimensions(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise InvalidRequest("'dimensions' must be a positive integer.", param="dimensions")
    return value


def _encoding_format(value: Any) -> EncodingFormat:
    if value is None:
        return "float"
    if value not in ENCODING_FORMATS:
        raise InvalidRequest(f"'encoding_format' must be 'float' or 'base64', got {value!r}.", param="encoding_format")
    return value  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------- response


@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    """The vectors, one per input in order, and what serving them took.

    `model` is the upstream model that served them (as OpenAI reports it). The routing fields (`route`,
    `served_by`, `attempts`, `cost_usd`) are filled in by the router. When the upstream reported no usage (Gemini
    never does) the router prices the request from its token estimate and sets `usage_estimated`: the cost of an
    embedding is never unknown and never a made-up 0.
    """

    model: str
    vectors: tuple[Vector, ...]
    usage: Usage = Usage.UNKNOWN
    usage_estimated: bool = False
    route: str = ""
    served_by: str = ""
    attempts: tuple[Attempt, ...] = ()
    cost_usd: float | None = None
    encoding_format: EncodingFormat = "float"  # what `to_openai()` renders unless told otherwise

    @property
    def embeddings(self) -> list[list[float]]:
        """Every vector as floats."""
        return [as_floats(v) for v in self.vectors]

    @property
    def dimensions(self) -> int | None:
        return dimensions_of(self.vectors[0]) if self.vectors else None

    def to_openai(self, encoding_format: EncodingFormat | None = None) -> dict[str, Any]:
        """OpenAI's `list` of `embedding` objects, vectors as floats or base64 (default: what was asked)."""
        convert = as_base64 if (encoding_format or self.encoding_format) == "base64" else as_floats
        data = [{"object": "embedding", "index": i, "embedding": convert(v)} for i, v in enumerate(self.vectors)]
        return {"object": "list", "data": data, "model": self.model, "usage": self._usage()}

    def _usage(self) -> dict[str, Any] | None:
        prompt = self.usage.prompt_tokens
        if prompt is None:
            return None
        usage: dict[str, Any] = {"prompt_tokens": prompt, "total_tokens": prompt}
        if self.usage_estimated:
            usage["estimated"] = True  # the upstream reported none: turnout's estimate, flagged
        return usage
