"""The fault scenarios a drill replays, each as the wire behaviour a loopback fake answers with.

Every scenario runs twice, as a streamed and as a plain (non-streamed) request. The fault always hits the route's
*primary provider* (the provider of the deployment that serves the route when nothing fails), on every one of its
deployments, the way an outage or an account problem does; every other provider answers normally. The waits are
sized from the route's own policy so that each fault is the one named (a "silent" upstream outlasts the attempt
timeout, a "stall" outlasts the stall timeout). The answers are fixed, so a drill can tell a complete answer from
a truncated one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from turnout.config import Policy
from turnout.errors import ErrorClass
from turnout.testing import FormatFake, Framing, cut_body, drop, hang, reply_raw, slow, stall_body
from turnout.testing.fake import Behaviour

PIECES = ("The ", "drill ", "answer ", "is ", "complete.")
FULL = "".join(PIECES)
BEFORE_FAULT = "".join(PIECES[:2])  # what a stream has shown when a mid-stream fault strikes
RETRY_AFTER = 5.0  # seconds the "429 with Retry-After" scenario asks for

# (fake, route policy, stream?) -> the behaviour of the faulted provider
FaultBuilder = Callable[[FormatFake, Policy, bool], Behaviour]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One fault. `error_class` is its nominal class before the first token; `mid_stream` faults strike a stream
    after its first content (so the route's mid_stream policy decides); `transient` faults hit once, then the
    provider answers; `outage` is the breaker sequence (fail until the breaker opens, then recover)."""

    name: str
    title: str
    error_class: ErrorClass
    fault: FaultBuilder
    transient: bool = False
    mid_stream: bool = False
    outage: bool = False
    retry_after: float | None = None
    plain_title: str = ""  # the title for a non-streamed request, where it differs

    def title_for(self, stream: bool) -> str:
        return self.plain_title if self.plain_title and not stream else self.title


def healthy(fake: FormatFake, stream: bool) -> Behaviour:
    """The normal answer: FULL, streamed as PIECES."""
    return fake.stream_text(PIECES) if stream else fake.text(FULL)


def _first_wait(policy: Policy, stream: bool) -> float:
    """How long turnout waits for a first answer: the first-token limit for streams, the attempt timeout else."""
    return min(policy.first_token_timeout, policy.attempt_timeout) if stream else policy.attempt_timeout


def _slow(fake: FormatFake, policy: Policy, stream: bool) -> Behaviour:
    late = 1.5 * _first_wait(policy, stream)
    return fake.stream_text(PIECES, framing=Framing(delay=late)) if stream else slow(late, fake.text(FULL))


def _cut(fake: FormatFake, policy: Policy, stream: bool) -> Behaviour:
    if stream:
        return fake.stream_text(PIECES, framing=Framing(cut_after_text=PIECES[1]))
    return cut_body(fake.text(FULL))


def _stall(fake: FormatFake, policy: Policy, stream: bool) -> Behaviour:
    if stream:
        return fake.stream_text(PIECES, framing=Framing(stall_after_text=PIECES[1], stall=2 * policy.stall_timeout))
    return stall_body(fake.text(FULL), 1.5 * policy.attempt_timeout)


def _malformed(fake: FormatFake, policy: Policy, stream: bool) -> Behaviour:
    if stream:
        return fake.stream_malformed(list(PIECES[:2]))
    return reply_raw(b'{"id": "drill-truncated", "choi', content_type="application/json")


def _error(error_class: ErrorClass, headers: dict[str, str] | None = None) -> FaultBuilder:
    return lambda fake, policy, stream: fake.error(error_class, headers=headers)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "retry-after",
        "429 with Retry-After",
        ErrorClass.RATE_LIMIT,
        _error(ErrorClass.RATE_LIMIT, {"retry-after": f"{RETRY_AFTER:g}"}),
        transient=True,
        retry_after=RETRY_AFTER,
    ),
    Scenario("rate-limited", "persistent 429", ErrorClass.RATE_LIMIT, _error(ErrorClass.RATE_LIMIT)),
    Scenario("500-then-200", "500 then 200", ErrorClass.SERVER_ERROR, _error(ErrorClass.SERVER_ERROR), transient=True),
    Scenario("overloaded", "persistent 503 (overloaded)", ErrorClass.OVERLOADED, _error(ErrorClass.OVERLOADED)),
    Scenario("connection-reset", "connection reset", ErrorClass.CONNECTION, lambda fake, policy, stream: drop()),
    Scenario("silent", "silent upstream", ErrorClass.TIMEOUT, lambda fake, policy, stream: hang()),
    Scenario("slow-first-token", "slow first token", ErrorClass.TIMEOUT, _slow),
    Scenario("stream-cut", "stream cut", ErrorClass.CONNECTION, _cut, mid_stream=True, plain_title="body cut"),
    Scenario("stream-stall", "stream stall", ErrorClass.TIMEOUT, _stall, mid_stream=True, plain_title="body stall"),
    Scenario(
        "malformed-event",
        "malformed event",
        ErrorClass.PROTOCOL,
        _malformed,
        mid_stream=True,
        plain_title="malformed body",
    ),
    Scenario("context-length", "context length exceeded", ErrorClass.CONTEXT_WINDOW, _error(ErrorClass.CONTEXT_WINDOW)),
    Scenario("content-filter", "content filter", ErrorClass.CONTENT_POLICY, _error(ErrorClass.CONTENT_POLICY)),
    Scenario(
        "outage-recovers", "outage that recovers", ErrorClass.OVERLOADED, _error(ErrorClass.OVERLOADED), outage=True
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}
