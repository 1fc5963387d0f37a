"""A deployment's gate on the Redis backend, and the batches that carry gate operations to Redis.

Every admission is decided by `scripts/gate.lua` on the Redis server, atomically, on the server's clock: that is
what makes a limit exact across replicas. The operations of one event-loop iteration (every request that reached
a limited deployment meanwhile) travel as one script call: one round trip and one reply to parse for all of them,
so a busy sidecar pays a fraction of a round trip per request. A batch that gets no answer within op_timeout
answers its waiters "unknown" and they decide locally; the backend then degrades (see `turnout.state.shared`).

Locally each gate keeps a mirror window of what this process admitted: while Redis is unavailable it enforces
this process's share of the limit (`limit // processes`, the processes last seen sharing the Redis), and after
an outage it tells Redis what it admitted meanwhile (or everything in the window, when Redis lost its data).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from turnout.config import Limits
from turnout.state.base import Refusal, StoreError
from turnout.state.window import SlidingWindow, share

if TYPE_CHECKING:
    from turnout.state.shared import RedisState

ADMITTED, OVER_RPM, OVER_TPM, PROBE_TAKEN = 0, 1, 2, 3
# An admit's result is code + 4 * the milliseconds until an attempt of that size would fit (refusals over a limit).
CODES = 4


class Batch:
    """Gate operations of one loop iteration: script keys and arguments, and one future for all their waiters
    (True: answered, `results[i]` holds operation i's result; False: no answer, decide locally)."""

    __slots__ = ("args", "done", "keys", "results", "size")

    def __init__(self, done: asyncio.Future[bool], window_us: int) -> None:
        self.keys: list[str] = []
        self.args: list[Any] = [window_us]
        self.done = done
        self.results: list[int] = []
        self.size = 0

    def add(self, keys: tuple[str, str, str], op: tuple[Any, ...]) -> int:
        self.keys += keys
        self.args += op
        self.size += 1
        return self.size - 1

    def finish(self, answered: bool, results: list[int] | None = None) -> None:
        if not self.done.done():
            if results is not None:
                self.results = results
            self.done.set_result(answered)


class Batcher:
    """The request path's one round trip: gate operations queued during one loop iteration leave together in one
    gate.lua call once the iteration's callbacks ran; a timer bounds the wait to op_timeout."""

    __slots__ = ("_current", "_state")

    def __init__(self, state: RedisState) -> None:
        self._state = state
        self._current: Batch | None = None

    def enqueue(self, keys: tuple[str, str, str], op: tuple[Any, ...]) -> tuple[Batch, int]:
        batch = self._current
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._current = Batch(loop.create_future(), self._state.window_us)
            loop.call_soon(self._send)
        return batch, batch.add(keys, op)

    def abort(self) -> None:
        """Answer the batch being collected "unknown" (the backend degraded or changed loops)."""
        batch, self._current = self._current, None
        if batch is not None:
            batch.finish(False)

    def _send(self) -> None:
        batch, self._current = self._current, None
        if batch is None:
            return
        state = self._state
        link = state.link()
        if link is None:
            batch.finish(False)
            return
        try:
            reply = link.script(state.scripts["gate"], batch.keys, batch.args)
        except StoreError as exc:
            batch.finish(False)
            state.degrade(str(exc))
            return
        timer = asyncio.get_running_loop().call_later(state.spec.op_timeout, self._late, batch)
        reply.add_done_callback(partial(self._answered, batch, timer))

    def _answered(self, batch: Batch, timer: asyncio.TimerHandle, reply: asyncio.Future[Any]) -> None:
        timer.cancel()
        error = reply.exception()
        if error is not None:
            batch.finish(False)
            self._state.degrade(str(error))
            return
        values = reply.result()
        self._state.offset_from(values[0], values[1])
        batch.finish(True, values[2:])

    def _late(self, batch: Batch) -> None:
        if not batch.done.done():
            batch.finish(False)
            self._state.degrade(f"no answer within op_timeout ({as_ms(self._state.spec.op_timeout)})")


class RedisGate:
    """One deployment's admission through Redis (limits and probe leases), with a local mirror as fallback."""

    __slots__ = ("_rpm", "_state", "_tpm", "key", "keys", "limited", "limits", "mirror", "probes", "unsynced")

    def __init__(self, state: RedisState, key: str, limits: Limits, probes: int) -> None:
        self._state = state
        self.key = key
        self.keys = state.keys.gate(key)
        self.limits = limits
        self.limited = limits.rpm is not None or limits.tpm is not None
        self.probes = max(1, probes)
        self._rpm = -1 if limits.rpm is None else limits.rpm
        self._tpm = -1 if limits.tpm is None else limits.tpm
        self.mirror = SlidingWindow(None, None, window=state.window)
        self.unsynced: set[int] = set()  # grants admitted locally while Redis was unavailable
        self.resize(state.processes)

    def resize(self, processes: int) -> None:
        """Enforce 1/`processes` of the limits while Redis is unavailable."""
        mirror = self.mirror
        mirror.rpm = share(self.limits.rpm, processes)
        mirror.tpm = share(self.limits.tpm, processes)
        mirror.note = f": this process's share (1/{processes}) while Redis is unavailable"

    async def admit(self, tokens: int, probe: float | None) -> int | str:
        state = self._state
        grant = state.next_id()
        if state.ready():
            lease = int(probe * 1_000_000) if probe is not None else 0
            op = ("a", self._rpm, self._tpm, tokens, state.member(grant), self.probes if probe else 0, lease)
            batch, index = state.batcher.enqueue(self.keys, op)
            if await batch.done:
                result = batch.results[index]
                if result == ADMITTED:
                    if self.limited:
                        self.mirror.record(state.clock(), tokens, grant)
                    return grant
                return self._refusal(result % CODES, result // CODES / 1000)
        return self._admit_locally(tokens, grant)

    def _admit_locally(self, tokens: int, grant: int) -> int | str:
        """Redis did not answer: this process's share decides; a probe goes ahead (the local breaker limits it)."""
        if not self.limited:
            return grant
        now = self._state.clock()
        reason = self.mirror.admit(now, tokens, grant)
        if reason is not None:
            return Refusal(reason, self.mirror.wait_for(now, tokens))
        self.unsynced.add(grant)
        return grant

    def _refusal(self, code: int, wait: float) -> Refusal:
        if code == OVER_RPM:
            return Refusal(f"at rpm limit ({self.limits.rpm}/min across replicas)", wait)
        if code == OVER_TPM:
            return Refusal(f"at tpm limit ({self.limits.tpm}/min across replicas)", wait)
        return Refusal("half-open: another replica holds the probe")

    def refund(self, grant: int) -> None:
        tokens = self.mirror.refund(grant) if self.limited else 0
        state = self._state
        if tokens and grant not in self.unsynced and state.ready():
            state.batcher.enqueue(self.keys, ("r", tokens, state.member(grant), 0, 0, 0, 0))

    def forget(self, grant: int) -> None:
        if not self.limited:
            return
        mirror = self.mirror
        tokens = next((counted for _, counted, owner in mirror.entries(self._state.clock()) if owner == grant), None)
        if tokens is None:
            return  # left the window already
        mirror.forget(grant)
        state = self._state
        if grant in self.unsynced:
            self.unsynced.discard(grant)
        elif state.ready():
            state.batcher.enqueue(self.keys, ("f", tokens, state.member(grant), 0, 0, 0, 0))

    def release_probe(self, grant: int) -> None:
        state = self._state
        if state.ready():
            state.batcher.enqueue(self.keys, ("p", state.member(grant), 0, 0, 0, 0, 0))

    def usage(self) -> tuple[int, int]:
        return self.mirror.usage(self._state.clock())

    def resync_ops(self, everything: bool, to_server_us: Any) -> tuple[list[tuple[Any, ...]], set[int]]:
        """Operations telling Redis what this process admitted while it was away (`everything`: all of this
        process's admissions still in the window, for a Redis that lost its data), and their grants."""
        if not self.limited:
            return [], set()
        state = self._state
        window = self.mirror.entries(state.clock())
        self.unsynced &= {grant for _, _, grant in window}  # what left the window needs no resync
        entries = [e for e in window if everything or e[2] in self.unsynced]
        ops = [("s", tokens, state.member(grant), to_server_us(at), 0, 0, 0) for at, tokens, grant in entries]
        return ops, {grant for _, _, grant in entries}


def as_ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"
