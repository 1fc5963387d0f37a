"""Streamed dispatch: the same loop as `dispatch_chat`, with a commit point and mid-stream policies.

Nothing reaches the caller before the first content chunk of some attempt (the commit point); until then
every failure, including a first-token timeout, fails over invisibly exactly like a non-streamed request.
After it a stall timeout bounds every gap and a failure is handled by the route's `mid_stream` policy:
`error` raises a ProviderError with `after_first_token=True` (a cut stream never ends like a complete one);
`continue` hands the text so far to the next deployment that supports `prefill` (as `assistant_prefix`) and
streams its continuation without a second role chunk; with no such deployment left it behaves as `error`
and reports the original failure. An error whose route action is "fail" stops the stream under either
policy: a cut answer is never routed around a safety decision. A refusal is raised as is; any other "fail"
error from a continuation (say, a 400 for the prefix) is secondary, so the original cut is reported. Only text
can be continued: once a tool call has been streamed, a cut behaves as `error` (a half-sent call cannot be
resumed from a text prefix, and a restarted one would splice two calls into one).

Before the commit an attempt is bounded by min(first_token_timeout, attempt_timeout); after it only the
stall timeout and the request's deadline apply (a long answer may take longer than one attempt_timeout).

The generic timeouts cost almost nothing per chunk: each wait only stores its limit in the attempt's Guard
(`turnout.router.timeouts`), whose Router-wide timer cancels a wait that overran; the stream turns that into
an UpstreamTimeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType

from turnout.errors import ErrorClass, ProviderError, UpstreamTimeout, provider_error
from turnout.router.breaker import Ticket
from turnout.router.dispatch import Run, driver_bug
from turnout.router.policy import action_for
from turnout.router.pricing import request_cost
from turnout.types import Attempt, ChatChunk, ChunkBatch, Usage


class ChatStream:
    """An async iterator of ChatChunk that is also an async context manager.

    Readable at any time: `route`, `served_by` (set at the commit point), `attempts` (the trail so far),
    `usage`, `cost_usd` (final once the stream ended) and `time_to_first_token` (seconds).
    `aclose()` cancels the upstream call at once.
    """

    def __init__(self, run: Run) -> None:
        self._run = run
        self._gen: AsyncIterator[ChatChunk] | None = None
        self._batch = False
        self.route = run.route.name
        self.served_by: str | None = None
        self.usage: Usage = Usage.UNKNOWN
        self.cost_usd: float | None = None
        self.time_to_first_token: float | None = None

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return tuple(self._run.trail)

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        if self._gen is None:
            self._gen = self._chunks()
        return self._gen

    def batched(self) -> AsyncIterator[ChatChunk | ChunkBatch]:
        """Iterate with batching: consecutive plain chunks of one upstream read may arrive as one ChunkBatch.

        For consumers that forward bytes (the sidecar writes `to_sse()` as is): a driver that supports it
        (`openai`) then hands over a whole read at once instead of one chunk per event. Call it instead of
        iterating, before the first chunk; accounting, timeouts and mid-stream policies are the same.
        """
        if self._gen is not None:
            raise RuntimeError("batched() must be called before the stream is iterated")
        self._batch = True
        return self.__aiter__()  # type: ignore[return-value]

    async def __anext__(self) -> ChatChunk:
        return await self.__aiter__().__anext__()

    async def aclose(self) -> None:
        """Stop now: the upstream call (if any) is cancelled and the request ends as "cancelled" unless done."""
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]
        self._run.complete(self.served_by, error_class="cancelled")  # no-op when the stream already ended

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _chunks(self) -> AsyncIterator[ChatChunk]:
        run = self._run
        rt = run.rt
        policy = run.policy
        loop = asyncio.get_running_loop()
        monitor = rt.timeouts
        loop_deadline = loop.time() + run.remaining()
        text: list[str] | None = [] if policy.mid_stream == "continue" else None
        first_wait = min(policy.first_token_timeout, policy.attempt_timeout)
        committed = False
        cut: ProviderError | None = None  # the original mid-stream failure
        finished = False
        try:
            for d in run.candidates():
                h = run.entries[d.key]
                n = 0
                while True:
                    ticket = h.breaker.acquire()
                    if not ticket:
                        run.skip(d, "breaker open")
                        break
                    remaining = run.remaining()
                    if remaining <= 0:
                        h.breaker.release(ticket)
                        raise run_failed(run, cut) if cut is not None else run.exhausted()
                    request = run.request if not committed else run.request.with_prefix("".join(text or ()))
                    # A stream's length is bounded by the deadline, not attempt_timeout.
                    ctx = run.context(d, None, batch=self._batch)
                    started = run.begin(d, h)
                    upstream = d.driver.stream(request, ctx)
                    guard = monitor.guard()
                    seen_content = False
                    error: ProviderError | None = None
                    try:
                        pending: list[ChatChunk] = []
                        first_by = min(loop.time() + first_wait, loop_deadline)
                        chunk: ChatChunk | None = None
                        while True:  # until the first content chunk
                            guard.wait_until(first_by)
                            chunk = await upstream.__anext__()
                            guard.until = None
                            if chunk.is_content or chunk.usage is not None:
                                break
                            pending.append(chunk)
                        seen_content = chunk.is_content
                        if not committed:
                            committed = True
                            self.served_by = d.key
                            self.time_to_first_token = rt.clock() - run.started
                            for early in pending:
                                yield early
                        stall = policy.stall_timeout
                        while chunk.usage is None:
                            if text is not None and chunk.is_content:
                                if chunk.has_tool_call:
                                    text = None  # a tool call cannot be resumed from a text prefix: cut = error
                                else:
                                    text.append(chunk.content or "")
                            yield chunk
                            seen_content = True
                            guard.wait_until(min(loop.time() + stall, loop_deadline))
                            chunk = await upstream.__anext__()
                            guard.until = None
                        # The final chunk. Let the driver run to its end first, so it reads the stream's tail and
                        # releases the connection for reuse (closing it early costs a new connection next time).
                        try:
                            guard.wait_until(min(loop.time() + stall, loop_deadline))
                            await upstream.__anext__()
                        except (StopAsyncIteration, ProviderError):
                            pass  # the answer is complete either way
                        except asyncio.CancelledError:
                            if not guard.expired():
                                raise
                        finally:
                            guard.until = None
                        # Account before handing the final chunk over, in case the caller stops reading.
                        self._succeeded(d, h, ticket, started, chunk.usage)
                        finished = True
                        yield chunk
                        return
                    except ProviderError as exc:
                        error = exc
                    except StopAsyncIteration:
                        error = provider_error(
                            "protocol", "stream ended without a final chunk", provider=d.provider, model=d.upstream
                        )
                    except asyncio.CancelledError:
                        if not guard.expired():
                            run.abandoned(h, ticket, d, started, self.served_by)
                            raise
                        error = _timeout_error(d, seen_content, policy)
                    except GeneratorExit:
                        if not finished:
                            run.abandoned(h, ticket, d, started, self.served_by)
                        raise
                    except Exception as exc:
                        error = driver_bug(d, exc)
                    finally:
                        monitor.release(guard)
                        if guard.fired:  # the driver turned our cancellation into something else: undo it
                            guard.expired()
                        await _close(upstream)
                    if seen_content:
                        error = _after_first_token(error)
                    run.failed(d, h, ticket, started, error)
                    if committed:  # mid-stream: never retry the same deployment, never end as a success
                        if action_for(policy, error) == "fail":  # e.g. a refusal: never routed around
                            if cut is not None and error.error_class is not ErrorClass.CONTENT_POLICY:
                                raise run_failed(run, cut)  # a continuation's rejection is secondary to the cut
                            raise run_failed(run, _after_first_token(error))
                        cut = cut or _after_first_token(error)
                        if text is None:
                            raise run_failed(run, cut)
                        run.need_prefill = True
                        run.moved_on(d, error)
                        break
                    delay = run.decide(d, error, n)
                    if delay is None:
                        break
                    if delay > 0:
                        await rt.sleep(delay)
                    n += 1
            if cut is not None:
                raise run_failed(run, cut)
            raise run.exhausted()
        finally:
            if not finished:
                self.cost_usd = request_cost(run.trail)

    def _succeeded(self, d, h, ticket: Ticket, started: float, usage: Usage) -> None:
        run = self._run
        run.succeeded(d, h, ticket, started, usage, self.time_to_first_token)
        self.usage = usage
        self.cost_usd = request_cost(run.trail)
        run.complete(d.key, usage=usage, cost=self.cost_usd, ttft=self.time_to_first_token)


def _timeout_error(d, after_content: bool, policy) -> UpstreamTimeout:
    if after_content:
        message = f"stream stalled: no chunk within {policy.stall_timeout:g}s (or the deadline passed)"
    else:
        message = f"no first token within {policy.first_token_timeout:g}s (or the deadline passed)"
    return UpstreamTimeout(message, provider=d.provider, model=d.upstream)


def _after_first_token(error: ProviderError) -> ProviderError:
    """The same failure, marked as happening after content reached the caller (a new object, not patched)."""
    if error.after_first_token:
        return error
    marked = provider_error(
        error.error_class,
        error.message,
        provider=error.provider,
        model=error.model,
        status=error.status,
        code=error.code,
        retry_after=error.retry_after,
        after_first_token=True,
        body=error.body,
    )
    marked.__cause__ = error
    return marked


def run_failed(run: Run, error: ProviderError) -> ProviderError:
    """End a committed stream with its (original) failure, after telling observers."""
    run.complete(None, error_class=error.error_class.value)
    return error


async def _close(upstream: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken upstream must not mask the real outcome
            pass
