"""Clients, keys and budgets through the sidecar, as the official `openai` SDK sees them: 401, 403, 429 (rate and
budget) and success; streams priced from their usage chunk; spend in /admin/spend and /metrics; reload; admin keys."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import openai
import pytest

from turnout.types import Usage

ASK = [{"role": "user", "content": "hello there"}]
TEAM_KEY = "team-key-SECRET-00000001"
BATCH_KEY = "batch-key-SECRET-0000002"
ADMIN_KEY = "admin-key-SECRET-0000003"
CLIENTS = f"""\
clients:
  team:
    keys: ["{TEAM_KEY}"]
    routes: [chat]
    limits: {{rpm: @RPM@}}
    budget: {{usd: @USD@, per: day}}
  batch:
    keys: ["{BATCH_KEY}"]
"""


def _clients(*, rpm: int = 1000, usd: str = "5") -> str:
    return CLIENTS.replace("@RPM@", str(rpm)).replace("@USD@", usd)


async def _spend_until_refused(client: openai.AsyncOpenAI) -> openai.RateLimitError:
    """Ask until the budget refuses (at most 100 requests); the SDK's exception."""
    for _ in range(100):
        try:
            await client.chat.completions.create(model="chat", messages=ASK, max_tokens=10)
        except openai.RateLimitError as refused:
            return refused
    raise AssertionError("the budget never refused")


def _serve(serve, **options):
    return serve(server=f'  admin_keys: ["{ADMIN_KEY}"]\n', clients=_clients(**options))


async def test_the_sdk_gets_401_403_and_success(serve, primary):
    """An unknown key is AuthenticationError (401); a route outside the client's list PermissionDeniedError (403,
    permission_denied, naming no other route); the client's own route answers."""
    primary.default("chat", primary.text("ok"))
    async with _serve(serve) as s:
        with pytest.raises(openai.AuthenticationError) as unknown:
            await s.client("not-a-key").chat.completions.create(model="chat", messages=ASK)
        with pytest.raises(openai.AuthenticationError):
            await s.client(ADMIN_KEY).chat.completions.create(model="chat", messages=ASK)  # admin keys are not client's
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await s.client(TEAM_KEY).chat.completions.create(model="solo", messages=ASK)
        reply = await s.client(TEAM_KEY).chat.completions.create(model="chat", messages=ASK)
        other = await s.client(BATCH_KEY).chat.completions.create(model="solo", messages=ASK)
    assert unknown.value.code == "invalid_api_key"
    assert denied.value.code == "permission_denied"
    assert denied.value.body["message"] == "This API key may not use the model 'solo'."
    assert reply.choices[0].message.content == "ok" and other.choices[0].message.content == "ok"


async def test_a_client_over_its_rpm_gets_429_with_retry_after(serve, primary):
    """The client's own rpm: RateLimitError (429 rate_limit_exceeded) with Retry-After; another client goes on."""
    primary.default("chat", primary.text("ok"))
    async with _serve(serve, rpm=2) as s:
        team = s.client(TEAM_KEY)
        for _ in range(2):
            await team.chat.completions.create(model="chat", messages=ASK)
        with pytest.raises(openai.RateLimitError) as limited:
            await team.chat.completions.create(model="chat", messages=ASK)
        await s.client(BATCH_KEY).chat.completions.create(model="chat", messages=ASK)
    assert limited.value.code == "rate_limit_exceeded"
    assert "Rate limit reached for client 'team': at rpm limit (2/min)" in limited.value.message
    assert 50 <= int(limited.value.response.headers["Retry-After"]) <= 60


async def test_a_spent_budget_is_429_insufficient_quota_naming_period_and_reset(serve, primary):
    """Over its budget a client gets RateLimitError with code insufficient_quota, the period and the UTC reset, and
    Retry-After until then."""
    primary.default("chat", primary.text("a few words of answer"))
    async with _serve(serve, usd="0.0001") as s:
        spent = await _spend_until_refused(s.client(TEAM_KEY))
    error = spent.body
    assert spent.code == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert (error["budget"], error["period"]) == ("client 'team'", "day")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00Z", error["resets_at"])
    assert f"resets at {error['resets_at']}" in spent.message
    assert 0 < int(spent.response.headers["Retry-After"]) <= 86400


