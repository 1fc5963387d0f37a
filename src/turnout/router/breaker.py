"""The circuit-breaker adapter: the only module that imports `circuitbreaker`.

`circuitbreaker.CircuitBreaker` is built directly (never through its decorator, so nothing is registered in the
package's global `CircuitBreakerMonitor`) and only its state machine is used: consecutive failure counting,
open/half-open/closed state and `reset()`. The adapter fixes what the package leaves to its decorator or gets
wrong for us:

- the open-check happens before every call (`acquire()`), not only inside the decorator;
- half-open admits at most `half_open_probes` concurrent probes; everyone else is refused until a probe reports;
- time comes from an injected clock (the package reads `time.monotonic` and rounds the open period to whole
  seconds), so tests drive recovery with a fake clock;
- an explicit `failure_threshold: 0` disables the breaker instead of silently becoming 5;
- only `DEPLOYMENT_FAULTS` count; a client's bad request neither counts nor resets the failure streak;
- repeated trips grow the open period: `recovery_timeout * backoff_factor ** (trips - 1)`, capped at
  `max_recovery_timeout`, reset to the base once a probe succeeds; failed probes of one half-open round are
  one trip;
- every state change is reported through a callback (the Router turns it into Breaker* events);
- with shared state, another replica's news is applied with `force_open` / `force_close`; those transitions are
  reported with their `origin`, so the Router does not send them back out.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

from circuitbreaker import STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN, CircuitBreaker

from turnout.config import BreakerPolicy
from turnout.errors import DEPLOYMENT_FAULTS, ProviderError
from turnout.events import BreakerClosed, BreakerEvent, BreakerHalfOpened, BreakerOpened


class Ticket(IntEnum):
    """What `acquire()` granted: refused, a normal call, or one of the limited half-open probes."""

    DENIED = 0
    ADMITTED = 1
    PROBE = 2


def _is_deployment_fault(exc_type: type[BaseException], exc: BaseException | None) -> bool:
    return isinstance(exc, ProviderError) and exc.error_class in DEPLOYMENT_FAULTS


class _ClockedCircuitBreaker(CircuitBreaker):
    """The package's breaker with an injected clock, an exact (float) open period and an honest threshold."""

    def __init__(self, name: str, policy: BreakerPolicy, clock: Callable[[], float], on_open: Callable[[], None]):
        super().__init__(
            failure_threshold=max(1, policy.failure_threshold),
            recovery_timeout=max(policy.recovery_timeout, 1e-9),
            expected_exception=_is_deployment_fault,
            name=name,
        )
        self._failure_threshold = policy.failure_threshold  # 0 means "never open", not the package's 5
        self._recovery_timeout = policy.recovery_timeout
        self._clock = clock
        self._opened = clock()
        self._on_open = on_open

    # The package calls `self.__call_failed()`, which Python mangles to this name; overriding it moves the
    # open timestamp onto our clock.
    def _CircuitBreaker__call_failed(self) -> None:
        self._failure_count += 1
        if self._failure_threshold > 0 and self._failure_count >= self._failure_threshold:
            self._state = STATE_OPEN
            self._opened = self._clock()
            self._on_open()

    @property
    def open_remaining(self) -> float:  # type: ignore[override]
        return self._opened + self._recovery_timeout - self._clock()


