"""`turnout explain`: every route expanded to the deployments it may call, with effective, inherited policies.

`explain(config_or_graph)` renders the compiled `DispatchGraph` (a Config is compiled first, purely) as plain
data (JSON-ready) shaped routes -> steps -> deployments: exactly what the router dispatches over, including each
deployment's effective capabilities (declared `supports`, else the driver's) and why a member never serves a
route. `render_text()` turns it into a readable report. Secrets are never included: credentials appear only as
"***" or "not set".
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from turnout.config import (
    BreakerPolicy,
    Budget,
    ClientSpec,
    Config,
    ModelSpec,
    Policy,
    ProviderSpec,
    ServerSpec,
    StateSpec,
    TelemetrySpec,
)
from turnout.router.compile import compile_graph
from turnout.router.graph import CompiledRoute, DispatchGraph, PlannedMember
from turnout.schema.units import format_duration, format_size

_SECRETISH = re.compile(r"(api_?key|secret|password|passwd|credential|token$|^auth)", re.IGNORECASE)
_SECRET_QUERY = re.compile(r"(key|token|secret|pass|sig|auth|credential)", re.IGNORECASE)  # ?key=..., ?sig=...


def summary(config: Config) -> str:
    """'4 routes, 8 models, 3 pools, 6 providers (4 disabled), 2 clients' (clients only when declared)."""
    disabled = sum(1 for p in config.providers.values() if not p.enabled)
    tail = f" ({disabled} disabled)" if disabled else ""
    clients = f", {_count(len(config.clients), 'client')}" if config.clients else ""
    return (
        f"{_count(len(config.routes), 'route')}, {_count(len(config.models), 'model')}, "
        f"{_count(len(config.pools), 'pool')}, {_count(len(config.providers), 'provider')}{tail}{clients}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def explain(source: Config | DispatchGraph) -> dict[str, Any]:
    """The compiled graph as plain data: routes -> steps -> deployments, providers, warnings. Durations in seconds.

    Given a Config it compiles it first (pure, no I/O; raises ConfigError when a driver rejects its options).
    """
    graph = source if isinstance(source, DispatchGraph) else compile_graph(source)
    config = graph.config
    return {
        "source": config.source,
        "summary": summary(config),
        "defaults": policy_data(config.defaults),
        "routes": [_route(config, route) for route in graph.routes.values()],
        "providers": [_provider(p) for p in config.providers.values()],
        "clients": [client_data(c, graph) for c in config.clients.values()],
        "server": server_data(config.server),
        "state": state_data(config.state),
        "telemetry": telemetry_data(config.telemetry),
        "warnings": [str(w) for w in config.warnings],
    }


def budget_data(budget: Budget | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {"usd": str(budget.usd), "per": budget.per, "warn_at": budget.warn_at}


def client_data(client: ClientSpec, graph: DispatchGraph) -> dict[str, Any]:
    """A client by name: its keys only as masked digest prefixes, the routes its patterns allow in this graph."""
    compiled = graph.clients.get(client.name)
    allowed = None if compiled is None or compiled.routes is None else sorted(compiled.routes)
    return {
        "name": client.name,
        "description": client.description,
        "keys": [key.shown for key in client.keys],
        "routes": list(client.routes) if client.routes is not None else None,
        "allowed_routes": allowed,
        "limits": {"rpm": client.limits.rpm, "tpm": client.limits.tpm},
        "budget": budget_data(client.budget),
        "unpriced": "deny" if client.denies_unpriced else "allow",
    }


def server_data(server: ServerSpec) -> dict[str, Any]:
    """The `server:` section as `turnout serve` applies it; admin keys are only counted."""
    return {
        "host": server.host,
        "port": server.port,
        "admin_keys": len(server.admin_keys),
        "max_request_bytes": server.max_request_bytes,
        "max_in_flight": server.max_in_flight,
        "client_timeout": server.client_timeout,
        "drain_timeout": server.drain_timeout,
        "log_content": server.log_content,
        "protect_metrics": server.protect_metrics,
        "watch": server.watch,
    }


def policy_data(policy: Policy) -> dict[str, Any]:
    retry = policy.retry
    return {
        "deadline": policy.deadline,
        "attempt_timeout": policy.attempt_timeout,
        "first_token_timeout": policy.first_token_timeout,
        "stall_timeout": policy.stall_timeout,
        "connect_timeout": policy.connect_timeout,
        "retry": {
            "attempts": retry.attempts,
            "backoff": {"initial": retry.initial, "max": retry.max, "jitter": retry.jitter},
            "max_retry_after": retry.max_retry_after,
        },
        "on_error": {str(cls): action for cls, action in policy.on_error.items()},
        "mid_stream": policy.mid_stream,
        "restart_buffer": policy.restart_buffer,
    }


def breaker_data(breaker: BreakerPolicy) -> dict[str, Any]:
    return {
        "failure_threshold": breaker.failure_threshold,
        "recovery_timeout": breaker.recovery_timeout,
        "half_open_probes": breaker.half_open_probes,
        "backoff_factor": breaker.backoff_factor,
        "max_recovery_timeout": breaker.max_recovery_timeout,
    }


def _route(config: Config, route: CompiledRoute) -> dict[str, Any]:
    steps = [
        {
            "target": step.name,
            "kind": step.kind,
            "strategy": step.strategy if step.kind == "pool" else "single",
            "deployments": [_deployment(config, config.models[m.model], m, route) for m in step.members],
        }
        for step in route.plan
    ]
    spec = config.routes.get(route.name)
    return {
        "name": route.name,
        "description": route.description,
        "kind": route.kind,
        "aliases": list(route.aliases),
        "dimensions": route.dimensions,
        "requires": sorted(route.requires),
        "budget": budget_data(spec.budget if spec is not None else None),
        "policy": policy_data(route.policy),
        "steps": steps,
    }


def _deployment(config: Config, model: ModelSpec, member: PlannedMember, route: CompiledRoute) -> dict[str, Any]:
    provider = config.providers[model.provider]
    deployment = member.deployment
    if deployment is not None:  # compiled: the effective capabilities decide
        capabilities: list[str] | None = sorted(deployment.capabilities)
        lacking = sorted(route.requires - deployment.capabilities)
    else:  # a disabled provider has no driver: judge by what the file declares
        capabilities = sorted(model.supports) if model.supports is not None else None
        lacking = [c for c in sorted(route.requires) if not model.has(c)]
    # Why it never serves this route: a capability it lacks, or another reason the compiler gave (an unpriced
    # member of a route with a budget); a disabled provider is shown as such, not as a skip.
    skip = f"lacks {', '.join(lacking)}" if lacking else (member.excluded if deployment is not None else None)
    price = model.price
    return {
        "key": member.key,
        "model": model.key,
        "kind": model.kind,
        "dimensions": model.dimensions,
        "min_dimensions": model.min_dimensions,
        "provider": provider.name,
        "driver": provider.driver,
        "upstream": model.upstream,
        "weight": member.weight,
        "enabled": provider.enabled,
        "disabled_reason": provider.disabled_reason,
        "eligible": skip is None,
        "skip_reason": skip,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "supports": sorted(model.supports) if model.supports is not None else None,
        "capabilities": capabilities,
        "prefill": model.options.get("prefill", provider.options.get("prefill")),
        "price": None
        if price is None
        else {
            "input": str(price.input),
            "output": str(price.output),
            "cached_input": str(price.cached_input if price.cached_input is not None else price.input),
            "cache_write": str(price.cache_write) if price.cache_write is not None else None,
        },
        "limits": {"rpm": model.limits.rpm, "tpm": model.limits.tpm},
        "budget": budget_data(model.budget),
        "breaker": breaker_data(config.breaker_for(model)),
        "connect_timeout": provider.connect_timeout or route.policy.connect_timeout,
    }


def state_data(state: StateSpec) -> dict[str, Any]:
    """The `state:` section with its url masked (a Redis URL may carry a password)."""
    return {
        "backend": state.backend,
        "url": mask_url(state.url.reveal()) if state.url is not None else None,
        "key_prefix": state.key_prefix,
        "op_timeout": state.op_timeout,
        "sync_interval": state.sync_interval,
        "ledger": state.ledger,
        "responses": {
            "enabled": state.responses.enabled,
            "ttl": state.responses.ttl,
            "max_size": state.responses.max_size,
        },
    }


def telemetry_data(telemetry: TelemetrySpec) -> dict[str, Any]:
    """The `telemetry:` section; None values are left to the OTEL_* environment; header values masked."""
    return {
        "enabled": telemetry.enabled,
        "exporter": telemetry.exporter,
        "endpoint": mask_url(telemetry.endpoint.reveal()) if telemetry.endpoint else None,
        "protocol": telemetry.protocol,
        "headers": {name: "***" for name in sorted(telemetry.headers)},
        "service_name": telemetry.service_name,
        "sample_ratio": telemetry.sample_ratio,
        "propagate_to": sorted(telemetry.propagate_to),
    }


def _provider(provider: ProviderSpec) -> dict[str, Any]:
    return {
        "name": provider.name,
        "driver": provider.driver,
        "base_url": mask_url(provider.base_url) if provider.base_url else provider.base_url,
        "api_key": "***" if provider.api_key else "not set",
        "headers": {name: "***" for name in provider.headers},
        "options": mask_options(provider.options),
        "enabled": provider.enabled,
        "disabled_reason": provider.disabled_reason,
    }


def mask_url(url: str) -> str:
    """`url` with a password in it (`https://user:pw@host`) and credential-like query values (`?key=`) masked."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if _SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not parseable as a URL: it may hold anything, so show none of it
        return "***"


