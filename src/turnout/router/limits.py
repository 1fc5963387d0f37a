"""Per-deployment request and token rate limits (rpm / tpm) over a sliding 60-second window.

The limiter is local to one Router (one process); it keeps turnout from sending what the provider would
reject with a 429 anyway. Token counts are the request's *estimate* (prompt estimate + max output tokens),
recorded when the attempt starts, because the real usage is only known afterwards.
"""

from __future__ import annotations

from collections import deque

from turnout.config import Limits

WINDOW = 60.0


class RateLimiter:
    """Sliding-window counters for one deployment. `check()` says why not, `record()` counts an attempt."""

    __slots__ = ("_events", "_tokens", "rpm", "tpm")

    def __init__(self, limits: Limits) -> None:
        self.rpm = limits.rpm
        self.tpm = limits.tpm
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0

    def _expire(self, now: float) -> None:
        events = self._events
        horizon = now - WINDOW
        while events and events[0][0] <= horizon:
            self._tokens -= events.popleft()[1]

    def check(self, now: float, tokens: int) -> str | None:
        """None when an attempt of `tokens` estimated tokens fits; otherwise the reason it does not."""
        self._expire(now)
        if self.rpm is not None and len(self._events) >= self.rpm:
            return f"at rpm limit ({self.rpm}/min)"
        if self.tpm is not None and self._events and self._tokens + tokens > self.tpm:
            return f"at tpm limit ({self.tpm}/min)"
        return None

    def record(self, now: float, tokens: int) -> None:
        self._events.append((now, tokens))
        self._tokens += tokens

    def refund(self, at: float, tokens: int) -> None:
        """The attempt recorded at `at` used no tokens after all (the provider refused it): stop counting them.

        Without this one request with an absurd max_tokens, refused with a 400, would fill the tpm window and
        keep the deployment "at its tpm limit" for everyone for a minute. It still counts as a request (rpm).
        """
        events = self._events
        for i in range(len(events) - 1, -1, -1):  # the attempt is recent: search from the newest entry
            when, counted = events[i]
            if when < at:
                return
            if when == at and counted == tokens:
                events[i] = (when, 0)
                self._tokens -= tokens
                return

    def forget(self, at: float, tokens: int) -> None:
        """Un-count the attempt recorded at `at` entirely: it failed because of the client's own request.

        Only the provider's own failures may use up a deployment's limits; otherwise one client could fill the rpm
        window with requests that fail on their content (a bad image URL, an unknown parameter) and keep the
        deployment "at its rpm limit" for everyone else.
        """
        events = self._events
        for i in range(len(events) - 1, -1, -1):
            when, counted = events[i]
            if when < at:
                return
            if when == at and counted == tokens:
                del events[i]
                self._tokens -= tokens
                return

    def usage(self, now: float) -> tuple[int, int]:
        """(requests, tokens) counted in the current window."""
        self._expire(now)
        return len(self._events), self._tokens