async def test_a_stream_is_priced_from_its_usage_chunk_and_counted_in_spend(serve, primary, http):
    """A streamed answer's cost comes from the upstream's usage chunk: it is in /admin/spend, in the metric
    turnout_spend_usd_total with the client's name, and in the access log line."""
    primary.default("chat", primary.stream_text(["one ", "two ", "three ", "four"], usage=Usage(100, 50)))
    async with _serve(serve) as s:
        stream = await s.client(TEAM_KEY).chat.completions.create(
            model="chat", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with http.get(f"{s.url}/admin/spend", headers=admin) as resp:
            spend = await resp.json()
        async with http.get(f"{s.url}/metrics", headers=admin) as resp:
            metrics = await resp.text()
        line = json.loads(s.access_lines()[-1])
    cost = (100 * 1.0 + 50 * 2.0) / 1e6
    assert text == "one two three four"
    [row] = spend["rows"]
    assert (row["client"], row["route"], row["deployment"]) == ("team", "chat", "primary/p1")
    assert row["cost_usd"] == pytest.approx(cost) and row["estimated_usd"] == 0
    assert spend["budgets"][0]["spent_usd"] == pytest.approx(cost)
    series = re.search(
        r'^turnout_spend_usd_total\{client="team",deployment="primary/p1",route="chat"\} (\S+)$', metrics, re.M
    )
    assert series is not None and float(series.group(1)) == pytest.approx(cost)
    assert (line["client"], line["cost_usd"]) == ("team", pytest.approx(cost))


async def test_a_reload_with_a_changed_budget_applies_at_once_and_keeps_the_spend(serve, primary, http):
    """A spent client is refused; raising its budget by reload serves it again at once; the spend is kept."""
    primary.default("chat", primary.text("a few words of answer"))
    async with _serve(serve, usd="0.0001") as s:
        team = s.client(TEAM_KEY)
        await _spend_until_refused(team)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with http.get(f"{s.url}/admin/spend", headers=admin) as resp:
            before = (await resp.json())["total"]["cost_usd"]
        s.path.write_text(s.path.read_text().replace("usd: 0.0001", "usd: 5"))
        async with http.post(f"{s.url}/admin/reload", headers=admin) as resp:
            assert resp.status == 200
        await team.chat.completions.create(model="chat", messages=ASK, max_tokens=10)
        async with http.get(f"{s.url}/admin/spend", headers=admin) as resp:
            after = await resp.json()
    assert before > 0 and after["total"]["cost_usd"] > before
    assert after["budgets"][0]["usd"] == 5.0


async def test_admin_endpoints_refuse_client_keys(serve, http):
    """A client key opens no admin endpoint (reload, config, spend, metrics, the readyz detail); the admin key does,
    and the admin key opens no model endpoint."""
    async with _serve(serve) as s:
        results = {}
        for who, key in (("client", TEAM_KEY), ("admin", ADMIN_KEY)):
            auth = {"Authorization": f"Bearer {key}"}
            async with http.post(f"{s.url}/admin/reload", headers=auth) as resp:
                results[(who, "reload")] = resp.status
            for path in ("/admin/config", "/admin/spend", "/metrics", "/v1/models"):
                async with http.get(s.url + path, headers=auth) as resp:
                    results[(who, path)] = resp.status
            async with http.get(f"{s.url}/readyz", headers=auth) as resp:
                results[(who, "detail")] = "routes" in await resp.json()
    assert results == {
        ("client", "reload"): 401,
        ("client", "/admin/config"): 401,
        ("client", "/admin/spend"): 401,
        ("client", "/metrics"): 401,
        ("client", "/v1/models"): 200,
        ("client", "detail"): False,
        ("admin", "reload"): 200,
        ("admin", "/admin/config"): 200,
        ("admin", "/admin/spend"): 200,
        ("admin", "/metrics"): 200,
        ("admin", "/v1/models"): 401,
        ("admin", "detail"): True,
    }


async def test_admin_spend_filters_and_refuses_bad_queries(serve, primary, http):
    """/admin/spend?client=&period= narrows the report; an unknown client or period is a 400 naming the parameter."""
    primary.default("chat", primary.text("ok"))
    async with _serve(serve) as s:
        await s.client(TEAM_KEY).chat.completions.create(model="chat", messages=ASK)
        await s.client(BATCH_KEY).chat.completions.create(model="solo", messages=ASK)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with http.get(f"{s.url}/admin/spend?client=batch&period=month", headers=admin) as resp:
            batch = await resp.json()
        bad = {}
        for query in ("client=nobody", "period=year", "at=yesterday"):
            async with http.get(f"{s.url}/admin/spend?{query}", headers=admin) as resp:
                bad[query] = (resp.status, (await resp.json())["error"]["param"])
    assert [r["client"] for r in batch["rows"]] == ["batch"] and batch["period"] == "month"
    assert batch["budgets"] == []
    assert bad == {"client=nobody": (400, "client"), "period=year": (400, "period"), "at=yesterday": (400, "at")}


async def test_models_lists_only_the_clients_routes(serve, http):
    """/v1/models shows a client its own routes; /v1/models/{other} is 403, an unknown one 404."""
    async with _serve(serve) as s:
        auth = {"Authorization": f"Bearer {TEAM_KEY}"}
        async with http.get(f"{s.url}/v1/models", headers=auth) as resp:
            listed = [m["id"] for m in (await resp.json())["data"]]
        async with http.get(f"{s.url}/v1/models/solo", headers=auth) as resp:
            other = resp.status
        async with http.get(f"{s.url}/v1/models/nope", headers=auth) as resp:
            unknown = (resp.status, (await resp.json())["error"]["message"])
    assert listed == ["chat"]
    assert other == 403
    assert unknown[0] == 404 and "solo" not in unknown[1] and "strict" not in unknown[1]


async def test_keys_never_reach_logs_and_unknown_keys_are_named_by_digest(serve, primary, http, caplog):
    """The access log names the client and its tag (sanitised); an unknown key appears only as a digest prefix, in
    the access log and once in the server log, never as itself."""
    primary.default("chat", primary.text("ok"))
    caplog.set_level(logging.WARNING, logger="turnout.server")
    body = {"model": "chat", "messages": ASK}
    async with _serve(serve) as s:
        tagged = {"Authorization": f"Bearer {TEAM_KEY}", "x-turnout-tag": "search box\tv2"}
        async with http.post(f"{s.url}/v1/chat/completions", json=body, headers=tagged) as resp:
            assert resp.status == 200
        for _ in range(3):
            async with http.post(
                f"{s.url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer guessed-key-XYZ"}
            ) as resp:
                assert resp.status == 401
        await asyncio.sleep(0)
        lines = [json.loads(line) for line in s.access_lines()]
    logged = s.access.getvalue() + caplog.text
    for secret in (TEAM_KEY, BATCH_KEY, ADMIN_KEY, "guessed-key-XYZ"):
        assert secret not in logged
    assert (lines[0]["client"], lines[0]["tag"]) == ("team", "search_box_v2")
    assert lines[1]["client"] is None and re.fullmatch(r"sha256:[0-9a-f]{8}…", lines[1]["unknown_key"])
    assert caplog.text.count("unknown client key sha256:") == 1  # once a minute per key, whatever the flood


