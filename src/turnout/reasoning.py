"""The client's request for reasoning, in one canonical form, and the tables that translate it.

Clients ask for reasoning in their own format's words. Every ingress turns them into one `Reasoning` value on the
canonical request (`ChatRequest.reasoning`, None when the client asked for nothing):

| client format      | field                                                        | canonical                      |
|--------------------|--------------------------------------------------------------|--------------------------------|
| OpenAI chat        | `reasoning_effort` (none, minimal, low, medium, high, xhigh, | that effort                    |
|                    | max)                                                         |                                |
| OpenAI chat        | `thinking: {type: enabled, budget_tokens}` (Anthropic's      | that budget                    |
|                    | object, as some OpenAI-format clients send it)               |                                |
| Anthropic Messages | `thinking: {type: enabled, budget_tokens}`                   | that budget (and `output_      |
|                    |                                                              | config.effort` when set)       |
| Anthropic Messages | `thinking: {type: adaptive}`, `output_config.effort`         | that effort, or on at the      |
|                    |                                                              | model's own depth without one  |
| Anthropic Messages | `thinking: {type: disabled}` (or `between_tools`)            | off (effort "none")            |
| Responses          | `reasoning: {effort, summary}`                               | that effort; `summary` kept    |

Where it goes is decided per deployment (`turnout.router.reasoning`): a model that declares `reasoning` in its
`supports` receives it in its upstream's dialect; any other never receives a translation of it.

Effort levels and token budgets map through one table:

| level  | budget (tokens) | a budget the client named counts as this level when it is |
|--------|-----------------|-----------------------------------------------------------|
| low    | 1,024           | under 2,896                                               |
| medium | 8,192           | from 2,896 to 14,188                                      |
| high   | 24,576          | 14,189 or more                                            |

Why these numbers: they are the ones Google uses for `reasoning_effort` on its own OpenAI-compatible endpoint;
1,024 is the least budget Anthropic accepts, and 24,576 the most that every Gemini 2.5 model accepts (Flash's
ceiling). A budget counts as the level whose budget is nearest on a doubling scale (the boundaries are the geometric
means of neighbouring budgets). Translated levels are always low, medium or high, the three that every reasoning
model of every vendor accepts: `minimal` counts as low, `xhigh` and `max` as high, a level turnout does not know as
medium. An OpenAI-format client's own level (and `none`) reaches an OpenAI-compatible upstream as written: the
client chose it for that vendor.

Thinking counts toward the output limit at every vendor, so a budget is fitted into the request's limit: a level's
budget takes at most half of it (the answer keeps the rest), a budget the client named stays under it. With fewer
than 1,024 tokens to think in there is no thinking: the reasoning is not sent (and is named as dropped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from turnout.errors import InvalidRequest

CHAT = "openai.chat"  # the client formats a request can come in (`NativeRequest.format`; chat has no native body)
MESSAGES = "anthropic.messages"
RESPONSES = "openai.responses"
OPENAI_FORMATS = frozenset({CHAT, RESPONSES})

OFF = "none"
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")  # OpenAI's scale, as its SDK lists it
LEVELS = ("low", "medium", "high")  # what translation sends: accepted by every reasoning model of every vendor
BUDGETS: Mapping[str, int] = {"low": 1024, "medium": 8192, "high": 24576}
MIN_BUDGET = 1024  # fewer tokens to think in is no thinking (and Anthropic's least budget)
_NEAREST = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_LOW_UNDER = math.isqrt(BUDGETS["low"] * BUDGETS["medium"])  # 2896
_MEDIUM_UNDER = math.isqrt(BUDGETS["medium"] * BUDGETS["high"]) + 1  # 14189


@dataclass(frozen=True, slots=True)
class Reasoning:
    """What the client asked of the model's reasoning, whatever format it asked in.

    `effort` is a level on OpenAI's scale as the client said it ("none" turns reasoning off), `budget_tokens` a
    number of thinking tokens the client named, `summary` the Responses API's request for the reasoning's summary
    ("auto", "concise", "detailed"), `source` the client format it came in (`CHAT`, `MESSAGES`, `RESPONSES`). With
    neither an effort nor a budget the client wants reasoning at the model's own default depth.
    """

    effort: str | None = None
    budget_tokens: int | None = None
    summary: str | None = None
    source: str = CHAT

    @property
    def off(self) -> bool:
        """The client turned reasoning off."""
        return self.effort == OFF

    @property
    def default_depth(self) -> bool:
        """On, at the depth the model picks (the client named neither a level nor a budget)."""
        return self.effort is None and self.budget_tokens is None

    @property
    def level(self) -> str:
        """The portable level (low, medium or high) this stands for; medium at the model's default depth."""
        if self.effort is not None:
            return _NEAREST.get(self.effort, "medium")
        if self.budget_tokens is not None:
            return level_of(self.budget_tokens)
        return "medium"


def level_of(budget: int) -> str:
    """The level whose budget is nearest to `budget` on a doubling scale."""
    if budget < _LOW_UNDER:
        return "low"
    return "medium" if budget < _MEDIUM_UNDER else "high"


def openai_effort(reasoning: Reasoning) -> str | None:
    """`reasoning_effort` for an OpenAI-compatible upstream; None sends nothing (the model's default).

    An OpenAI-format client's own level goes as written (`none` included: its vocabulary); from another format
    "off" sends nothing (no value turns reasoning off on every OpenAI model), and a level is translated."""
    if reasoning.source in OPENAI_FORMATS and reasoning.effort is not None:
        return reasoning.effort
    if reasoning.off or reasoning.default_depth:
        return None
    return reasoning.level


def thinking_budget(reasoning: Reasoning, max_tokens: int | None, *, ceiling: int | None = None) -> int | None:
    """Thinking tokens to allow within `max_tokens` (the request's output limit, None when it sets none), at most
    `ceiling`; None when fewer than MIN_BUDGET are left to think in. The client's own budget wins over its level."""
    named = reasoning.budget_tokens
    budget = named if named is not None else BUDGETS[reasoning.level]
    if ceiling is not None:
        budget = min(budget, ceiling)
    if max_tokens is not None:
        budget = min(budget, max_tokens - 1 if named is not None else max_tokens // 2)
    return budget if budget >= MIN_BUDGET else None


# -- parsing the OpenAI chat body (the other formats parse theirs beside their translation) ------------------------


def from_chat(body: Mapping[str, Any]) -> Reasoning | None:
    """The reasoning an OpenAI chat body asks for: `reasoning_effort`, or Anthropic's `thinking` object (sent by
    clients that target Anthropic models through OpenAI-format gateways). A `thinking` value of another shape is
    left to the upstream (it is not read)."""
    effort = body.get("reasoning_effort")
    thinking = body.get("thinking")
    if effort is not None and not isinstance(effort, str):
        raise InvalidRequest(
            "'reasoning_effort' must be a string (none, minimal, low, medium, high, xhigh or max).",
            param="reasoning_effort",
        )
    budget = None
    if isinstance(thinking, Mapping):
        kind = thinking.get("type")
        value = thinking.get("budget_tokens")
        if kind == "enabled" and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            budget = value
        elif kind in ("disabled", "between_tools") and effort is None:
            effort = OFF
        elif kind != "adaptive" and effort is None:
            return None
    elif effort is None:
        return None
    return Reasoning(effort=effort, budget_tokens=budget, source=CHAT)
