"""Clients and budgets in the library: routes a client may use, its rate limits, and budgets checked against a
reservation before dispatch and settled with every attempt's cost."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from turnout import (
    AllUpstreamsFailed,
    AttemptCharged,
    BudgetExhausted,
    BudgetWarning,
    ClientRateLimited,
    RequestStarted,
    ResponseCompleted,
    RouteNotAllowed,
    RouteNotFound,
    UnknownClient,
)
from turnout.schema import load_text
from turnout.state import UsageKey

HI = [{"role": "user", "content": "hello there"}]
# 1000 USD per 1M tokens in and out: a token costs $0.001; a reply to HI is ~2 tokens, its prompt ~6.
FILE = """\
version: 1
defaults: {{retry: {{attempts: 0}}}}
providers:
  a: {{driver: mock, options: {{request_directives: true}}}}
  b: {{driver: mock}}
models:
  dear: {{provider: a, price: {{input: 1000, output: 1000}}{dear}}}
  cheap: {{provider: b, price: {{input: 1, output: 1}}}}
  free: {{provider: b}}
routes:
  chat: {{chain: [dear, cheap]{route}}}
  other: {{chain: [cheap]}}
  open: {{chain: [free]}}
clients:
  team:
    keys: [a-long-key-for-the-team-0001]
    routes: [chat, "op*"]
    {client}
  batch: {{keys: [a-long-key-for-batch-0002]}}
