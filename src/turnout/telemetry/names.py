"""What a span says about a deployment: the GenAI provider name, the server's address, the chain step.

`gen_ai.provider.name` takes the semantic conventions' well-known values where turnout knows the provider (by its
driver, and for the OpenAI wire format by the host it talks to); otherwise the driver's name. Computed once per
graph (on start and on every reload), so an attempt's span costs a dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from turnout.config import Config

DRIVER_PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "ollama": "ollama",
    "mock": "turnout.mock",
}
OPENAI_COMPATIBLE_HOSTS = {  # host suffix -> gen_ai.provider.name, for the openai driver pointed elsewhere
    "api.x.ai": "x_ai",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.perplexity.ai": "perplexity",
}
DEFAULT_BASES = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "ollama": "http://127.0.0.1:11434",
}


@dataclass(frozen=True, slots=True)
class DeploymentName:
    """The fixed attributes of one deployment's attempt spans."""

    provider: str  # the provider's name in the routing file
    system: str  # gen_ai.provider.name
    upstream: str  # gen_ai.request.model
    address: str | None  # server.address
    port: int | None  # server.port


def deployment_names(config: Config) -> dict[str, DeploymentName]:
    """deployment key -> its span attributes, for every model of `config`."""
    out = {}
    for model in config.models.values():
        provider = config.providers.get(model.provider)
        if provider is None:
            continue
        base = provider.base_url or DEFAULT_BASES.get(provider.driver)
        address, port = _address(base)
        out[f"{provider.name}/{model.key}"] = DeploymentName(
            provider.name, _system(provider.driver, address), model.upstream, address, port
        )
    return out


def _address(base: str | None) -> tuple[str | None, int | None]:
    if not base:
        return None, None
    try:
        parts = urlsplit(base)
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None, None


def _system(driver: str, host: str | None) -> str:
    if driver == "openai" and host:
        for suffix, name in OPENAI_COMPATIBLE_HOSTS.items():
            if host == suffix or host.endswith("." + suffix):
                return name
    return DRIVER_PROVIDERS.get(driver, driver)


def route_steps(graph: object) -> Mapping[str, Mapping[str, int]]:
    """route -> deployment key -> the 0-based chain step it belongs to (`turnout.fallback_step`)."""
    steps: dict[str, dict[str, int]] = {}
    for name, route in getattr(graph, "routes", {}).items():
        where = steps[name] = {}
        for index, step in enumerate(route.plan):
            for member in step.members:
                where.setdefault(member.key, index)
    return steps
