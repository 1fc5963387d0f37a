"""The `ollama` driver: Ollama's native `/api/chat` (NDJSON streaming), translated to and from OpenAI chat.

The translation both ways (and the NDJSON stream state machine) lives in `ollama_wire`.

Embeddings go to `/api/embed` (text only: a string or a list of strings) with the provider's `keep_alive` and
`options`; a request for fewer dimensions becomes `dimensions` (Ollama cuts the vector and scales it to unit length
again). Usage is its `prompt_eval_count`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from turnout.config import ProviderSpec
from turnout.drivers._common import auth_headers, fetch_model_list, model_info
from turnout.drivers._embed import expect_mapping, parse_vector, prompt_usage, refuse_token_input, wanted_dimensions
from turnout.drivers._http import (
    dumps,
    iter_ndjson,
    open_request,
    probe_credentials,
    read_json,
    request_json,
    transport_error,
    validate_options,
)
from turnout.drivers._images import IMAGE_OPTIONS_SCHEMA
from turnout.drivers.base import CallContext, CredentialCheck, EmbeddingContext, ModelInfo
from turnout.drivers.ollama_wire import StreamState, build_body, call_id, response_from
from turnout.embeddings import EmbeddingRequest, EmbeddingResponse
from turnout.errors import BadRequest, ProtocolError, ProviderError
from turnout.types import ChatChunk, ChatRequest, ChatResponse

__all__ = ["DEFAULT_BASE_URL", "OllamaDriver", "call_id"]

DEFAULT_BASE_URL = "http://127.0.0.1:11434"


class OllamaDriver:
    """Ollama's native API at `base_url` (default http://127.0.0.1:11434); Bearer auth only if an api_key is set."""

    name: ClassVar[str] = "ollama"
    options_schema: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "keep_alive": {"type": ["string", "number"], "description": "how long the model stays loaded"},
                "think": {"type": ["boolean", "string"], "description": "thinking models: true/false or a level"},
                "options": {"type": "object", "description": "default model options (num_ctx, top_k, ...)"},
                **IMAGE_OPTIONS_SCHEMA,
            },
        }
    )
    capabilities: frozenset[str] = frozenset({"tools", "vision", "json", "streaming", "reasoning"})
    embedding_token_input: ClassVar[bool] = False

    def __init__(self, spec: ProviderSpec) -> None:
        validate_options(self.name, spec.name, self.options_schema, spec.options)
        self.spec = spec
        self._base = (spec.base_url or DEFAULT_BASE_URL).rstrip("/")

    @functools.cached_property
    def _request_headers(self) -> Mapping[str, str]:
        """Built once per driver: the spec (and so every header) is frozen, and this is on every request."""
        return MappingProxyType(self._headers())

    def _headers(self) -> dict[str, str]:
        return auth_headers(self.spec)

    def _check(self, request: ChatRequest) -> None:
        if request.assistant_prefix is not None:
            raise BadRequest("this driver cannot continue an assistant prefix (no prefill)", provider=self.spec.name)

    async def send(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        self._check(request)
        provider = self.spec.name
        body = await build_body(request, ctx, stream=False, provider=provider, defaults=self.spec.options)
        async with open_request(
            ctx, "POST", f"{self._base}/api/chat", provider=provider, model=ctx.model,
            headers=self._request_headers, data=dumps(body),
        ) as resp:  # fmt: skip
            data = await read_json(resp, provider=provider, model=ctx.model)
        return response_from(data, provider=provider, model=ctx.model)

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk]:
        self._check(request)
        provider, model = self.spec.name, ctx.model
        body = await build_body(request, ctx, stream=True, provider=provider, defaults=self.spec.options)
        state = StreamState(provider, model)
        async with open_request(
            ctx, "POST", f"{self._base}/api/chat", provider=provider, model=model,
            headers=self._request_headers, data=dumps(body), stream=True,
        ) as resp:  # fmt: skip
            # Close the parser explicitly: an abandoned async generator is finalized through
            # call_soon_threadsafe (a self-pipe write and an extra loop wake-up per stream).
            lines = iter_ndjson(resp.content)
            try:
                async for raw in lines:
                    for chunk in state.feed(raw):
                        yield chunk
                    if state.done:
                        return
            except ProviderError:
                raise
            except Exception as exc:
                raise transport_error(exc, provider=provider, model=model, after_first_token=state.content) from exc
            finally:
                await lines.aclose()
        raise ProtocolError(
            "stream ended before the answer was complete (no done:true line)",
            provider=provider,
            model=model,
            after_first_token=state.content,
        )

    async def embed(self, request: EmbeddingRequest, ctx: EmbeddingContext) -> EmbeddingResponse:
        provider, model = self.spec.name, ctx.model
        refuse_token_input(request, provider=provider, model=model)
        data = await request_json(
            ctx, "POST", f"{self._base}/api/embed", provider=provider, model=model,
            headers=self._request_headers, data=dumps(self._embed_body(request, ctx)),
        )  # fmt: skip
        found = expect_mapping(data, "embeddings", provider=provider, model=model)
        if not isinstance(found, list):
            raise ProtocolError("upstream answer's 'embeddings' is not a list", provider=provider, model=model)
        vectors = tuple(parse_vector(v, index=i, provider=provider, model=model) for i, v in enumerate(found))
        return EmbeddingResponse(model=model, vectors=vectors, usage=prompt_usage(data.get("prompt_eval_count")))

    def _embed_body(self, request: EmbeddingRequest, ctx: EmbeddingContext) -> dict[str, Any]:
        raw = request.body.get("input")
        body: dict[str, Any] = {"model": ctx.model, "input": raw if isinstance(raw, str) else list(request.inputs)}
        asked = wanted_dimensions(request, ctx)
        if asked is not None:
            body["dimensions"] = asked
        options = self.spec.options
        if "keep_alive" in options:
            body["keep_alive"] = options["keep_alive"]
        if options.get("options"):
            body["options"] = dict(options["options"])
        return body

    async def list_models(self, ctx: CallContext) -> list[ModelInfo]:
        page = await fetch_model_list(
            ctx, f"{self._base}/api/tags", provider=self.spec.name, key="models", headers=self._request_headers
        )
        return [
            model_info(m, str(m.get("name") or m.get("model")), "library")
            for m in page["models"]
            if isinstance(m, Mapping) and (m.get("name") or m.get("model"))
        ]

    async def check_credentials(self, ctx: CallContext) -> CredentialCheck:
        """List local models (`/api/tags`); a failure is reported, never raised."""
        return await probe_credentials(self.spec.name, ctx, self.list_models(ctx))
