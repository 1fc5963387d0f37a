"""Pure building blocks: backoff formulas, retry decisions, the most-meaningful-error rule, pricing."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from turnout.config import DEFAULT_ACTIONS, Policy, Price, RetryPolicy
from turnout.errors import ErrorClass, provider_error
from turnout.router.policy import action_for, backoff, most_meaningful, retry_delay
from turnout.router.pricing import TokenPrice, request_cost
from turnout.types import Attempt, Usage


def err(cls: str, **fields):
    return provider_error(cls, cls, **fields)


@pytest.mark.parametrize("n", range(6))
def test_full_jitter_stays_within_the_capped_exponential(n):
    """Full jitter: uniform(0, min(max, initial * 2**n)), over many draws."""
    retry = RetryPolicy(initial=0.25, max=2.0)
    rng = random.Random(n)
    cap = min(2.0, 0.25 * 2**n)
    draws = [backoff(retry, n, rng) for _ in range(500)]
    assert all(0 <= d <= cap for d in draws)
    assert max(draws) > cap * 0.9  # spread over the whole range, not a constant


def test_equal_and_no_jitter():
    """Equal jitter stays in [cap/2, cap]; no jitter is exactly the cap."""
    rng = random.Random(1)
    equal = [backoff(RetryPolicy(initial=1, max=8, jitter="equal"), 2, rng) for _ in range(200)]
    assert all(2 <= d <= 4 for d in equal)
    assert backoff(RetryPolicy(initial=1, max=3, jitter="none"), 5, rng) == 3


def test_retry_delay_rules():
    """Retries stop at the limit; Retry-After wins when allowed; a wait past the deadline means move on."""
    policy = Policy(retry=RetryPolicy(attempts=2, initial=0.1, max=1, max_retry_after=10))
    rng = random.Random(0)
    assert retry_delay(policy, err("server_error"), 2, 100, rng) is None
    assert retry_delay(policy, err("rate_limit", retry_after=3), 0, 100, rng) == 3
    assert retry_delay(policy, err("rate_limit", retry_after=11), 0, 100, rng) is None
    assert retry_delay(policy, err("rate_limit", retry_after=3), 0, 2, rng) is None
    assert 0 <= retry_delay(policy, err("server_error"), 1, 100, rng) <= 0.2


def test_retry_is_never_the_action_for_request_errors():
    """Even a route saying "retry" for bad_request/content_policy/context_window gets "next"."""
    on_error = dict(DEFAULT_ACTIONS) | {c: "retry" for c in ErrorClass}
    policy = Policy(on_error=on_error)
    assert action_for(policy, err("bad_request")) == "next"
    assert action_for(policy, err("context_window")) == "next"
    assert action_for(policy, err("content_policy")) == "next"
    assert action_for(policy, err("server_error")) == "retry"
    assert action_for(Policy(), err("bad_request")) == "fail"


def test_most_meaningful_prefers_request_then_account_then_provider_faults():
    """Ranking: request problems > auth/quota/not_found > 5xx > 429 > connection > timeout."""
    timeout, conn, server = err("timeout"), err("connection"), err("server_error")
    assert most_meaningful([timeout, conn]) is conn
    assert most_meaningful([conn, server, timeout]) is server
    auth = err("auth")
    assert most_meaningful([server, auth, timeout]) is auth
    window = err("context_window")
    assert most_meaningful([auth, window, server]) is window
    assert most_meaningful([]) is None
    later = err("server_error")
    assert most_meaningful([server, later]) is later


def test_all_rate_limits_pick_the_soonest_retry_after():
    """Only rate limits: the one with the smallest Retry-After (unknown counts as infinitely far)."""
    a, b, c = err("rate_limit", retry_after=9), err("rate_limit"), err("rate_limit", retry_after=2)
    assert most_meaningful([a, b, c]) is c


def test_cost_prices_cached_and_cache_write_tokens_separately():
    """cost = plain*input + cached*cached_input + cache_write*cache_write + completion*output, per 1M tokens."""
    price = TokenPrice.from_spec(
        Price(Decimal("3"), Decimal("15"), cached_input=Decimal("0.30"), cache_write=Decimal("3.75"))
    )
    usage = Usage(prompt_tokens=1000, completion_tokens=200, cached_tokens=600, cache_write_tokens=100)
    expected = (300 * 3 + 600 * 0.30 + 100 * 3.75 + 200 * 15) / 1e6
    assert price.cost(usage) == pytest.approx(expected, rel=1e-12)


def test_cost_defaults_cached_price_to_input_and_unknown_usage_to_none():
    """Without a cached price cached tokens cost the input price; unknown usage costs None, never 0."""
    price = TokenPrice.from_spec(Price(Decimal("1"), Decimal("2")))
    assert price.cost(Usage(100, 10, cached_tokens=50)) == pytest.approx((100 * 1 + 10 * 2) / 1e6)
    assert price.cost(Usage.UNKNOWN) is None
    assert price.cost(None) is None


def test_cost_of_absurd_upstream_token_counts_is_unknown_not_a_crash():
    """Usage too large for a float (a broken upstream reporting 10**400 tokens) prices as None, not OverflowError."""
    price = TokenPrice.from_spec(Price(Decimal("1"), Decimal("2")))
    assert price.cost(Usage(10**400, 1)) is None


def test_request_cost_sums_billed_attempts_and_propagates_unknown():
    """Skips cost nothing; a sent attempt of unknown cost makes the whole request's cost unknown."""
    ok = Attempt("a", 0, 1, "success", cost_usd=0.5)
    failed_known = Attempt("b", 0, 1, "error", cost_usd=0.0)
    skipped = Attempt("c", 0, 0, "skipped")
    unknown = Attempt("d", 0, 1, "error", cost_usd=None)
    assert request_cost([failed_known, skipped, ok]) == 0.5
    assert request_cost([unknown, ok]) is None
