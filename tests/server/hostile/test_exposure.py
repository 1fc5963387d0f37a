"""Finding 8: what anonymous callers can read. /readyz answers only "ready or not" to anyone and its detail to
admins; /metrics needs the admin key whenever keys exist; error bodies name deployments, never the upstreams' URLs
or hosts."""

from __future__ import annotations

import json
import socket

CHAT = "/v1/chat/completions"
KEY = "client-key-123456"
ADMIN_KEY = "admin-key-1234567"
AUTH = {"Authorization": f"Bearer {KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CLIENTS = f'clients:\n  app: {{keys: ["{KEY}"]}}\n'
SERVER = f'  admin_keys: ["{ADMIN_KEY}"]\n'


async def test_readyz_detail_needs_the_admin_key(serve_mock, http):
    """Without the admin key (a client key included) /readyz says only whether it is ready (and draining); with it
    it adds routes, breakers, reload state and requests in flight."""
    async with serve_mock(server=SERVER, clients=CLIENTS) as s:
        async with http.get(s.url + "/readyz") as resp:
            anonymous = (resp.status, await resp.json())
        async with http.get(s.url + "/readyz", headers=AUTH) as resp:
            client = await resp.json()
        async with http.get(s.url + "/readyz", headers=ADMIN) as resp:
            detail = await resp.json()
    assert anonymous == (200, {"ready": True, "status": "ready", "draining": False})
    assert client == anonymous[1]
    assert detail["ready"] is True
    assert {"routes", "open_breakers", "disabled_providers", "config", "last_reload_error"} <= set(detail)


async def test_metrics_need_the_admin_key_when_keys_are_set(serve_mock, http):
    """/metrics (spend per client included) is refused without the admin key, and to a client key, once clients are
    declared; with clients but no admin keys it is closed; protect_metrics: false opens it deliberately."""
    async with serve_mock(server=SERVER, clients=CLIENTS) as s:
        statuses = []
        for headers in ({}, AUTH, ADMIN):
            async with http.get(s.url + "/metrics", headers=headers) as resp:
                statuses.append(resp.status)
    async with serve_mock(clients=CLIENTS) as s, http.get(s.url + "/metrics", headers=AUTH) as resp:
        closed = (resp.status, (await resp.json())["error"]["code"])
    async with serve_mock(server="  protect_metrics: false\n", clients=CLIENTS) as s, http.get(s.url + "/metrics") as r:
        opened = r.status
    assert statuses == [401, 401, 200]
    assert closed == (403, "admin_closed")
    assert opened == 200


async def test_error_bodies_name_deployments_never_hosts(serve_mock, http, image_host):
    """A route failing on unreachable upstreams answers with deployment names; no URL, address or port leaks."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here any more
    providers = (
        f'  internal:\n    driver: openai\n    base_url: "http://127.0.0.1:{port}/v1"\n    api_key: sk-internal\n'
        f'  lan:\n    driver: ollama\n    base_url: "http://localhost:{port}"\n'
    )
    models = "  secret-gpt: {provider: internal, name: gpt-x}\n  lan-llama: {provider: lan, name: llama}\n"
    routes = "  inside: {chain: [secret-gpt, lan-llama]}\n"
    async with serve_mock(providers=providers, models=models, routes=routes) as s:
        async with http.post(
            s.url + CHAT, json={"model": "inside", "messages": [{"role": "user", "content": "x"}]}
        ) as r:
            status, text = r.status, await r.text()
        body = json.loads(text)
        stream_body = {"model": "inside", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        async with http.post(s.url + CHAT, json=stream_body) as r:
            stream_text = await r.text()
    assert status == 502
    trail = body["error"]["attempts"]
    assert [a["deployment"] for a in trail if a["outcome"] == "error"] == ["internal/secret-gpt", "lan/lan-llama"]
    for shown in (text, stream_text):
        for leak in (str(port), "127.0.0.1", "localhost", "http://"):
            assert leak not in shown, (leak, shown)
