"""The `anthropic` driver: the Messages API, fully translated both ways.

Translation lives in `request` (canonical -> wire), `response` (wire -> canonical, error
bodies) and `stream` (the named-event SSE state machine); this module is only the HTTP glue on top of
`_http` (one transport boundary, shared framing and status classification).

Provider options: `anthropic_version` (default 2023-06-01), `anthropic_beta` (string or list, sent comma-joined
as `anthropic-beta`), `auth` (`x-api-key`, the default, or `bearer` for gateways that want `Authorization`),
`default_max_tokens` (Anthropic requires `max_tokens`; used when the request has none). A model's
`options.default_max_tokens` or `options.max_output_tokens` in the routing file take precedence over the
provider's default; its `options.thinking` (`budget`, the default, or `adaptive`) names how it is asked to reason
(`thinking.py`), for a model that declares `reasoning`.

A request that came in as a Messages request (`ChatRequest.native`, from the sidecar's `/v1/messages`) is sent as
the client wrote it, with only `model` (and `stream`) replaced, and the client's `anthropic-beta` flags added to the
provider's; the answer goes back untranslated (`ChatResponse.native`, `NativeFrames` on stream chunks). Nothing the
client sent (cache_control markers, thinking blocks and their signatures, tool ids, server tools, fields added to
the API later) is lost on the way, and none of it is translated twice.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from turnout.config import ProviderSpec
from turnout.drivers._common import auth_headers, fetch_model_list, model_info
from turnout.drivers._http import (
    classify_status,
    dumps,
    iter_sse,
    open_request,
    parse_retry_after,
    probe_credentials,
    read_json,
    transport_error,
    validate_options,
)
from turnout.drivers._http import error_details as plain_error_details
from turnout.drivers.anthropic.request import NATIVE_FORMAT, build_request, native_body
from turnout.drivers.anthropic.response import classify, error_details, parse_response
from turnout.drivers.anthropic.stream import AnthropicStream
from turnout.drivers.anthropic.thinking import MODES as THINKING_MODES
from turnout.drivers.anthropic.thinking import thinking_conflict
from turnout.drivers.base import CallContext, CredentialCheck, ModelInfo
from turnout.errors import ErrorClass, ProviderError, provider_error
from turnout.types import ChatChunk, ChatRequest, ChatResponse

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
_MAX_MODEL_PAGES = 20


class AnthropicDriver:
    """Anthropic Messages API over `base_url` (default https://api.anthropic.com), `x-api-key` auth."""

    name: ClassVar[str] = "anthropic"
    options_schema: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "anthropic_version": {
                    "type": "string",
                    "minLength": 1,
                    "description": f"sent as anthropic-version (default {DEFAULT_VERSION})",
                },
                "anthropic_beta": {
                    "oneOf": [
                        {"type": "string", "minLength": 1},
                        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                    ],
                    "description": "beta feature flags, sent as anthropic-beta",
                },
                "auth": {
                    "enum": ["x-api-key", "bearer"],
                    "description": "send the key as x-api-key (default) or as Authorization: Bearer (gateways)",
                },
                "default_max_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "description": f"max_tokens when the request sets none (default {DEFAULT_MAX_TOKENS})",
                },
            },
        }
    )
    model_options_schema: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "default_max_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "max_tokens when the request sets none (overrides the provider's)",
                },
                "max_output_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "the same as default_max_tokens (an older name)",
                },
                "thinking": {
                    "enum": list(THINKING_MODES),
                    "description": "how a reasoning request is sent: budget (thinking with budget_tokens, the "
                    "default) or adaptive (thinking type adaptive with output_config.effort: models that refuse "
                    "a budget)",
                },
            },
        }
    )
    capabilities: frozenset[str] = frozenset({"tools", "vision", "json", "prefill", "streaming", "reasoning"})
    native_formats: ClassVar[frozenset[str]] = frozenset({NATIVE_FORMAT})

    def __init__(self, spec: ProviderSpec) -> None:
        validate_options(self.name, spec.name, self.options_schema, spec.options)
        self.spec = spec
        base = (spec.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._base = base.removesuffix("/v1")
        beta = spec.options.get("anthropic_beta")
        self._beta = ",".join(beta) if isinstance(beta, list) else beta
        self._version = spec.options.get("anthropic_version", DEFAULT_VERSION)
        self._default_max_tokens = spec.options.get("default_max_tokens", DEFAULT_MAX_TOKENS)

    @functools.cached_property
    def _request_headers(self) -> Mapping[str, str]:
        """Built once per driver: the spec (and so every header) is frozen, and this is on every request."""
        return MappingProxyType(self._headers())

    def _headers(self) -> dict[str, str]:
        headers = auth_headers(self.spec, None if self.spec.options.get("auth") == "bearer" else "x-api-key")
        headers["anthropic-version"] = self._version
        if self._beta:
            headers["anthropic-beta"] = self._beta
        return headers

    def _max_tokens(self, ctx: CallContext) -> int:
        for key in ("default_max_tokens", "max_output_tokens"):
            value = ctx.model_options.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return self._default_max_tokens

    def _body(self, request: ChatRequest, ctx: CallContext, *, stream: bool) -> bytes:
        if _is_native(request):
            return dumps(native_body(request, model=ctx.model, stream=stream))
        body = build_request(
            request, model=ctx.model, provider=self.spec.name, default_max_tokens=self._max_tokens(ctx),
            stream=stream, model_options=ctx.model_options,
        )  # fmt: skip
        return dumps(body)

    @staticmethod
    def reasoning_conflict(request: ChatRequest, model_options: Mapping[str, Any]) -> str | None:
        """Why this model cannot think in this translated request (see `thinking.py`); None when it can."""
        return thinking_conflict(request, model_options)

    def _headers_for(self, request: ChatRequest) -> Mapping[str, str]:
        """The provider's headers, plus the `anthropic-beta` flags of a native client (provider's first, no repeats)."""
        native = request.native
        client_beta = native.headers.get("anthropic-beta") if native is not None and _is_native(request) else None
        if not client_beta:
            return self._request_headers
        flags = [f.strip() for f in (self._beta or "").split(",") + client_beta.split(",") if f.strip()]
        return {**self._request_headers, "anthropic-beta": ",".join(dict.fromkeys(flags))}

    def _errors(self, model: str) -> Callable[[int, bytes, Mapping[str, str]], ProviderError]:
        """The error parser for `open_request`: Anthropic's error.type first, the generic status mapping else."""
        provider = self.spec.name

        def parse(status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
            message, kind = error_details(body)
            error_class = classify(status, kind, message)
            if error_class is ErrorClass.RATE_LIMIT and (headers.get("x-should-retry") or "").lower() == "false":
                error_class = ErrorClass.QUOTA_EXCEEDED  # Anthropic says waiting will not help
            if error_class is None:
                return classify_status(
                    status, body, headers, provider=provider, model=model, message=message, code=kind
                )
            return provider_error(
                error_class,
                (message or plain_error_details(body)[0])[:1000],
                provider=provider,
                model=model,
                status=status,
                code=kind,
                retry_after=parse_retry_after(headers),
                body=body[:2000] if body else None,
            )

        return parse

    async def send(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        provider, model = self.spec.name, ctx.model
        data = self._body(request, ctx, stream=False)
        async with open_request(
            ctx, "POST", f"{self._base}/v1/messages", provider=provider, model=model,
            headers=self._headers_for(request), data=data, error_parser=self._errors(model),
        ) as resp:  # fmt: skip
            payload = await read_json(resp, provider=provider, model=model)
        return parse_response(payload, provider=provider, model=model, native=_is_native(request))

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk]:
        provider, model = self.spec.name, ctx.model
        data = self._body(request, ctx, stream=True)
        async with open_request(
            ctx, "POST", f"{self._base}/v1/messages", provider=provider, model=model,
            headers=self._headers_for(request), data=data, stream=True, error_parser=self._errors(model),
        ) as resp:  # fmt: skip
            machine = AnthropicStream(provider=provider, model=model, native=_is_native(request))
            # Close the parser explicitly: an abandoned async generator is finalized through
            # call_soon_threadsafe (a self-pipe write and an extra loop wake-up per stream).
            events = iter_sse(resp.content)
            try:
                async for event in events:
                    for chunk in machine.feed(event.event, event.data):
                        yield chunk
                    if machine.done:
                        break
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

    async def _models_page(self, ctx: CallContext, params: dict[str, str]) -> Mapping[str, Any]:
        return await fetch_model_list(
            ctx, f"{self._base}/v1/models", provider=self.spec.name, key="data", headers=self._request_headers,
            params=params, error_parser=self._errors(""),
        )  # fmt: skip

    async def list_models(self, ctx: CallContext) -> list[ModelInfo]:
        """GET /v1/models, following `has_more`/`last_id` pages (bounded)."""
        models: list[ModelInfo] = []
        params = {"limit": "1000"}
        for _ in range(_MAX_MODEL_PAGES):
            page = await self._models_page(ctx, params)
            for item in page["data"]:
                if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                    models.append(model_info(item, item["id"], "anthropic", item.get("max_input_tokens")))
            if not page.get("has_more") or not page.get("last_id"):
                break
            params = {"limit": "1000", "after_id": str(page["last_id"])}
        return models

    async def check_credentials(self, ctx: CallContext) -> CredentialCheck:
        """One page of one model: cheap and authenticated; a failure is reported, never raised."""
        return await probe_credentials(self.spec.name, ctx, self._models_page(ctx, {"limit": "1"}))


def _is_native(request: ChatRequest) -> bool:
    """A Messages request sent as the client wrote it (a continuation too: its prefix is added to that body)."""
    native = request.native
    return native is not None and native.format == NATIVE_FORMAT
