"""When a Router traces, how its provider is built, and that tracing off costs nothing (not even an import)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace import TracerProvider

from turnout import Router
from turnout.config import TelemetrySpec
from turnout.telemetry import wanted
from turnout.telemetry.exporters import build_provider

SECTION = TelemetrySpec(enabled=True)
NONE = TelemetrySpec()
MOCK = """\
version: 1
providers: {echo: {driver: mock}}
models: {echo: {provider: echo}}
routes: {chat: {chain: [echo]}}
"""


@pytest.mark.parametrize(
    ("spec", "environ", "given", "on"),
    [
        (NONE, {}, False, False),  # nothing asks for traces
        (NONE, {"OTEL_TRACES_EXPORTER": "otlp"}, False, True),
        (NONE, {"OTEL_TRACES_EXPORTER": "none"}, False, False),
        (NONE, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False, True),
        (NONE, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318"}, False, True),
        (NONE, {}, True, True),  # the embedder passed a provider
        (SECTION, {}, False, True),  # a telemetry section means yes
        (TelemetrySpec(enabled=False), {"OTEL_TRACES_EXPORTER": "otlp"}, True, False),  # the file says no
        (SECTION, {"OTEL_SDK_DISABLED": "true"}, True, False),  # the standard kill switch wins
    ],
)
def test_when_tracing_is_on(spec, environ, given, on):
    """The decision table of the module docstring."""
    assert wanted(spec, environ, provider_given=given) is on


def test_a_console_provider_with_the_files_service_name_and_sampler():
    """exporter console builds an SDK provider turnout owns, with service.name and a parent-based ratio sampler."""
    spec = TelemetrySpec(enabled=True, exporter="console", service_name="edge-router", sample_ratio=0.25)
    provider, owned = build_provider(spec, {})
    try:
        assert owned and isinstance(provider, TracerProvider)
        assert provider.resource.attributes["service.name"] == "edge-router"
        assert "0.25" in provider.sampler.get_description()
    finally:
        provider.shutdown()


def test_grpc_without_its_exporter_leaves_tracing_off_with_a_hint(caplog):
    """protocol grpc without opentelemetry-exporter-otlp-proto-grpc installed: a warning naming the extra, and
    the Router serves untraced."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    try:
        import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the grpc exporter is installed here")
    with caplog.at_level(logging.WARNING, logger="turnout.telemetry"):
        router = Router.from_yaml(MOCK + "telemetry: {protocol: grpc}\n")
    assert router.tracing is None
    assert "pip install 'turnout[otel]'" in caplog.text


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_tracing_off_imports_nothing_of_opentelemetry():
    """A Router (and the sidecar app) without tracing never imports turnout's OpenTelemetry modules or the SDK."""
    out = run(
        f"""
        import asyncio, sys
        from turnout import Router
        from turnout.server.app import create_app
        async def main():
            async with Router.from_yaml({MOCK!r}) as router:
                create_app(router)
                await router.chat(model="chat", messages=[{{"role": "user", "content": "hi"}}])
        asyncio.run(main())
        print(sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "turnout.telemetry."))))
        """
    )
    assert out == "[]"


def test_without_the_extra_a_traced_file_still_serves():
    """With OpenTelemetry missing (simulated: its import fails), a file with a telemetry section loads, serves,
    and says once how to install the extra."""
    out = run(
        f"""
        import asyncio, logging, sys
        class Missing:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError(f"No module named {{name!r}}")
        sys.meta_path.insert(0, Missing())
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
        from turnout import Router
        async def main():
            async with Router.from_yaml({MOCK!r} + "telemetry: {{exporter: otlp}}\\n") as router:
                reply = await router.chat(model="chat", messages=[{{"role": "user", "content": "hi"}}])
                print("served", router.tracing is None, bool(reply.text))
        asyncio.run(main())
        """
    )
    assert "pip install 'turnout[otel]'" in out
    assert out.endswith("served True True")
