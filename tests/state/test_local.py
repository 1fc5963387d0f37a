"""The local state backend through a Router: per-worker shares of limits, the usage ledger and readiness."""

from __future__ import annotations

import pytest

from turnout import Router
from turnout.schema import load_text
from turnout.state import LocalState, UsageKey, UsageTotals

HI = [{"role": "user", "content": "hello there"}]

FILE = """\
version: 1
defaults: {retry: {attempts: 0}}
providers:
  a: {driver: mock}
  b: {driver: mock, options: {request_directives: true}}
models:
  limited: {provider: a, limits: {rpm: 8}, price: {input: 1.0, output: 2.0}}
  spare: {provider: b, price: {input: 0.5, output: 0.5}}
  unpriced: {provider: b}
routes:
  chat: {chain: [limited, spare]}
  free: {chain: [unpriced]}
"""


def _router(text: str = FILE, **options) -> Router:
    return Router(load_text(text, env={}), **options)


async def test_each_of_n_workers_enforces_its_share_of_a_limit():
    """With workers=4 a limit of 8 rpm admits 2 per process; the third request moves on down the chain."""
    async with _router(workers=4) as router:
        served = [(await router.chat(model="chat", messages=HI)) for _ in range(3)]
    assert [r.served_by for r in served] == ["a/limited", "a/limited", "b/spare"]
    assert served[2].attempts[0].detail == "at rpm limit (2/min: 1 of 4 workers' share of 8 rpm)"


async def test_a_single_worker_enforces_the_whole_limit():
    """workers=1 (the default) enforces the configured limit itself, with today's message."""
    async with _router() as router:
        served = [(await router.chat(model="chat", messages=HI)) for _ in range(9)]
    assert [r.served_by for r in served].count("a/limited") == 8
    assert served[8].attempts[0].detail == "at rpm limit (8/min)"


def test_workers_must_be_positive():
    """A Router for zero processes is a programming error, reported at once."""
    with pytest.raises(ValueError, match="workers must be >= 1"):
        _router(workers=0)


async def test_two_routers_in_one_process_keep_separate_windows():
    """Local state belongs to one Router: a second Router's requests do not use up the first one's limit."""
    async with _router(workers=4) as first, _router(workers=4) as second:
        for _ in range(2):
            assert (await first.chat(model="chat", messages=HI)).served_by == "a/limited"
        assert (await second.chat(model="chat", messages=HI)).served_by == "a/limited"


async def test_usage_is_counted_per_route_deployment_and_day():
    """Served requests add requests, tokens and cost to today's row of their route and deployment."""
    async with _router() as router:
        reply = await router.chat(model="chat", messages=HI)
        stream = router.stream(model="chat", messages=HI)
        async for _ in stream:
            pass
        day = await router.usage()
        month = await router.usage("month")
        total = await router.usage("total")
    row = day[UsageKey("chat", "a/limited", "")]
    assert row.requests == 2
    assert row.input_tokens == reply.usage.prompt_tokens + stream.usage.prompt_tokens
    assert row.output_tokens == reply.usage.completion_tokens + stream.usage.completion_tokens
    assert row.cost_usd == pytest.approx(reply.cost_usd + stream.cost_usd)
    assert row.unpriced_requests == 0
    assert month == day == total


async def test_an_unknown_price_counts_as_unpriced_not_as_free():
    """A request whose cost is unknown counts as a request and an unpriced one; its cost adds nothing."""
    async with _router() as router:
        await router.chat(model="free", messages=HI)
        rows = await router.usage()
    assert rows[UsageKey("free", "b/unpriced", "")].unpriced_requests == 1
    assert rows[UsageKey("free", "b/unpriced", "")].cost_usd == 0.0


async def test_failed_requests_are_not_counted_as_usage():
    """A request that no deployment served adds nothing to the ledger."""
    fault = {"turnout_mock": {"faults": [{"kind": "status", "status": 500}]}}
    async with _router() as router:
        with pytest.raises(Exception):  # noqa: B017 - any failure: the point is the empty ledger
            await router.chat(model="free", messages=HI, **fault)
        assert await router.usage() == {}


async def test_usage_of_another_day_is_empty_and_periods_are_checked():
    """Reading a day with no traffic gives no rows; an unknown period is a ValueError."""
    async with _router() as router:
        await router.chat(model="chat", messages=HI)
        assert await router.usage("day", "2000-01-01") == {}
        with pytest.raises(ValueError, match="period must be one of"):
            await router.usage("year")  # type: ignore[arg-type]


async def test_readiness_reports_the_local_state():
    """/readyz's state fields: ok, the backend and the number of workers sharing the limits."""
    async with _router(workers=3) as router:
        readiness = router.readiness()
    assert readiness["state"] == "ok"
    assert readiness["state_backend"] == "local"
    assert readiness["state_processes"] == 3
    assert readiness["state_error"] is None and readiness["state_restart_required"] is False


async def test_a_reload_keeps_the_window_of_an_unchanged_deployment():
    """Swapping in the same limits keeps the admissions counted so far; changed limits start a fresh window."""
    async with _router(workers=4) as router:
        for _ in range(2):
            await router.chat(model="chat", messages=HI)
        changed = FILE.replace("request_directives: true}", "request_directives: true, reply: hi}")
        assert changed != FILE
        router.swap(load_text(changed, env={}))
        assert (await router.chat(model="chat", messages=HI)).served_by == "b/spare"
        router.swap(load_text(FILE.replace("rpm: 8", "rpm: 12"), env={}))
        assert (await router.chat(model="chat", messages=HI)).served_by == "a/limited"


def test_the_local_backend_has_no_gate_for_an_unlimited_deployment():
    """Deployments without limits cost the request path nothing: no gate to ask."""
    from turnout.config import Limits, StateSpec

    state = LocalState(StateSpec())
    assert state.gate("a/x", Limits(), 1) is None
    assert state.gate("a/y", Limits(rpm=5), 1) is not None


def test_usage_totals_convert_nano_usd():
    """Costs are kept as integer nano-USD and read back as USD."""
    assert UsageTotals.of([1, 2, 3, 0, 1_500_000_000, 0, 0]).cost_usd == 1.5
