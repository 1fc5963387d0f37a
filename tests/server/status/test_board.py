"""The status page and its JSON over HTTP: what they show, who may see them, and the log-in session."""

from __future__ import annotations

import re
import time

import pytest

from turnout.server.status import session

KEY = "admin-key-SECRET-0042"
WITH_KEY = f'  admin_keys: ["{KEY}"]\n'
BEARER = {"Authorization": f"Bearer {KEY}"}


async def get_json(http, url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    async with http.get(url, headers=headers or {}) as resp:
        return resp.status, await resp.json()


async def open_breaker(http, s, status_kit) -> None:
    for _ in range(2):  # failure_threshold: 2
        async with http.post(s.url + "/v1/chat/completions", json=status_kit.fault(), headers=BEARER) as resp:
            assert resp.status == 200  # failed over to echo
            assert resp.headers["x-turnout-served-by"] == "echo/echo"


def member(view: dict, route: str, key: str) -> dict:
    found = [d for r in view["routes"] if r["name"] == route for s in r["steps"] for d in s["deployments"]]
    return next(d for d in found if d["key"] == key)


async def test_root_redirects_to_the_status_page(serve_status, http):
    """GET / answers 303 to /status."""
    async with serve_status() as s, http.get(s.url + "/", allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "/status"


async def test_the_page_is_self_contained_under_a_strict_csp(serve_status, http):
    """The page's only style and script carry the answer's nonce; the CSP allows nothing else, nothing inline
    without it, no framing, no other origin; every answer has a fresh nonce."""
    async with serve_status() as s:
        pages = []
        for _ in range(2):
            async with http.get(s.url + "/status") as resp:
                assert resp.status == 200
                assert resp.content_type == "text/html"
                pages.append((resp.headers["Content-Security-Policy"], dict(resp.headers), await resp.text()))
    nonces = []
    for policy, headers, text in pages:
        nonce = re.search(r"script-src 'nonce-([\w-]+)'", policy).group(1)
        nonces.append(nonce)
        assert f"style-src 'nonce-{nonce}'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy and "require-trusted-types-for 'script'" in policy
        tags = re.findall(r"<(script|style)\b([^>]*)>", text)
        assert len(tags) == 2 and all(attrs == f' nonce="{nonce}"' for _, attrs in tags)
        assert not re.search(r"\bon\w+=", text)  # no inline event handlers
        assert not re.search(r"(src|href)=\"https?:", text)  # nothing fetched from elsewhere: no CDN
        assert ".innerHTML" not in text and "insertAdjacentHTML" not in text and "document.write" not in text
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
        assert headers["X-Frame-Options"] == "DENY"
    assert nonces[0] != nonces[1]


async def test_the_json_shows_each_members_state_and_why(serve_status, http, status_kit):
    """An open breaker (with the time to its next probe), a disabled provider (with the reason) and a usable
    deployment with its figures, each in its route's chain as written; the failovers are listed."""
    async with serve_status() as s:
        await open_breaker(http, s, status_kit)
        status, view = await get_json(http, s.url + "/admin/status")
    assert status == 200
    assert view["version"] == 1 and view["status"] == "ready" and view["window_seconds"] == 300
    [drill] = [r for r in view["routes"] if r["name"] == "drill"]
    assert [step["name"] for step in drill["steps"]] == ["front", "echo"]
    assert [d["key"] for d in drill["steps"][0]["deployments"]] == ["missing/gone", "drill/drill"]
    opened = member(view, "drill", "drill/drill")
    assert opened["state"] == "open" and opened["reason"] == "breaker open"
    assert 590 < opened["probe_in"] <= 600
    assert opened["stats"]["requests"] == 2 and opened["stats"]["errors"] == 2
    gone = member(view, "drill", "missing/gone")
    assert gone["state"] == "disabled" and "provider 'missing' disabled" in gone["reason"]
    echo = member(view, "drill", "echo/echo")
    assert echo["state"] == "usable" and echo["stats"]["requests"] == 2 and echo["stats"]["spend_usd"] > 0
    assert echo["stats"]["p50_ms"] is not None
    assert (drill["usable"], drill["total"]) == (1, 3)
    failovers = [e for e in view["recent"] if e["kind"] == "failover"]
    assert len(failovers) == 2
    assert {(e["route"], e["from"], e["to"], e["error_class"], e["status"]) for e in failovers} == {
        ("drill", "drill/drill", "echo/echo", "server_error", 500)
    }
    assert any(e["kind"] == "breaker_open" and e["from"] == "drill/drill" for e in view["recent"])
    assert view["state"] == {
        "state": "ok", "backend": "local", "processes": 1, "error": None, "restart_required": False,
        "degraded_workers": 0,
    }  # fmt: skip


async def test_a_deployment_at_its_rate_limit_says_so(serve_status, http):
    """A deployment that refused an attempt at its rpm limit shows as rate limited, with the limit and its use."""
    ask = {"model": "limit", "messages": [{"role": "user", "content": "hi"}]}
    async with serve_status() as s:
        for _ in range(2):
            async with http.post(s.url + "/v1/chat/completions", json=ask) as resp:
                assert resp.status == 200
        _, view = await get_json(http, s.url + "/admin/status")
    limited = member(view, "limit", "limited/limited")
    assert limited["state"] == "rate_limited"
    assert limited["reason"].startswith("at rpm limit (1/min")
    assert (limited["limits"]["rpm"], limited["limits"]["tpm"], limited["limits"]["used_requests"]) == (1, None, 1)


async def test_the_reload_history_shows_the_located_error(serve_status, http):
    """A failed reload is listed with its FILE:LINE:COL problem (the old config keeps serving); a good one as ok."""
    async with serve_status() as s:
        good = s.path.read_text()
        s.path.write_text(good.replace("chain: [limited, echo]", "chain: [limited, nowhere]"))
        async with http.post(s.url + "/admin/reload") as resp:
            assert resp.status == 422
        s.path.write_text(good)
        async with http.post(s.url + "/admin/reload") as resp:
            assert resp.status == 200
        _, view = await get_json(http, s.url + "/admin/status")
    latest, failed = view["reloads"][:2]
    assert latest["ok"] is True and latest["trigger"] == "POST /admin/reload" and latest["routes"] == 3
    assert failed["ok"] is False
    [problem] = failed["problems"]
    assert re.match(rf"{re.escape(str(s.path))}:\d+:\d+: .*nowhere", problem)
    assert view["config"]["reloads"] == 1 and view["config"]["reload_failures"] == 1


async def test_without_keys_only_loopback_hosts_see_it(serve_status, http):
    """With auth off, a rebound page (Host evil.example) gets 403 from the page and the JSON; loopback gets them."""
    async with serve_status() as s:
        evil = {"Host": "evil.example"}
        async with http.get(s.url + "/status", headers=evil) as resp:
            assert resp.status == 403
        async with http.get(s.url + "/admin/status", headers=evil) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"]["code"] == "host_not_allowed"
        async with http.get(s.url + "/status", headers={"Host": "localhost"}) as resp:
            assert resp.status == 200


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}])
async def test_cross_site_requests_are_refused_even_with_a_key(serve_status, http, headers):
    """The JSON, the page and the log-in refuse requests from another site, whatever they carry."""
    async with serve_status(WITH_KEY) as s:
        async with http.get(s.url + "/admin/status", headers={**BEARER, **headers}) as resp:
            assert resp.status == 403
        async with http.get(s.url + "/status", headers={**BEARER, **headers}) as resp:
            assert resp.status == 403
            assert "another site" in await resp.text()
        async with http.post(s.url + "/status/login", data={"key": KEY}, headers=headers, allow_redirects=False) as r:
            assert r.status == 403
            assert "Set-Cookie" not in r.headers


