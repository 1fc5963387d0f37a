"""Observers with `event_types` receive only those; events nobody wants are not built."""

from __future__ import annotations

from turnout import Router
from turnout.events import AttemptStarted, AttemptSucceeded, RequestStarted, ResponseCompleted

YAML = """
version: 1
providers:
  m: {driver: mock}
models:
  mm: {provider: m}
routes:
  r: {chain: [mm]}
"""


class Picky:
    event_types = frozenset({AttemptSucceeded, ResponseCompleted})

    def __init__(self) -> None:
        self.seen: list[type] = []

    def __call__(self, event: object) -> None:
        self.seen.append(type(event))


async def test_an_observer_with_event_types_gets_only_those():
    picky = Picky()
    async with Router.from_yaml(YAML, observers=[picky]) as router:
        assert RequestStarted not in router._rt.wanted and AttemptStarted not in router._rt.wanted
        await router.chat(model="r", messages=[{"role": "user", "content": "hi"}])
        everything: list[type] = []
        router.add_observer(everything.append)  # no event_types: receives every type
        assert RequestStarted in router._rt.wanted
        await router.chat(model="r", messages=[{"role": "user", "content": "hi"}])
        router.remove_observer(everything.append)
        assert RequestStarted not in router._rt.wanted
    assert picky.seen == [AttemptSucceeded, ResponseCompleted] * 2
    assert [type(e) for e in everything] == [RequestStarted, AttemptStarted, AttemptSucceeded, ResponseCompleted]
