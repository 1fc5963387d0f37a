"""The last word of a stream whose story changed after its headers: an SSE comment with the full attempt trail.

A stream's `x-turnout-*` headers leave with its first chunk, so they cannot tell what happened later: a cut
continued on another deployment (`mid_stream: continue`), or a failure after the commit. Such a stream ends with

    : turnout-trail {"route":"chat","served_by":"primary/p1","attempts":[...],"splices":[...]}

just before `data: [DONE]` (or the error event). SSE clients skip comment lines (the `openai` SDK's decoder drops
every line starting with ":"), so it costs a plain client nothing; anything reading the raw stream can parse the
JSON after the tag. Streams whose headers already told the whole story end as before, without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

TAG = b": turnout-trail "


def trail_comment(stream: Any, known_attempts: int, scrub: Callable[[str], str] | None = None) -> bytes:
    """The comment for `stream` (a ChatStream), or b"" when its trail still has the `known_attempts` the headers
    accounted for and nothing was spliced. Attempt details pass through `scrub` (clients never see upstream
    addresses or secrets, `turnout.redaction`)."""
    attempts = stream.attempts
    splices = stream.splices
    if len(attempts) <= known_attempts and not splices:
        return b""
    shown = [attempt.to_dict() for attempt in attempts]
    if scrub is not None:
        for entry in shown:
            if entry["detail"]:
                entry["detail"] = scrub(entry["detail"])
    trail = {
        "route": stream.route,
        "served_by": stream.served_by,
        "attempts": shown,
        "splices": [splice.to_dict() for splice in splices],
    }
    return TAG + _dumps(trail).encode() + b"\n\n"


def _dumps(value: Any) -> str:
    # One line whatever the content: json escapes control characters, so no newline can end the comment early.
    return json.dumps(value, separators=(",", ":"), default=str)
