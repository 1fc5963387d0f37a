"""Per-deployment request and token rate limits (rpm / tpm) over a sliding window, in one process.

This is the local backend's limiter, and the Redis backend's local mirror (what it falls back on while Redis is
unavailable). Token counts are the request's *estimate* (prompt estimate + max output tokens), recorded when the
attempt is admitted, because the real usage is only known afterwards. `WINDOW` is read when a backend is built
(tests of the sliding behaviour shorten it before starting a process).
"""

from __future__ import annotations

from collections import deque

WINDOW = 60.0  # seconds; rpm and tpm are "per WINDOW"


class SlidingWindow:
    """Sliding-window counters for one deployment: `check()` says why not, `record()` counts an admitted attempt.

    `rpm`/`tpm` are what this window enforces (a share of the configured limit when several processes split it);
    `note` is appended to refusal messages to say whose share it is.
    """

    __slots__ = ("_events", "_tokens", "note", "rpm", "tpm", "window")

    def __init__(self, rpm: int | None, tpm: int | None, *, window: float = WINDOW, note: str = "") -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.window = window
        self.note = note
        self._events: deque[tuple[float, int, int]] = deque()  # (time, tokens, grant)
        self._tokens = 0

    def _expire(self, now: float) -> None:
        events = self._events
        horizon = now - self.window
        while events and events[0][0] <= horizon:
            self._tokens -= events.popleft()[1]

    def check(self, now: float, tokens: int) -> str | None:
        """None when an attempt of `tokens` estimated tokens fits; otherwise the reason it does not.

        A single attempt larger than the whole tpm limit is admitted into an empty window (else it could never run).
        """
        self._expire(now)
        if self.rpm is not None and len(self._events) >= self.rpm:
            return f"at rpm limit ({self.rpm}/min{self.note})"
        if self.tpm is not None and self._events and self._tokens + tokens > self.tpm:
            return f"at tpm limit ({self.tpm}/min{self.note})"
        return None

    def wait_for(self, now: float, tokens: int) -> float:
        """Seconds until an attempt of `tokens` would fit (0 when it fits now): when enough of the oldest
        admissions have left the window for both limits."""
        self._expire(now)
        events = self._events
        wait = 0.0
        if self.rpm is not None and len(events) >= self.rpm:
            wait = events[len(events) - self.rpm][0] + self.window - now
        if self.tpm is not None and events and self._tokens + tokens > self.tpm:
            need = self._tokens + tokens - self.tpm
            freed = 0
            leaves = events[-1][0]  # at worst the window empties (a single attempt over tpm then fits)
            for at, counted, _ in events:
                freed += counted
                if freed >= need:
                    leaves = at
                    break
            wait = max(wait, leaves + self.window - now)
        return max(0.0, wait)

    def record(self, now: float, tokens: int, grant: int = 0) -> None:
        self._events.append((now, tokens, grant))
        self._tokens += tokens

    def admit(self, now: float, tokens: int, grant: int) -> str | None:
        """`check` and, when it fits, `record` under `grant` (the admission's id, for a later refund)."""
        reason = self.check(now, tokens)
        if reason is None:
            self._events.append((now, tokens, grant))
            self._tokens += tokens
        return reason

    def refund(self, grant: int) -> int:
        """The attempt admitted as `grant` used no tokens after all (the provider refused it): stop counting them.

        Returns the tokens given back (0 when the attempt has left the window or was already refunded). Without
        this one request with an absurd max_tokens, refused with a 400, would fill the tpm window and keep the
        deployment "at its tpm limit" for everyone for a minute. It still counts as a request (rpm).
        """
        events = self._events
        for i in range(len(events) - 1, -1, -1):  # the attempt is recent: search from the newest entry
            when, counted, owner = events[i]
            if owner == grant:
                events[i] = (when, 0, owner)
                self._tokens -= counted
                return counted
        return 0

    def forget(self, grant: int) -> int:
        """Un-count the admission `grant` entirely (rpm and tpm): the attempt failed because of the client's own
        request. Only a provider's own failures may use up its limits; otherwise one client could fill the window
        with requests that fail on their content and keep the deployment "at its rpm limit" for everyone else.
        Returns the tokens given back (0 when the admission is unknown)."""
        events = self._events
        for i in range(len(events) - 1, -1, -1):
            if events[i][2] == grant:
                counted = events[i][1]
                del events[i]
                self._tokens -= counted
                return counted
        return 0

    def entries(self, now: float) -> list[tuple[float, int, int]]:
        """The admissions still inside the window, oldest first: (time, tokens, grant)."""
        self._expire(now)
        return list(self._events)

    def usage(self, now: float) -> tuple[int, int]:
        """(requests, tokens) counted in the current window."""
        self._expire(now)
        return len(self._events), self._tokens


def share(limit: int | None, parts: int) -> int | None:
    """One of `parts` processes' share of `limit`: rounded down so the parts never exceed it, but at least 1 (a
    limit below the number of processes still lets each of them send one request per window)."""
    if limit is None:
        return None
    return max(1, limit // max(1, parts))
