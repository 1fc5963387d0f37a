"""Finding 2, as a property: no sequence of requests built only from client-controlled content can open a breaker
that healthy traffic then hits (limits: see test_client_faults.py). Real loopback fakes answer the hostile content
the way the providers do (400s quoting it); image URLs point at a loopback host that fails in every way a URL can."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout.errors import TurnoutError
from turnout.router import Router
from turnout.testing import FakeUpstream, GeminiFake, OllamaFake, OpenAIFake, reply_raw
from turnout.types import ChatRequest

ROUTES = """\
version: 1
defaults:
  retry: {attempts: 0}
  attempt_timeout: 5s
  breaker: {failure_threshold: 1, recovery_timeout: 10m}
providers:
  oa: {driver: openai, base_url: "@OA@/v1", api_key: sk-oa-test}
  gm: {driver: gemini, base_url: "@GM@", api_key: gm-test, options: {image_urls: any, max_image_bytes: 4096}}
  ol: {driver: ollama, base_url: "@OL@", options: {image_urls: public}}
models:
  oa: {provider: oa, name: gpt-test}
  gm: {provider: gm, name: gemini-test}
  ol: {provider: ol, name: llama-test}
routes:
  oa: {chain: [oa]}
  gm: {chain: [gm]}
  ol: {chain: [ol]}
  mixed: {chain: [oa, gm, ol]}
"""
# Text that classifiers could mistake for a provider-side problem if they searched error messages for it.
LOADED = [
    "invalid api key", "Incorrect API key provided", "api key not valid", "API_KEY_INVALID", "invalid x-api-key",
    "insufficient_quota", "quota", "billing", "overloaded", "rate limit", "Request too large", "model_not_found",
    "context length", "flagged", "bad input",
]  # fmt: skip
IMAGE_KINDS = ["ok", "closed", "missing", "page", "loop", "huge", "private", "hex-loopback", "bad-data"]

scalars = st.none() | st.booleans() | st.integers(-3, 10**6) | st.text(max_size=12) | st.sampled_from(LOADED)
requests = st.fixed_dictionaries(
    {
        "route": st.sampled_from(["oa", "gm", "ol", "mixed"]),
        "stream": st.booleans(),
        "text": st.sampled_from(LOADED) | st.text(max_size=40),
        "params": st.dictionaries(st.sampled_from(LOADED) | st.text(min_size=1, max_size=10), scalars, max_size=3),
        "images": st.lists(st.sampled_from(IMAGE_KINDS), max_size=2),
        "directive": st.none() | st.just({"faults": [{"kind": "status", "status": 401}]}),
    }
)


def quoting_400(fake: Any, shape: str) -> Any:
    """The upstream's answer: a 400 quoting hostile content (as providers do), else a healthy answer."""

    async def behave(request: web.Request, upstream: Any) -> web.StreamResponse | None:
        raw = (await request.read()).decode("utf-8", "replace")
        quoted = next((phrase for phrase in LOADED if phrase in raw), None)
        if quoted is not None:
            message = f"Unrecognized request argument supplied: {quoted}"
            body = {
                "openai": {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}},
                "gemini": {"error": {"code": 400, "message": f'Unknown name "{quoted}"', "status": "INVALID_ARGUMENT"}},
                "ollama": {"error": f"invalid request: {quoted}"},
            }[shape]
            return web.json_response(body, status=400)
        streamed = json.loads(raw).get("stream", shape == "ollama") or "streamGenerateContent" in request.path
        answer = fake.stream_text(["healthy ", "answer"]) if streamed else fake.text("healthy answer")
        return await answer(request, upstream)

    return behave


def image_url(kind: str, host: str, closed: str) -> str:
    return {
        "ok": f"{host}/ok.png",
        "closed": closed,
        "missing": f"{host}/missing.png",
        "page": f"{host}/page.html",
        "loop": f"{host}/loop",
        "huge": f"{host}/huge.png",
        "private": closed.replace("127.0.0.1", "127.0.0.2"),
        "hex-loopback": f"https://0x7f000001:{host.rsplit(':', 1)[1]}/ok.png",
        "bad-data": "data:image/png;base64,@@not-base64@@",
    }[kind]


def body_of(spec: dict[str, Any], host: str, closed: str) -> dict[str, Any]:
    content: Any = spec["text"] or "hi"
    if spec["images"]:
        parts = [{"type": "image_url", "image_url": {"url": image_url(k, host, closed)}} for k in spec["images"]]
        content = [{"type": "text", "text": content}, *parts]
    body = {**spec["params"], "model": spec["route"], "messages": [{"role": "user", "content": content}]}
    body["stream"] = spec["stream"]
    if spec["directive"] is not None:
        body["turnout_mock"] = spec["directive"]
    return body


async def send(router: Router, request: ChatRequest) -> None:
    if request.stream:
        async with router.stream(request) as stream:
            async for _ in stream:
                pass
    else:
        await router.chat(request)


async def scenario(hostile: list[dict[str, Any]]) -> None:
    async with (
        OpenAIFake() as oa,
        GeminiFake() as gm,
        OllamaFake() as ol,
        FakeUpstream() as images,
    ):
        oa.default("chat", quoting_400(oa, "openai"))
        gm.default("chat", quoting_400(gm, "gemini"))
        ol.default("chat", quoting_400(ol, "ollama"))
        images.default("/ok.png", reply_raw(b"\x89PNG\r\n\x1a\n" + b"\0" * 32, content_type="image/png"))
        images.default("/huge.png", reply_raw(b"\x89PNG\r\n\x1a\n" + b"\0" * 20_000, content_type="image/png"))
        images.default("/page.html", reply_raw(b"<html></html>", content_type="text/html"))
        images.default("/missing.png", reply_raw(b"no", status=404, content_type="text/plain"))
        images.default("/loop", reply_raw(b"", status=302, headers={"Location": "/loop"}))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{sock.getsockname()[1]}/x.png"
        text = ROUTES.replace("@OA@", oa.url).replace("@GM@", gm.url).replace("@OL@", ol.url)
        async with Router.from_yaml(text) as router:
            for spec in hostile:
                try:
                    request = ChatRequest.from_openai(body_of(spec, images.url, closed))
                except TurnoutError:
                    continue  # the sidecar answers 400 before routing
                try:
                    await send(router, request)
                except TurnoutError:
                    pass  # the hostile request may fail; what matters is what it leaves behind
            assert router.health.open_breakers() == []
            for route in ("oa", "gm", "ol", "mixed"):
                for stream in (False, True):
                    request = ChatRequest.create(model=route, messages=[{"role": "user", "content": "hi"}])
                    if stream:
                        request = ChatRequest.from_openai({**request.body, "stream": True})
                    if stream:
                        async with router.stream(request) as s:
                            async for _ in s:
                                pass
                        attempts = s.attempts
                    else:
                        attempts = (await router.chat(request)).attempts
                    assert [a.outcome for a in attempts] == ["success"], attempts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests, min_size=1, max_size=5))
def test_no_client_content_opens_a_breaker_healthy_traffic_hits(hostile):
    """Whatever a client puts in its requests, the next healthy request is served by the first deployment."""
    asyncio.run(asyncio.wait_for(scenario(hostile), 60))
