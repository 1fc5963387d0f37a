"""The example custom driver package: installed, found through the turnout.drivers entry point, contract-tested."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from turnout.config import ProviderSpec, Secret
from turnout.drivers.base import Driver
from turnout.drivers.registry import DriverRegistry
from turnout.testing import DriverContract, OpenAIFake

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "turnout-driver-example"


def installed_driver_class() -> type[Driver]:
    """Install the example package if it is not importable yet, then resolve it by name via the entry point."""
    if importlib.util.find_spec("turnout_driver_example") is None:
        with tempfile.TemporaryDirectory() as scratch:  # a copy: the build leaves build/ and egg-info beside it
            source = shutil.copytree(EXAMPLE, Path(scratch) / EXAMPLE.name)
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", str(source)]
            # Offline first (needs setuptools>=68 and wheel here); else let pip fetch the build backend.
            if subprocess.run([*pip, "--no-build-isolation"], capture_output=True, timeout=300).returncode != 0:
                subprocess.run(pip, check=True, capture_output=True, timeout=300)
        importlib.invalidate_caches()
    return DriverRegistry().resolve("example")


@pytest.fixture(scope="session")
def example_class() -> type[Driver]:
    return installed_driver_class()


def test_entry_point_resolves_and_lists(example_class: type[Driver]) -> None:
    """The installed package registers `example` in the turnout.drivers group; the registry finds and lists it."""
    assert example_class.__name__ == "ExampleDriver"
    assert "example" in DriverRegistry().names()
    assert DriverRegistry(use_entry_points=False).knows("example") is False


def test_explicit_mapping_wins(example_class: type[Driver]) -> None:
    """An embedder's explicit mapping overrides the entry point of the same name."""
    from turnout.drivers.mock import MockDriver

    assert DriverRegistry({"example": MockDriver}).resolve("example") is MockDriver


class TestExampleDriverContract(DriverContract):
    model = "small"

    def make_fake(self) -> OpenAIFake:
        return OpenAIFake()

    def make_driver(self, base_url: str) -> Driver:
        cls = installed_driver_class()
        spec = ProviderSpec(
            name="mine", driver="example", base_url=f"{base_url}/v1", api_key=Secret("sk-test"),
            options={"model_prefix": "team-a/"},
        )  # fmt: skip
        return cls(spec)

    async def test_prefix_and_header(self, fake: OpenAIFake, driver: Driver, session) -> None:
        """The example's own behaviour: prefixed model names and the X-Example-Key header."""
        fake.script("chat", fake.text("ok"))
        await driver.send(self.request(), self.ctx(session))
        assert fake.last.json["model"] == "team-a/small"
        assert fake.last.header("x-example-key") == "sk-test"
