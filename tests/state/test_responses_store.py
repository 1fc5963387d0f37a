"""Stored responses (the Responses API's previous_response_id and GET /v1/responses/{id}): the local sqlite store
(memory or the ledger file, shared by workers, bounded by ttl and size) and the Redis store on a real redis-server
(shared by replicas, expiring with the ttl, falling back to memory while Redis is away)."""

from __future__ import annotations

import asyncio
import json

import pytest

from turnout import Router
from turnout.schema import load_text
from turnout.state.base import StoreError
from turnout.state.local_responses import LocalResponses
from turnout.state.responses import ChainBroken, StoredResponse, conversation

pytestmark = pytest.mark.timeout(60)
DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def record(
    rid: str, text: str, chain: tuple[str, ...] = (), said: str = "hi", *, rendered: bool = False
) -> StoredResponse:
    item = {"id": f"msg_{rid}", "type": "message", "role": "assistant", "content": text}
    response = {"id": rid, "object": "response", "output": [item]}
    inputs = [{"role": "user", "content": said}]
    encoded, data = json.dumps(response).encode(), json.dumps(inputs).encode()
    return StoredResponse(rid, encoded, data, chain, created=1.0, rendered=rendered)


@pytest.fixture
async def memory():
    store = LocalResponses(None, max_size=1024**2, wall=Clock())
    yield store
    await store.aclose()


async def test_a_kept_response_reads_back_and_deletes(memory):
    """put, get, get_many (None for an unknown id, in order) and delete (False the second time)."""
    await memory.put(record("resp_a", "one"), 60)
    got = await memory.get("resp_a")
    assert got == record("resp_a", "one")
    assert [r.id if r else None for r in await memory.get_many(["resp_x", "resp_a"])] == [None, "resp_a"]
    assert await memory.delete("resp_a") is True
    assert await memory.delete("resp_a") is False
    assert await memory.get("resp_a") is None


async def test_a_rendered_responses_items_go_back_without_their_ids(memory):
    """turnout's own ids are left out when a rendered Response's items continue a conversation; an upstream's stay."""
    await memory.put(record("mine", "x", rendered=True), 60)
    await memory.put(record("theirs", "y"), 60)
    mine, theirs = await memory.get("mine"), await memory.get("theirs")
    assert mine.rendered and not theirs.rendered
    assert "id" not in mine.items()[1] and theirs.items()[1]["id"] == "msg_theirs"


async def test_a_conversation_is_its_chain_oldest_first(memory):
    """conversation() gives every earlier input and output, oldest first, then the latest response's own."""
    await memory.put(record("r1", "Paris.", said="Capital?"), 60)
    await memory.put(record("r2", "2 million.", ("r1",), said="Population?"), 60)
    await memory.put(record("r3", "The Seine.", ("r1", "r2"), said="River?"), 60)
    head, items = await conversation(memory, "r3")
    assert head.previous == "r2"
    assert [i.get("content") for i in items] == [
        "Capital?",
        "Paris.",
        "Population?",
        "2 million.",
        "River?",
        "The Seine.",
    ]
    assert await conversation(memory, "nope") is None


async def test_expiry_counts_from_the_latest_response_of_a_conversation():
    """A response expires ttl after it was kept, unless a later one continues its conversation: then it lives as long
    as that one. A conversation whose earlier response is gone cannot be continued (ChainBroken names it)."""
    clock = Clock()
    store = LocalResponses(None, max_size=1024**2, wall=clock)
    try:
        await store.put(record("old", "a"), DAY)
        await store.put(record("lone", "b"), DAY)
        clock.now += 0.9 * DAY
        await store.put(record("new", "c", ("old",)), DAY)
        clock.now += 0.2 * DAY
        assert await store.get("lone") is None
        assert (await store.get("old")) is not None
        _, items = await conversation(store, "new")
        assert len(items) == 4
        await store.put(record("orphan", "d", ("gone",)), DAY)
        with pytest.raises(ChainBroken, match="'gone'"):
            await conversation(store, "orphan")
    finally:
        await store.aclose()


