"""ExampleDriver: a minimal, complete custom turnout driver for an OpenAI-compatible endpoint.

It differs from the built-in `openai` driver in two small ways, to have something to show: the key travels in an
`X-Example-Key` header, and `options.model_prefix` is prepended to upstream model names. Unlike the built-in, it
parses every streamed chunk (simpler, slower): a good starting point, not a fast path.

Everything network-related goes through `turnout.drivers._http`, the helpers the built-in drivers use: they apply
the call's time budget and turn every status code, body and aiohttp failure into turnout's error taxonomy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from turnout.config import ProviderSpec
from turnout.drivers._http import (
    classify_status,
    iter_sse,
    loads,
    open_request,
    read_json,
    strip_directives,
    transport_error,
    validate_options,
)
from turnout.drivers.base import CallContext, CredentialCheck, ModelInfo
from turnout.errors import BadRequest, ProtocolError, ProviderError
from turnout.types import ChatChunk, ChatRequest, ChatResponse, Usage

__all__ = ["ExampleDriver"]


def _usage(data: Any) -> Usage:
    if not isinstance(data, Mapping) or not isinstance(data.get("prompt_tokens"), int):
        return Usage.UNKNOWN
    return Usage(prompt_tokens=data["prompt_tokens"], completion_tokens=data.get("completion_tokens") or 0)


class ExampleDriver:
    """An OpenAI-compatible endpoint with an `X-Example-Key` header and optional model-name prefix."""

    name: ClassVar[str] = "example"
    options_schema: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {"model_prefix": {"type": "string", "description": "prepended to upstream model names"}},
        }
    )
    capabilities: frozenset[str] = frozenset({"tools", "vision", "json", "streaming"})

    def __init__(self, spec: ProviderSpec) -> None:
        # No I/O here: routers build drivers while compiling a routing file.
        validate_options(self.name, spec.name, self.options_schema, spec.options)
        if not spec.base_url:
            raise ValueError(f"provider '{spec.name}' (driver example): base_url is required")
        self.spec = spec
        self._base = spec.base_url.rstrip("/")
        self._prefix = spec.options.get("model_prefix", "")

    def _headers(self) -> dict[str, str]:
        headers = {name: value.reveal() for name, value in self.spec.headers.items()}
        if self.spec.api_key:
            headers["X-Example-Key"] = self.spec.api_key.reveal()  # revealed per call, never stored in clear
        return headers

    def _body(self, request: ChatRequest, ctx: CallContext, stream: bool) -> dict[str, Any]:
        if request.assistant_prefix is not None:
            raise BadRequest("the example driver cannot continue an assistant prefix", provider=self.spec.name)
        body = strip_directives(request.body)  # turnout_* keys are directives for the mock driver
        body["model"] = self._prefix + ctx.model
        body["stream"] = stream
        if stream:
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream_options", None)
        return body

    async def send(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        provider = self.spec.name
        async with open_request(
            ctx, "POST", f"{self._base}/chat/completions", provider=provider, model=ctx.model,
            headers=self._headers(), json=self._body(request, ctx, stream=False),
        ) as resp:  # fmt: skip
            data = await read_json(resp, provider=provider, model=ctx.model)
        if not isinstance(data, Mapping) or not isinstance(data.get("choices"), list):
            raise ProtocolError("response has no 'choices'", provider=provider, model=ctx.model)
        return ChatResponse(
            id=str(data.get("id", "")),
            model=str(data.get("model") or ctx.model),
            choices=tuple(data["choices"]),
            usage=_usage(data.get("usage")),
        )

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatChunk]:
        provider, model = self.spec.name, ctx.model
        held: ChatChunk | None = None  # the finish chunk, held so the last chunk can carry usage
        finish: str | None = None
        usage = Usage.UNKNOWN
        content = False
        async with open_request(
            ctx, "POST", f"{self._base}/chat/completions", provider=provider, model=model,
            headers=self._headers(), json=self._body(request, ctx, stream=True), stream=True,
        ) as resp:  # fmt: skip
            try:
                async for event in iter_sse(resp.content):
                    if event.data == b"[DONE]":
                        break
                    data = loads(event.data, provider=provider, model=model, after_first_token=content)
                    if not isinstance(data, Mapping):
                        raise ProtocolError("chunk is not an object", provider=provider, model=model)
                    if data.get("error") is not None:
                        raise classify_status(500, event.data, None, provider=provider, model=model,
                                              after_first_token=content)  # fmt: skip
                    if data.get("usage"):
                        usage = _usage(data["usage"])
                    choices = data.get("choices") or []
                    if not choices:
                        continue
                    delta = choices[0].get("delta") or {}
                    is_content = bool(delta.get("content") or delta.get("tool_calls"))
                    content = content or is_content
                    if choices[0].get("finish_reason"):
                        finish = choices[0]["finish_reason"]
                        held = ChatChunk(data=data, is_content=is_content)
                        continue
                    yield ChatChunk(data=data, is_content=is_content)
                else:
                    raise ProtocolError("stream ended without [DONE]", provider=provider, model=model,
                                        after_first_token=content)  # fmt: skip
            except ProviderError:
                raise
            except Exception as exc:
                raise transport_error(exc, provider=provider, model=model, after_first_token=content) from exc
        if held is None:
            raise ProtocolError(
                "stream had no finish_reason", provider=provider, model=model, after_first_token=content
            )
        yield ChatChunk(data=held.data, is_content=held.is_content, finish_reason=finish, usage=usage)

    async def list_models(self, ctx: CallContext) -> list[ModelInfo]:
        async with open_request(
            ctx, "GET", f"{self._base}/models", provider=self.spec.name, model="", headers=self._headers()
        ) as resp:
            data = await read_json(resp, provider=self.spec.name, model="")
        items = data.get("data") if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            raise ProtocolError("model list has no 'data'", provider=self.spec.name)
        return [ModelInfo(id=str(m["id"])) for m in items if isinstance(m, Mapping) and "id" in m]

    async def check_credentials(self, ctx: CallContext) -> CredentialCheck:
        started = ctx.clock()
        try:
            await self.list_models(ctx)
        except ProviderError as err:
            return CredentialCheck(self.spec.name, False, err.status, err.error_class.value, err.message)
        return CredentialCheck(self.spec.name, True, 200, None, "ok", ctx.clock() - started)
