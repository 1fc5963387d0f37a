"""A canonical reasoning request (`turnout.reasoning`) as Anthropic's extended thinking. Pure: no I/O.

Sent only for a model that declares `reasoning` and only when translating (a Messages client's own `thinking` goes
to an Anthropic upstream as written). Two dialects, chosen per model by `options.thinking`:

- `budget` (the default): `thinking: {type: enabled, budget_tokens}`, the budget fitted by `turnout.reasoning`
  (at least 1,024, under `max_tokens`);
- `adaptive` (models that decide for themselves and refuse a budget, Opus 4.7 onwards): `thinking: {type:
  adaptive}`, the level as `output_config.effort` (low, medium or high; none at the model's default depth).

When the request sets no output limit, `max_tokens` becomes the driver's default plus the thinking budget (the
level's, in adaptive mode), so the answer keeps its usual room. While thinking, Anthropic refuses any temperature
but 1 and any `top_k`, and a `top_p` under 0.95: those are left out and `top_p` raised to 0.95 (the client asked to
reason; sampling is the detail). An OpenAI-format client's own `thinking` object keeps its other keys (`display`).

Anthropic cannot think in some requests; they are sent without thinking (`thinking_conflict` names why, the router
names it in `x-turnout-dropped`): a tool call the client forces, an answer that continues an assistant prefix (a
final assistant message, or a cut stream's continuation), a conversation whose latest tool call comes without the
thinking blocks that produced it (Anthropic wants them back unchanged), and, with a budget, an output limit too
small to think in. A request that asks for no reasoning, or turns it off, sends no `thinking` at all (off, at every
model that accepts a budget).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from turnout.reasoning import BUDGETS, thinking_budget
from turnout.types import ChatRequest

MODES = ("budget", "adaptive")
TOP_P_FLOOR = 0.95
Block = dict[str, Any]


def mode_of(model_options: Mapping[str, Any]) -> str:
    """The model's thinking dialect (`options.thinking`), `budget` unless it says `adaptive`."""
    return "adaptive" if model_options.get("thinking") == "adaptive" else "budget"


def thinking_conflict(request: ChatRequest, model_options: Mapping[str, Any]) -> str | None:
    """Why Anthropic cannot think in this (translated) request, or None when it can or nothing is asked."""
    reasoning = request.reasoning
    if reasoning is None or reasoning.off:
        return None
    if request.assistant_prefix is not None:
        return "continuing a cut answer"
    messages = request.messages
    if messages[-1].get("role") == "assistant":
        return "a prefilled answer"
    choice = request.body.get("tool_choice")
    if choice == "required" or isinstance(choice, Mapping):
        return "a forced tool choice"
    last = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
    if last is not None and last.get("tool_calls") and not thinking_blocks(last.get("thinking_blocks")):
        return "a tool call without its thinking blocks"
    if mode_of(model_options) == "budget" and thinking_budget(reasoning, request.max_output_tokens) is None:
        return "max_tokens too small to think in"
    return None


def add_thinking(
    out: dict[str, Any], request: ChatRequest, model_options: Mapping[str, Any], default_max_tokens: int
) -> None:
    """Add the request's reasoning to the Messages body `out` (already holding max_tokens and sampling)."""
    reasoning = request.reasoning
    if reasoning is None or reasoning.off or thinking_conflict(request, model_options) is not None:
        return
    limit = request.max_output_tokens
    if mode_of(model_options) == "adaptive":
        thinking: dict[str, Any] = {"type": "adaptive"}
        if not reasoning.default_depth:
            out["output_config"] = {**out.get("output_config", {}), "effort": reasoning.level}
        room = BUDGETS[reasoning.level]
    else:
        budget = thinking_budget(reasoning, limit)
        assert budget is not None  # thinking_conflict said so
        thinking = {"type": "enabled", "budget_tokens": budget}
        room = budget
    if limit is None:
        out["max_tokens"] = default_max_tokens + room
    own = request.body.get("thinking") if request.native is None else None
    if isinstance(own, Mapping):  # the client's own object: its other keys (display) stay
        thinking = {**{k: v for k, v in own.items() if k not in ("type", "budget_tokens")}, **thinking}
    out["thinking"] = thinking
    _sample_for_thinking(out)


def _sample_for_thinking(out: dict[str, Any]) -> None:
    if out.get("temperature") not in (None, 1, 1.0):
        del out["temperature"]
    out.pop("top_k", None)
    top_p = out.get("top_p")
    if isinstance(top_p, int | float) and top_p < TOP_P_FLOOR:
        out["top_p"] = TOP_P_FLOOR


def thinking_blocks(value: Any) -> list[Block]:
    """An assistant message's `thinking_blocks` (as this driver returned them) -> the blocks to send back.

    With extended thinking and tools, Anthropic requires the previous turn's thinking blocks, signature intact,
    before its tool_use blocks; anything malformed is dropped rather than sent.
    """
    blocks: list[Block] = []
    for block in value if isinstance(value, list) else ():
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "thinking" and isinstance(block.get("thinking"), str):
            if isinstance(block.get("signature"), str):
                blocks.append({"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]})
        elif block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
    return blocks
