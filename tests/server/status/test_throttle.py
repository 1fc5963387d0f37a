"""The log-in throttle: wrong keys per address over a sliding minute, with a bounded memory."""

from __future__ import annotations

from turnout.server.status import throttle
from turnout.server.status.throttle import ATTEMPTS, WINDOW, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_after_its_tenth_wrong_key_until_the_first_leaves_the_window():
    """Nine wrong keys still allow a try; the tenth refuses it for what is left of the minute since the first."""
    clock = Clock()
    gate = LoginThrottle(clock=clock)
    for _ in range(ATTEMPTS - 1):
        gate.failed("10.0.0.1")
        clock.now += 1
    assert gate.retry_after("10.0.0.1") is None
    gate.failed("10.0.0.1")
    assert gate.retry_after("10.0.0.1") == WINDOW - (ATTEMPTS - 1)  # the first failure leaves the window then
    assert gate.retry_after("10.0.0.2") is None  # other addresses are not affected
    clock.now += WINDOW - (ATTEMPTS - 1)
    assert gate.retry_after("10.0.0.1") is None


def test_the_right_key_forgets_the_failures():
    """A success resets the address: a typo-prone admin is not locked out later by old typos."""
    gate = LoginThrottle(clock=Clock())
    for _ in range(ATTEMPTS - 1):
        gate.failed("10.0.0.1")
    gate.succeeded("10.0.0.1")
    gate.failed("10.0.0.1")
    assert gate.retry_after("10.0.0.1") is None


def test_memory_is_bounded_by_forgetting_the_least_recently_failed_address(monkeypatch):
    """A flood of addresses keeps at most MAX_ADDRESSES of them, dropping the one that failed longest ago."""
    monkeypatch.setattr(throttle, "MAX_ADDRESSES", 3)
    clock = Clock()
    gate = LoginThrottle(clock=clock)
    for _ in range(ATTEMPTS):
        gate.failed("a")
    for address in ("b", "c"):
        gate.failed(address)
    assert gate.retry_after("a") is not None
    gate.failed("d")  # a fourth address: "a" failed least recently and is forgotten
    assert gate.retry_after("a") is None
    assert len(gate._failures) == 3
