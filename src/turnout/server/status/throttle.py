"""Failed log-ins per remote address: a few wrong keys are typos, many are a search for the key.

An address that gave `ATTEMPTS` wrong keys within `WINDOW` seconds is refused (429 with Retry-After) until the
oldest of them is out of the window, the right key included, so guessing costs time whatever the answer. A right
key forgets the address's failures. Each worker process counts its own; at most `MAX_ADDRESSES` addresses are
remembered (the least recently failed are forgotten first), so a flood of addresses cannot grow memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

ATTEMPTS = 10  # wrong keys one address may give per window
WINDOW = 60.0  # seconds
MAX_ADDRESSES = 10_000


class LoginThrottle:
    """Counts wrong keys per address over a sliding window (see the module docstring)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until `address` may try again, or None when it may try now."""
        failures = self._failures.get(address)
        if failures is None:
            return None
        now = self._clock()
        while failures and failures[0] <= now - WINDOW:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        if len(failures) < ATTEMPTS:
            return None
        return max(1, math.ceil(failures[0] + WINDOW - now))

    def failed(self, address: str) -> None:
        """Count one wrong key from `address`."""
        failures = self._failures.pop(address, None)
        if failures is None:
            failures = deque(maxlen=ATTEMPTS)
            if len(self._failures) >= MAX_ADDRESSES:
                self._failures.popitem(last=False)
        failures.append(self._clock())
        self._failures[address] = failures  # most recently failed last

    def succeeded(self, address: str) -> None:
        """The right key: forget the address's failures."""
        self._failures.pop(address, None)