class Breaker:
    """One deployment's breaker. Call `acquire()` before an attempt and `record()` with its outcome after."""

    __slots__ = ("_cb", "_emit", "_half_open_announced", "_policy", "_probes", "_trips", "key")

    def __init__(
        self,
        key: str,
        policy: BreakerPolicy,
        *,
        clock: Callable[[], float],
        emit: Callable[[BreakerEvent], None] | None = None,
    ) -> None:
        self.key = key
        self._policy = policy
        self._emit = emit
        self._probes = 0
        self._trips = 0
        self._half_open_announced = False
        self._cb = _ClockedCircuitBreaker(key, policy, clock, self._opened)

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    @property
    def state(self) -> str:
        """ "closed", "open" or "half_open" (open with its recovery period elapsed)."""
        return self._cb.state

    @property
    def failure_count(self) -> int:
        return self._cb.failure_count

    @property
    def trips(self) -> int:
        """Consecutive trips without a successful probe (the open period grows with them)."""
        return self._trips

    @property
    def open_remaining(self) -> float:
        """Seconds until the breaker admits a probe (<= 0 when it already would, or when closed)."""
        return self._cb.open_remaining if self._cb._state == STATE_OPEN else 0.0

    def acquire(self) -> Ticket:
        """May a call go to this deployment now? Half-open admits only `half_open_probes` at a time."""
        cb = self._cb
        if cb._state == STATE_CLOSED:
            return Ticket.ADMITTED
        state = cb.state
        if state == STATE_OPEN:
            return Ticket.DENIED
        if state == STATE_HALF_OPEN and self._probes < max(1, self._policy.half_open_probes):
            if not self._half_open_announced:
                self._half_open_announced = True
                self._notify(BreakerHalfOpened)
            self._probes += 1
            return Ticket.PROBE
        return Ticket.DENIED

    def record(self, ticket: Ticket, error: ProviderError | None) -> None:
        """Report an attempt's outcome: None for success, the ProviderError otherwise.

        Errors outside DEPLOYMENT_FAULTS (and cancelled attempts, reported via `release`) change nothing but
        free the probe slot, so the next caller may probe.
        """
        if ticket is Ticket.PROBE:
            self._probes -= 1
        cb = self._cb
        if error is None:
            if cb._state != STATE_CLOSED:
                cb.reset()
                self._trips = 0
                self._half_open_announced = False
                self._notify(BreakerClosed)
            elif cb._failure_count:
                cb.reset()
        elif cb.is_failure(type(error), error):
            if cb._state == STATE_OPEN and (ticket is not Ticket.PROBE or cb.open_remaining > 0):
                # Already open: a call admitted before it opened, or a probe of a round that another failed probe
                # already ended (probes are admitted only once the period ran out). Neither re-trips it.
                return
            cb.__exit__(type(error), error, None)  # the package counts it and opens at the threshold

    def release(self, ticket: Ticket) -> None:
        """The attempt ended without telling us anything about the deployment (e.g. the caller cancelled)."""
        if ticket is Ticket.PROBE:
            self._probes -= 1

    def trip(self) -> None:
        """Open now (auth / quota errors): no point in trying this deployment until the recovery period ends."""
        cb = self._cb
        if cb._failure_threshold <= 0 or cb._state == STATE_OPEN:
            return
        cb._failure_count = max(cb._failure_count, cb._failure_threshold - 1)
        cb._CircuitBreaker__call_failed()

    def force_open(self, remaining: float, trips: int, origin: str) -> None:
        """Another replica opened this deployment's breaker: stay open for `remaining` seconds, then half-open.

        `trips` is carried over so a later trip here grows the open period as the cluster's breaker would.
        """
        cb = self._cb
        if cb._failure_threshold <= 0:
            return
        remaining = max(0.0, remaining)
        self._trips = max(self._trips, trips)
        if cb._state == STATE_OPEN and cb.open_remaining > 0:  # open here too: keep the later end, no new event
            cb._recovery_timeout = max(cb._recovery_timeout, cb._clock() - cb._opened + remaining)
            return
        cb._failure_count = max(cb._failure_count, cb._failure_threshold)  # a failed probe here re-opens it
        cb._state = STATE_OPEN
        cb._opened = cb._clock()
        cb._recovery_timeout = remaining
        self._half_open_announced = False
        self._notify(BreakerOpened, remaining, origin)

    def force_close(self, origin: str) -> None:
        """Another replica's probe succeeded: close, as a local successful probe would."""
        cb = self._cb
        if cb._state == STATE_CLOSED:
            return
        cb.reset()
        self._trips = 0
        self._half_open_announced = False
        self._notify(BreakerClosed, None, origin)

    def _opened(self) -> None:
        """Called by the package's state machine whenever it (re)opens: grow the open period, announce it."""
        self._trips += 1
        policy = self._policy
        period = policy.recovery_timeout
        if policy.backoff_factor > 1 and self._trips > 1:
            period = min(policy.max_recovery_timeout, period * policy.backoff_factor ** (self._trips - 1))
        self._cb._recovery_timeout = period
        self._half_open_announced = False
        self._notify(BreakerOpened, period)

    def _notify(self, kind: type[BreakerEvent], open_for: float | None = None, origin: str | None = None) -> None:
        if self._emit is not None:
            self._emit(kind(at=self._cb._clock(), deployment=self.key, open_for=open_for, origin=origin))
