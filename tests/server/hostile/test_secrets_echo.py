"""Finding 9: an upstream that echoes its credentials or the client's prompt in an error leaks neither: every
configured secret value is masked before the text goes anywhere, and upstream text stays out of the logs unless
server.log_content is on."""

from __future__ import annotations

import base64
import json
import logging
import traceback

import pytest
from aiohttp import web

from turnout.errors import AllUpstreamsFailed
from turnout.router import Router
from turnout.testing import OpenAIFake

CHAT = "/v1/chat/completions"
API_KEY = "sk-canary-SECRET-7001"
HEADER = "hdr-canary-SECRET-7002"
PASSWORD = "pw-canary-SECRET-7003"
CLIENT_KEY = "client-canary-SECRET-7005"
PROMPT = "my private prompt 7006 about the merger"
BASIC = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()  # how aiohttp sends the URL's user:password
CANARIES = (API_KEY, HEADER, PASSWORD, CLIENT_KEY, BASIC)

ROUTES = """\
version: 1
defaults:
  retry: {attempts: 0}
providers:
  keyed:
    driver: openai
    base_url: "@UP@/v1"
    api_key: "@API_KEY@"
    headers: {x-partner-key: "@HEADER@"}
  userinfo:
    driver: ollama
    base_url: "http://bob:@PASSWORD@@@HOSTPORT@"
models:
  m: {provider: keyed, name: gpt-test}
  u: {provider: userinfo, name: llama-test}
routes:
  keyed: {chain: [m]}
  userinfo: {chain: [u]}
  both: {chain: [m, u]}
server:
  watch: false
@LOG_CONTENT@
clients:
  app: {keys: ["@CLIENT_KEY@"]}
"""


def echo_everything(status: int, *, stream: bool = False):
    """An upstream whose error message quotes every request header, the query and the body it received."""

    async def behave(request: web.Request, upstream) -> web.StreamResponse:
        body = (await request.read()).decode()
        heard = json.dumps({"headers": dict(request.headers), "query": request.query_string, "body": body})
        message = f"Incorrect API key provided: {request.headers.get('Authorization')}; you sent {heard}"
        error = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "echo"}}
        if not stream:
            return web.json_response(error, status=status)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test", "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "partial "}, "finish_reason": None}]}  # fmt: skip
        await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(f"data: {json.dumps(error)}\n\n".encode())
        await resp.write_eof()
        return resp

    return behave


@pytest.fixture
def served(tmp_path, server_kit):
    async def start(upstream: OpenAIFake, *, log_content: bool = False):
        host_port = upstream.url.removeprefix("http://")
        text = (
            ROUTES.replace("@UP@", upstream.url)
            .replace("@HOSTPORT@", host_port)
            .replace("@API_KEY@", API_KEY)
            .replace("@HEADER@", HEADER)
            .replace("@PASSWORD@", PASSWORD)
            .replace("@CLIENT_KEY@", CLIENT_KEY)
            .replace("@LOG_CONTENT@", "  log_content: true" if log_content else "")
        )
        path = tmp_path / "routes.yaml"
        path.write_text(text)
        return server_kit.serving(path)

    return start


def assert_clean(text: str, where: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"{canary} leaked into {where}"


@pytest.mark.parametrize("status", [400, 401, 500])
async def test_echoed_credentials_are_masked_everywhere(served, http, caplog, status):
    """Key, header secret and URL password (also as Basic auth) echoed by the upstream never show anywhere."""
    caplog.set_level(logging.DEBUG)
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    async with OpenAIFake() as upstream:
        upstream.default("chat", echo_everything(status))
        upstream.default("/api/chat", echo_everything(status))
        async with await served(upstream) as s:
            answers = []
            for route in ("keyed", "userinfo", "both"):
                body = {"model": route, "messages": [{"role": "user", "content": PROMPT}]}
                async with http.post(s.url + CHAT, json=body, headers=auth) as resp:
                    answers.append(await resp.text())
            async with http.get(s.url + "/metrics", headers=auth) as resp:
                metrics = await resp.text()
            access = s.access.getvalue()
        heard = json.dumps([r.headers for r in upstream.requests])
    assert API_KEY in heard and HEADER in heard and BASIC in heard  # the echo really carried them
    assert "***" in answers[0]  # and what the client got was masked, not dropped
    for text, where in ((str(answers), "the answers"), (access, "the access log"), (metrics, "/metrics")):
        assert_clean(text, where)
    assert_clean("\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records), "the log")


async def test_a_stream_error_event_is_masked(served, http):
    """An error event after the first chunk that echoes the key reaches the client masked."""
    async with OpenAIFake() as upstream:
        upstream.default("chat", echo_everything(400, stream=True))
        async with await served(upstream) as s:
            body = {"model": "keyed", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
            async with http.post(s.url + CHAT, json=body, headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as r:
                text = await r.text()
            access = s.access.getvalue()
    assert "partial" in text and '"error"' in text
    assert_clean(text, "the stream")
    assert_clean(access, "the access log")


async def test_upstream_text_stays_out_of_the_access_log_without_log_content(served, http):
    """A 400 quoting the prompt: the client sees the provider's reason; the access log has no upstream text."""
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    body = {"model": "keyed", "messages": [{"role": "user", "content": PROMPT}]}
    async with OpenAIFake() as upstream:
        upstream.default("chat", echo_everything(400))
        async with await served(upstream) as s, http.post(s.url + CHAT, json=body, headers=auth) as resp:
            answer = await resp.text()
            quiet = s.access.getvalue()
        async with await served(upstream, log_content=True) as s, http.post(s.url + CHAT, json=body, headers=auth):
            loud = s.access.getvalue()
    assert PROMPT in answer  # the client's own prompt, quoted back to the client
    assert PROMPT not in quiet
    line = json.loads(quiet.splitlines()[-1])
    assert line["error_class"] == "bad_request" and line["attempts"][0]["status"] == 400
    assert PROMPT in loud  # with log_content on, content is logged, as documented
    assert_clean(loud, "the access log with log_content")


async def test_library_callers_get_masked_errors_too():
    """Router users see the same masked text: the exception, its cause, its body and the printed traceback."""
    yaml = f"""\
version: 1
defaults: {{retry: {{attempts: 0}}}}
providers:
  keyed: {{driver: openai, base_url: "@UP@/v1", api_key: {API_KEY}, headers: {{x-partner-key: {HEADER}}}}}
models:
  m: {{provider: keyed, name: gpt-test}}
routes:
  keyed: {{chain: [m]}}
"""
    async with OpenAIFake() as upstream:
        upstream.default("chat", echo_everything(500))
        async with Router.from_yaml(yaml.replace("@UP@", upstream.url)) as router:
            with pytest.raises(AllUpstreamsFailed) as info:
                await router.chat(model="keyed", messages=[{"role": "user", "content": "hi"}])
    error = info.value
    shown = "".join(traceback.format_exception(error)) + repr(error.__cause__) + str(error.__cause__.body)
    shown += json.dumps([a.to_dict() for a in error.attempts])
    assert "***" in shown
    assert_clean(shown, "the exception")
