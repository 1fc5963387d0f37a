"""Retry, backoff and error-action rules: small pure functions over an explicit attempt state.

Backoff (attempt n = 0 for the first retry), with cap = min(max, initial * 2**n):
- `full` jitter:  delay = uniform(0, cap)           (the default; spreads retry storms best)
- `equal` jitter: delay = cap/2 + uniform(0, cap/2)
- `none`:         delay = cap
A provider's Retry-After replaces the computed delay when it is <= `max_retry_after` and the wait still
leaves time before the deadline; otherwise the dispatcher moves on to the next deployment at once rather
than sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from turnout.config import Action, Policy, RetryPolicy
from turnout.errors import ErrorClass, ProviderError

# The request itself is the problem: sending it to the same deployment again cannot help.
NEVER_RETRY_SAME: frozenset[ErrorClass] = frozenset(
    {ErrorClass.BAD_REQUEST, ErrorClass.CONTENT_POLICY, ErrorClass.CONTEXT_WINDOW}
)
# The deployment cannot serve anyone until something changes (key, billing): open its breaker now.
TRIPS_BREAKER: frozenset[ErrorClass] = frozenset({ErrorClass.AUTH, ErrorClass.QUOTA_EXCEEDED})

# Which upstream error a caller sees when everything failed, most meaningful first. Errors about the request
# itself come first (the caller must change something), then configuration/account problems, then provider
# faults, and only then the transient transport failures (which say least about why the request failed).
_MEANING: dict[ErrorClass, int] = {
    ErrorClass.CONTENT_POLICY: 0,
    ErrorClass.CONTEXT_WINDOW: 0,
    ErrorClass.BAD_REQUEST: 0,
    ErrorClass.AUTH: 1,
    ErrorClass.QUOTA_EXCEEDED: 1,
    ErrorClass.NOT_FOUND: 1,
    ErrorClass.OVERLOADED: 2,
    ErrorClass.SERVER_ERROR: 2,
    ErrorClass.PROTOCOL: 2,
    ErrorClass.RATE_LIMIT: 3,
    ErrorClass.CONNECTION: 4,
    ErrorClass.TIMEOUT: 5,
}


def backoff(retry: RetryPolicy, n: int, rng: random.Random) -> float:
    """Delay before retry number n (0-based); see the module docstring for the formula."""
    cap = min(retry.max, retry.initial * 2**n)
    if retry.jitter == "full":
        return rng.uniform(0, cap)
    if retry.jitter == "equal":
        return cap / 2 + rng.uniform(0, cap / 2)
    return cap


def action_for(policy: Policy, error: ProviderError) -> Action:
    """The route's action for this error, with "retry" downgraded to "next" where retrying cannot help."""
    action = policy.on_error.get(error.error_class, "next")
    if action == "retry" and error.error_class in NEVER_RETRY_SAME:
        return "next"
    return action


def retry_delay(policy: Policy, error: ProviderError, n: int, remaining: float, rng: random.Random) -> float | None:
    """Seconds to wait before retry n on the same deployment, or None to move on now.

    None when the retries are used up, when the provider's Retry-After exceeds `max_retry_after`, or when the
    wait would not leave the deadline any time for the retry itself.
    """
    retry = policy.retry
    if n >= retry.attempts:
        return None
    if error.retry_after is not None:
        if error.retry_after > retry.max_retry_after:
            return None
        delay = error.retry_after
    else:
        delay = backoff(retry, n, rng)
    return delay if delay < remaining else None


def most_meaningful(errors: Sequence[ProviderError]) -> ProviderError | None:
    """The error that best explains a failed request (the cause of AllUpstreamsFailed).

    Rule: the lowest rank in `_MEANING` wins (the request's own problem, then account/configuration, then
    provider faults, rate limits, connection failures and finally timeouts); among equals the latest error.
    When every attempt was rate limited, the one with the smallest Retry-After is chosen, so the caller is told
    the soonest moment worth retrying.
    """
    if not errors:
        return None
    if all(e.error_class is ErrorClass.RATE_LIMIT for e in errors):
        return min(errors, key=lambda e: float("inf") if e.retry_after is None else e.retry_after)
    best = errors[-1]
    for error in reversed(errors):
        if _MEANING[error.error_class] < _MEANING[best.error_class]:
            best = error
    return best