def mask_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Driver options as plain data; values under credential-looking keys are masked."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if _SECRETISH.search(str(key)):
            out[key] = "***"
        elif isinstance(value, Mapping):
            out[key] = mask_options(value)
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


# ---- text rendering ---------------------------------------------------------------------------------------------


def render_text(data: Mapping[str, Any]) -> str:
    """A readable report of `explain()` output."""
    lines = [f"{data['source']}: {data['summary']}", ""]
    for route in data["routes"]:
        lines += _route_text(route)
    lines.append("providers:")
    for p in data["providers"]:
        state = "enabled" if p["enabled"] else f"DISABLED: {p['disabled_reason']}"
        url = f", base_url {p['base_url']}" if p["base_url"] else ""
        headers = f", headers {', '.join(f'{k}: ***' for k in p['headers'])}" if p["headers"] else ""
        lines.append(f"  {p['name']} (driver {p['driver']}{url}), api_key {p['api_key']}{headers} — {state}")
    if data.get("clients"):
        lines += ["", "clients:"]
        for client in data["clients"]:
            lines += _client_text(client)
    if "server" in data:
        lines += _server_text(data["server"], bool(data.get("clients")))
    if "state" in data:
        lines += ["", _state_text(data["state"])]
    if "telemetry" in data:
        lines += ["", _telemetry_text(data["telemetry"])]
    if data["warnings"]:
        lines += ["", "warnings:", *(f"  {w}" for w in data["warnings"])]
    return "\n".join(lines) + "\n"


