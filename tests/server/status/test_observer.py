"""The status observer on a real Router: figures per deployment, failovers, failures, continuations, breakers."""

from __future__ import annotations

import pytest

from turnout import AllUpstreamsFailed, ErrorClass, ProviderError, Router
from turnout.server.status.observer import StatusObserver
from turnout.server.status.stats import figures, merge

HI = [{"role": "user", "content": "one two three four five six"}]

ROUTES = """\
version: 1
defaults:
  retry: {attempts: 1, backoff: {initial: 1ms, max: 1ms}}
  breaker: {failure_threshold: 3, recovery_timeout: 30s}
providers:
  broken: {driver: mock, options: {faults: [{kind: status, status: 503}]}}
  cutter: {driver: mock, options: {tokens_per_second: 0, faults: [{kind: cut, after_chunks: 2}]}}
  fine: {driver: mock, options: {tokens_per_second: 0}}
  limited: {driver: mock}
  refuses: {driver: mock, options: {faults: [{kind: status, status: 400}]}}
models:
  broken: {provider: broken, price: {input: 1, output: 1}}
  unbreakable: {provider: broken, breaker: {failure_threshold: 1000}}
  cutter: {provider: cutter, supports: [streaming, prefill], price: {input: 1, output: 1}}
  fine: {provider: fine, supports: [streaming, prefill], price: {input: 1, output: 1}}
  limited: {provider: limited, limits: {rpm: 1}}
  refuses: {provider: refuses}
routes:
  failover: {chain: [broken, fine]}
  many: {chain: [unbreakable, fine]}
  dead: {chain: [broken]}
  rescue: {chain: [cutter, fine], mid_stream: continue}
  limit: {chain: [limited, fine]}
  client-error: {chain: [refuses, fine]}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def observed():
    clock = Clock()
    observer = StatusObserver(clock=clock)
    async with Router.from_yaml(ROUTES, observers=[observer]) as router:
        yield router, observer, clock


def shown(observer: StatusObserver, clock: Clock, key: str) -> dict:
    return figures(merge([observer.stats.summary(clock())]).get(key))


async def test_a_failover_is_recorded_with_both_deployments(observed):
    """A request that fails over is one failover entry (route, from, to, error class, status); both deployments
    count their attempts, the failing one its errors."""
    router, observer, clock = observed
    await router.chat(model="failover", messages=HI)
    [entry] = list(observer.recent)
    assert entry["kind"] == "failover"
    assert (entry["route"], entry["from"], entry["to"]) == ("failover", "broken/broken", "fine/fine")
    assert (entry["error_class"], entry["status"]) == ("overloaded", 503)
    assert shown(observer, clock, "broken/broken")["requests"] == 2  # the try and its retry
    assert shown(observer, clock, "broken/broken")["errors"] == 2
    fine = shown(observer, clock, "fine/fine")
    assert (fine["requests"], fine["errors"]) == (1, 0)
    assert fine["spend_usd"] > 0


async def test_a_failed_request_and_the_breaker_opening_are_recorded(observed):
    """A request nothing could serve is an error entry; the breaker opening on the way is an entry too."""
    router, observer, _ = observed
    with pytest.raises(AllUpstreamsFailed):
        await router.chat(model="dead", messages=HI)
    with pytest.raises(AllUpstreamsFailed):
        await router.chat(model="dead", messages=HI)
    kinds = [e["kind"] for e in observer.recent]
    assert kinds == ["error", "breaker_open", "error"]
    opened = observer.recent[1]
    assert opened["from"] == "broken/broken" and opened["detail"] == "open for 30s"
    failed = observer.recent[2]
    assert (failed["route"], failed["error_class"]) == ("dead", "overloaded")
    assert failed["detail"] == "1 attempts, 1 skipped"  # the second try found the breaker open


async def test_a_continued_stream_is_one_continuation_entry(observed):
    """A stream cut after content and continued elsewhere is recorded as a continuation, not as a failover."""
    router, observer, _ = observed
    async with router.stream(model="rescue", messages=HI) as stream:
        text = "".join([c.content or "" async for c in stream])
    assert text
    [entry] = list(observer.recent)
    assert entry["kind"] == "continued"
    assert (entry["from"], entry["to"]) == ("cutter/cutter", "fine/fine")
    assert entry["detail"].startswith("continued after ")


async def test_a_rate_limit_refusal_marks_the_deployment(observed):
    """A deployment skipped at its rpm limit is remembered as rate limited, with the gate's reason."""
    router, observer, clock = observed
    await router.chat(model="limit", messages=HI)
    assert "limited/limited" not in observer.limited
    await router.chat(model="limit", messages=HI)
    when, reason = observer.limited["limited/limited"]
    assert when == clock() and reason.startswith("at rpm limit")


async def test_a_clients_bad_request_is_not_the_deployments_error(observed):
    """A 400 fails the request (and is listed) but does not count as the deployment's own error."""
    router, observer, clock = observed
    with pytest.raises(ProviderError) as caught:
        await router.chat(model="client-error", messages=HI)
    assert caught.value.error_class is ErrorClass.BAD_REQUEST
    refuses = shown(observer, clock, "refuses/refuses")
    assert (refuses["requests"], refuses["errors"]) == (1, 0)
    assert [e["kind"] for e in observer.recent] == ["error"]


async def test_the_recent_list_is_bounded(observed):
    """However many failovers happen, the list keeps only the newest ones."""
    router, observer, clock = observed
    small = StatusObserver(clock=clock, capacity=5)
    router.add_observer(small)
    for _ in range(12):
        await router.chat(model="many", messages=HI)
    assert len(small.recent) == 5
    assert len(observer.recent) == 12
