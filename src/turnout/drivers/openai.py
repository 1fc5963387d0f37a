"""The `openai` driver (OpenAI Chat Completions and every compatible server) and its Azure flavour.

Near-passthrough: the client's body goes upstream with only `model` replaced (plus `stream_options.include_usage`
when streaming, and an optional `max_tokens` <-> `max_completion_tokens` rename from the model's options).
A continuation (`mid_stream: continue`) is sent in the upstream's prefill dialect, `options.prefill` on the
provider or the model (`openai_prefill`); without one the driver does not offer "prefill" at all.

The wire details (body rewriting, parsing, the byte-level stream state machine) live in `openai_wire`.

Embeddings (`POST .../embeddings`) are a passthrough too: the client's body with `model` replaced and `dimensions`
sent only when it differs from the model's own length; vectors come back in the encoding the client asked for
(floats, or base64 that reaches a base64 client untouched). Token-id arrays go through as they are.

A request that came in through the sidecar's Responses API (`ChatRequest.native` of format "openai.responses") is
sent as the client wrote it to the upstream's `/responses` when the deployment serves that API: OpenAI itself by
default, any other server when the provider or the model sets `responses: true` (`turnout.drivers.openai_responses`).
Any other deployment gets the canonical translation on `/chat/completions`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import urlsplit

from turnout.config import ProviderSpec
from turnout.drivers import openai_responses
from turnout.drivers._common import auth_headers, fetch_model_list, model_info
from turnout.drivers._embed import expect_mapping, parse_vector, prompt_usage, wanted_dimensions
from turnout.drivers._http import (
    dumps,
    iter_sse_payloads,
    open_response,
    probe_credentials,
    request_json,
    settle,
    strip_directives,
    transport_error,
    validate_options,
)
from turnout.drivers.base import CallContext, CredentialCheck, EmbeddingContext, ModelInfo
from turnout.drivers.openai_prefill import DIALECTS, HINT, OPTION_SCHEMA, dialect_of
from turnout.drivers.openai_wire import StreamState, build_body, parse_usage, response_from
from turnout.embeddings import EmbeddingRequest, EmbeddingResponse, Vector
from turnout.errors import BadRequest, ProtocolError, ProviderError
from turnout.reasoning import CHAT
from turnout.types import ChatChunk, ChatRequest, ChatResponse, ChunkBatch

# The client formats sent as the client wrote them: an OpenAI chat body always (only `model` replaced), a Responses
# body where the upstream serves that API.
CHAT_ONLY = frozenset({CHAT})
RESPONSES = frozenset({CHAT, openai_responses.NATIVE_FORMAT})

# Re-exported for callers that parse OpenAI bodies themselves.
__all__ = ["DEFAULT_BASE_URL", "AzureOpenAIDriver", "OpenAIDriver", "build_body", "parse_usage", "response_from"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
OPENAI_HOST = "api.openai.com"
_RESPONSES_OPTION = {
    "type": "boolean",
    "description": "the upstream serves the Responses API (/responses): Responses clients' requests are sent there "
    "as they are (default: true for OpenAI itself, false for other servers)",
}


# ---------------------------------------------------------------------------------------------- the driver


class OpenAIDriver:
    """OpenAI Chat Completions over `base_url` (default https://api.openai.com/v1), Bearer auth."""

    name: ClassVar[str] = "openai"
    options_schema: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "organization": {"type": "string", "description": "sent as OpenAI-Organization"},
                "project": {"type": "string", "description": "sent as OpenAI-Project"},
                "prefill": OPTION_SCHEMA,
                "responses": _RESPONSES_OPTION,
            },
        }
    )
    model_options_schema: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_tokens_param": {
                    "enum": ["max_tokens", "max_completion_tokens"],
                    "description": "send the client's output limit under this name (reasoning models want "
                    "max_completion_tokens; older compatible servers max_tokens)",
                },
                "prefill": {**OPTION_SCHEMA, "description": "this model's prefill dialect (overrides the provider's)"},
                "responses": {
                    **_RESPONSES_OPTION,
                    "description": "this model serves the Responses API (overrides the provider's `responses`)",
                },
            },
        }
    )
    capability_hints: ClassVar[Mapping[str, str]] = MappingProxyType({"prefill": HINT})
    BASE_CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"tools", "vision", "json", "streaming", "reasoning"})
    capabilities: frozenset[str] = BASE_CAPABILITIES  # per instance: plus prefill when the provider names a dialect
    embedding_token_input: ClassVar[bool] = True

    def __init__(self, spec: ProviderSpec) -> None:
        validate_options(self.name, spec.name, self.options_schema, spec.options)
        self.spec = spec
        self._base = (spec.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.capabilities = self.capabilities_for(spec.options, {})
        responses = spec.options.get("responses")
        self._responses = self._serves_responses_by_default() if responses is None else bool(responses)
        self.native_formats = RESPONSES if self._responses else CHAT_ONLY

    def _serves_responses_by_default(self) -> bool:
        """OpenAI itself serves the Responses API; another server only when the file says so."""
        return urlsplit(self._base).hostname == OPENAI_HOST

    def native_formats_for(self, model_options: Mapping[str, Any]) -> frozenset[str]:
        """The client formats sent as they are for one model: Responses when the model (or else the provider)
        serves that API."""
        declared = model_options.get("responses")
        serves = self._responses if declared is None else bool(declared)
        return RESPONSES if serves else CHAT_ONLY

    def _native(self, request: ChatRequest, ctx: CallContext) -> bool:
        """Send this request to `/responses` as the client wrote it? (A chat request pays one attribute test.)"""
        native = request.native
        if native is None or native.format != openai_responses.NATIVE_FORMAT:
            return False
        declared = ctx.model_options.get("responses")
        return self._responses if declared is None else bool(declared)

    @classmethod
    def capabilities_for(cls, options: Mapping[str, Any], model_options: Mapping[str, Any]) -> frozenset[str]:
        """Everything but prefill, plus prefill when the provider or the model names a known dialect."""
        if dialect_of(options, model_options) is None:
            return cls.BASE_CAPABILITIES
        return cls.BASE_CAPABILITIES | {"prefill"}

    # -- wire details a flavour may change

    def _chat_url(self, ctx: CallContext) -> str:
        return f"{self._base}/chat/completions"

    def _responses_url(self, ctx: CallContext) -> str:
        return f"{self._base}/responses"

    def _models_url(self) -> str:
        return f"{self._base}/models"

    def _embeddings_url(self, ctx: CallContext) -> str:
        return f"{self._base}/embeddings"

    def _params(self) -> Mapping[str, str] | None:
        return None

    @functools.cached_property
    def _request_headers(self) -> Mapping[str, str]:
        """Built once per driver: the spec (and so every header) is frozen, and this is on every request."""
        return MappingProxyType(self._headers())

    def _headers(self) -> dict[str, str]:
        headers = auth_headers(self.spec)
        options = self.spec.options
        if "organization" in options:
            headers["OpenAI-Organization"] = options["organization"]
        if "project" in options:
            headers["OpenAI-Project"] = options["project"]
        return headers

    def _prefill(self, request: ChatRequest, ctx: CallContext) -> str | None:
        """The dialect a continuation is sent in (None for any other request); refuses one it cannot send."""
        if request.assistant_prefix is None:
            return None
        dialect = dialect_of(self.spec.options, ctx.model_options)
        if dialect is None:
            raise BadRequest(
                f"this upstream cannot continue an assistant prefix: no prefill dialect ({', '.join(DIALECTS)}) "
                "is named in options.prefill",
                provider=self.spec.name,
                model=ctx.model,
            )
        return dialect

    # -- calls

    async def send(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        provider = self.spec.name
        if self._native(request, ctx):
            return await openai_responses.send(
                request, ctx, self._responses_url(ctx), provider=provider, headers=self._request_headers,
                params=self._params(),
            )  # fmt: skip
        body = build_body(request, ctx, stream=False, prefill=self._prefill(request, ctx))
        data = await request_json(
            ctx, "POST", self._chat_url(ctx), provider=provider, model=ctx.model,
            headers=self._request_headers, data=dumps(body), params=self._params(),
        )  # fmt: skip
        return response_from(data, provider=provider, model=ctx.model)

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk | ChunkBatch]:
        provider, model = self.spec.name, ctx.model
        if self._native(request, ctx):
            chunks = openai_responses.stream(
                request, ctx, self._responses_url(ctx), provider=provider, headers=self._request_headers,
                params=self._params(),
            )  # fmt: skip
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                await chunks.aclose()
            return
        body = build_body(request, ctx, stream=True, prefill=self._prefill(request, ctx))
        resp = await open_response(
            ctx, "POST", self._chat_url(ctx), provider=provider, model=model,
            headers=self._request_headers, data=dumps(body), params=self._params(), stream=True,
        )  # fmt: skip
        state = StreamState(provider, model)
        batching = ctx.batch
        # Close the parser explicitly: an abandoned async generator is finalized through
        # call_soon_threadsafe (a self-pipe write and an extra loop wake-up per stream).
        reads = iter_sse_payloads(resp.content)
        completed = False
        try:
            async for raws in reads:
                at, n = 0, len(raws)
                while at < n and not state.done:
                    items, at = state.take(raws, batching, at)
                    for item in items:
                        yield item
                    if state.failure is not None:
                        raise state.failure
                if state.done:
                    break
            completed = True
        except ProviderError:
            raise
        except Exception as exc:
            raise transport_error(exc, provider=provider, model=model, after_first_token=state.content) from exc
        finally:
            await reads.aclose()
            settle(resp, completed)
        for chunk in state.finish():
            yield chunk

    async def embed(self, request: EmbeddingRequest, ctx: EmbeddingContext) -> EmbeddingResponse:
        provider = self.spec.name
        data = await request_json(
            ctx, "POST", self._embeddings_url(ctx), provider=provider, model=ctx.model,
            headers=self._request_headers, data=dumps(embeddings_body(request, ctx)), params=self._params(),
        )  # fmt: skip
        return embeddings_from(data, provider=provider, model=ctx.model)

    async def list_models(self, ctx: CallContext) -> list[ModelInfo]:
        page = await fetch_model_list(
            ctx,
            self._models_url(),
            provider=self.spec.name,
            key="data",
            headers=self._request_headers,
            params=self._params(),
        )
        return [
            model_info(m, str(m["id"]), str(m.get("owned_by") or ""))
            for m in page["data"]
            if isinstance(m, Mapping) and "id" in m
        ]

    async def check_credentials(self, ctx: CallContext) -> CredentialCheck:
        """List models (cheap, authenticated); a failure is reported, never raised."""
        return await probe_credentials(self.spec.name, ctx, self.list_models(ctx))


class AzureOpenAIDriver(OpenAIDriver):
    """Azure OpenAI: deployment URLs with `api-version` (or the v1 API with `v1: true`), `api-key` auth."""

    name: ClassVar[str] = "azure"
    options_schema: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "api_version": {"type": "string", "minLength": 1, "description": "e.g. 2024-10-21"},
                "v1": {"type": "boolean", "description": "use the v1 API (/openai/v1, no api-version)"},
                "auth": {"enum": ["api-key", "bearer"], "description": "api-key header (default) or Entra ID token"},
                "responses": {
                    **_RESPONSES_OPTION,
                    "description": "the resource serves the Responses API (/openai/v1/responses, or /openai/responses"
                    " with api_version 2025-03-01-preview or later): Responses clients' requests go there as they "
                    "are (default false)",
                },
            },
        }
    )
    model_options_schema: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_tokens_param": OpenAIDriver.model_options_schema["properties"]["max_tokens_param"],
                "responses": OpenAIDriver.model_options_schema["properties"]["responses"],
            },
        }
    )
    capability_hints: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"prefill": "Azure OpenAI, like OpenAI, cannot continue a partial answer"}
    )

    @classmethod
    def capabilities_for(cls, options: Mapping[str, Any], model_options: Mapping[str, Any]) -> frozenset[str]:
        return cls.BASE_CAPABILITIES

    def _prefill(self, request: ChatRequest, ctx: CallContext) -> str | None:
        if request.assistant_prefix is not None:
            raise BadRequest("Azure OpenAI cannot continue an assistant prefix (no prefill)", provider=self.spec.name)
        return None

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        if not spec.base_url:
            raise ValueError(
                f"provider '{spec.name}' (driver azure): base_url is required (https://RESOURCE.openai.azure.com)"
            )
        self._v1 = bool(spec.options.get("v1"))
        if not self._v1 and not spec.options.get("api_version"):
            raise ValueError(f"provider '{spec.name}' (driver azure): options.api_version is required unless v1: true")
        self._base = spec.base_url.rstrip("/")

    def _chat_url(self, ctx: CallContext) -> str:
        if self._v1:
            return f"{self._base}/openai/v1/chat/completions"
        return f"{self._base}/openai/deployments/{ctx.model}/chat/completions"

    def _models_url(self) -> str:
        return f"{self._base}/openai/v1/models" if self._v1 else f"{self._base}/openai/models"

    def _embeddings_url(self, ctx: CallContext) -> str:
        if self._v1:
            return f"{self._base}/openai/v1/embeddings"
        return f"{self._base}/openai/deployments/{ctx.model}/embeddings"

    def _responses_url(self, ctx: CallContext) -> str:
        return f"{self._base}/openai/v1/responses" if self._v1 else f"{self._base}/openai/responses"

    def _serves_responses_by_default(self) -> bool:
        return False  # which api_version a resource serves it with is the operator's to say

    def _params(self) -> Mapping[str, str] | None:
        return None if self._v1 else {"api-version": self.spec.options["api_version"]}

    def _headers(self) -> dict[str, str]:
        return auth_headers(self.spec, None if self.spec.options.get("auth") == "bearer" else "api-key")