def _budget_text(budget: Mapping[str, Any]) -> str:
    per = "in total" if budget["per"] == "total" else f"per {budget['per']} (UTC)"
    warn = f", warn at {budget['warn_at']:.0%}" if budget.get("warn_at") else ""
    return f"budget ${money(budget['usd'])} {per}{warn}"


def money(value: Any) -> str:
    """A decimal amount with at least two decimals: 50 -> 50.00, 0.3 -> 0.30, 0.075 -> 0.075."""
    whole, _, cents = str(value).partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


def _client_text(client: Mapping[str, Any]) -> list[str]:
    title = f"  {client['name']}" + (f" — {client['description']}" if client["description"] else "")
    keys = ", ".join(client["keys"]) if client["keys"] else "none usable"
    if client["routes"] is None:
        routes = "every route"
    else:
        routes = f"{', '.join(client['routes'])} (now: {', '.join(client['allowed_routes'] or []) or 'none'})"
    facts = [f"keys {keys}", f"routes {routes}"]
    limits = client["limits"]
    if limits["rpm"] or limits["tpm"]:
        facts.append(f"limits {limits['rpm'] or '-'} rpm / {limits['tpm'] or '-'} tpm")
    if client["budget"] is not None:
        facts.append(_budget_text(client["budget"]) + f"; unpriced deployments: {client['unpriced']}")
    return [title, "    " + "; ".join(facts)]


