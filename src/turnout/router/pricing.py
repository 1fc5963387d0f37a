"""Turning normalised usage into USD.

Prices are `Decimal` USD per 1M tokens in the config; they are converted once, at compile time, into float USD
per token. The hot path multiplies floats: for any realistic request (under ~10^9 tokens) the relative error is
below 1e-12, far below a cent, which is why the per-request arithmetic does not use Decimal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from turnout.config import Price
from turnout.types import Attempt, Usage

_PER_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """USD per single token, derived once from a `Price`.

    `cached_input` and `cache_write` fall back to `input` when the file declares no separate price.
    """

    input: float
    output: float
    cached_input: float
    cache_write: float

    @classmethod
    def from_spec(cls, price: Price) -> TokenPrice:
        cached = price.cached_input if price.cached_input is not None else price.input
        write = price.cache_write if price.cache_write is not None else price.input
        return cls(
            input=float(price.input / _PER_MILLION),
            output=float(price.output / _PER_MILLION),
            cached_input=float(cached / _PER_MILLION),
            cache_write=float(write / _PER_MILLION),
        )

    def cost(self, usage: Usage | None) -> float | None:
        """USD for one attempt's usage, or None when usage is unknown (never a made-up 0).

        `Usage.prompt_tokens` already includes cached and cache-written input, so the plain-input part is
        `prompt - cached - cache_write` and each part is billed at its own price:
        `plain*input + cached*cached_input + cache_write*cache_write_price + completion*output`.
        """
        if usage is None or usage.prompt_tokens is None or usage.completion_tokens is None:
            return None
        plain = max(0, usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens)
        try:
            return (
                plain * self.input
                + usage.cached_tokens * self.cached_input
                + usage.cache_write_tokens * self.cache_write
                + usage.completion_tokens * self.output
            )
        except OverflowError:  # an upstream reporting absurd token counts (10**400): no believable price
            return None

    def estimate(self, prompt_tokens: int, output_tokens: int) -> float:
        """Expected USD for a request of this size (used by the `lowest_cost` strategy)."""
        return prompt_tokens * self.input + output_tokens * self.output


def request_cost(attempts: Iterable[Attempt]) -> float | None:
    """Sum of what every attempt was billed; None as soon as one sent attempt has an unknown cost.

    Skipped attempts were never sent and cost nothing. A failed attempt's cost is 0 only when the dispatcher
    knew nothing was billed (an HTTP error status before any output); otherwise it is None, and so is the total.
    """
    total = 0.0
    for attempt in attempts:
        if attempt.outcome == "skipped":
            continue
        if attempt.cost_usd is None:
            return None
        total += attempt.cost_usd
    return total
