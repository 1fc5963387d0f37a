"""The embeddings endpoints of the per-format fakes, each speaking its API's exact wire format.

Every fake's `embeddings(...)` behaviour reads the request, refuses what the real API refuses (with that API's own
error status and body), and answers with deterministic vectors: `expected_vector(item, native, asked)`, the mock
driver's unit vectors, which a test can compute too. A shorter length asked for is the full vector's prefix at
unit length again, as Matryoshka models answer. `asked_dimensions(recorded)` reads the length a recorded request
asked for, in the format's own field. Errors use each fake's `error(...)` (the same bodies as its chat endpoint).

- OpenAI (`POST .../embeddings`): `input` a string, strings, token ids or token-id arrays; unknown parameters are
  refused (400 "Unrecognized request argument supplied"); `encoding_format: base64` answers base64 float32;
  `usage.prompt_tokens` counts words (token ids one each).
- Gemini (`models/{m}:embedContent`, `models/{m}:batchEmbedContents`): one `content` with text parts, or up to 100
  `requests` each naming `models/{m}`; `outputDimensionality`; no usage, as the real API.
- Ollama (`POST /api/embed`): `input` a string or strings; `dimensions` shortens below the model's own length;
  `prompt_eval_count`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from aiohttp import web

from turnout.drivers.mock_vectors import mock_vector
from turnout.embeddings import as_base64
from turnout.testing.fake import Behaviour, FakeUpstream, RecordedRequest

DEFAULT_DIMENSIONS = 8  # the length a fake embeddings model returns unless told otherwise
_UNSET: Any = object()


def expected_vector(
    item: str | Sequence[int], native: int = DEFAULT_DIMENSIONS, asked: int | None = None
) -> list[float]:
    """The vector a fake returns for `item` from a model of `native` dimensions, cut to `asked`."""
    return mock_vector(item, native, asked)


def word_tokens(item: str | Sequence[int]) -> int:
    """What the fakes count as an input's tokens: its words (token ids one each)."""
    return len(item.split()) if isinstance(item, str) else len(item)


class EmbeddingsFake:
    """The part of a per-format fake that serves embeddings (mixed into OpenAIFake, GeminiFake, OllamaFake)."""

    embeddings_paths: ClassVar[tuple[str, ...]] = ()
    refuses_excess_dimensions: ClassVar[bool] = True  # a length beyond the model's: 400 (Ollama ignores it)

    def embeddings(
        self, *, dimensions: int = DEFAULT_DIMENSIONS, vectors: Sequence[Any] | None = None, usage: Any = _UNSET
    ) -> Behaviour:
        """Answer an embeddings request as a model of `dimensions` would. `vectors` replaces the computed vectors
        with exactly these JSON values (wrong lengths, garbage); `usage` an int overrides the reported token count,
        None leaves usage out (where the format reports it)."""

        async def behave(request: web.Request, upstream: FakeUpstream) -> web.StreamResponse:
            try:
                body = json.loads(await request.read())
            except ValueError:
                body = None
            refusal = self.embeddings_refusal(request, body, dimensions)
            if refusal is not None:
                status, error = refusal
                return web.json_response(error, status=status)
            items, asked = self.embeddings_inputs(request, body)
            computed: list[Any] = [expected_vector(item, dimensions, asked) for item in items]
            count = sum(word_tokens(item) for item in items) if usage is _UNSET else usage
            answer = self.embeddings_answer(body, list(vectors) if vectors is not None else computed, count)
            return web.json_response(answer)

        return behave

    # -- what each format defines

    def embeddings_refusal(self, request: web.Request, body: Any, native: int) -> tuple[int, Any] | None:
        """(status, body) the real API answers an invalid request with, or None."""
        raise NotImplementedError

    def embeddings_inputs(self, request: web.Request, body: Any) -> tuple[list[str | list[int]], int | None]:
        """(the items to embed, the length asked for) of a valid request."""
        raise NotImplementedError

    def embeddings_answer(self, body: Any, vectors: list[Any], tokens: int | None) -> Any:
        raise NotImplementedError

    def asked_dimensions(self, recorded: RecordedRequest) -> int | None:
        """The length a recorded embeddings request asked for (None: the model's own)."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------- OpenAI

_OPENAI_FIELDS = frozenset({"input", "model", "dimensions", "encoding_format", "user"})


def _openai_error(message: str, param: str | None = None) -> tuple[int, Any]:
    return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}


class OpenAIEmbeddings(EmbeddingsFake):
    embeddings_paths = ("/embeddings",)

    def embeddings_refusal(self, request: web.Request, body: Any, native: int) -> tuple[int, Any] | None:
        if not isinstance(body, dict):
            return _openai_error("We could not parse the JSON body of your request.")
        for key in body:
            if key not in _OPENAI_FIELDS:
                return _openai_error(f"Unrecognized request argument supplied: {key}")
        if not isinstance(body.get("model"), str):
            return _openai_error("you must provide a model parameter")
        if "input" not in body:
            return _openai_error("'input' is a required property")
        if _openai_items(body["input"]) is None:
            return _openai_error(
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
            )
        dims = body.get("dimensions")
        if dims is not None and (type(dims) is not int or not 1 <= dims <= native):
            return _openai_error(
                f"Invalid value for 'dimensions' = {dims}. Must be between 1 and {native}.", "dimensions"
            )
        if body.get("encoding_format", "float") not in ("float", "base64"):
            return _openai_error("Invalid value for 'encoding_format'.", "encoding_format")
        return None

    def embeddings_inputs(self, request: web.Request, body: Any) -> tuple[list[str | list[int]], int | None]:
        return _openai_items(body["input"]) or [], body.get("dimensions")

    def embeddings_answer(self, body: Any, vectors: list[Any], tokens: int | None) -> Any:
        if body.get("encoding_format") == "base64":
            vectors = [as_base64(v) if isinstance(v, list) else v for v in vectors]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        answer: dict[str, Any] = {"object": "list", "data": data, "model": getattr(self, "model", "")}
        if tokens is not None:
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return answer

    def asked_dimensions(self, recorded: RecordedRequest) -> int | None:
        return (recorded.json or {}).get("dimensions")


def _openai_items(value: Any) -> list[str | list[int]] | None:
    """OpenAI's accepted inputs: a non-empty string, strings, token ids, or token-id arrays; None otherwise."""
    if isinstance(value, str):
        return [value] if value else None
    if not isinstance(value, list) or not value:
        return None
    if all(type(t) is int for t in value):
        return [value]
    if len(value) > 2048:
        return None
    if all(isinstance(t, str) and t for t in value):
        return list(value)
    if all(isinstance(t, list) and t and all(type(x) is int for x in t) for t in value):
        return list(value)
    return None