async def test_rotating_a_key_is_adding_the_new_one_then_removing_the_old(serve, primary, http):
    """Reloading with a second key lets both keys in at once; reloading without the old one refuses it at once,
    and the client (same name) keeps its spend."""
    primary.default("chat", primary.text("ok"))
    new_key = "team-key-SECRET-rotated-02"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with _serve(serve) as s:
        await s.client(TEAM_KEY).chat.completions.create(model="chat", messages=ASK)
        s.path.write_text(s.path.read_text().replace(f'keys: ["{TEAM_KEY}"]', f'keys: ["{TEAM_KEY}", "{new_key}"]'))
        async with http.post(f"{s.url}/admin/reload", headers=admin) as resp:
            assert resp.status == 200
        for key in (TEAM_KEY, new_key):
            await s.client(key).chat.completions.create(model="chat", messages=ASK)
        s.path.write_text(s.path.read_text().replace(f'"{TEAM_KEY}", ', ""))
        async with http.post(f"{s.url}/admin/reload", headers=admin) as resp:
            assert resp.status == 200
        with pytest.raises(openai.AuthenticationError):
            await s.client(TEAM_KEY).chat.completions.create(model="chat", messages=ASK)
        await s.client(new_key).chat.completions.create(model="chat", messages=ASK)
        async with http.get(f"{s.url}/admin/spend", headers=admin) as resp:
            rows = (await resp.json())["rows"]
    assert [(r["client"], r["requests"]) for r in rows] == [("team", 4)]
