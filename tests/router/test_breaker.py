"""The circuit-breaker adapter on its own (fake clock), and breakers at work inside the Router."""

from __future__ import annotations

import asyncio

import circuitbreaker

from turnout.config import BreakerPolicy
from turnout.errors import BadRequest, ServerError
from turnout.events import BreakerClosed, BreakerHalfOpened, BreakerOpened
from turnout.router.breaker import Breaker, Ticket
from turnout.testing import slow

HI = [{"role": "user", "content": "hello there"}]
BOOM = ServerError("boom", status=500)


def make(clock, events=None, **policy) -> Breaker:
    return Breaker("p/m", BreakerPolicy(**policy), clock=clock, emit=(events.append if events is not None else None))


def fail(breaker: Breaker, times: int = 1, error=BOOM) -> None:
    for _ in range(times):
        breaker.record(breaker.acquire(), error)


def test_opens_after_threshold_consecutive_faults(clock):
    """Three consecutive server errors open a threshold-3 breaker; it then refuses calls."""
    events = []
    b = make(clock, events, failure_threshold=3, recovery_timeout=10)
    fail(b, 2)
    assert b.state == "closed"
    fail(b)
    assert b.state == "open"
    assert b.acquire() is Ticket.DENIED
    assert [type(e) for e in events] == [BreakerOpened]
    assert events[0].open_for == 10


def test_success_resets_the_streak(clock):
    """A success between faults resets the consecutive count."""
    b = make(clock, failure_threshold=2)
    fail(b)
    b.record(b.acquire(), None)
    fail(b)
    assert b.state == "closed"


def test_client_errors_neither_count_nor_reset(clock):
    """A bad request is not the deployment's fault: it does not count, and it does not reset the streak."""
    b = make(clock, failure_threshold=2)
    fail(b)
    fail(b, 5, BadRequest("bad", status=400))
    assert b.failure_count == 1
    fail(b)
    assert b.state == "open"


def test_half_open_admits_a_single_probe_then_closes(clock):
    """After the recovery timeout exactly one probe is admitted; its success closes the breaker."""
    events = []
    b = make(clock, events, failure_threshold=1, recovery_timeout=5)
    fail(b)
    clock.advance(4.9)
    assert b.acquire() is Ticket.DENIED
    clock.advance(0.2)
    assert b.state == "half_open"
    probe = b.acquire()
    assert probe is Ticket.PROBE
    assert [b.acquire() for _ in range(10)] == [Ticket.DENIED] * 10
    b.record(probe, None)
    assert b.state == "closed"
    assert b.acquire() is Ticket.ADMITTED
    assert [type(e) for e in events] == [BreakerOpened, BreakerHalfOpened, BreakerClosed]


def test_half_open_probes_setting_allows_that_many_concurrent_probes(clock):
    """half_open_probes: 3 admits three concurrent probes and no fourth."""
    b = make(clock, failure_threshold=1, recovery_timeout=1, half_open_probes=3)
    fail(b)
    clock.advance(1)
    tickets = [b.acquire() for _ in range(5)]
    assert tickets == [Ticket.PROBE] * 3 + [Ticket.DENIED] * 2


def test_failed_probe_reopens_with_a_growing_period(clock):
    """Each failed probe reopens the breaker for recovery * factor**(trips-1), capped at the maximum."""
    events = []
    b = make(clock, events, failure_threshold=1, recovery_timeout=2, backoff_factor=3, max_recovery_timeout=10)
    fail(b)
    periods = []
    for _ in range(3):
        clock.advance(b.open_remaining)
        fail(b)  # the probe fails
        periods.append(b.open_remaining)
    assert periods == [6, 10, 10]
    assert [e.open_for for e in events if isinstance(e, BreakerOpened)] == [2, 6, 10, 10]
    clock.advance(10)
    b.record(b.acquire(), None)
    fail(b)
    assert b.open_remaining == 2  # a close resets the growth


