"""Finding 2: only a provider's own failures count against its breaker and limits, never the client's content."""

from __future__ import annotations

import aiohttp
import pytest

from turnout.testing import GeminiFake, OpenAIFake, reply_json

CHAT = "/v1/chat/completions"
ASK = [{"role": "user", "content": "hello"}]

GEMINI_ROUTES = """\
version: 1
defaults:
  retry: {attempts: 0}
  breaker: {failure_threshold: 2, recovery_timeout: 10m}
providers:
  gem: {driver: gemini, base_url: "@GEMINI@", api_key: gm-test-key, options: {image_urls: any}}
  backup: {driver: openai, base_url: "@BACKUP@/v1", api_key: sk-backup}
models:
  flash: {provider: gem, name: gemini-test, limits: {rpm: 3}}
  spare: {provider: backup, name: gpt-backup, limits: {rpm: 3}}
routes:
  vision: {chain: [flash, spare]}
  spare: {chain: [spare]}
server:
  watch: false
"""


def image_ask(url: str) -> list[dict]:
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "user", "content": content}]


async def post(http: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, dict, dict]:
    async with http.post(url + CHAT, json=body) as resp:
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


@pytest.fixture
async def gemini_served(tmp_path, server_kit):
    async with GeminiFake() as gemini, OpenAIFake(model="gpt-backup") as backup:
        gemini.default("chat", gemini.text("a cat"))
        backup.default("chat", backup.text("from backup"))
        path = tmp_path / "routes.yaml"
        path.write_text(GEMINI_ROUTES.replace("@GEMINI@", gemini.url).replace("@BACKUP@", backup.url))
        async with server_kit.serving(path) as served:
            yield served, gemini, backup


async def test_an_echoed_key_phrase_in_a_400_is_the_clients_bad_request(serve, http, primary, backup, echoing):
    """A parameter named "invalid api key", echoed in the upstream's 400, is a bad_request: no breaker opens."""
    primary.default("chat", echoing(primary))
    backup.default("chat", echoing(backup))
    async with serve() as s:
        for _ in range(3):
            body = {"model": "chat", "messages": ASK, "invalid api key": 1, "Incorrect API key provided": 2}
            status, payload, _ = await post(http, s.url, body)
            assert status == 400, payload
            assert payload["error"]["error_class"] == "bad_request"
        assert s.sidecar.router.health.open_breakers() == []
        status, payload, headers = await post(http, s.url, {"model": "chat", "messages": ASK})
        assert status == 200, payload
        assert headers["x-turnout-served-by"] == "primary/p1"


async def test_unreachable_image_urls_never_open_the_deployments_breaker(gemini_served, http, image_host):
    """Image URLs that cannot be fetched are the client's bad_request: the Gemini deployment stays in service."""
    served, gemini, _ = gemini_served
    bad_urls = [image_host.closed, f"{image_host.url}/missing.png", f"{image_host.url}/page.html"]
    for url in bad_urls * 2:  # six failures; the breaker opens after two deployment faults
        status, payload, _ = await post(http, served.url, {"model": "vision", "messages": image_ask(url)})
        assert status == 400, payload
        assert payload["error"]["error_class"] == "bad_request"
    assert served.sidecar.router.health.open_breakers() == []
    assert gemini.requests_to("chat") == []  # nothing was ever sent upstream
    status, payload, headers = await post(
        http, served.url, {"model": "vision", "messages": image_ask(image_host.url + "/ok.png")}
    )
    assert status == 200, payload
    assert headers["x-turnout-served-by"] == "gem/flash"


async def test_client_faults_do_not_use_up_rate_limits(gemini_served, http, image_host, echoing):
    """Requests that fail because of their own content do not count against a deployment's rpm limit."""
    served, _, backup = gemini_served
    backup.default("chat", echoing(backup))
    for _ in range(5):  # the limit is 3 a minute
        status, _, _ = await post(http, served.url, {"model": "vision", "messages": image_ask(image_host.closed)})
        assert status == 400
        status, _, _ = await post(http, served.url, {"model": "spare", "messages": ASK, "unknown_knob": True})
        assert status == 400
    status, payload, headers = await post(http, served.url, {"model": "vision", "messages": ASK})
    assert status == 200, payload
    assert headers["x-turnout-served-by"] == "gem/flash"
    status, payload, headers = await post(http, served.url, {"model": "spare", "messages": ASK})
    assert status == 200, payload
    assert headers["x-turnout-served-by"] == "backup/spare"


async def test_gemini_echo_of_a_key_phrase_is_not_auth(gemini_served, http):
    """A Gemini 400 quoting client text ("api key not valid") without Google's ErrorInfo reason is bad_request."""
    served, gemini, _ = gemini_served
    message = "Invalid JSON payload received. Unknown name \"api key not valid\" at 'tools[0]': Cannot find field."
    body = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
    for _ in range(3):
        gemini.script("chat", reply_json(body, status=400))
        status, payload, _ = await post(http, served.url, {"model": "vision", "messages": ASK})
        assert status == 400, payload
    assert served.sidecar.router.health.open_breakers() == []
