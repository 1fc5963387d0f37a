"""The tracer provider turnout builds when the application has none: resource, sampler, exporter.

With OpenTelemetry imported only here and in `otel.py`. The standard environment variables keep their meaning;
what the `telemetry:` section sets wins over them (see its description in the schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace

from turnout.config import TelemetrySpec
from turnout.telemetry.otel import VERSION


def build_provider(spec: TelemetrySpec, environ: Mapping[str, str]) -> tuple[Any, bool]:
    """(provider, owned): the application's global provider (`exporter: global`), or one turnout builds with a
    batching processor and the configured exporter (owned). Raises ImportError when the SDK or exporter is
    missing."""
    exporter = spec.exporter or _env_exporter(environ) or ("global" if _application_provider() else "otlp")
    if exporter == "global":
        return trace.get_tracer_provider(), False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    attributes = {"service.version": VERSION}
    if spec.service_name:
        attributes["service.name"] = spec.service_name
    elif not environ.get("OTEL_SERVICE_NAME") and "service.name=" not in environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes["service.name"] = "turnout"
    options: dict[str, Any] = {"resource": Resource.create(attributes)}
    if spec.sample_ratio is not None:
        options["sampler"] = ParentBased(TraceIdRatioBased(spec.sample_ratio))
    provider = TracerProvider(**options)
    span_exporter = ConsoleSpanExporter() if exporter == "console" else _otlp(spec, environ)
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return provider, True


def describe(spec: TelemetrySpec, environ: Mapping[str, str]) -> str:
    """Where spans go, for the serve banner (the endpoint's password masked)."""
    exporter = spec.exporter or _env_exporter(environ) or ("global" if _application_provider() else "otlp")
    if exporter != "otlp":
        return f"on, exporter {exporter}"
    from turnout.explain import mask_url

    endpoint = spec.endpoint.reveal() if spec.endpoint else _env_endpoint(environ) or "the exporter's default"
    return f"on, OTLP ({_protocol(spec, environ)}) to {mask_url(endpoint)}"


def _env_exporter(environ: Mapping[str, str]) -> str | None:
    value = environ.get("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
    return value if value in ("otlp", "console") else None


def _env_endpoint(environ: Mapping[str, str]) -> str | None:
    return environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")


def _protocol(spec: TelemetrySpec, environ: Mapping[str, str]) -> str:
    return (
        spec.protocol
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def _application_provider() -> bool:
    """True when the application already set an SDK TracerProvider globally (not the API's proxy or no-op)."""
    provider = trace.get_tracer_provider()
    return type(provider).__module__.startswith("opentelemetry.sdk")


def _otlp(spec: TelemetrySpec, environ: Mapping[str, str]) -> Any:
    protocol = _protocol(spec, environ)
    headers: dict[str, str] | None = None
    if spec.headers:  # the exporter reads the environment's headers only when given none: merge them here
        from opentelemetry.util.re import parse_env_headers

        inherited = environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or environ.get("OTEL_EXPORTER_OTLP_HEADERS")
        headers = {**parse_env_headers(inherited or "", liberal=True)}
        headers.update({name: value.reveal() for name, value in spec.headers.items()})
    endpoint = spec.endpoint.reveal() if spec.endpoint else None
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint, headers=headers)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if endpoint is not None and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint, headers=headers)