async def test_with_keys_the_page_asks_for_one_and_the_json_wants_it(serve_status, http):
    """With keys and no session the page is the log-in form (401, same strict CSP); the JSON is 401 without a key
    and 200 with one."""
    async with serve_status(WITH_KEY) as s:
        async with http.get(s.url + "/status") as resp:
            text = await resp.text()
            assert resp.status == 401
            assert '<form method="post" action="/status/login"' in text
            assert "nonce-" in resp.headers["Content-Security-Policy"]
        async with http.get(s.url + "/admin/status") as resp:
            assert resp.status == 401
        status, view = await get_json(http, s.url + "/admin/status", BEARER)
        assert status == 200 and view["routes"]


def cookie_of(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


async def test_a_key_given_once_becomes_a_session_cookie(serve_status, http):
    """Logging in sets an HttpOnly, SameSite=Strict cookie that is not the key; it opens the page and the JSON (not
    the other admin endpoints), and logging out clears it."""
    async with serve_status(WITH_KEY) as s:
        async with http.post(s.url + "/status/login", data={"key": "wrong"}, allow_redirects=False) as resp:
            assert resp.status == 401
            assert "not an admin key" in await resp.text()
            assert "Set-Cookie" not in resp.headers
        async with http.post(s.url + "/status/login", data={"key": KEY}, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/status"
            set_cookie = resp.headers["Set-Cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= attributes
        assert "SameSite=Strict" in set_cookie
        assert KEY not in set_cookie
        cookie = {"Cookie": cookie_of(set_cookie)}
        async with http.get(s.url + "/status", headers=cookie) as resp:
            assert resp.status == 200
            assert 'action="/status/logout"' in await resp.text()
        status, _ = await get_json(http, s.url + "/admin/status", cookie)
        assert status == 200
        async with http.post(s.url + "/admin/reload", headers=cookie) as resp:
            assert resp.status == 401  # the cookie is not a key
        async with http.get(s.url + "/admin/config", headers=cookie) as resp:
            assert resp.status == 401
        async with http.post(s.url + "/status/logout", headers=cookie, allow_redirects=False) as resp:
            assert resp.status == 303
            assert "Max-Age=0" in resp.headers["Set-Cookie"]


@pytest.mark.parametrize(
    "token",
    [
        session.issue("another-key", time.time()),  # a key this sidecar does not have (or no longer has)
        session.issue(KEY, time.time())[:-4] + "AAAA",  # tampered signature
        "v1.99999999999.AAAA",
        "garbage",
        "",
    ],
    ids=["other-key", "tampered", "forged", "garbage", "empty"],  # stable ids: the tokens depend on the time
)
async def test_a_forged_or_foreign_session_is_refused(serve_status, http, token):
    """A cookie not signed with one of this sidecar's keys opens nothing."""
    async with serve_status(WITH_KEY) as s:
        cookie = {"Cookie": f"{session.COOKIE}={token}"}
        async with http.get(s.url + "/admin/status", headers=cookie) as resp:
            assert resp.status == 401
        async with http.get(s.url + "/status", headers=cookie) as resp:
            assert resp.status == 401
            assert "/status/login" in await resp.text()


async def test_wrong_methods_get_405_with_allow(serve_status, http):
    """The status paths answer other methods with 405 and the method they take."""
    async with serve_status() as s:
        async with http.post(s.url + "/status") as resp:
            assert (resp.status, resp.headers["Allow"]) == (405, "GET")
        async with http.get(s.url + "/status/login") as resp:
            assert (resp.status, resp.headers["Allow"]) == (405, "POST")
        async with http.delete(s.url + "/admin/status") as resp:
            assert (resp.status, resp.headers["Allow"]) == (405, "GET")


async def test_the_icon_is_served_so_the_console_stays_clean(serve_status, http):
    """The page's icon is a small SVG from the sidecar itself."""
    async with serve_status() as s, http.get(s.url + "/status/favicon.svg") as resp:
        assert resp.status == 200 and resp.content_type == "image/svg+xml"


async def test_wrong_keys_from_one_address_are_throttled(serve_status, http):
    """Ten wrong keys from one address: the next log-in, even with the right key, gets 429 with Retry-After and the
    form says why; no session cookie is set."""
    async with serve_status(WITH_KEY) as s:
        for _ in range(10):
            async with http.post(s.url + "/status/login", data={"key": "guess"}, allow_redirects=False) as resp:
                assert resp.status == 401
        async with http.post(s.url + "/status/login", data={"key": KEY}, allow_redirects=False) as resp:
            assert resp.status == 429
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
            assert "Too many wrong keys" in await resp.text()
            assert "Set-Cookie" not in resp.headers
        status, _ = await get_json(http, s.url + "/admin/status", BEARER)  # the key itself still works as a header
        assert status == 200
