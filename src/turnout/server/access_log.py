"""One structured JSON line per chat request.

Fields: time, method, path, status, route, served_by, stream, attempts (deployment, outcome, error class, status,
duration), latency_ms, ttft_ms, prompt/completion tokens, cost_usd, error class and message. Request and response
content appear only with `server.log_content: true`. Headers are never logged, so neither client keys nor
provider credentials can leak here; attempt details are turnout's own classified messages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from turnout.types import Attempt, Usage

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


class AccessLog:
    """Writes access lines to `stream` (None disables it). Cheap: one dict, one encode, one write."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._second = -1
        self._stamp = ""

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def _now(self) -> str:
        """ISO-8601 UTC with milliseconds; the second part is formatted once per second."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def write(
        self,
        *,
        method: str,
        path: str,
        status: int,
        route: str | None,
        served_by: str | None,
        stream: bool,
        attempts: Sequence[Attempt],
        latency: float,
        ttft: float | None = None,
        usage: Usage | None = None,
        cost_usd: float | None = None,
        error_class: str | None = None,
        error: str | None = None,
        content: Mapping[str, Any] | None = None,
    ) -> None:
        out = self._stream
        if out is None:
            return
        line: dict[str, Any] = {
            "ts": self._now(),
            "method": method,
            "path": path,
            "status": status,
            "route": route,
            "served_by": served_by,
            "stream": stream,
            "attempts": [_attempt(a) for a in attempts],
            "latency_ms": round(latency * 1000, 3),
            "ttft_ms": None if ttft is None else round(ttft * 1000, 3),
            "prompt_tokens": usage.prompt_tokens if usage is not None else None,
            "completion_tokens": usage.completion_tokens if usage is not None else None,
            "cost_usd": cost_usd,
        }
        if error_class is not None or error is not None:
            line["error_class"] = error_class
            line["error"] = error
        if content is not None:
            line["content"] = content
        try:
            out.write(_dumps(line) + "\n")
            out.flush()
        except (OSError, ValueError):  # a closed or broken log stream must never fail a request
            pass


def _attempt(a: Attempt) -> dict[str, Any]:
    entry: dict[str, Any] = {"deployment": a.deployment, "outcome": a.outcome}
    if a.error_class is not None:
        entry["error_class"] = a.error_class
    if a.status is not None:
        entry["status"] = a.status
    entry["ms"] = round(a.duration * 1000, 3)
    if a.detail and a.outcome != "success":
        entry["detail"] = a.detail
    return entry
