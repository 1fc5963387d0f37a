"""Dispatch semantics against OpenAI-compatible fake upstreams on loopback: every error class and its action."""

from __future__ import annotations

import time

import pytest

from turnout import AllUpstreamsFailed, ErrorClass, InvalidRequest, RouteNotFound
from turnout.errors import BadRequest, ContentPolicyError, RateLimited
from turnout.events import BreakerOpened, FallbackTaken
from turnout.testing import drop, hang, reply_raw

HI = [{"role": "user", "content": "hello there"}]


def routes_yaml(*urls: str, route: str = "", defaults: str = "", models: str | None = None, chain: str = "") -> str:
    """A routing file with providers p0..pN (openai driver on the fakes), models m0..mN and route `r`."""
    providers = "\n".join(
        f"  p{i}:\n    driver: openai\n    base_url: {url}/v1\n    api_key: sk-test" for i, url in enumerate(urls)
    )
    if models is None:
        models = "\n".join(
            f"  m{i}: {{provider: p{i}, name: up{i}, price: {{input: 1, output: 2}}}}" for i in range(len(urls))
        )
    chain = chain or ", ".join(f"m{i}" for i in range(len(urls)))
    defaults = defaults or "  retry: {attempts: 2, backoff: {initial: 100ms, max: 1s}}"
    return (
        f"version: 1\ndefaults:\n{defaults}\nproviders:\n{providers}\nmodels:\n{models}\n"
        f"routes:\n  r:\n    chain: [{chain}]\n{route}"
    )


async def test_server_error_is_retried_on_the_same_deployment_with_backoff(fakes, build, clock):
    """A 500 is retried on the same deployment after a full-jitter backoff within [0, initial * 2**n]."""
    a = await fakes()
    a.script("chat", a.error(ErrorClass.SERVER_ERROR), a.error(ErrorClass.SERVER_ERROR), a.text("third time"))
    async with build(routes_yaml(a.url)) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.text == "third time"
    assert reply.served_by == "p0/m0"
    assert [x.outcome for x in reply.attempts] == ["error", "error", "success"]
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.1
    assert 0 <= clock.sleeps[1] <= 0.2


async def test_server_error_moves_to_next_deployment_after_retries(fakes, build, recorder):
    """When retries on one deployment are used up the next one serves, and FallbackTaken says so."""
    a, b = await fakes(), await fakes()
    a.default("chat", a.error(ErrorClass.SERVER_ERROR))
    b.script("chat", b.text("from b"))
    async with build(routes_yaml(a.url, b.url)) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.text == "from b"
    assert len(a.requests_to("chat")) == 3
    assert [(e.from_deployment, e.error_class) for e in recorder.of(FallbackTaken)] == [("p0/m0", "server_error")]


async def test_overloaded_is_retried(fakes, build):
    """503 overloaded is retried on the same deployment."""
    a = await fakes()
    a.script("chat", a.error(ErrorClass.OVERLOADED), a.text("ok"))
    async with build(routes_yaml(a.url)) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.text == "ok"
    assert len(a.requests_to("chat")) == 2


async def test_retry_after_is_honoured_when_it_fits(fakes, build, clock):
    """A 429 with Retry-After: 2 sleeps exactly 2s and retries the same deployment."""
    a = await fakes()
    a.script("chat", a.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "2"}), a.text("ok"))
    async with build(routes_yaml(a.url)) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.text == "ok"
    assert clock.sleeps == [2.0]


async def test_retry_after_longer_than_max_moves_on_without_sleeping(fakes, build, clock):
    """A Retry-After above max_retry_after means: go to the next deployment now, no sleep."""
    a, b = await fakes(), await fakes()
    a.script("chat", a.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "120"}))
    b.script("chat", b.text("b"))
    async with build(routes_yaml(a.url, b.url)) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "p1/m1"
    assert clock.sleeps == []
    assert len(a.requests_to("chat")) == 1


async def test_retry_after_beyond_the_deadline_moves_on(fakes, build, clock):
    """A Retry-After within max_retry_after but past the request's deadline is not slept either."""
    a, b = await fakes(), await fakes()
    a.script("chat", a.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "20"}))
    b.script("chat", b.text("b"))
    async with build(routes_yaml(a.url, b.url, route="    deadline: 10s\n")) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "p1/m1"
    assert clock.sleeps == []