# ---------------------------------------------------------------------------------------------- Gemini

_GEMINI_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})
GEMINI_BATCH_LIMIT = 100


def _gemini_error(message: str) -> tuple[int, Any]:
    return 400, {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}


class GeminiEmbeddings(EmbeddingsFake):
    embeddings_paths = (":embedContent", ":batchEmbedContents")

    @staticmethod
    def _path_model(request: web.Request) -> str:
        return request.path.rsplit("/models/", 1)[-1].split(":", 1)[0]

    def embeddings_refusal(self, request: web.Request, body: Any, native: int) -> tuple[int, Any] | None:
        if not isinstance(body, dict):
            return _gemini_error("Invalid JSON payload received.")
        if request.path.endswith(":embedContent"):
            return _gemini_request_problem(body, "", native, None)
        for key in body:
            if key != "requests":
                return _gemini_error(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _gemini_error("* BatchEmbedContentsRequest.requests: requests is required")
        if len(requests) > GEMINI_BATCH_LIMIT:
            return _gemini_error("* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch")
        model = f"models/{self._path_model(request)}"
        for i, item in enumerate(requests):
            problem = _gemini_request_problem(item, f"requests[{i}].", native, model)
            if problem is not None:
                return problem
        return None

    def embeddings_inputs(self, request: web.Request, body: Any) -> tuple[list[str | list[int]], int | None]:
        requests = [body] if request.path.endswith(":embedContent") else body["requests"]
        texts: list[str | list[int]] = ["".join(p["text"] for p in r["content"]["parts"]) for r in requests]
        return texts, requests[0].get("outputDimensionality")

    def embeddings_answer(self, body: Any, vectors: list[Any], tokens: int | None) -> Any:
        if "requests" in body:
            return {"embeddings": [{"values": v} for v in vectors]}
        return {"embedding": {"values": vectors[0] if vectors else []}}

    def asked_dimensions(self, recorded: RecordedRequest) -> int | None:
        body = recorded.json or {}
        first = (body.get("requests") or [body])[0]
        return first.get("outputDimensionality")


def _gemini_request_problem(item: Any, where: str, native: int, model: str | None) -> tuple[int, Any] | None:
    """One EmbedContentRequest checked as Gemini does; a batch's must name the URL's model."""
    if not isinstance(item, dict):
        return _gemini_error(f"* {where}content: must be an object")
    for key in item:
        if key not in _GEMINI_FIELDS:
            return _gemini_error(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
            )
    if model is not None and item.get("model") != model:
        return _gemini_error(f"* BatchEmbedContentsRequest.{where}model: model must be {model}")
    content = item.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) and "text" in p for p in parts):
        return _gemini_error(f"* EmbedContentRequest.{where}content: content is required, with text parts")
    dims = item.get("outputDimensionality")
    if dims is not None and (type(dims) is not int or not 1 <= dims <= native):
        return _gemini_error(f"* EmbedContentRequest.{where}output_dimensionality: must be between 1 and {native}")
    return None


# ---------------------------------------------------------------------------------------------- Ollama


class OllamaEmbeddings(EmbeddingsFake):
    embeddings_paths = ("/api/embed",)
    refuses_excess_dimensions = False

    def embeddings_refusal(self, request: web.Request, body: Any, native: int) -> tuple[int, Any] | None:
        if not isinstance(body, dict):
            return 400, {"error": "missing request body"}
        if not isinstance(body.get("model"), str) or not body["model"]:
            return 400, {"error": "model is required"}
        value = body.get("input")
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(t, str) for t in value))
        if not ok:
            return 400, {"error": "invalid input type"}
        dims = body.get("dimensions")
        if dims is not None and type(dims) is not int:
            return 400, {"error": "json: cannot unmarshal into Go struct field EmbedRequest.dimensions of type int"}
        return None

    def embeddings_inputs(self, request: web.Request, body: Any) -> tuple[list[str | list[int]], int | None]:
        value = body["input"]
        dims = body.get("dimensions")
        return ([value] if isinstance(value, str) else list(value)), dims or None  # at or above its own: ignored

    def embeddings_answer(self, body: Any, vectors: list[Any], tokens: int | None) -> Any:
        answer: dict[str, Any] = {
            "model": body.get("model"),
            "embeddings": vectors,
            "total_duration": 14143917,
            "load_duration": 1019500,
        }
        if tokens:  # omitempty, as Ollama's Go struct
            answer["prompt_eval_count"] = tokens
        return answer

    def asked_dimensions(self, recorded: RecordedRequest) -> int | None:
        return (recorded.json or {}).get("dimensions")