async def test_the_store_stays_within_max_size_dropping_the_soonest_to_expire():
    """Past max_size the rows that expire soonest are dropped first; the newest stay readable."""
    clock = Clock()
    store = LocalResponses(None, max_size=6000, wall=clock)
    try:
        for n in range(40):
            clock.now += 1
            big = StoredResponse(f"r{n}", b'{"output": []}' + b" " * 400, b"[]", ())
            await store.put(big, 60)
        kept = [r for r in await store.get_many([f"r{n}" for n in range(40)]) if r is not None]
        assert 0 < len(kept) <= 6000 // 400
        assert kept[-1].id == "r39"
        assert "r0" not in {r.id for r in kept}
    finally:
        await store.aclose()


async def test_a_ledger_file_is_shared_and_survives_a_restart(tmp_path):
    """Two stores on one file (two workers) see each other's responses; a new store after both closed still does.
    The file is created only when a first response is kept."""
    path = str(tmp_path / "state" / "ledger.sqlite3")
    first, second = LocalResponses(path, max_size=1024**2), LocalResponses(path, max_size=1024**2)
    try:
        assert not (tmp_path / "state").exists()
        await first.put(record("resp_w1", "from worker one"), 60)
        assert (await second.get("resp_w1")).response == record("resp_w1", "from worker one").response
    finally:
        await first.aclose()
        await second.aclose()
    again = LocalResponses(path, max_size=1024**2)
    try:
        assert (await again.get("resp_w1")) is not None
    finally:
        await again.aclose()


async def test_an_unusable_file_is_a_store_error_naming_it(tmp_path):
    """A ledger path that cannot hold a database (a directory) raises StoreError, never a bare sqlite error."""
    (tmp_path / "is-a-dir").mkdir()
    store = LocalResponses(str(tmp_path / "is-a-dir"), max_size=1024**2)
    try:
        with pytest.raises(StoreError, match="is-a-dir"):
            await store.put(record("r", "x"), 60)
    finally:
        await store.aclose()


# -- Redis --------------------------------------------------------------------------------------------------------
FILE = """\
version: 1
providers: {{a: {{driver: mock}}}}
models: {{m: {{provider: a}}}}
routes: {{chat: {{chain: [m]}}}}
state: {{backend: redis, url: "{url}", key_prefix: "t16:", sync_interval: 100ms, responses: {{ttl: 2m}}}}
"""


def redis_router(url: str) -> Router:
    return Router(load_text(FILE.format(url=url), env={}))


async def test_redis_keeps_responses_for_every_replica_with_the_ttl(redis_server):
    """A response kept by one replica is read by another; its key is under the prefix's hash tag, expires with the
    ttl, and continuing its conversation extends the chain's expiry."""
    async with redis_router(redis_server.url) as a, redis_router(redis_server.url) as b:
        await a.state.responses.put(record("resp_r1", "first", rendered=True), 120)
        await asyncio.sleep(0)
        redis_server.command("PEXPIRE", "{t16:}resp:resp_r1", 5000)
        await b.state.responses.put(record("resp_r2", "second", ("resp_r1",)), 120)
        head, items = await conversation(a.state.responses, "resp_r2")
        assert head.client == "" and [i.get("content") for i in items] == ["hi", "first", "hi", "second"]
        assert "id" not in items[1] and items[3]["id"] == "msg_resp_r2" and not head.rendered
        assert 110_000 < redis_server.command("PTTL", "{t16:}resp:resp_r1") <= 120_000
        assert 110_000 < redis_server.command("PTTL", "{t16:}resp:resp_r2") <= 120_000
        assert await b.state.responses.delete("resp_r1") is True
        assert await a.state.responses.get("resp_r1") is None
        with pytest.raises(ChainBroken):
            await conversation(b.state.responses, "resp_r2")


async def test_redis_away_keeps_responses_in_memory_and_says_when_it_cannot_know(redis_server):
    """With Redis gone a response is still kept (in this process) and found again; an id this process never kept
    raises StoreError (it may well be in Redis), never "not found"."""
    async with redis_router(redis_server.url) as router:
        store = router.state.responses
        await store.put(record("resp_before", "kept in redis"), 120)
        redis_server.stop()
        for _ in range(100):  # the backend notices the lost connection by itself
            if router.state.status()["state"] == "degraded":
                break
            await asyncio.sleep(0.05)
        await store.put(record("resp_during", "kept locally"), 120)
        assert (await store.get("resp_during")).response == record("resp_during", "kept locally").response
        with pytest.raises(StoreError, match="unavailable"):
            await store.get("resp_before")