@pytest.mark.parametrize("error_class", [ErrorClass.QUOTA_EXCEEDED, ErrorClass.AUTH])
async def test_account_errors_move_on_and_open_the_breaker(fakes, build, recorder, error_class):
    """quota_exceeded / auth go to the next deployment at once and open the failing deployment's breaker."""
    a, b = await fakes(), await fakes()
    a.script("chat", a.error(error_class))
    b.default("chat", b.text("b"))
    async with build(routes_yaml(a.url, b.url)) as router:
        reply = await router.chat(model="r", messages=HI)
        assert reply.served_by == "p1/m1"
        assert len(a.requests_to("chat")) == 1
        assert [e.deployment for e in recorder.of(BreakerOpened)] == ["p0/m0"]
        assert router.readiness()["open_breakers"] == ["p0/m0"]
        again = await router.chat(model="r", messages=HI)
    assert len(a.requests_to("chat")) == 1  # the open breaker kept the second request away
    assert again.attempts[0].outcome == "skipped"
    assert again.attempts[0].detail == "breaker open"


async def test_not_found_moves_on(fakes, build):
    """404 model_not_found is not retried; the next deployment serves."""
    a, b = await fakes(), await fakes()
    a.script("chat", a.error(ErrorClass.NOT_FOUND))
    b.script("chat", b.text("b"))
    async with build(routes_yaml(a.url, b.url)) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "p1/m1"
    assert len(a.requests_to("chat")) == 1


async def test_timeout_moves_on_without_retrying(fakes, build):
    """A silent upstream hits the per-attempt timeout once, then the next deployment serves."""
    a, b = await fakes(), await fakes()
    a.default("chat", hang())
    b.script("chat", b.text("b"))
    async with build(routes_yaml(a.url, b.url, route="    attempt_timeout: 200ms\n"), real_time=True) as router:
        started = time.monotonic()
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "p1/m1"
    assert reply.attempts[0].error_class == "timeout"
    assert len(a.requests_to("chat")) == 1
    assert time.monotonic() - started < 2.0


async def test_connection_reset_is_retried_then_next(fakes, build):
    """A dropped connection is retried (attempts: 1 -> two tries), then the next deployment serves."""
    a, b = await fakes(), await fakes()
    a.default("chat", drop())
    b.script("chat", b.text("b"))
    yaml = routes_yaml(a.url, b.url, defaults="  retry: {attempts: 1, backoff: {initial: 10ms}}")
    async with build(yaml) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "p1/m1"
    assert [a.error_class for a in reply.attempts[:2]] == ["connection", "connection"]


async def test_protocol_garbage_is_retried(fakes, build):
    """An unparsable 200 body is a protocol error, retried on the same deployment."""
    a = await fakes()
    a.script("chat", reply_raw(b"{not json", content_type="application/json"), a.text("fine"))
    async with build(routes_yaml(a.url)) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.text == "fine"
    assert reply.attempts[0].error_class == "protocol"


async def test_context_window_escalates_to_strictly_larger_windows(fakes, build):
    """After a context_window error only deployments with a larger (or unknown) window are tried."""
    small, same, big = await fakes(), await fakes(), await fakes()
    small.script("chat", small.error(ErrorClass.CONTEXT_WINDOW))
    big.script("chat", big.text("big"))
    models = (
        "  m0: {provider: p0, context_window: 8000}\n"
        "  m1: {provider: p1, context_window: 8000}\n"
        "  m2: {provider: p2, context_window: 128000}"
    )
    async with build(routes_yaml(small.url, same.url, big.url, models=models)) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "p2/m2"
    assert len(small.requests_to("chat")) == 1
    assert same.requests_to("chat") == []
    assert reply.attempts[1].outcome == "skipped"
    assert "not larger" in reply.attempts[1].detail


async def test_content_policy_fails_immediately_with_the_provider_error(fakes, build):
    """A refusal is raised as ContentPolicyError at once: no retry, no fallback."""
    a, b = await fakes(), await fakes()
    a.script("chat", a.error(ErrorClass.CONTENT_POLICY))
    async with build(routes_yaml(a.url, b.url)) as router:
        with pytest.raises(ContentPolicyError) as info:
            await router.chat(model="r", messages=HI)
    assert "flagged" in info.value.message
    assert len(a.requests_to("chat")) == 1
    assert b.requests_to("chat") == []


