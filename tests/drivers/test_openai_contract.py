"""The openai driver (and its OpenAI-compatible flavours) against the driver contract suite."""

from __future__ import annotations

from turnout.config import ProviderSpec, Secret
from turnout.drivers.openai import AzureOpenAIDriver, OpenAIDriver
from turnout.testing import DriverContract, EmbeddingsContract, OpenAIFake


class TestOpenAIContract(DriverContract, EmbeddingsContract):
    model = "gpt-test"

    def make_fake(self) -> OpenAIFake:
        return OpenAIFake()

    def make_driver(self, base_url: str) -> OpenAIDriver:
        spec = ProviderSpec(name="openai", driver="openai", base_url=f"{base_url}/v1", api_key=Secret("sk-test"))
        return OpenAIDriver(spec)


class TestAzureContract(DriverContract, EmbeddingsContract):
    model = "my-deployment"

    def make_fake(self) -> OpenAIFake:
        return OpenAIFake(flavor="azure")

    def make_driver(self, base_url: str) -> AzureOpenAIDriver:
        spec = ProviderSpec(
            name="azure", driver="azure", base_url=base_url, api_key=Secret("sk-test"),
            options={"api_version": "2024-10-21"},
        )  # fmt: skip
        return AzureOpenAIDriver(spec)


class TestXAIContract(TestOpenAIContract):
    def make_fake(self) -> OpenAIFake:
        return OpenAIFake(flavor="xai")


class TestVLLMContract(TestOpenAIContract):
    def make_fake(self) -> OpenAIFake:
        return OpenAIFake(flavor="vllm")


class TestGroqContract(TestOpenAIContract):
    def make_fake(self) -> OpenAIFake:
        return OpenAIFake(flavor="groq")
