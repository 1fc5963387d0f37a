"""The `gemini` driver: Google's Gemini Developer API (generateContent / streamGenerateContent), fully translated.

Translation lives in `gemini_request`, `gemini_response` and `gemini_stream`, image fetching (Gemini only takes
images inline) in `_images`; this module is the HTTP glue on top of `_http`.

Provider options: `api_version` (default v1beta; ignored when `base_url` already ends in a version),
`thought_signature_fallback` (default true: see `gemini_request`), `image_urls` (which image URLs may be fetched:
see `_images`), `max_image_bytes` and `max_request_image_bytes` (default 20 MB each, Gemini's inline request
limit). Prefill is not supported,
so "prefill" is not among the capabilities.

Embeddings: one input goes to `:embedContent`, several to `:batchEmbedContents` in batches of at most
`EMBED_BATCH` (Gemini's limit per call), one after the other within the attempt's budget. A request for fewer
dimensions becomes `outputDimensionality`. Gemini takes text only and reports no usage (the router then prices
the request from its token estimate, flagged).
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from turnout.config import ProviderSpec
from turnout.drivers._common import auth_headers, fetch_model_list, model_info
from turnout.drivers._embed import (
    expect_mapping,
    parse_vector,
    prompt_usage,
    refuse_token_input,
    texts,
    wanted_dimensions,
)
from turnout.drivers._http import (
    classify_status,
    dumps,
    iter_sse,
    open_request,
    parse_retry_after,
    probe_credentials,
    read_json,
    request_json,
    transport_error,
    validate_options,
)
from turnout.drivers._images import IMAGE_OPTIONS_SCHEMA, ImageFetcher
from turnout.drivers.base import CallContext, CredentialCheck, EmbeddingContext, ModelInfo
from turnout.drivers.gemini_request import build_request, remote_image_urls, thinking_conflict
from turnout.drivers.gemini_response import error_from_status, parse_response
from turnout.drivers.gemini_stream import GeminiStream
from turnout.embeddings import EmbeddingRequest, EmbeddingResponse
from turnout.errors import ProtocolError, ProviderError
from turnout.types import ChatChunk, ChatRequest, ChatResponse, Usage

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
_VERSIONS = ("/v1beta", "/v1", "/v1alpha")
_MAX_MODEL_PAGES = 20
EMBED_BATCH = 100  # batchEmbedContents takes at most 100 requests per call


class GeminiDriver:
    """Gemini over `base_url` (default https://generativelanguage.googleapis.com), `x-goog-api-key` auth."""

    name: ClassVar[str] = "gemini"
    options_schema: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "api_version": {
                    "type": "string",
                    "pattern": "^v[0-9a-z]+$",
                    "description": f"API version path segment (default {DEFAULT_API_VERSION})",
                },
                "thought_signature_fallback": {
                    "type": "boolean",
                    "description": "send Google's placeholder signature for tool calls that have none (default true)",
                },
                **IMAGE_OPTIONS_SCHEMA,
            },
        }
    )
    capabilities: frozenset[str] = frozenset({"tools", "vision", "json", "streaming", "reasoning"})
    embedding_token_input: ClassVar[bool] = False

    def __init__(self, spec: ProviderSpec) -> None:
        validate_options(self.name, spec.name, self.options_schema, spec.options)
        self.spec = spec
        base = (spec.base_url or DEFAULT_BASE_URL).rstrip("/")
        has_version = base.endswith(_VERSIONS)
        self._root = base if has_version else f"{base}/{spec.options.get('api_version', DEFAULT_API_VERSION)}"
        self._signature_fallback = spec.options.get("thought_signature_fallback", True)

    @functools.cached_property
    def _request_headers(self) -> Mapping[str, str]:
        """Built once per driver: the spec (and so every header) is frozen, and this is on every request."""
        return MappingProxyType(self._headers())

    def _headers(self) -> dict[str, str]:
        return auth_headers(self.spec, "x-goog-api-key")

    def _url(self, model: str, method: str) -> str:
        return f"{self._root}/models/{model.removeprefix('models/')}:{method}"

    async def _body(self, request: ChatRequest, ctx: CallContext) -> bytes:
        urls = remote_image_urls(request)
        images: dict[str, tuple[str, str]] = {}
        if urls:
            fetcher = ImageFetcher(ctx, provider=self.spec.name, options=self.spec.options)
            images = {url: await fetcher.fetch(url) for url in urls}
        body = build_request(
            request,
            model=ctx.model,
            provider=self.spec.name,
            images=images,
            signature_fallback=self._signature_fallback,
        )
        return dumps(body)

    @staticmethod
    def reasoning_conflict(request: ChatRequest, model_options: Mapping[str, Any]) -> str | None:
        """Why this request's reasoning cannot be sent (see `gemini_request`); None when it can."""
        return thinking_conflict(request)

    def _errors(self, model: str) -> Callable[[int, bytes, Mapping[str, str]], ProviderError]:
        """The error parser for `open_request`: google.rpc.Status bodies first, the generic mapping else."""
        provider = self.spec.name

        def parse(status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
            status_body = _status_body(body)
            if status_body is None:
                return classify_status(status, body, headers, provider=provider, model=model)
            return error_from_status(
                status_body, status=status, provider=provider, model=model, retry_after=parse_retry_after(headers)
            )

        return parse

    async def send(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        provider, model = self.spec.name, ctx.model
        data = await self._body(request, ctx)
        async with open_request(
            ctx, "POST", self._url(model, "generateContent"), provider=provider, model=model,
            headers=self._request_headers, data=data, error_parser=self._errors(model),
        ) as resp:  # fmt: skip
            payload = await read_json(resp, provider=provider, model=model)
        return parse_response(payload, provider=provider, model=model)

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk]:
        provider, model = self.spec.name, ctx.model
        data = await self._body(request, ctx)
        async with open_request(
            ctx, "POST", self._url(model, "streamGenerateContent"), provider=provider, model=model,
            headers=self._request_headers, data=data, params={"alt": "sse"}, stream=True,
            error_parser=self._errors(model),
        ) as resp:  # fmt: skip
            machine = GeminiStream(provider=provider, model=model)
            # Close the parser explicitly: an abandoned async generator is finalized through
            # call_soon_threadsafe (a self-pipe write and an extra loop wake-up per stream).
            events = iter_sse(resp.content)
            try:
                async for event in events:
                    for chunk in machine.feed(event.data):
                        yield chunk
            except ProviderError:
                raise
            except Exception as exc:
                raise transport_error(
                    exc, provider=provider, model=model, after_first_token=machine.emitted_content
                ) from exc
            finally:
                await events.aclose()
            for chunk in machine.finish():
                yield chunk

    async def embed(self, request: EmbeddingRequest, ctx: EmbeddingContext) -> EmbeddingResponse:
        provider, model = self.spec.name, ctx.model
        refuse_token_input(request, provider=provider, model=model)
        asked = wanted_dimensions(request, ctx)
        items = texts(request)
        if len(items) == 1:
            data = await self._post(ctx, "embedContent", _embed_request(items[0], None, asked))
            answers, counts = (
                [expect_mapping(data, "embedding", provider=provider, model=model)],
                [_prompt_tokens(data)],
            )
        else:
            answers, counts = await self._embed_batches(ctx, items, asked)
        vectors = tuple(
            parse_vector(_values(item), index=i, provider=provider, model=model) for i, item in enumerate(answers)
        )
        known = [count for count in counts if count is not None]
        usage = prompt_usage(sum(known)) if len(known) == len(counts) else Usage.UNKNOWN
        return EmbeddingResponse(model=model.removeprefix("models/"), vectors=vectors, usage=usage)

    async def _embed_batches(
        self, ctx: EmbeddingContext, items: list[str], asked: int | None
    ) -> tuple[list[Any], list[int | None]]:
        """`batchEmbedContents` over `items`, EMBED_BATCH at a time: (every embedding in order, reported counts)."""
        provider, model = self.spec.name, ctx.model
        name = f"models/{model.removeprefix('models/')}"
        answers: list[Any] = []
        counts: list[int | None] = []
        for start in range(0, len(items), EMBED_BATCH):
            batch = [_embed_request(text, name, asked) for text in items[start : start + EMBED_BATCH]]
            data = await self._post(ctx, "batchEmbedContents", {"requests": batch})
            found = expect_mapping(data, "embeddings", provider=provider, model=model)
            if not isinstance(found, list) or len(found) != len(batch):
                message = f"batchEmbedContents answered {len(found) if isinstance(found, list) else 'no list of'} "
                raise ProtocolError(f"{message}embeddings for {len(batch)} inputs", provider=provider, model=model)
            answers += found
            counts.append(_prompt_tokens(data))
        return answers, counts

    async def _post(self, ctx: CallContext, method: str, body: Mapping[str, Any]) -> Any:
        provider, model = self.spec.name, ctx.model
        return await request_json(
            ctx, "POST", self._url(model, method), provider=provider, model=model,
            headers=self._request_headers, data=dumps(body), error_parser=self._errors(model),
        )  # fmt: skip

    async def _models_page(self, ctx: CallContext, params: dict[str, str]) -> Mapping[str, Any]:
        return await fetch_model_list(
            ctx, f"{self._root}/models", provider=self.spec.name, key="models", headers=self._request_headers,
            params=params, error_parser=self._errors(""), optional=True,
        )  # fmt: skip

    async def list_models(self, ctx: CallContext) -> list[ModelInfo]:
        """GET /models, following `nextPageToken` (bounded); ids lose their `models/` prefix."""
        models: list[ModelInfo] = []
        params = {"pageSize": "1000"}
        for _ in range(_MAX_MODEL_PAGES):
            page = await self._models_page(ctx, params)
            for item in page.get("models", []):
                if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                    model_id = item["name"].removeprefix("models/")
                    models.append(model_info(item, model_id, "google", item.get("inputTokenLimit")))
            token = page.get("nextPageToken")
            if not isinstance(token, str) or not token:
                break
            params = {"pageSize": "1000", "pageToken": token}
        return models

    async def check_credentials(self, ctx: CallContext) -> CredentialCheck:
        """One page of one model: cheap and authenticated; a failure is reported, never raised."""
        return await probe_credentials(self.spec.name, ctx, self._models_page(ctx, {"pageSize": "1"}))


def _embed_request(text: str, model: str | None, dimensions: int | None) -> dict[str, Any]:
    """One EmbedContentRequest: the text as a single part; `model` is set inside a batch, as Gemini requires."""
    request: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
    if model is not None:
        request = {"model": model, **request}
    if dimensions is not None:
        request["outputDimensionality"] = dimensions
    return request


def _values(embedding: Any) -> Any:
    return embedding.get("values") if isinstance(embedding, Mapping) else None


def _prompt_tokens(data: Any) -> int | None:
    """A reported prompt-token count (`usageMetadata.promptTokenCount`; today's API sends none), or None."""
    usage = data.get("usageMetadata") if isinstance(data, Mapping) else None
    count = usage.get("promptTokenCount") if isinstance(usage, Mapping) else None
    return count if type(count) is int and count >= 0 else None


def _status_body(body: bytes) -> Mapping[str, Any] | None:
    """The `{"error": {...}}` google.rpc.Status body (also inside the array a non-SSE stream sends), or None."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, Mapping) and isinstance(data.get("error"), Mapping):
        return data
    return None