"""


def _file(*, client: str = "", route: str = "", dear: str = "") -> str:
    return FILE.format(client=client or "unpriced: allow", route=route, dear=dear)


async def _until_refused(send, at_most: int = 20):
    """Send until a budget refuses: (the answers served, the refusal)."""
    served = []
    for _ in range(at_most):
        try:
            served.append(await send())
        except BudgetExhausted as refused:
            return served, refused
    raise AssertionError(f"no budget refused {at_most} requests")


async def test_a_client_may_use_only_its_routes_and_learns_of_no_others(build):
    """A route outside the client's list is RouteNotAllowed; an unknown one lists only the client's routes."""
    async with build(_file()) as router:
        with pytest.raises(RouteNotAllowed) as denied:
            await router.chat(model="other", messages=HI, client="team")
        with pytest.raises(RouteNotFound) as unknown:
            await router.chat(model="nope", messages=HI, client="team")
        assert (await router.chat(model="other", messages=HI, client="batch")).served_by == "b/cheap"
    assert "other" not in str(unknown.value) and "chat" in str(unknown.value)
    assert "This API key may not use the model 'other'" in str(denied.value)
    assert "open" not in str(denied.value) and "chat" not in str(denied.value)


async def test_naming_an_undeclared_client_is_an_error(build):
    """`client=` must name a declared client: a typo is caught, never served as anonymous."""
    async with build(_file()) as router:
        with pytest.raises(UnknownClient, match="No client named 'teem'"):
            await router.chat(model="chat", messages=HI, client="teem")


async def test_a_client_budget_refuses_once_spent_naming_the_period_and_reset(build, recorder):
    """Spend is charged per attempt; once a request's reservation no longer fits, BudgetExhausted says whose
    budget, its period, and when it resets."""
    async with build(_file(client="budget: {usd: 0.05, per: day}")) as router:
        served, error = await _until_refused(
            lambda: router.chat(model="chat", messages=HI, max_tokens=10, client="team")
        )
        spent = (await router.usage())[UsageKey("chat", "a/dear", "team")].cost_usd
    assert len(served) >= 2
    assert spent == pytest.approx(sum(r.cost_usd for r in served))
    assert spent <= 0.05
    assert error.budget == "client 'team'" and error.period == "day"
    tomorrow = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=1)
    assert error.resets_at == datetime.datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=datetime.UTC)
    assert f"resets at {tomorrow.isoformat()}T00:00:00Z" in error.message
    assert recorder.of(ResponseCompleted)[-1].error_class == "budget_exhausted"


async def test_a_reservation_larger_than_what_is_left_is_refused_with_the_reason(build):
    """A request whose max_tokens could cost more than the budget holds is refused before it is sent."""
    async with build(_file(client="budget: {usd: 1, per: month}")) as router:
        with pytest.raises(BudgetExhausted, match=r"less than the request's reservation of \$10\.0") as refused:
            await router.chat(model="chat", messages=HI, max_tokens=10_000, client="team")
        assert await router.usage() == {}
    assert refused.value.period == "month"


async def test_a_route_budget_applies_to_everyone(build):
    """A route's budget counts every client's spend (and anonymous callers'); over it, the route refuses."""
    async with build(_file(route=", budget: {usd: 0.03, per: week}")) as router:
        await router.chat(model="chat", messages=HI, max_tokens=10, client="team")
        await router.chat(model="chat", messages=HI, max_tokens=10)
        _, refused = await _until_refused(lambda: router.chat(model="chat", messages=HI, max_tokens=10, client="batch"))
    assert refused.budget == "route 'chat'" and refused.period == "week"
    assert refused.resets_at is not None and refused.resets_at.weekday() == 0  # Monday 00:00 UTC


async def test_an_exhausted_deployment_budget_is_skipped_like_a_limited_deployment(build):
    """Over its budget a deployment is skipped with the reason and the chain moves on to the next."""
    async with build(_file(dear=", budget: {usd: 0.02, per: day}")) as router:
        served = [await router.chat(model="chat", messages=HI, max_tokens=10) for _ in range(4)]
    assert served[0].served_by == "a/dear"
    assert served[-1].served_by == "b/cheap"
    skipped = served[-1].attempts[0]
    assert skipped.outcome == "skipped" and skipped.detail.startswith("over its budget ($0.02 per day; resets ")


async def test_when_every_deployment_is_over_budget_the_request_gets_budget_exhausted(build):
    """A route whose only deployments are all over budget refuses with BudgetExhausted, not a 503-like failure."""
    text = _file(dear=", budget: {usd: 0.01, per: total}").replace("chain: [dear, cheap]", "chain: [dear]")
    async with build(text) as router:
        _, refused = await _until_refused(lambda: router.chat(model="chat", messages=HI, max_tokens=2))
    assert "Every deployment of route 'chat' is over its budget (deployment 'a/dear')" in refused.message
    assert refused.resets_at is None and "never resets" in refused.message


async def test_a_budgeted_client_skips_unpriced_deployments_unless_allowed(build):
    """unpriced: deny (the default with a budget) skips a deployment with no price; allow serves it uncounted."""
    async with build(_file(client="budget: {usd: 5}")) as router:
        with pytest.raises(AllUpstreamsFailed) as failed:
            await router.chat(model="open", messages=HI, client="team")
    assert "no price: client 'team' has a budget" in failed.value.attempts[0].detail
    async with build(_file(client="budget: {usd: 5}\n    unpriced: allow")) as router:
        reply = await router.chat(model="open", messages=HI, client="team")
        row = (await router.usage())[UsageKey("open", "b/free", "team")]
    assert reply.served_by == "b/free" and row.unpriced_requests == 1 and row.cost_usd == 0


async def test_a_client_over_its_rate_limit_is_told_when_to_retry(build, clock):
    """A client's rpm is its own (across routes); the refusal carries the seconds until its window frees."""
    async with build(_file(client="limits: {rpm: 2}")) as router:
        await router.chat(model="chat", messages=HI, client="team")
        clock.advance(10)
        await router.chat(model="open", messages=HI, client="team")
        with pytest.raises(ClientRateLimited) as refused:
            await router.chat(model="chat", messages=HI, client="team")
        await router.chat(model="chat", messages=HI, client="batch")  # another client is not limited
        clock.advance(50.5)
        await router.chat(model="chat", messages=HI, client="team")  # the first admission left the window
    assert refused.value.retry_after == pytest.approx(50.0, abs=0.01)
    assert refused.value.message == "Rate limit reached for client 'team': at rpm limit (2/min). Retry after 50s."


async def test_a_streamed_answer_is_charged_from_its_usage_chunk(build, recorder):
    """A stream's cost comes from its final usage chunk and lands in the ledger and an AttemptCharged event."""
    async with build(_file(client="budget: {usd: 5}")) as router:
        stream = router.stream(model="chat", messages=HI, max_tokens=10, client="team", tag="search/box")
        async for _ in stream:
            pass
        row = (await router.usage())[UsageKey("chat", "a/dear", "team")]
    assert stream.cost_usd is not None and stream.cost_usd > 0
    assert row.cost_usd == pytest.approx(stream.cost_usd) and row.estimated_usd == 0
    [charged] = recorder.of(AttemptCharged)
    assert (charged.client, charged.tag, charged.estimated) == ("team", "search/box", False)
    assert charged.cost_usd == pytest.approx(stream.cost_usd)


async def test_a_cut_stream_is_charged_its_reservation_not_nothing(build):
    """A stream cut after content reported no usage, yet was billed: it is charged its reservation, estimated."""
    cut = {"turnout_mock": {"faults": [{"kind": "cut", "after_chunks": 1}]}}
    async with build(_file(client="budget: {usd: 5}")) as router:
        stream = router.stream(model="chat", messages=HI, max_tokens=10, client="team", **cut)
        with pytest.raises(Exception):  # noqa: B017 - the cut itself is the streaming tests' subject
            async for _ in stream:
                pass
        row = (await router.usage())[UsageKey("chat", "a/dear", "team")]
    assert row.requests == 0
    assert row.cost_usd == row.estimated_usd == pytest.approx((6 + 10) * 0.001)


async def test_a_failed_attempt_that_was_not_billed_costs_nothing(build):
    """An upstream error status before any output bills nothing: the budget is untouched."""
    fault = {"turnout_mock": {"faults": [{"kind": "status", "status": 500}]}}
    async with build(_file(client="budget: {usd: 5}")) as router:
        reply = await router.chat(model="chat", messages=HI, client="team", **fault)
        rows = await router.usage()
    assert reply.served_by == "b/cheap"
    assert UsageKey("chat", "a/dear", "team") not in rows


async def test_concurrent_requests_overshoot_a_budget_by_at_most_the_reservations_in_flight(build):
    """100 concurrent requests on a budget of a few cents: each reserves before dispatch, so the spend never
    passes the budget by more than the reservations in flight (here: not at all; the figures are printed)."""
    budget = 0.05
    text = _file(client=f"budget: {{usd: {budget}}}").replace("{request_directives: true}", "{latency: 20ms}")
    async with build(text, real_time=True) as router:
        results = await asyncio.gather(
            *(router.chat(model="chat", messages=HI, max_tokens=10, client="team") for _ in range(100)),
            return_exceptions=True,
        )
        spent = (await router.usage())[UsageKey("chat", "a/dear", "team")].cost_usd
        reserved_now = router.state.meter.reserved
    served = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExhausted)]
    reservation = (6 + 10) * 0.001
    in_flight_bound = int(budget // reservation) * reservation
    overshoot = max(0.0, spent - budget)
    print(
        f"\n100 concurrent requests, budget ${budget}: served {len(served)}, refused {len(refused)}, spent "
        f"${spent:.4f}, overshoot ${overshoot:.4f} (bound: reservations in flight ${in_flight_bound:.4f})"
    )
    assert len(served) + len(refused) == 100 and served and refused
    assert overshoot <= in_flight_bound
    assert spent <= budget  # one process sees all its own reservations: no overshoot at all
    assert reserved_now == {}  # every reservation was released


async def test_a_reload_with_a_new_budget_applies_at_once_and_keeps_the_spend(build):
    """Raising a budget by reload lets the client go on at once; lowering it refuses at once; spend is kept."""
    async with build(_file(client="budget: {usd: 0.02}")) as router:
        await _until_refused(lambda: router.chat(model="chat", messages=HI, max_tokens=10, client="team"))
        before = (await router.usage())[UsageKey("chat", "a/dear", "team")].cost_usd
        router.swap(load_text(_file(client="budget: {usd: 1}"), env={}))
        await router.chat(model="chat", messages=HI, max_tokens=10, client="team")
        after = (await router.usage())[UsageKey("chat", "a/dear", "team")].cost_usd
        router.swap(load_text(_file(client="budget: {usd: 0.01}"), env={}))
        with pytest.raises(BudgetExhausted):
            await router.chat(model="chat", messages=HI, max_tokens=10, client="team")
    assert after > before > 0


async def test_passing_warn_at_warns_once_per_period(build, recorder, caplog):
    """warn_at logs a warning and emits one BudgetWarning per period, however many requests follow."""
    async with build(_file(client="budget: {usd: 1, warn_at: 0.01}")) as router:
        for _ in range(4):
            await router.chat(model="chat", messages=HI, max_tokens=10, client="team")
    [warning] = [e for e in recorder.of(BudgetWarning) if e.level == "warn"]
    assert (warning.budget, warning.period, warning.limit_usd) == ("client 'team'", "day", 1.0)
    assert sum("budget: client 'team' has spent or reserved" in r.message for r in caplog.records) == 1


async def test_events_carry_the_client_and_a_sanitised_tag(build, recorder):
    """RequestStarted and ResponseCompleted name the client; a tag is cut to 64 safe characters."""
    async with build(_file()) as router:
        await router.chat(model="chat", messages=HI, client="team", tag="feature x\n" + "y" * 100)
    started, done = recorder.of(RequestStarted)[0], recorder.of(ResponseCompleted)[0]
    assert started.client == done.client == "team"
    assert started.tag == done.tag == "feature_x_" + "y" * 54


EMBED = """\
version: 1
providers: {m: {driver: mock}}
models:
  vec: {provider: m, kind: embeddings, dimensions: 8, price: {input: 1000}}
  talk: {provider: m, price: {input: 1, output: 1}}
routes:
  embed: {kind: embeddings, chain: [vec], aliases: [text-embedding-3-small]}
  chat: {chain: [talk]}
clients:
  indexer: {keys: [indexer-key-0123456789], routes: [embed], budget: {usd: 0.05, per: day}}
  chatty: {keys: [chatty-key-01234567890], routes: [chat]}
"""


async def test_embeddings_apply_the_same_clients_and_budgets(build):
    """router.embed(client=...) checks the client's routes (an alias counts as its route), charges the client's
    budget with the input's cost (no output allowance) and refuses once it is spent."""
    async with build(EMBED) as router:
        with pytest.raises(RouteNotAllowed):
            await router.embed(model="text-embedding-3-small", input="a document", client="chatty")
        served, refused = await _until_refused(
            lambda: router.embed(model="text-embedding-3-small", input="a short document", client="indexer")
        )
        rows = await router.usage()
    row = rows[UsageKey("embed", "m/vec", "indexer")]
    assert len(served) >= 3 and row.requests == len(served)
    assert row.cost_usd == pytest.approx(sum(r.cost_usd for r in served)) and row.cost_usd <= 0.05
    assert refused.budget == "client 'indexer'"
