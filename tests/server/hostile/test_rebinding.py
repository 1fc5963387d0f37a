"""Finding 7: DNS rebinding. With client auth off only loopback Host values (plus server.allowed_hosts) are
answered; admin endpoints refuse cross-site requests whatever the keys."""

from __future__ import annotations

import pytest

CHAT = "/v1/chat/completions"
ASK = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
EVIL = {"Host": "evil.example", "Origin": "http://evil.example"}


async def statuses(http, url: str, headers: dict[str, str]) -> dict[str, int]:
    """The status of every endpoint a rebound page could use, sent with `headers`."""
    out = {}
    async with http.post(url + CHAT, json=ASK, headers=headers) as resp:
        out["chat"] = resp.status
    for path in ("/v1/models", "/v1/models/echo", "/metrics"):
        async with http.get(url + path, headers=headers) as resp:
            out[path] = resp.status
    async with http.post(url + "/admin/reload", headers=headers) as resp:
        out["reload"] = resp.status
    return out


async def test_a_rebound_page_gets_nothing(serve_mock, http, openai_error):
    """Host: evil.example (same-origin for the rebound page) is refused on every endpoint but the open probes."""
    async with serve_mock() as s:
        got = await statuses(http, s.url, EVIL)
        async with http.post(s.url + CHAT, json=ASK, headers=EVIL) as resp:
            error = openai_error(await resp.json(), 403)
        async with http.get(s.url + "/readyz", headers=EVIL) as resp:
            ready = (resp.status, await resp.json())
        async with http.get(s.url + "/healthz", headers=EVIL) as resp:
            health = resp.status
    assert set(got.values()) == {403}, got
    assert error["code"] == "host_not_allowed"
    assert ready == (200, {"ready": True, "status": "ready", "draining": False})  # probes work, learn nothing more
    assert health == 200


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST.", "[::1]:{port}", "127.8.9.1"])
async def test_loopback_hosts_are_served(serve_mock, http, host):
    """Loopback names and addresses, any port, any case, are served with auth off."""
    async with serve_mock() as s:
        port = s.url.rsplit(":", 1)[1]
        got = await statuses(http, s.url, {"Host": host.format(port=port)})
    assert got == {"chat": 200, "/v1/models": 200, "/v1/models/echo": 200, "/metrics": 200, "reload": 200}


async def test_allowed_hosts_extend_the_list(serve_mock, http):
    """server.allowed_hosts admits exact names and, with a leading dot, their subdomains; others stay refused."""
    async with serve_mock(server="  allowed_hosts: [gateway.internal, .svc.local]\n") as s:
        ok = [await statuses(http, s.url, {"Host": h}) for h in ("gateway.internal:8080", "a.b.svc.local", "svc.local")]
        refused = await statuses(http, s.url, {"Host": "gateway.internal.evil.example"})
    assert all(set(got.values()) == {200} for got in ok), ok
    assert set(refused.values()) == {403}


CLIENTS = 'clients:\n  app: {keys: ["client-key-123456789"]}\n'
ADMIN = '  admin_keys: ["admin-key-123456789"]\n'


async def test_with_client_keys_any_host_is_served(serve_mock, http):
    """With clients declared the Host check is off: a rebound page cannot know a key. Model endpoints take the
    client key, the admin endpoints (and a protected /metrics) the admin key."""
    async with serve_mock(server=ADMIN, clients=CLIENTS) as s:
        host = {"Host": "gateway.example"}
        client = await statuses(http, s.url, {**host, "Authorization": "Bearer client-key-123456789"})
        admin = await statuses(http, s.url, {**host, "Authorization": "Bearer admin-key-123456789"})
    assert client == {"chat": 200, "/v1/models": 200, "/v1/models/echo": 200, "/metrics": 401, "reload": 401}
    assert admin == {"chat": 401, "/v1/models": 401, "/v1/models/echo": 401, "/metrics": 200, "reload": 200}


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port on the same machine is another origin
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_admin_endpoints_refuse_cross_site_requests(serve_mock, http, headers):
    """POST /admin/reload from another origin is refused even with a valid key; from our own origin it works."""
    async with serve_mock(server=ADMIN, clients=CLIENTS) as s:
        auth = {"Authorization": "Bearer admin-key-123456789"}
        async with http.post(s.url + "/admin/reload", headers={**auth, **headers}) as resp:
            refused = (resp.status, (await resp.json())["error"]["code"])
        async with http.post(s.url + "/admin/reload", headers={**auth, "Origin": s.url}) as resp:
            ours = resp.status
        async with http.post(s.url + "/admin/reload", headers={**auth, "Sec-Fetch-Site": "same-origin"}) as resp:
            same = resp.status
    assert refused == (403, "cross_site")
    assert (ours, same) == (200, 200)
