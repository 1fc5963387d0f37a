"""Pieces the request translators share (canonical OpenAI chat -> Anthropic Messages / Gemini contents). Pure.

Both translators refuse what the upstream would reject with a `bad_request` error before sending anything
(`Failer`), turn OpenAI's JSON-string tool arguments into the object their wire wants (`tool_arguments`), merge
consecutive same-role turns with tool results first (`merge_turns`: both APIs want results to lead the turn after
the calls) and read base64 data URLs (`split_data_url`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from turnout.errors import ErrorClass, ProviderError, provider_error

Turn = tuple[str, list[dict[str, Any]]]


class Failer:
    """Builds the bad_request error for this provider/model (keeps call sites one line)."""

    __slots__ = ("model", "provider")

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model

    def __call__(self, message: str) -> ProviderError:
        return provider_error(ErrorClass.BAD_REQUEST, message, provider=self.provider, model=self.model)


def tool_arguments(arguments: Any, where: str, fail: Failer) -> dict[str, Any]:
    """OpenAI's JSON-string arguments -> the object Anthropic and Gemini want (empty or missing -> {})."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        raise fail(f"{where}.function.arguments is not valid JSON.") from None
    if not isinstance(value, dict):
        raise fail(f"{where}.function.arguments must encode a JSON object.")
    return value


def merge_turns(turns: list[Turn], *, is_result: Callable[[dict[str, Any]], bool]) -> list[Turn]:
    """Merge consecutive same-role turns and drop empty ones; in user turns the tool results (`is_result`) lead.

    The sort is stable, so order within the results and within the rest is kept: one round of parallel results
    travels as one turn, right after the calls, as both APIs require.
    """
    merged: list[Turn] = []
    for role, blocks in turns:
        if not blocks:
            continue
        if merged and merged[-1][0] == role:
            merged[-1][1].extend(blocks)
        else:
            merged.append((role, list(blocks)))
    for role, blocks in merged:
        if role == "user" and len(blocks) > 1:
            blocks.sort(key=lambda block: not is_result(block))
    return merged


def split_data_url(url: str) -> tuple[str, str] | None:
    """`data:<type>;base64,<data>` -> (lower-cased media type, base64 data); None when not base64-encoded.

    The caller has checked the `data:` prefix (its error for other schemes names what it accepts).
    """
    header, comma, data = url[5:].partition(",")
    params = header.split(";")
    if not comma or "base64" not in params[1:] or not data:
        return None
    return params[0].strip().lower(), data