async def test_content_policy_falls_back_when_the_route_opts_in(fakes, build):
    """With on_error: {content_policy: next} the next deployment is tried."""
    a, b = await fakes(), await fakes()
    a.script("chat", a.error(ErrorClass.CONTENT_POLICY))
    b.script("chat", b.text("b"))
    async with build(routes_yaml(a.url, b.url, route="    on_error: {content_policy: next}\n")) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "p1/m1"


@pytest.mark.parametrize("action", ["fail", "retry"])
async def test_bad_request_is_never_sent_twice(fakes, build, action):
    """A 400 fails now; even a route saying "retry" never sends the same invalid request again."""
    a = await fakes()
    a.default("chat", a.error(ErrorClass.BAD_REQUEST))
    async with build(routes_yaml(a.url, route=f"    on_error: {{bad_request: {action}}}\n")) as router:
        with pytest.raises((BadRequest, AllUpstreamsFailed)) as info:
            await router.chat(model="r", messages=HI)
    assert len(a.requests_to("chat")) == 1
    if action == "retry":
        assert isinstance(info.value.__cause__, BadRequest)


async def test_exhaustion_raises_all_upstreams_failed_with_the_most_meaningful_cause(fakes, build):
    """When every deployment fails, the cause is the most telling error (not_found beats a timeout-ish 500)."""
    a, b = await fakes(), await fakes()
    a.default("chat", a.error(ErrorClass.NOT_FOUND))
    b.default("chat", b.error(ErrorClass.SERVER_ERROR))
    async with build(routes_yaml(a.url, b.url)) as router:
        with pytest.raises(AllUpstreamsFailed) as info:
            await router.chat(model="r", messages=HI)
    err = info.value
    assert err.__cause__ is err.last_error
    assert err.error_class is ErrorClass.NOT_FOUND
    assert [x.deployment for x in err.attempts] == ["p0/m0", "p1/m1", "p1/m1", "p1/m1"]


async def test_all_rate_limited_reports_the_smallest_retry_after(fakes, build):
    """If every attempt was rate limited, the cause is the 429 with the soonest Retry-After."""
    a, b = await fakes(), await fakes()
    a.default("chat", a.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "50"}))
    b.default("chat", b.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "40"}))
    async with build(routes_yaml(a.url, b.url)) as router:
        with pytest.raises(AllUpstreamsFailed) as info:
            await router.chat(model="r", messages=HI)
    assert isinstance(info.value.__cause__, RateLimited)
    assert info.value.__cause__.retry_after == 40


async def test_deadline_is_never_exceeded(fakes, build):
    """Hanging upstreams with generous attempt timeouts: the request still ends at its deadline."""
    a, b, c = await fakes(), await fakes(), await fakes()
    for fake in (a, b, c):
        fake.default("chat", hang())
    yaml = routes_yaml(a.url, b.url, c.url, route="    deadline: 300ms\n    attempt_timeout: 10s\n")
    async with build(yaml, real_time=True) as router:
        started = time.monotonic()
        with pytest.raises(AllUpstreamsFailed) as info:
            await router.chat(model="r", messages=HI)
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3.0  # far under one 10 s attempt timeout: the deadline cut it (margin for a loaded CI)
    assert info.value.error_class is ErrorClass.TIMEOUT


async def test_backoff_never_sleeps_past_the_deadline(fakes, build, clock):
    """A backoff that would end after the deadline is not slept: the request moves on instead."""
    a, b = await fakes(), await fakes()
    a.default("chat", a.error(ErrorClass.SERVER_ERROR))
    b.default("chat", b.text("b"))
    yaml = routes_yaml(
        a.url,
        b.url,
        route="    deadline: 1s\n",
        defaults="  retry: {attempts: 5, backoff: {initial: 5s, max: 5s, jitter: none}}",
    )
    async with build(yaml) as router:
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "p1/m1"
    assert clock.sleeps == []


async def test_tools_request_skips_members_without_tools(fakes, build):
    """A request with tools skips a member that declares no tool support; the skip is in the trail."""
    a, b = await fakes(), await fakes()
    b.script("chat", b.text("b"))
    models = "  m0: {provider: p0, supports: [streaming]}\n  m1: {provider: p1, supports: [tools, streaming]}"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    async with build(routes_yaml(a.url, b.url, models=models)) as router:
        reply = await router.chat(model="r", messages=HI, tools=tools)
    assert reply.served_by == "p1/m1"
    assert a.requests_to("chat") == []
    assert (reply.attempts[0].outcome, reply.attempts[0].detail) == ("skipped", "lacks tools")


