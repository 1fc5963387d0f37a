"""The ollama driver against the driver contract suite."""

from __future__ import annotations

from turnout.config import ProviderSpec
from turnout.drivers.ollama import OllamaDriver
from turnout.testing import DriverContract, EmbeddingsContract, OllamaFake


class TestOllamaContract(DriverContract, EmbeddingsContract):
    model = "llama-test"

    def make_fake(self) -> OllamaFake:
        return OllamaFake()

    def make_driver(self, base_url: str) -> OllamaDriver:
        return OllamaDriver(ProviderSpec(name="local", driver="ollama", base_url=base_url))
