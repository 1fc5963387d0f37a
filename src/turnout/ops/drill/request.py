"""One drill request, sent exactly as a client would send it, and what became of it (`Outcome`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from turnout.errors import AllUpstreamsFailed, ProviderError, TurnoutError
from turnout.ops.drill.scenarios import FULL
from turnout.router.client import Router
from turnout.router.graph import CompiledRoute
from turnout.router.pricing import request_cost
from turnout.schema.units import format_duration
from turnout.types import Attempt

MESSAGES = ({"role": "user", "content": FULL},)
MAX_TOKENS = 64


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request's end: a complete answer (`ok`) or an error, with the trail and the time it took."""

    ok: bool
    text: str
    served_by: str | None
    attempts: tuple[Attempt, ...]
    cost: float | None
    wall: float
    error_class: str | None = None
    error: str = ""
    unexpected: str | None = None  # not a turnout error: the router misbehaved

    @property
    def tried(self) -> int:
        return sum(1 for a in self.attempts if a.outcome != "skipped")

    @property
    def finisher(self) -> str | None:
        """The deployment whose attempt succeeded (for a continued stream, not the one that committed)."""
        return next((a.deployment for a in reversed(self.attempts) if a.outcome == "success"), None)


async def ask(router: Router, route: CompiledRoute, stream: bool) -> Outcome:
    """One request, as a client sends it; never raises."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    handle = None
    limit = 2 * route.policy.deadline + 60  # a runaway request, in policy time
    try:
        async with asyncio.timeout(limit):
            if not stream:
                reply = await router.chat(model=route.name, messages=MESSAGES, max_tokens=MAX_TOKENS)
                wall = loop.time() - started
                return Outcome(True, reply.text, reply.served_by, reply.attempts, reply.cost_usd, wall)
            handle = router.stream(model=route.name, messages=MESSAGES, max_tokens=MAX_TOKENS)
            parts: list[str] = []
            async with handle:
                async for chunk in handle:
                    if chunk.is_content and chunk.content:
                        parts.append(chunk.content)
            wall = loop.time() - started
            return Outcome(True, "".join(parts), handle.served_by, handle.attempts, handle.cost_usd, wall)
    except TurnoutError as exc:
        trail = tuple(getattr(exc, "attempts", None) or (handle.attempts if handle is not None else ()))
        cause = exc.last_error if isinstance(exc, AllUpstreamsFailed) else exc
        cls = cause.error_class.value if isinstance(cause, ProviderError) else None
        cost = handle.cost_usd if handle is not None else request_cost(trail)
        served = handle.served_by if handle is not None else None
        return Outcome(False, "", served, trail, cost, loop.time() - started, cls, str(exc))
    except TimeoutError:
        wall = loop.time() - started
        trail = handle.attempts if handle is not None else ()
        return Outcome(False, "", None, trail, None, wall, unexpected=f"still running after {format_duration(limit)}")
    except Exception as exc:  # the promise under test: nothing but turnout's own errors
        trail = handle.attempts if handle is not None else ()
        return Outcome(False, "", None, trail, None, loop.time() - started, unexpected=f"{type(exc).__name__}: {exc}")
