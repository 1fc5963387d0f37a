"""The calls a driver makes to serve a Responses request natively: the client's body to the upstream's `/responses`.

The body goes as the client wrote it (with the conversation it continues already in `input`), with only `model`
and `stream` set and turnout's own `turnout_*` keys removed; `stream_options` goes only with a stream (OpenAI
refuses it otherwise). The answer comes back untranslated (`ChatResponse.native`, `NativeFrames` on every chunk).
HTTP errors are OpenAI's and are classified as the chat endpoint's are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from turnout.drivers._http import (
    dumps,
    iter_sse,
    open_response,
    request_json,
    settle,
    strip_directives,
    transport_error,
)
from turnout.drivers.base import CallContext
from turnout.drivers.openai_responses.stream import ResponsesStream
from turnout.drivers.openai_responses.upstream import parse_answer
from turnout.drivers.openai_responses.wire import NATIVE_FORMAT
from turnout.errors import ProviderError
from turnout.types import ChatChunk, ChatRequest, ChatResponse


def is_native(request: ChatRequest) -> bool:
    """A request that came in as a Responses request."""
    native = request.native
    return native is not None and native.format == NATIVE_FORMAT


def native_body(request: ChatRequest, *, model: str, stream: bool) -> dict[str, Any]:
    """The client's Responses body as the upstream gets it (see the module docstring)."""
    assert request.native is not None
    body = strip_directives(request.native.body)
    body["model"] = model
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


async def send(
    request: ChatRequest,
    ctx: CallContext,
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    params: Mapping[str, str] | None = None,
) -> ChatResponse:
    """One non-streamed Responses call; the answer parsed (`upstream.parse_answer`), its body kept as `native`."""
    data = await request_json(
        ctx, "POST", url, provider=provider, model=ctx.model, headers=headers,
        data=dumps(native_body(request, model=ctx.model, stream=False)), params=params,
    )  # fmt: skip
    return parse_answer(data, provider=provider, model=ctx.model)


async def stream(
    request: ChatRequest,
    ctx: CallContext,
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    params: Mapping[str, str] | None = None,
) -> AsyncIterator[ChatChunk]:
    """One streamed Responses call: the upstream's events as chunks (`stream.ResponsesStream`)."""
    model = ctx.model
    resp = await open_response(
        ctx, "POST", url, provider=provider, model=model, headers=headers,
        data=dumps(native_body(request, model=model, stream=True)), params=params, stream=True,
    )  # fmt: skip
    machine = ResponsesStream(provider=provider, model=model)
    # Close the parser explicitly: an abandoned async generator is finalized through call_soon_threadsafe.
    events = iter_sse(resp.content)
    completed = False
    try:
        async for event in events:  # read on to the end of the body, so the connection is reused
            for chunk in machine.feed(event.event, event.data):
                yield chunk
        completed = True
    except ProviderError:
        raise
    except Exception as exc:
        raise transport_error(exc, provider=provider, model=model, after_first_token=machine.emitted_content) from exc
    finally:
        await events.aclose()
        settle(resp, completed)
    for chunk in machine.finish():
        yield chunk