def _server_text(server: Mapping[str, Any], clients: bool) -> list[str]:
    keys = "on (the keys of the clients above)" if clients else "off (no clients declared)"
    if server["admin_keys"]:
        admin = f"{server['admin_keys']} admin key(s) (***)"
    else:
        admin = "closed (clients but no admin_keys)" if clients else "loopback/allowed Hosts only"
    protected = server["protect_metrics"]
    if protected is None:
        protected = clients or bool(server["admin_keys"])
    drain = _d(server["drain_timeout"]) if server["drain_timeout"] else "0 (in-flight requests are cut at once)"
    return [
        "",
        f"server: http://{server['host']}:{server['port']}; client auth {keys}; admin endpoints: {admin}; "
        f"metrics {'need an admin key' if protected else 'open'}",
        f"  at most {server['max_in_flight']} chat requests in flight per worker (then 503 + Retry-After); "
        f"requests of at most {server['max_request_bytes']} bytes, sent within {_d(server['client_timeout'])}",
        f"  on SIGTERM/SIGINT: drain for up to {drain}; reload on change: {'on' if server['watch'] else 'off'}; "
        f"log content: {'on' if server['log_content'] else 'off'}",
    ]


def _state_text(state: Mapping[str, Any]) -> str:
    if state["backend"] == "local":
        ledger = f"spend ledger {state['ledger']} (sqlite)" if state.get("ledger") else "spend ledger in memory"
        return (
            "state: local (per process; with --workers N each worker enforces 1/N of every rpm/tpm limit), "
            f"{ledger}, flushed every {_d(min(state['sync_interval'], 1.0))}; "
            f"{_responses_text(state, local=True)}"
        )
    return (
        f"state: redis at {state['url']}, key prefix {state['key_prefix']!r} (keys {{{state['key_prefix']}}}...), "
        f"op_timeout {_d(state['op_timeout'])}, sync every {_d(state['sync_interval'])}; limits, breakers and "
        f"usage shared by every process on it; {_responses_text(state, local=False)}"
    )


def _responses_text(state: Mapping[str, Any], *, local: bool) -> str:
    responses = state.get("responses") or {}
    if not responses.get("enabled", True):
        return "stored responses (Responses API) off"
    where = (state.get("ledger") or "memory") if local else "Redis"
    bound = f", at most {format_size(responses['max_size'])}" if local else ""
    return f"stored responses (Responses API) in {where}, kept {_d(responses['ttl'])}{bound}"


def _telemetry_text(telemetry: Mapping[str, Any]) -> str:
    if telemetry["enabled"] is None:
        return "telemetry: no section; traces only if the environment asks (OTEL_TRACES_EXPORTER or an OTLP endpoint)"
    if not telemetry["enabled"]:
        return "telemetry: off (enabled: false)"
    exporter = telemetry["exporter"] or "as OTEL_TRACES_EXPORTER says (else the application's provider, else otlp)"
    parts = [f"telemetry: traces on; exporter {exporter}"]
    if telemetry["endpoint"]:
        parts[0] += f" to {telemetry['endpoint']} ({telemetry['protocol'] or 'http/protobuf'})"
    if telemetry["headers"]:
        parts.append("headers " + ", ".join(f"{name}=***" for name in telemetry["headers"]))
    if telemetry["service_name"]:
        parts.append(f"service {telemetry['service_name']}")
    if telemetry["sample_ratio"] is not None:
        parts.append(f"sampling {telemetry['sample_ratio']:.0%} of new traces")
    upstreams = ", ".join(telemetry["propagate_to"]) or "none"
    parts.append(f"trace context sent to the upstreams of: {upstreams}; prompts and completions only with log_content")
    if importlib.util.find_spec("opentelemetry") is None or importlib.util.find_spec("opentelemetry.sdk") is None:
        parts.append("OpenTelemetry is not installed here (pip install 'turnout[otel]'): tracing would stay off")
    return "; ".join(parts)


