"""Streamed dispatch: the same loop as `dispatch_chat`, with a commit point and mid-stream policies.

Nothing reaches the caller before the first content chunk of some attempt (the commit point); until then
every failure, including a first-token timeout, fails over invisibly exactly like a non-streamed request.
After it a stall timeout bounds every gap and a failure is handled by the route's `mid_stream` policy:
- `error` raises a ProviderError with `after_first_token=True` (a cut stream never ends like a complete one);
- `continue` hands the text so far to the next deployment that supports `prefill` (as `assistant_prefix`) and
  streams its continuation without a second role chunk, joined at the seam (`turnout.router.rescue`); a
  continuation that breaks too is continued again, within the deadline. With no such deployment left it behaves
  as `error` and reports the original failure;
- `restart` moves the commit point to the end of the answer: chunks are held back (`Holdback`) until the answer is
  complete, so a failure anywhere is handled like one before the first token (retry, next deployment, fail) and
  the caller gets one whole answer or a clean error. Time to first token is then the whole answer's latency.
  An answer outgrowing `restart_buffer` bytes is released and the stream commits: from then on, `error`.
An error whose route action is "fail" stops the stream under any policy: a cut answer is never routed around a
safety decision. A refusal is raised as is; any other "fail" error from a continuation (say, a 400 for the
prefix) is secondary, so the original cut is reported. Only text can be continued: once a tool call has been
streamed, a cut behaves as `error` (a half-sent call cannot be resumed from a text prefix, and a restarted one
would splice two calls into one), and so does a stream of several choices (`n` > 1).

Before the commit an attempt is bounded by min(first_token_timeout, attempt_timeout) until its first content;
after that only the stall timeout and the request's deadline apply (a long answer may take longer than one
attempt_timeout).

The generic timeouts cost almost nothing per chunk: each wait only stores its limit in the attempt's Guard
(`turnout.router.timeouts`), whose Router-wide timer cancels a wait that overran; the stream turns that into
an UpstreamTimeout. Under `error` the per-chunk path is one test, one count and the yield.
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
from turnout.router.rescue import Answer, Holdback, Seam, estimate, final_chunk, total_usage
from turnout.types import Attempt, ChatChunk, ChunkBatch, Splice, Usage


class ChatStream:
    """An async iterator of ChatChunk that is also an async context manager.

    Readable at any time: `route`, `served_by` (set at the commit point), `attempts` (the trail so far),
    `splices` (where a cut stream was continued), `usage` and `cost_usd` (final once the stream ended: summed over
    every attempt that was billed), `time_to_first_token` (seconds; under `mid_stream: restart` the whole
    answer's latency) and `dropped` (what of the request the serving deployment did not receive, as
    `ChatResponse.dropped`). `aclose()` cancels the upstream call at once.
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

    @property
    def splices(self) -> tuple[Splice, ...]:
        return tuple(self._run.splices)

    @property
    def dropped(self) -> tuple[str, ...]:
        return self._run.dropped

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

    async def _chunks(self) -> AsyncIterator[ChatChunk | ChunkBatch]:
        run = self._run
        rt = run.rt
        policy = run.policy
        loop = asyncio.get_running_loop()
        monitor = rt.timeouts
        loop_deadline = loop.time() + run.remaining()
        # What the caller has, while the stream is continuable (one choice only: `n` parallel answers have no seam).
        answer = Answer() if policy.mid_stream == "continue" and run.request.body.get("n") in (None, 1) else None
        held = Holdback(policy.restart_buffer) if policy.mid_stream == "restart" else None  # until the commit
        first_wait = min(policy.first_token_timeout, policy.attempt_timeout)
        committed = False
        cut: ProviderError | None = None  # the original mid-stream failure
        broken = ""  # the deployment whose stream broke last: a continuation carries on from it
        finished = False
        try:
            await run.admit_request()
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
                    if d.budget is not None and not run.afford(d, h, ticket):
                        break
                    if h.gate is not None and not await run.admit(d, h, ticket):
                        break
                    seam: Seam | None = answer.seam() if committed and answer is not None else None
                    request = run.request if seam is None else run.request.with_prefix(seam.prefix)
                    if request.reasoning is not None:
                        request = run.fitted(d, request)
                    # A stream's length is bounded by the deadline, not attempt_timeout.
                    started = run.begin(d, h)
                    ctx = run.context(d, None, batch=self._batch)
                    upstream = d.driver.stream(request, ctx)
                    guard = monitor.guard()
                    seen_content = False
                    received = 0  # content chunks held or continuable (a rescue's usage estimate if this breaks)
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
                        if seam is not None:  # a continuation: no second role chunk
                            run.spliced(broken, d, sum(map(len, answer.parts)))  # type: ignore[union-attr]
                        elif held is not None:
                            held.extend(pending)
                        elif not committed:
                            committed = True
                            self._commit(d)
                            for early in pending:
                                yield early
                        stall = policy.stall_timeout
                        while chunk.usage is None:
                            if held is None and answer is None:  # mid_stream: error (or no longer continuable)
                                yield chunk
                            elif held is not None:
                                received += chunk.count
                                if held.add(chunk):  # too big to hold: commit now, and from here on `error`
                                    committed = True
                                    self._commit(d)
                                    for item in held.release():
                                        yield item
                                    held = None
                            else:
                                received += chunk.count
                                for item in seam.join(chunk) if seam is not None else (chunk,):
                                    if answer is not None and item.is_content:
                                        if item.has_tool_call:
                                            answer = None  # a tool call cannot be resumed from text: cut = error
                                        else:
                                            answer.add(item.content or "")
                                    yield item
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
                        if not committed:  # restart: the whole answer is here; this is the commit point
                            committed = True
                            self._commit(d)
                        # Account before handing anything more over, in case the caller stops reading.
                        final = self._succeeded(d, h, ticket, started, chunk)
                        finished = True
                        for item in held.release() if held is not None else ():
                            yield item
                        for item in seam.release() if seam is not None else ():
                            yield item
                        yield final
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
                    # Its output is part of a rescued answer (continue) or was held and discarded (restart): price
                    # it from an estimate. A plain `error` stream keeps its usage unknown, as any cut attempt's.
                    error = run.failed(d, h, ticket, started, error, estimate(request, received) if received else None)
                    if committed:  # mid-stream: never retry the same deployment, never end as a success
                        if action_for(policy, error) == "fail":  # e.g. a refusal: never routed around
                            if cut is not None and error.error_class is not ErrorClass.CONTENT_POLICY:
                                raise run_failed(run, cut)  # a continuation's rejection is secondary to the cut
                            raise run_failed(run, _after_first_token(error))
                        cut = cut or _after_first_token(error)
                        if answer is None:
                            raise run_failed(run, cut)
                        if received or not broken:
                            broken = d.key
                        run.need_prefill = True
                        run.moved_on(d, error)
                        break
                    if held is not None:  # restart: what was held is dropped; the next try starts from scratch
                        held.release()
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
            run.release()
            if not finished:
                self.usage = total_usage(run.trail)
                self.cost_usd = request_cost(run.trail)

    def _commit(self, d) -> None:
        """The commit point: the first chunk is about to reach the caller, served by `d`."""
        self.served_by = d.key
        self.time_to_first_token = self._run.rt.clock() - self._run.started

    def _succeeded(self, d, h, ticket: Ticket, started: float, chunk: ChatChunk) -> ChatChunk:
        """Account the answer (summed over its attempts); returns the final chunk, carrying that total."""
        run = self._run
        usage = chunk.usage or Usage.UNKNOWN
        run.succeeded(d, h, ticket, started, usage, self.time_to_first_token, reply=chunk)
        if len(run.trail) > 1:
            usage = total_usage(run.trail)
            chunk = final_chunk(chunk, usage)
        self.usage = usage
        self.cost_usd = request_cost(run.trail)
        run.complete(d.key, usage=usage, cost=self.cost_usd, ttft=self.time_to_first_token)
        return chunk


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
