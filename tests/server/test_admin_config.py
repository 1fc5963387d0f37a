"""GET /admin/config: the served file as `turnout plan` data, behind the admin key, with no secret in it."""

from __future__ import annotations

from turnout.ops.snapshot import FORMAT


async def test_admin_config_needs_the_key_and_holds_no_secret(serve, http, keys, openai_error):
    """Without the admin key (or with a client key): 401 in OpenAI's shape. With it: the snapshot of the served file,
    no credential in the body, and the current file after a reload."""
    async with serve(server=keys.admin_server, clients=keys.clients) as s:
        for headers in ({}, {"Authorization": f"Bearer {keys.client}"}):
            async with http.get(f"{s.url}/admin/config", headers=headers) as resp:
                assert resp.status == 401
                openai_error(await resp.json(), 401)
        auth = {"Authorization": f"Bearer {keys.admin}"}
        async with http.get(f"{s.url}/admin/config", headers=auth) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store"
            text = await resp.text()
        for secret in (keys.primary, keys.backup, keys.client, keys.admin):
            assert secret not in text
        snapshot = (await resp.json())["snapshot"]
        assert snapshot["format"] == FORMAT
        assert set(snapshot["routes"]) == {"chat", "solo", "strict"}
        assert snapshot["server"]["admin_keys"] == 1
        assert snapshot["clients"]["default"]["keys"] == 1
        s.path.write_text(s.path.read_text().replace("  solo:\n    chain: [p1]\n", ""))
        async with http.post(f"{s.url}/admin/reload", headers=auth) as resp:
            assert resp.status == 200
        async with http.get(f"{s.url}/admin/config", headers=auth) as resp:
            assert set((await resp.json())["snapshot"]["routes"]) == {"chat", "strict"}


async def test_admin_config_salts_every_answer(serve, http):
    """Two answers carry different salts, so their health digests differ even for the same file."""
    async with serve() as s:
        async with http.get(f"{s.url}/admin/config") as first:
            a = (await first.json())["snapshot"]
        async with http.get(f"{s.url}/admin/config") as second:
            b = (await second.json())["snapshot"]
    assert a["salt"] != b["salt"]
    assert a["deployments"]["primary/p1"]["health"] != b["deployments"]["primary/p1"]["health"]
    assert a["routes"] == b["routes"]


async def test_admin_config_allows_only_get(serve, http):
    """Another method on /admin/config is a 405 naming GET."""
    async with serve() as s, http.post(f"{s.url}/admin/config") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET"
