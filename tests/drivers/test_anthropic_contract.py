"""The anthropic driver against the driver contract suite, served by the Anthropic fake upstream."""

from __future__ import annotations

from turnout.config import ProviderSpec, Secret
from turnout.drivers.anthropic import AnthropicDriver
from turnout.testing import AnthropicFake, DriverContract


class TestAnthropicContract(DriverContract):
    model = "claude-test"

    def make_fake(self) -> AnthropicFake:
        return AnthropicFake()

    def make_driver(self, base_url: str) -> AnthropicDriver:
        return AnthropicDriver(
            ProviderSpec(name="anthropic", driver="anthropic", base_url=base_url, api_key=Secret("sk-test"))
        )
