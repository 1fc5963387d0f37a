"""Shared state below the router: rate limits, breaker news and the usage ledger, behind one small interface.

`open_state(spec, ...)` builds the backend the `state:` section names: `LocalState` (this process) or
`RedisState` (every worker and replica on one Redis; redis-py is imported only by `turnout.state.redis`, and
only when this backend is chosen). See `turnout.state.base` for the interface the router uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from turnout.config import StateSpec
from turnout.errors import ConfigError, Problem
from turnout.events import Event
from turnout.state.base import BreakerNews, Gate, StateBackend
from turnout.state.ledger import PERIODS, Period, UsageKey, UsageTotals
from turnout.state.local import LocalState

__all__ = [
    "PERIODS",
    "BreakerNews",
    "Gate",
    "LocalState",
    "Period",
    "StateBackend",
    "UsageKey",
    "UsageTotals",
    "open_state",
]


def open_state(
    spec: StateSpec,
    *,
    source: str = "<memory>",
    workers: int = 1,
    clock: Callable[[], float] = time.monotonic,
    emit: Callable[[Event], None] | None = None,
    on_breaker: BreakerNews | None = None,
) -> StateBackend:
    """The backend for `spec` (no I/O: a Redis backend connects in `start()`). ConfigError when the redis extra
    is missing."""
    if spec.backend != "redis":
        return LocalState(spec, workers=workers, clock=clock, emit=emit)
    if spec.url is None:
        raise ConfigError([Problem(source, 0, 0, "state.url", "backend redis needs a url")])
    try:
        from turnout.state.shared import RedisState
    except ImportError as exc:
        raise ConfigError(
            [
                Problem(
                    source,
                    0,
                    0,
                    "state.backend",
                    f"backend redis needs the redis package ({exc.name or exc}): pip install 'turnout[redis]'",
                )
            ]
        ) from None
    return RedisState(spec, workers=workers, clock=clock, emit=emit, on_breaker=on_breaker)
