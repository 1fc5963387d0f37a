"""What a route *claims* to do about a fault, read from its compiled policy, and the verdict on what it did.

A route claims to **rescue** a request from a fault (the drill fails the route when it does not) when its policy
declares a way around it:

- a fault before the first token, of class C: the route's action for C (`action_for`, the dispatcher's own rule)
  is not "fail", and either the fault is transient and the action is "retry" with at least one retry (and, for a
  Retry-After, one no longer than `retry.max_retry_after`), or the route has a *fallback*: a deployment on another
  provider that can take the request (streams: one with `streaming`). For context length, the fallback must also
  not be excluded by the window already exceeded (a larger declared window, or none declared);
- a fault after a stream's first token: the action for C is not "fail" and the route's `mid_stream` policy has a
  rule in `MID_STREAM_RULES` that finds a way on (`continue`: a fallback with `prefill`). Under `restart` the answer
  is held back until complete (a drill's answers are far below any `restart_buffer`), so such a fault is judged
  exactly like one before the first token. A policy the drill has no rule for makes no claim: the outcome is
  reported, never judged;
- an outage: the above for each request, and, when `breaker.failure_threshold` > 0, a breaker that opens during
  the outage and closes again once the provider recovers.

Otherwise the route claims a **clean error**: a classified error (never a truncated answer passed off as complete),
within its deadline. Verdicts: *rescued* (complete answer after the fault), *clean error* (as claimed), *failed*
(a claimed rescue that did not happen, a truncated or unexpected result, a deadline overrun, a content-policy
refusal routed around without the route opting in) and *skipped* (the fault was never reached).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from turnout.errors import ErrorClass, provider_error
from turnout.router.graph import CompiledRoute, Deployment
from turnout.router.policy import action_for
from turnout.schema.units import format_duration

DEADLINE_SLACK = 1.0  # seconds past the deadline still counted as "within it" (turnout's own processing)


@dataclass(frozen=True, slots=True)
class Claim:
    """`rescue`: True (the policy gets past the fault), False (it ends in a clean error), None (no claim)."""

    rescue: bool | None
    reason: str


MidStreamRule = Callable[[CompiledRoute, Sequence[Deployment]], Claim]


def _mid_stream_error(route: CompiledRoute, fallbacks: Sequence[Deployment]) -> Claim:
    return Claim(False, "mid_stream: error: a stream cut after its first token ends in an error")


def _mid_stream_continue(route: CompiledRoute, fallbacks: Sequence[Deployment]) -> Claim:
    prefill = [d for d in fallbacks if "prefill" in d.capabilities]
    if prefill:
        return Claim(True, f"mid_stream: continue on {prefill[0].key} (prefill)")
    return Claim(False, "mid_stream: continue, but no fallback has prefill; the stream ends in an error")


# One rule per mid_stream policy: a new policy adds its rule here (it is read from the compiled route).
MID_STREAM_RULES: dict[str, MidStreamRule] = {"error": _mid_stream_error, "continue": _mid_stream_continue}


def fallbacks(route: CompiledRoute, faulted: str, *, stream: bool) -> list[Deployment]:
    """Deployments of the route outside the faulted provider that can take the drill's request."""
    return [d for d in route.deployments if d.provider != faulted and (not stream or "streaming" in d.capabilities)]


def claim(
    route: CompiledRoute,
    error_class: ErrorClass,
    *,
    faulted: str,
    stream: bool,
    mid_stream: bool,
    transient: bool = False,
    retry_after: float | None = None,
) -> Claim:
    """What the route's policy claims for a fault of `error_class` on provider `faulted` (module docstring)."""
    policy = route.policy
    action = action_for(policy, provider_error(error_class, "drill"))
    others = fallbacks(route, faulted, stream=stream)
    if action == "fail":
        what = "a refusal is never routed around" if error_class is ErrorClass.CONTENT_POLICY else "it fails at once"
        return Claim(False, f"on_error.{error_class.value}: fail: {what}")
    if mid_stream and stream and policy.mid_stream != "restart":  # restart: as before the first token
        rule = MID_STREAM_RULES.get(policy.mid_stream)
        if rule is None:
            return Claim(None, f"mid_stream: {policy.mid_stream} has no drill rule: outcome reported, not judged")
        return rule(route, others)
    retries = policy.retry.attempts
    waits = retry_after is None or retry_after <= policy.retry.max_retry_after
    if transient and action == "retry" and retries >= 1 and waits:
        wait = f" after the {format_duration(retry_after)} Retry-After" if retry_after is not None else ""
        return Claim(True, f"retries the same deployment{wait} (retry.attempts {retries})")
    if error_class is ErrorClass.CONTEXT_WINDOW:
        exceeded = max((d.context_window or 0 for d in route.deployments if d.provider == faulted), default=0)
        others = [d for d in others if d.context_window is None or d.context_window > exceeded]
        if not others:
            return Claim(False, f"no fallback has a context window larger than {exceeded}")
    if others:
        return Claim(True, f"falls back to {others[0].key}")
    return Claim(False, f"no fallback outside provider '{faulted}'")


def breaker_claim(primary: Deployment) -> Claim:
    threshold = primary.breaker.failure_threshold
    if threshold <= 0:
        return Claim(None, "breaker disabled (failure_threshold 0): every request pays for the failing deployment")
    period = format_duration(primary.breaker.recovery_timeout)
    return Claim(True, f"breaker opens after {threshold} faults and is probed again after {period}")
