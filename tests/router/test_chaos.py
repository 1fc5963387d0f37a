"""Chaos: 2,000 requests through a 3-deep chain whose first two providers fail randomly at 30-60%.

Mock faults (seeded) cover HTTP errors, resets, hangs, stalls, stream cuts and garbage. Every request must
either succeed with the complete answer or raise a classified error, none may outlive its deadline, and the
books must balance: outcomes add up to 2,000 and attempts per deployment match the events.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

from turnout import AllUpstreamsFailed, ProviderError, Router
from turnout.events import AttemptFailed, AttemptStarted, AttemptSucceeded, ResponseCompleted

TOTAL = 2000
CONCURRENCY = 100
DEADLINE = 0.5
SLACK = 0.25  # event-loop scheduling under load; a request running past its deadline would exceed this by far
LAG_PROBE = 0.01  # seconds between samples of the event loop's scheduling lag

FLAKY = """[
      {{kind: status, status: 500, probability: {p}}},
      {{kind: status, status: 429, retry_after: 10ms, probability: {p}}},
      {{kind: drop, probability: {p}}},
      {{kind: hang, probability: {q}}},
      {{kind: cut, after_chunks: 2, probability: {p}}},
      {{kind: stall, after_chunks: 1, duration: 1s, probability: {q}}},
      {{kind: malformed, after_chunks: 1, probability: {q}}}]"""

CHAOS_YAML = f"""
version: 1
defaults:
  deadline: {DEADLINE}s
  attempt_timeout: 60ms
  first_token_timeout: 60ms
  stall_timeout: 60ms
  retry: {{attempts: 1, backoff: {{initial: 1ms, max: 5ms}}, max_retry_after: 20ms}}
  breaker: {{failure_threshold: 8, recovery_timeout: 50ms, half_open_probes: 1}}
  mid_stream: continue
providers:
  flaky1:
    driver: mock
    options:
      seed: 1
      chunk_tokens: 1
      faults: {FLAKY.format(p=0.1, q=0.05)}
  flaky2:
    driver: mock
    options:
      seed: 2
      chunk_tokens: 1
      faults: {FLAKY.format(p=0.08, q=0.04)}
  steady: {{driver: mock, options: {{chunk_tokens: 2}}}}
models:
  a: {{provider: flaky1, price: {{input: 1, output: 1}}}}
  b: {{provider: flaky2, price: {{input: 1, output: 1}}}}
  c: {{provider: steady, price: {{input: 1, output: 1}}}}
routes:
  chaos: {{chain: [a, b, c]}}
  strict: {{chain: [a, b, c], mid_stream: error}}
"""


@pytest.mark.slow
async def test_chaos_every_request_accounted_for():
    """2,000 mixed streamed/plain requests under random faults: complete or classified, on time, books balance."""
    events = []
    router = Router.from_yaml(CHAOS_YAML, observers=[events.append], rng=random.Random(11))
    outcomes: Counter[str] = Counter()
    trails = []
    late = []
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        text = f"chaos request number {i} with a few words"
        messages = [{"role": "user", "content": text}]
        async with gate:
            started = time.monotonic()
            stream = None
            try:
                if i % 2:  # streams: half continue cut answers elsewhere, half end them with an error
                    stream = router.stream(model="strict" if i % 4 == 3 else "chaos", messages=messages)
                    parts = [c.content async for c in stream if c.content]
                    assert "".join(parts) == text, "a streamed success must be the complete answer"
                    trails.append(stream.attempts)
                else:
                    reply = await router.chat(model="chaos", messages=messages)
                    trails.append(reply.attempts)
                    assert reply.text == text
                outcomes["success"] += 1
            except AllUpstreamsFailed as exc:
                if stream is not None and exc.attempts != stream.attempts:
                    outcomes["trail mismatch"] += 1
                trails.append(exc.attempts)
                outcomes[f"failed:{exc.error_class}" if exc.error_class is not None else "unclassified"] += 1
            except ProviderError as exc:  # a committed stream that could not be completed
                trails.append(stream.attempts if stream is not None else ())
                outcomes[f"cut:{exc.error_class}" if exc.after_first_token else "unexpected"] += 1
            elapsed = time.monotonic() - started
            if elapsed > DEADLINE + SLACK:
                late.append(elapsed)

    lag = [0.0]  # the worst event-loop scheduling delay seen: a loaded machine delays every timer by as much

    async def probe_lag() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE)
            lag[0] = max(lag[0], time.monotonic() - before - LAG_PROBE)

    wall = time.monotonic()
    prober = asyncio.create_task(probe_lag())
    async with router:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(TOTAL))), timeout=60)
    prober.cancel()
    wall = time.monotonic() - wall
    late = [elapsed for elapsed in late if elapsed > DEADLINE + SLACK + lag[0]]

    assert sum(outcomes.values()) == TOTAL
    assert outcomes["unclassified"] == outcomes["unexpected"] == outcomes["trail mismatch"] == 0, outcomes
    assert outcomes["success"] >= TOTAL * 0.8, outcomes
    assert any(kind.startswith("cut:") for kind in outcomes), outcomes  # strict streams were cut
    assert late == [], f"requests outlived their deadline (worst loop lag {lag[0]:.3f}s)"
    assert wall < 30

    sent = Counter(a.deployment for trail in trails for a in trail if a.outcome != "skipped")
    started = Counter(e.deployment for e in events if isinstance(e, AttemptStarted))
    ended = Counter(e.deployment for e in events if isinstance(e, AttemptFailed | AttemptSucceeded))
    assert sent == started == ended
    assert len([e for e in events if isinstance(e, ResponseCompleted)]) == TOTAL
    failures = Counter(a.error_class for trail in trails for a in trail if a.outcome == "error")
    # every fault kind actually happened
    assert {"server_error", "rate_limit", "connection", "timeout", "protocol"} <= set(failures), failures
    assert sent["flaky1/a"] > 0 and sent["steady/c"] > 0
