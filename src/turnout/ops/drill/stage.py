"""The drill's stage: one loopback fake per provider, and the routing file rewritten to call them.

Each provider whose driver speaks a wire format `turnout.testing` has a fake for (openai and OpenAI-compatible,
azure, anthropic, gemini, ollama) gets its own fake server on 127.0.0.1, and the file's provider is pointed at it
with a dummy key: no real key, no network, and every provider enabled (a drill judges the file as production runs
it, whatever this shell's environment holds). Everything else about the file (models, pools, routes, policies,
driver options) is untouched. The in-process `mock` driver stays as it is. A plug-in driver with no fake is
disabled for the drill, and the report says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType

from turnout.config import Config, Policy, Secret, StateSpec, TelemetrySpec
from turnout.ops.drill.scenarios import Scenario, healthy
from turnout.testing import AnthropicFake, FormatFake, GeminiFake, OllamaFake, OpenAIFake

DRILL_KEY = Secret("drill-key-not-a-secret")
IN_PROCESS = frozenset({"mock"})

# driver -> (the fake that speaks its wire format, the base_url path the driver expects under the fake's root)
FAKES: Mapping[str, tuple[Callable[[], FormatFake], str]] = {
    "openai": (OpenAIFake, "/v1"),
    "azure": (lambda: OpenAIFake(flavor="azure"), ""),
    "anthropic": (AnthropicFake, ""),
    "gemini": (GeminiFake, ""),
    "ollama": (OllamaFake, ""),
}


class Stage:
    """Owns the fakes for one drill; `config` is the rewritten file once `start()` has run."""

    def __init__(self, config: Config) -> None:
        self.original = config
        self.config = config
        self.fakes: dict[str, FormatFake] = {}
        self.notes: list[str] = []

    async def start(self) -> Config:
        providers = {}
        for name, spec in self.original.providers.items():
            if spec.driver in IN_PROCESS:
                providers[name] = spec
                continue
            entry = FAKES.get(spec.driver)
            if entry is None:
                reason = f"drill: no loopback fake speaks driver '{spec.driver}'"
                providers[name] = dataclasses.replace(spec, disabled_reason=reason)
                self.notes.append(f"provider '{name}' (driver {spec.driver}) is left out: {reason}")
                continue
            make, path = entry
            fake = make()
            await fake.start()
            self.fakes[name] = fake
            providers[name] = dataclasses.replace(
                spec,
                base_url=fake.url + path,
                api_key=DRILL_KEY,
                headers=MappingProxyType({}),
                disabled_reason=None,
            )
        # Local state and no tracing, always: a drill must never touch the shared Redis of the file (its limits,
        # breaker news and usage belong to production), and its virtual-time spans belong in no collector.
        quiet = {"state": StateSpec(), "telemetry": TelemetrySpec(enabled=False)}
        self.config = dataclasses.replace(self.original, providers=MappingProxyType(providers), **quiet)
        return self.config

    async def close(self) -> None:
        for fake in self.fakes.values():
            await fake.close()
        self.fakes.clear()

    def in_process(self, provider: str) -> bool:
        return self.config.providers[provider].driver in IN_PROCESS

    def script(self, *, stream: bool, faulted: str | None = None, scenario: Scenario | None = None,
               policy: Policy | None = None) -> None:  # fmt: skip
        """Every fake answers normally; the `faulted` provider's fake answers with the scenario's fault (once,
        then normally, for a transient fault)."""
        for name, fake in self.fakes.items():
            fake.reset()
            fake.default("chat", healthy(fake, stream))
            if name == faulted and scenario is not None and policy is not None:
                fault = scenario.fault(fake, policy, stream)
                if scenario.transient:
                    fake.script("chat", fault)
                else:
                    fake.default("chat", fault)

    def heal(self, provider: str, *, stream: bool) -> None:
        """The provider recovers: its fake answers normally from now on."""
        fake = self.fakes.get(provider)
        if fake is not None:
            fake.reset()
            fake.default("chat", healthy(fake, stream))