def test_failed_probes_of_one_half_open_round_count_as_one_trip(clock):
    """With half_open_probes: 3 all failing, the breaker reopens once: one event, the period grown once, not thrice."""
    events = []
    b = make(
        clock,
        events,
        failure_threshold=1,
        recovery_timeout=2,
        half_open_probes=3,
        backoff_factor=2,
        max_recovery_timeout=100,
    )
    fail(b)
    clock.advance(2)
    probes = [b.acquire() for _ in range(3)]
    assert probes == [Ticket.PROBE] * 3
    clock.advance(0.5)
    for probe in probes:
        b.record(probe, BOOM)
    assert b.open_remaining == 4
    assert [e.open_for for e in events if isinstance(e, BreakerOpened)] == [2, 4]
    clock.advance(4)
    assert b.acquire() is Ticket.PROBE  # the next round admits probes again


def test_a_probe_with_a_client_error_frees_the_slot(clock):
    """A probe that ends in a client error tells nothing: still half-open, the next caller may probe."""
    b = make(clock, failure_threshold=1, recovery_timeout=1)
    fail(b)
    clock.advance(1)
    b.record(b.acquire(), BadRequest("bad", status=400))
    assert b.state == "half_open"
    assert b.acquire() is Ticket.PROBE


def test_stale_failures_do_not_retrip_an_open_breaker(clock):
    """Calls admitted before the breaker opened and failing afterwards don't extend the open period."""
    b = make(clock, failure_threshold=1, recovery_timeout=5, backoff_factor=2)
    tickets = [b.acquire() for _ in range(5)]
    b.record(tickets[0], BOOM)
    clock.advance(1)
    for ticket in tickets[1:]:
        b.record(ticket, BOOM)
    assert b.open_remaining == 4


def test_zero_threshold_disables_the_breaker(clock):
    """failure_threshold: 0 means never open (the package alone would silently use 5)."""
    b = make(clock, failure_threshold=0)
    fail(b, 50)
    b.trip()
    assert b.state == "closed"


def test_trip_opens_at_once(clock):
    """trip() (auth / quota) opens the breaker regardless of the streak."""
    b = make(clock, failure_threshold=5)
    b.trip()
    assert b.state == "open"


def test_no_global_monitor_registration(clock):
    """Building breakers never touches the package's global CircuitBreakerMonitor."""
    before = dict(circuitbreaker.CircuitBreakerMonitor.circuit_breakers)
    fail(make(clock, failure_threshold=1))
    assert circuitbreaker.CircuitBreakerMonitor.circuit_breakers == before


def breaker_yaml(a: str, b: str) -> str:
    return f"""
version: 1
defaults:
  retry: {{attempts: 0}}
  breaker: {{failure_threshold: 2, recovery_timeout: 30s, half_open_probes: 1}}
providers:
  pa: {{driver: openai, base_url: "{a}/v1", api_key: sk-test}}
  pb: {{driver: openai, base_url: "{b}/v1", api_key: sk-test}}
models:
  primary: {{provider: pa}}
  backup: {{provider: pb}}
routes:
  r: {{chain: [primary, backup]}}
"""


async def test_open_half_open_single_probe_under_load_then_closed(fakes, build, clock, recorder):
    """Breaker opens; after recovery 50 concurrent requests send exactly one probe; its success restores traffic."""
    a, b = await fakes(), await fakes()
    b.default("chat", b.text("backup"))
    a.script("chat", a.error("server_error"), a.error("server_error"))
    async with build(breaker_yaml(a.url, b.url)) as router:
        for _ in range(2):
            assert (await router.chat(model="r", messages=HI)).served_by == "pb/backup"
        assert router.health["pa/primary"].breaker.state == "open"
        assert (await router.chat(model="r", messages=HI)).served_by == "pb/backup"
        assert len(a.requests_to("chat")) == 2  # the open breaker kept the third request away

        clock.advance(30)
        a.script("chat", slow(0.2, a.text("primary")))
        replies = await asyncio.gather(*(router.chat(model="r", messages=HI) for _ in range(50)))
        served = [r.served_by for r in replies]
        assert served.count("pa/primary") == 1
        assert served.count("pb/backup") == 49
        assert len(a.requests_to("chat")) == 3
        assert router.health["pa/primary"].breaker.state == "closed"

        a.default("chat", a.text("primary"))
        after = [(await router.chat(model="r", messages=HI)).served_by for _ in range(5)]
    assert after == ["pa/primary"] * 5
    kinds = [type(e).__name__ for e in recorder.events if type(e).__name__.startswith("Breaker")]
    assert kinds == ["BreakerOpened", "BreakerHalfOpened", "BreakerClosed"]
