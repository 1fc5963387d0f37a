"""OpenTelemetry traces of every request and attempt (`pip install 'turnout[otel]'`).

- this module decides whether a Router traces (`wanted`, `tracing_for`) and imports no OpenTelemetry: with tracing
  off nothing of it is loaded, no observer is registered, and the Router builds no event for it;
- `names.py`: what an attempt's span says about its deployment (the GenAI provider name, server address);
- `otel.py` and `exporters.py`, the only modules that import OpenTelemetry: `Tracing`, an Observer that turns
  the Router's typed events into spans (and the sidecar's SERVER spans), and the exporter set-up.

Whether tracing is on: never with `OTEL_SDK_DISABLED=true`; else as the file's `telemetry.enabled` says (true
when the section is there); else on when an embedder passes `tracer_provider=` to the Router, or when the
environment asks for traces (`OTEL_TRACES_EXPORTER` other than `none`, or an OTLP endpoint variable).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from turnout.config import Config, TelemetrySpec

if TYPE_CHECKING:
    from turnout.telemetry.otel import Tracing

log = logging.getLogger("turnout.telemetry")
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
INSTALL_HINT = "pip install 'turnout[otel]'"


def wanted(spec: TelemetrySpec, environ: Mapping[str, str], *, provider_given: bool = False) -> bool:
    """Whether a Router with this `telemetry:` section traces (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if spec.enabled is not None:
        return spec.enabled
    if provider_given:
        return True
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def tracing_for(
    config: Config, *, tracer_provider: Any = None, environ: Mapping[str, str] | None = None
) -> Tracing | None:
    """The Tracing observer for a Router on `config`, or None when tracing is off or cannot be set up.

    `tracer_provider`: the embedder's own (e.g. an SDK provider with an in-memory exporter in tests); without it
    one is built from the section and the environment (`otel.build_provider`). A missing OpenTelemetry package is
    logged once with the install hint and tracing stays off: it never stops a Router from serving.
    """
    environ = os.environ if environ is None else environ
    if not wanted(config.telemetry, environ, provider_given=tracer_provider is not None):
        return None
    try:
        from turnout.telemetry.exporters import build_provider, describe
        from turnout.telemetry.otel import Tracing

        if tracer_provider is not None:
            return Tracing(tracer_provider, config, owned=False, description="on, the embedder's tracer provider")
        provider, owned = build_provider(config.telemetry, environ)
        return Tracing(provider, config, owned=owned, description=describe(config.telemetry, environ))
    except ImportError as exc:
        log.warning("telemetry is enabled but OpenTelemetry is missing (%s); %s. Tracing is off.", exc, INSTALL_HINT)
        return None


__all__ = ["tracing_for", "wanted"]
