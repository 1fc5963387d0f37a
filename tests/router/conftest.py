"""Shared fixtures for the router tests: a fake clock whose sleep advances it, and loopback OpenAI fakes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from turnout import Event, Router
from turnout.testing import OpenAIFake


class FakeClock:
    """A monotonic clock under test control; `sleep` advances it instead of waiting (and records the delay)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Recorder:
    """An observer that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def fakes() -> AsyncIterator[Callable[[], Any]]:
    """A factory of started OpenAIFake servers, all closed at the end of the test."""
    started: list[OpenAIFake] = []

    async def make() -> OpenAIFake:
        fake = OpenAIFake()
        await fake.start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        await fake.close()


@pytest.fixture
def build(clock: FakeClock, recorder: Recorder) -> Callable[..., Router]:
    """Router factory: YAML text -> Router on the fake clock (real_time=True for the real one), recorder attached."""

    def make(yaml_text: str, *, real_time: bool = False, seed: int = 7, **options: Any) -> Router:
        options.setdefault("rng", random.Random(seed))
        options.setdefault("observers", (recorder,))
        if not real_time:
            options.update(clock=clock, sleep=clock.sleep)
        return Router.from_yaml(yaml_text, **options)

    return make
