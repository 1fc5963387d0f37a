"""What of a request's reasoning (`ChatRequest.reasoning`) each deployment receives. Pure: no I/O.

A deployment receives the client's reasoning in one of two ways: as the client wrote it, when the deployment takes
the client's own body (a Messages request on an Anthropic deployment, a Responses request on a Responses upstream,
an OpenAI chat body on an OpenAI-compatible upstream), or translated into its upstream's dialect by its driver. The
model's `supports` decides only the second:

| the model's `supports`        | the client's own field, own body | a translation | named in `x-turnout-dropped`    |
|-------------------------------|----------------------------------|---------------|---------------------------------|
| lists `reasoning`             | sent as written                  | sent          | only what the driver cannot fit |
| does not list it (or absent)  | sent as written                  | never         | when it would need translating  |

Why a model that does not list `reasoning` is never sent a translation: reasoning parameters make a model that does
not reason answer 400, which fails the request (bad_request is not routed around) instead of answering it without
reasoning. Why its client's own field still goes as written: files written before `reasoning` existed list every
other capability, and Claude Code's `thinking` or a Codex agent's `reasoning` on their own upstream must keep
working. A driver may also decline to send reasoning for one request (`reasoning_conflict`, e.g. Anthropic cannot
think when the client forces a tool call): the request is then sent without it, and that is named too. Nothing here
ever refuses a request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from turnout.reasoning import CHAT
from turnout.types import ChatRequest

if TYPE_CHECKING:
    from turnout.router.graph import Deployment

UNDECLARED = "reasoning (the model does not declare it)"  # its `supports` does not list reasoning


def fit(request: ChatRequest, d: Deployment) -> tuple[ChatRequest, str | None]:
    """The request as `d` receives it (call only with `request.reasoning` set), and what `x-turnout-dropped` names
    for it (None when its reasoning reaches `d`)."""
    native = request.native
    own = (CHAT if native is None else native.format) in d.native_formats  # d takes the client's own body
    if "reasoning" in d.capabilities:
        if own:
            return request, None
        conflict = getattr(d.driver, "reasoning_conflict", None)
        why = conflict(request, d.model_options) if callable(conflict) else None
        if why is None:
            return request, None
        return request.without_reasoning(), f"reasoning ({why})"
    return request.without_reasoning(), None if own else UNDECLARED
