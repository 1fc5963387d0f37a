"""The canonical reasoning request and its tables (`turnout.reasoning`): levels, budgets, OpenAI efforts, parsing."""

from __future__ import annotations

import pytest

from turnout.errors import InvalidRequest
from turnout.reasoning import CHAT, MESSAGES, RESPONSES, Reasoning, from_chat, level_of, openai_effort, thinking_budget
from turnout.types import ChatRequest


@pytest.mark.parametrize(
    ("budget", "level"),
    [(1, "low"), (1024, "low"), (2895, "low"), (2896, "medium"), (8000, "medium"), (14188, "medium"),
     (14189, "high"), (24576, "high"), (10**6, "high")],
)  # fmt: skip
def test_a_budget_counts_as_the_nearest_level_on_a_doubling_scale(budget, level):
    """Boundaries are the geometric means of neighbouring levels' budgets."""
    assert level_of(budget) == level


@pytest.mark.parametrize(
    ("effort", "level"),
    [("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "high"),
     ("max", "high"), ("ultra", "medium"), (None, "medium")],
)  # fmt: skip
def test_every_effort_maps_to_a_portable_level(effort, level):
    """Translation only ever sends low, medium or high; an unknown word counts as medium."""
    assert Reasoning(effort=effort).level == level


@pytest.mark.parametrize(
    ("reasoning", "max_tokens", "ceiling", "budget"),
    [
        (Reasoning(effort="high"), None, None, 24576),
        (Reasoning(effort="high"), None, 10000, 10000),
        (Reasoning(effort="high"), 3000, None, 1500),  # a level takes at most half the limit
        (Reasoning(effort="low"), 2047, None, None),  # under 1,024 left: no thinking
        (Reasoning(budget_tokens=8000), 5000, None, 4999),  # a named budget stays under the limit
        (Reasoning(budget_tokens=8000, effort="low"), None, None, 8000),  # the client's budget wins over its level
        (Reasoning(budget_tokens=500), None, None, None),
    ],
)
def test_thinking_budget_fits_the_output_limit(reasoning, max_tokens, ceiling, budget):
    """A budget is fitted under max_tokens and the driver's ceiling, or None when too small to think in."""
    assert thinking_budget(reasoning, max_tokens, ceiling=ceiling) == budget


@pytest.mark.parametrize(
    ("reasoning", "effort"),
    [
        (Reasoning(effort="xhigh", source=CHAT), "xhigh"),  # an OpenAI client's own word, as written
        (Reasoning(effort="none", source=RESPONSES), "none"),
        (Reasoning(effort="max", source=MESSAGES), "high"),  # translated: a portable level
        (Reasoning(effort="none", source=MESSAGES), None),  # off: nothing (not every model takes "none")
        (Reasoning(source=MESSAGES), None),  # the model's own depth: nothing
        (Reasoning(budget_tokens=20000, source=MESSAGES), "high"),
    ],
)
def test_openai_effort(reasoning, effort):
    """What an OpenAI-compatible upstream is sent as reasoning_effort."""
    assert openai_effort(reasoning) == effort


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"reasoning_effort": "low"}, Reasoning(effort="low")),
        ({"thinking": {"type": "enabled", "budget_tokens": 4000}}, Reasoning(budget_tokens=4000)),
        ({"thinking": {"type": "adaptive"}}, Reasoning()),
        ({"thinking": {"type": "disabled"}}, Reasoning(effort="none")),
        ({"thinking": {"type": "from-the-future"}}, None),  # left to the upstream, not read
        ({"thinking": "yes"}, None),
    ],
)
def test_a_chat_body_reads_reasoning_effort_and_anthropics_thinking(body, expected):
    """An OpenAI chat body's reasoning request, in OpenAI's or Anthropic's words."""
    assert from_chat(body) == expected
    request = ChatRequest.from_openai({"model": "m", "messages": [{"role": "user", "content": "hi"}], **body})
    assert request.reasoning == expected


def test_a_malformed_reasoning_effort_is_a_400_naming_it():
    """reasoning_effort that is not a string is refused with the field named, before anything is sent."""
    with pytest.raises(InvalidRequest) as caught:
        ChatRequest.from_openai({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": 3})
    assert caught.value.param == "reasoning_effort"
