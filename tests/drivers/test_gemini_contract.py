"""The gemini driver against the driver contract suite, served by the Gemini fake upstream."""

from __future__ import annotations

from turnout.config import ProviderSpec, Secret
from turnout.drivers.gemini import GeminiDriver
from turnout.testing import DriverContract, EmbeddingsContract, GeminiFake


class TestGeminiContract(DriverContract, EmbeddingsContract):
    model = "gemini-test"

    def make_fake(self) -> GeminiFake:
        return GeminiFake()

    def make_driver(self, base_url: str) -> GeminiDriver:
        return GeminiDriver(ProviderSpec(name="gemini", driver="gemini", base_url=base_url, api_key=Secret("sk-test")))
