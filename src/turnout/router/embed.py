"""Embeddings through the one dispatch loop: what is different from chat is which deployments fit, what an
attempt calls, and how a success is finished.

- Fit (`EmbeddingRun.unfit`): a deployment must return the length the request asks for (its own `dimensions`, or
  a shorter one from `min_dimensions` up), take token-id arrays if the request is made of them, and have a window
  (tokens per input) the largest input fits in. Breakers, rate limits (the deployment's gate), retries, the
  deadline and the error actions are the loop's, exactly as for chat.
- An attempt (`_embed`) calls `driver.embed` and checks the answer's shape: one vector per input, each of the
  length asked for. A deployment that answers with another length (a wrong `dimensions` in the file, or a
  different model behind the name) fails with a protocol error and the request moves on: a vector of another
  space is never returned.
- A success (`_finish`) is priced like chat's prompt tokens; an upstream that reports no usage (Gemini) is priced
  from the request's token estimate, flagged as estimated, so an embedding's cost is never unknown or a made-up 0.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from turnout.drivers.base import EmbeddingContext
from turnout.embeddings import EmbeddingRequest, EmbeddingResponse, dimensions_of
from turnout.errors import InvalidRequest, ProtocolError
from turnout.router.dispatch import Run, dispatch
from turnout.router.pricing import request_cost
from turnout.types import Usage

if TYPE_CHECKING:
    from turnout.router.breaker import Ticket
    from turnout.router.graph import CompiledRoute, Deployment
    from turnout.router.health import DeploymentHealth


class EmbeddingRun(Run):
    """The state of one embeddings request while it is dispatched (see `Run`)."""

    __slots__ = ()
    request: EmbeddingRequest

    def unfit(self, d: Deployment) -> str | None:
        """Why `d` can never take this request (length, token input, window), or None. Rate limits are asked just
        before each attempt, as for chat (`Run.admit`)."""
        r = self.request
        if not d.returns(r.dimensions):
            shortest = f"{d.min_dimensions}-{d.dimensions}" if d.min_dimensions is not None else str(d.dimensions)
            return f"returns {shortest} dimensions, not {r.dimensions}"
        if r.tokens and not d.token_input:
            return "does not take token-id arrays as input"
        window = d.context_window
        if window is not None and window < r.largest_input_tokens:
            return f"context window {window} < estimated {r.largest_input_tokens} tokens of the largest input"
        return None

    def output_allowance(self, d: Deployment) -> int:
        """An embedding has no output tokens: its reservation is its input at the input price."""
        return 0

    def context(self, d: Deployment, budget: float | None, *, batch: bool = False) -> EmbeddingContext:
        """What an embeddings attempt may use: `Run.context`'s session, budget and options (no stream timeouts:
        an embeddings call never streams) and the deployment's length."""
        return EmbeddingContext(
            session=self.session,
            model=d.upstream,
            deadline=self.deadline,
            attempt_timeout=budget,
            connect_timeout=d.connect_timeout or self.policy.connect_timeout,
            model_options=d.model_options,
            clock=self.rt.clock,
            guarded=True,  # the loop's TimeoutMonitor enforces the budget, as for chat
            dimensions=d.dimensions,
        )


def dispatch_embeddings(run: EmbeddingRun) -> Awaitable[EmbeddingResponse]:
    """Serve an embeddings request through the one loop (`turnout.router.dispatch.dispatch`)."""
    return dispatch(run, _embed, _finish)


async def _embed(d: Deployment, request: EmbeddingRequest, ctx: EmbeddingContext) -> EmbeddingResponse:
    response = await d.driver.embed(request, ctx)  # type: ignore[attr-defined]  # the route holds embedders only
    check_shape(response, request, d)
    return response


def check_shape(response: EmbeddingResponse, request: EmbeddingRequest, d: Deployment) -> None:
    """One vector per input, each of the length asked for; else a protocol error (the attempt fails over)."""
    vectors = response.vectors
    if len(vectors) != len(request.inputs):
        raise ProtocolError(
            f"upstream returned {len(vectors)} vectors for {len(request.inputs)} inputs",
            provider=d.provider,
            model=d.upstream,
        )
    expected = request.dimensions or d.dimensions
    for index, vector in enumerate(vectors):
        length = dimensions_of(vector)
        if length != expected:
            raise ProtocolError(
                f"upstream returned a {length}-dimension vector (input {index}) where {expected} were expected "
                f"(models.{d.model}.dimensions): refused, a vector of another space would corrupt an index",
                provider=d.provider,
                model=d.upstream,
            )


def _finish(
    run: Run, d: Deployment, h: DeploymentHealth, ticket: Ticket, started: float, response: EmbeddingResponse
) -> EmbeddingResponse:
    request: EmbeddingRequest = run.request  # type: ignore[assignment]
    usage, estimated = response.usage, False
    if usage.prompt_tokens is None:  # the upstream reported none: price the request's own estimate, flagged
        usage, estimated = Usage(request.estimated_prompt_tokens, 0), True
    elif usage.completion_tokens is None:
        usage = Usage(usage.prompt_tokens, 0)
    run.succeeded(d, h, ticket, started, usage, None, estimated, reply=response)
    cost = request_cost(run.trail)
    run.complete(d.key, usage=usage, cost=cost)
    return EmbeddingResponse(
        model=response.model,
        vectors=response.vectors,
        usage=usage,
        usage_estimated=estimated,
        route=run.route.name,
        served_by=d.key,
        attempts=tuple(run.trail),
        cost_usd=cost,
        encoding_format=request.encoding_format,
    )


# ---------------------------------------------------------------------------------------------- refusals (400)


def check_length(route: CompiledRoute, request: EmbeddingRequest) -> None:
    """A 400 when no deployment of the route can return the length asked for (the client's mistake, not an outage)."""
    asked = request.dimensions
    if asked is None or any(d.returns(asked) for d in route.deployments):
        return
    lows = [d.min_dimensions for d in route.deployments if d.min_dimensions is not None]
    shorter = f"or {min(lows)} to {route.dimensions} on request" if lows else "and no shorter ones"
    raise InvalidRequest(
        f"Route '{route.name}' returns {route.dimensions}-dimension vectors {shorter}; it cannot return {asked}.",
        param="dimensions",
    )