@pytest.mark.parametrize(
    ("kwargs", "need"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}]},
            "vision",
        ),
        ({"messages": HI, "response_format": {"type": "json_object"}}, "json"),
    ],
)
async def test_vision_and_json_requests_skip_incapable_members(fakes, build, kwargs, need):
    """Vision and JSON-mode requests only go to members that declare them."""
    a, b = await fakes(), await fakes()
    b.script("chat", b.text("b"))
    models = "  m0: {provider: p0, supports: [tools]}\n  m1: {provider: p1, supports: [vision, json]}"
    async with build(routes_yaml(a.url, b.url, models=models)) as router:
        reply = await router.chat(model="r", **kwargs)
    assert reply.served_by == "p1/m1"
    assert reply.attempts[0].detail == f"lacks {need}"


async def test_too_small_context_window_is_skipped_before_sending(fakes, build):
    """A prompt + max_tokens estimate above a model's window skips it without a request."""
    a, b = await fakes(), await fakes()
    b.script("chat", b.text("b"))
    models = "  m0: {provider: p0, context_window: 1000}\n  m1: {provider: p1, context_window: 100000}"
    async with build(routes_yaml(a.url, b.url, models=models)) as router:
        reply = await router.chat(model="r", messages=HI, max_tokens=4000)
    assert reply.served_by == "p1/m1"
    assert a.requests_to("chat") == []
    assert reply.attempts[0].detail.startswith("context window 1000 < estimated")


async def test_unknown_route_and_invalid_request_are_classified(fakes, build):
    """An unknown model raises RouteNotFound; a malformed request raises InvalidRequest; nothing is sent."""
    a = await fakes()
    async with build(routes_yaml(a.url)) as router:
        with pytest.raises(RouteNotFound):
            await router.chat(model="nope", messages=HI)
        with pytest.raises(InvalidRequest):
            await router.chat(model="r", messages=[])
        with pytest.raises(RouteNotFound):
            router.stream(model="nope", messages=HI)
    assert a.requests == []


async def test_rpm_limit_skips_a_deployment_at_its_limit(fakes, build):
    """With rpm: 1 the second request in the same minute skips the limited deployment."""
    a, b = await fakes(), await fakes()
    a.default("chat", a.text("a"))
    b.default("chat", b.text("b"))
    models = "  m0: {provider: p0, limits: {rpm: 1}}\n  m1: {provider: p1}"
    async with build(routes_yaml(a.url, b.url, models=models)) as router:
        first = await router.chat(model="r", messages=HI)
        second = await router.chat(model="r", messages=HI)
    assert (first.served_by, second.served_by) == ("p0/m0", "p1/m1")
    assert second.attempts[0].detail == "at rpm limit (1/min)"


async def test_unencodable_request_is_a_bad_request_that_never_trips_the_breaker(fakes, build):
    """A lone surrogate in the messages (JSON `\\ud800`) fails as bad_request, uncounted by the breaker, never sent."""
    a, b = await fakes(), await fakes()
    a.default("chat", a.text("from a"))
    b.default("chat", b.text("from b"))
    defaults = "  retry: {attempts: 2}\n  breaker: {failure_threshold: 2}"
    async with build(routes_yaml(a.url, b.url, defaults=defaults)) as router:
        for _ in range(3):
            with pytest.raises(BadRequest) as info:
                await router.chat(model="r", messages=[{"role": "user", "content": "bad \ud800 text"}])
            assert "\\ud800" in info.value.message
        assert router.health["p0/m0"].breaker.state == "closed"
        assert router.health["p0/m0"].breaker.failure_count == 0
        reply = await router.chat(model="r", messages=HI)
    assert reply.served_by == "p0/m0"
    assert b.requests_to("chat") == []
    assert len(a.requests_to("chat")) == 1  # only the valid request reached an upstream


async def test_a_rejected_request_gives_back_its_token_estimate(fakes, build):
    """A request the provider refused (a 400 for max_tokens=10**9) used no tokens: it must not fill the tpm window."""
    a = await fakes()
    a.script("chat", a.error(ErrorClass.BAD_REQUEST), a.text("served"))
    models = "  m0: {provider: p0, limits: {tpm: 100000}}"
    async with build(routes_yaml(a.url, models=models)) as router:
        with pytest.raises(BadRequest):
            await router.chat(model="r", messages=HI, max_tokens=10**9)
        reply = await router.chat(model="r", messages=HI, max_tokens=100)
    assert reply.served_by == "p0/m0"