def _route_text(route: Mapping[str, Any]) -> list[str]:
    p = route["policy"]
    embeddings = route.get("kind") == "embeddings"
    kind = f" (embeddings, {route['dimensions']} dimensions)" if embeddings else ""
    title = f"route {route['name']}{kind}" + (f" — {route['description']}" if route["description"] else "")
    lines = [title]
    if route.get("aliases"):
        lines.append(f"  aliases: {', '.join(route['aliases'])}")
    if route["requires"]:
        lines.append(f"  requires: {', '.join(route['requires'])}")
    if route.get("budget"):
        lines.append(f"  {_budget_text(route['budget'])}")
    if embeddings:  # never streamed: no first-token, stall or mid-stream policy applies
        lines.append(
            f"  timeouts: deadline {_d(p['deadline'])}, attempt {_d(p['attempt_timeout'])}, "
            f"connect {_d(p['connect_timeout'])}"
        )
    else:
        lines.append(
            f"  timeouts: deadline {_d(p['deadline'])}, attempt {_d(p['attempt_timeout'])}, first token "
            f"{_d(p['first_token_timeout'])}, stall {_d(p['stall_timeout'])}, connect {_d(p['connect_timeout'])}; "
            f"mid-stream failure: {_mid_stream(p)}"
        )
    r = p["retry"]
    b = r["backoff"]
    lines.append(
        f"  retry: {r['attempts']} retries per deployment, backoff {_d(b['initial'])}..{_d(b['max'])} "
        f"({b['jitter']} jitter), Retry-After honoured up to {_d(r['max_retry_after'])}"
    )
    by_action: dict[str, list[str]] = {}
    for cls, action in p["on_error"].items():
        by_action.setdefault(action, []).append(cls)
    lines.append("  on error: " + "; ".join(f"{a} on {', '.join(c)}" for a, c in by_action.items()))
    for i, step in enumerate(route["steps"], 1):
        how = f"pool {step['target']} ({step['strategy']})" if step["kind"] == "pool" else f"model {step['target']}"
        lines.append(f"  {i}. {how}")
        lines += [f"       {line}" for d in step["deployments"] for line in _deployment_text(d, step["kind"])]
    lines.append("")
    return lines


def _mid_stream(policy: Mapping[str, Any]) -> str:
    mode = policy["mid_stream"]
    if mode == "continue":
        return "continue (on the next deployment that supports prefill)"
    if mode == "restart":
        return (
            f"restart (answers held back up to {format_size(policy['restart_buffer'])}, so time to first token is "
            "the whole answer's latency; past that, error)"
        )
    return mode


def _deployment_text(d: Mapping[str, Any], kind: str) -> list[str]:
    flags = [] if d["enabled"] else [f"disabled: {d['disabled_reason']}"]
    if not d["eligible"]:
        flags.append(f"skipped on this route: {d['skip_reason']}")
    weight = f", weight {d['weight']:g}" if kind == "pool" else ""
    head = f"{d['key']} (driver {d['driver']}, upstream {d['upstream']}{weight})"
    facts = []
    embeddings = d.get("kind") == "embeddings"
    if embeddings:
        shorter = f", {d['min_dimensions']} to {d['dimensions']} on request" if d["min_dimensions"] else ""
        facts.append(f"embeddings of {d['dimensions']} dimensions{shorter}")
    if d["context_window"]:
        facts.append(f"{'tokens per input' if embeddings else 'window'} {d['context_window']}")
    if d["max_output_tokens"]:
        facts.append(f"max output {d['max_output_tokens']}")
    if not embeddings:  # an embeddings model has no chat capabilities to state
        facts += _capability_facts(d)
    price = d["price"]
    if price is None:
        facts.append("price unknown")
    elif embeddings:
        facts.append(f"${price['input']} per 1M input tokens")
    else:
        cached = f", cached ${price['cached_input']}" if price["cached_input"] != price["input"] else ""
        facts.append(f"${price['input']} in / ${price['output']} out per 1M{cached}")
    limits = d["limits"]
    if limits["rpm"] or limits["tpm"]:
        facts.append(f"limits {limits['rpm'] or '-'} rpm / {limits['tpm'] or '-'} tpm")
    if d.get("budget"):
        facts.append(_budget_text(d["budget"]))
    br = d["breaker"]
    grow = f" x{br['backoff_factor']:g} up to {_d(br['max_recovery_timeout'])}" if br["backoff_factor"] > 1 else ""
    facts.append(
        f"breaker opens after {br['failure_threshold']} faults for {_d(br['recovery_timeout'])}{grow}, "
        f"{br['half_open_probes']} half-open probe(s)"
    )
    return [head + (f"  [{'; '.join(flags)}]" if flags else ""), "  " + "; ".join(facts)]


def _capability_facts(d: Mapping[str, Any]) -> list[str]:
    if d["supports"] is not None:
        facts = [f"supports {', '.join(d['supports'])}"]
    elif d["capabilities"] is not None:
        offered = ", ".join(d["capabilities"])
        facts = [f"supports: not declared (driver offers {offered}; reasoning only when declared)"]
    else:
        facts = ["supports: not declared"]
    if d["prefill"] and "prefill" in (d["capabilities"] or ()):
        facts.append(f"prefill dialect {d['prefill']}")
    return facts


def _d(seconds: float) -> str:
    return format_duration(seconds)