# ---------------------------------------------------------------------------------------------- embeddings


def embeddings_body(request: EmbeddingRequest, ctx: EmbeddingContext) -> dict[str, Any]:
    """The client's embeddings body for this upstream: `model` replaced, `dimensions` only when not the model's own."""
    body = strip_directives(request.body)
    body["model"] = ctx.model
    asked = wanted_dimensions(request, ctx)
    if asked is None:
        body.pop("dimensions", None)
    else:
        body["dimensions"] = asked
    return body


def embeddings_from(data: Any, *, provider: str, model: str) -> EmbeddingResponse:
    """An OpenAI `list` of `embedding` objects: vectors put in `index` order, each checked."""
    items = expect_mapping(data, "data", provider=provider, model=model)
    if not isinstance(items, list):
        raise ProtocolError("upstream answer's 'data' is not a list", provider=provider, model=model)
    vectors: list[Vector | None] = [None] * len(items)
    for position, item in enumerate(items):
        index = item.get("index", position) if isinstance(item, Mapping) else None
        if type(index) is not int or not 0 <= index < len(items) or vectors[index] is not None:
            message = f"upstream answer's data[{position}] has no usable index"
            raise ProtocolError(message, provider=provider, model=model)
        vectors[index] = parse_vector(item.get("embedding"), index=index, provider=provider, model=model)
    usage = data.get("usage")
    return EmbeddingResponse(
        model=str(data.get("model") or model),
        vectors=tuple(vectors),  # type: ignore[arg-type]  # every slot filled: indexes are unique and in range
        usage=prompt_usage(usage.get("prompt_tokens")) if isinstance(usage, Mapping) else prompt_usage(None),
    )
