"""Valid, rendered plain data -> the frozen `turnout.config.Config` (tuples, MappingProxyType, Secret).

Only called once every check passed, so shapes can be trusted here. Routes that override nothing share the
defaults' `Policy` object, which keeps 5,000-route files cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from turnout.config import (
    BreakerPolicy,
    Budget,
    ClientKey,
    ClientSpec,
    Config,
    Limits,
    ModelSpec,
    Policy,
    PoolMember,
    PoolSpec,
    Price,
    ProviderSpec,
    ResponsesSpec,
    RetryPolicy,
    RouteSpec,
    Secret,
    ServerSpec,
    StateSpec,
    TelemetrySpec,
)
from turnout.errors import ErrorClass, Problem
from turnout.schema.clients import digest_of
from turnout.schema.units import parse_duration, parse_size

DEFAULT_LEDGER = "turnout-ledger.sqlite3"  # beside the routing file
MEMORY = "memory"

_POLICY_KEYS = frozenset(
    {
        "deadline",
        "attempt_timeout",
        "first_token_timeout",
        "stall_timeout",
        "connect_timeout",
        "retry",
        "on_error",
        "mid_stream",
        "restart_buffer",
    }
)


def build_config(
    data: dict[str, Any],
    source: str,
    disabled: Mapping[str, str],
    warnings: list[Problem],
    base_dir: str | None = None,
) -> Config:
    """`base_dir`: the routing file's directory (relative paths in it, such as state.ledger, are relative to it);
    None for text that came from no file."""
    defaults = data.get("defaults") or {}
    policy = _policy(defaults, Policy())
    breaker = _breaker(defaults.get("breaker"), BreakerPolicy()) or BreakerPolicy()
    providers = {n: _provider(n, s, disabled.get(n), breaker) for n, s in data["providers"].items()}
    return Config(
        version=data["version"],
        source=source,
        defaults=policy,
        breaker=breaker,
        providers=_frozen(providers),
        models=_frozen(
            {n: _model(n, s, providers[s["provider"]].breaker or breaker) for n, s in data["models"].items()}
        ),
        pools=_frozen({n: _pool(n, s) for n, s in (data.get("pools") or {}).items()}),
        routes=_frozen({n: _route(n, s, policy) for n, s in data["routes"].items()}),
        server=_server(data.get("server") or {}),
        state=_state(data.get("state") or {}, base_dir),
        clients=_frozen({n: _client(n, s) for n, s in (data.get("clients") or {}).items()}),
        telemetry=_telemetry(data.get("telemetry")),
        warnings=tuple(warnings),
    )


def _frozen(mapping: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(mapping)


def _policy(spec: dict[str, Any], base: Policy) -> Policy:
    if not _POLICY_KEYS.intersection(spec):
        return base
    durations = {
        k: parse_duration(spec[k])
        for k in ("deadline", "attempt_timeout", "first_token_timeout", "stall_timeout", "connect_timeout")
        if k in spec
    }
    actions = dict(base.on_error)
    actions.update({ErrorClass(k): v for k, v in (spec.get("on_error") or {}).items()})
    return Policy(
        deadline=durations.get("deadline", base.deadline),
        attempt_timeout=durations.get("attempt_timeout", base.attempt_timeout),
        first_token_timeout=durations.get("first_token_timeout", base.first_token_timeout),
        stall_timeout=durations.get("stall_timeout", base.stall_timeout),
        connect_timeout=durations.get("connect_timeout", base.connect_timeout),
        retry=_retry(spec.get("retry") or {}, base.retry),
        on_error=base.on_error if actions == dict(base.on_error) else MappingProxyType(actions),
        mid_stream=spec.get("mid_stream", base.mid_stream),
        restart_buffer=parse_size(spec["restart_buffer"]) if "restart_buffer" in spec else base.restart_buffer,
    )


def _retry(spec: dict[str, Any], base: RetryPolicy) -> RetryPolicy:
    if not spec:
        return base
    backoff = spec.get("backoff") or {}
    return RetryPolicy(
        attempts=int(spec.get("attempts", base.attempts)),
        initial=parse_duration(backoff["initial"]) if "initial" in backoff else base.initial,
        max=parse_duration(backoff["max"]) if "max" in backoff else base.max,
        jitter=backoff.get("jitter", base.jitter),
        max_retry_after=parse_duration(spec["max_retry_after"]) if "max_retry_after" in spec else base.max_retry_after,
    )


def _breaker(spec: dict[str, Any] | None, base: BreakerPolicy) -> BreakerPolicy | None:
    """A partial breaker block fills its gaps from `base` (the file's defaults, else the built-in ones)."""
    if spec is None:
        return None
    return BreakerPolicy(
        failure_threshold=int(spec.get("failure_threshold", base.failure_threshold)),
        recovery_timeout=_dur(spec, "recovery_timeout", base.recovery_timeout),
        half_open_probes=int(spec.get("half_open_probes", base.half_open_probes)),
        backoff_factor=float(spec.get("backoff_factor", base.backoff_factor)),
        max_recovery_timeout=_dur(spec, "max_recovery_timeout", base.max_recovery_timeout),
    )


def _dur(spec: dict[str, Any], key: str, fallback: float) -> float:
    return parse_duration(spec[key]) if key in spec else fallback


def _provider(name: str, spec: dict[str, Any], disabled_reason: str | None, breaker: BreakerPolicy) -> ProviderSpec:
    api_key = spec.get("api_key")
    return ProviderSpec(
        name=name,
        driver=spec["driver"],
        base_url=spec.get("base_url"),
        api_key=Secret(api_key) if api_key else None,
        headers=_frozen({k: Secret(v) for k, v in (spec.get("headers") or {}).items()}),
        options=freeze(spec.get("options") or {}),
        connect_timeout=_dur(spec, "connect_timeout", 0.0) or None,
        breaker=_breaker(spec.get("breaker"), breaker),
        disabled_reason=disabled_reason,
    )


def _model(name: str, spec: dict[str, Any], breaker: BreakerPolicy) -> ModelSpec:
    price = spec.get("price")
    limits = spec.get("limits") or {}
    supports = spec.get("supports")
    return ModelSpec(
        key=name,
        provider=spec["provider"],
        upstream=spec.get("name", name),
        kind=spec.get("kind", "chat"),
        dimensions=_int(spec.get("dimensions")),
        min_dimensions=_int(spec.get("min_dimensions")),
        context_window=_int(spec.get("context_window")),
        max_output_tokens=_int(spec.get("max_output_tokens")),
        supports=frozenset(supports) if supports is not None else None,
        price=_price(price) if price is not None else None,
        limits=Limits(rpm=_int(limits.get("rpm")), tpm=_int(limits.get("tpm"))) if limits else Limits(),
        options=freeze(spec.get("options") or {}),
        breaker=_breaker(spec.get("breaker"), breaker),
        budget=_budget(spec.get("budget")),
    )


def _budget(spec: dict[str, Any] | None) -> Budget | None:
    if spec is None:
        return None
    warn_at = spec.get("warn_at")
    return Budget(
        usd=_money(spec["usd"]), per=spec.get("per", "day"), warn_at=None if warn_at is None else float(warn_at)
    )


def _client(name: str, spec: dict[str, Any]) -> ClientSpec:
    keys: list[ClientKey] = []
    for key in spec.get("keys") or ():
        digest = digest_of(key.strip()) if key.strip() else None
        if digest is not None and ClientKey(digest) not in keys:
            keys.append(ClientKey(digest))
    limits = spec.get("limits") or {}
    routes = spec.get("routes")
    return ClientSpec(
        name=name,
        keys=tuple(keys),
        routes=tuple(routes) if routes is not None else None,
        limits=Limits(rpm=_int(limits.get("rpm")), tpm=_int(limits.get("tpm"))),
        budget=_budget(spec.get("budget")),
        unpriced=spec.get("unpriced"),
        description=spec.get("description", ""),
    )


def _int(value: Any) -> int | None:
    """JSON Schema's "integer" admits 8.0; the config model holds real ints."""
    return None if value is None else int(value)


def _money(value: Any) -> Decimal:
    """Decimal from the number as written (str() first, so 0.15 stays 0.15, not 0.1499999...)."""
    return Decimal(str(value))


def _price(spec: dict[str, Any]) -> Price:
    return Price(
        input=_money(spec["input"]),
        output=_money(spec.get("output", 0)),  # only embeddings models may leave it out: they produce no output
        cached_input=_money(spec["cached_input"]) if "cached_input" in spec else None,
        cache_write=_money(spec["cache_write"]) if "cache_write" in spec else None,
    )


def _pool(name: str, spec: dict[str, Any]) -> PoolSpec:
    members = tuple(
        PoolMember(m) if isinstance(m, str) else PoolMember(m["model"], float(m.get("weight", 1.0)))
        for m in spec["members"]
    )
    return PoolSpec(name=name, strategy=spec.get("strategy", "priority"), members=members)


def _route(name: str, spec: dict[str, Any], defaults: Policy) -> RouteSpec:
    return RouteSpec(
        name=name,
        chain=tuple(spec["chain"]),
        policy=_policy(spec, defaults),
        requires=frozenset(spec.get("requires") or ()),
        description=spec.get("description", ""),
        kind=spec.get("kind", "chat"),
        aliases=tuple(spec.get("aliases") or ()),
        budget=_budget(spec.get("budget")),
    )


def _server(spec: dict[str, Any]) -> ServerSpec:
    base = ServerSpec()
    return ServerSpec(
        host=spec.get("host", base.host),
        port=int(spec.get("port", base.port)),
        admin_keys=tuple(Secret(k.strip()) for k in spec.get("admin_keys") or () if k.strip()),
        allowed_hosts=tuple(spec.get("allowed_hosts") or ()),
        max_request_bytes=parse_size(spec["max_request_size"])
        if "max_request_size" in spec
        else base.max_request_bytes,
        log_content=spec.get("log_content", base.log_content),
        protect_metrics=spec.get("protect_metrics", base.protect_metrics),
        drain_timeout=_dur(spec, "drain_timeout", base.drain_timeout),
        reload_timeout=_dur(spec, "reload_timeout", base.reload_timeout),
        watch=spec.get("watch", base.watch),
        max_in_flight=spec.get("max_in_flight", base.max_in_flight),
        client_timeout=_dur(spec, "client_timeout", base.client_timeout),
    )


def _state(spec: dict[str, Any], base_dir: str | None) -> StateSpec:
    base = StateSpec()
    url = spec.get("url")
    ledger = spec.get("ledger", DEFAULT_LEDGER if base_dir is not None else MEMORY).strip()
    return StateSpec(
        backend=spec.get("backend", base.backend),
        url=Secret(url.strip()) if isinstance(url, str) and url.strip() else None,
        key_prefix=spec.get("key_prefix", base.key_prefix),
        op_timeout=_dur(spec, "op_timeout", base.op_timeout),
        sync_interval=_dur(spec, "sync_interval", base.sync_interval),
        ledger=None if ledger == MEMORY else os.path.abspath(os.path.join(base_dir or os.getcwd(), ledger)),
        ledger_written=ledger,
        responses=_responses(spec.get("responses") or {}),
    )


def _responses(spec: dict[str, Any]) -> ResponsesSpec:
    base = ResponsesSpec()
    return ResponsesSpec(
        enabled=spec.get("enabled", base.enabled),
        ttl=_dur(spec, "ttl", base.ttl),
        max_size=parse_size(spec["max_size"]) if "max_size" in spec else base.max_size,
    )


def _telemetry(spec: dict[str, Any] | None) -> TelemetrySpec:
    if spec is None:  # no section: the OTEL_* environment decides
        return TelemetrySpec()
    headers = {k: Secret(v) for k, v in (spec.get("headers") or {}).items() if isinstance(v, str) and v.strip()}
    ratio = spec.get("sample_ratio")
    return TelemetrySpec(
        enabled=bool(spec.get("enabled", True)),
        exporter=spec.get("exporter"),
        endpoint=Secret(spec["endpoint"].strip()) if spec.get("endpoint") else None,
        protocol=spec.get("protocol"),
        headers=MappingProxyType(headers),
        service_name=spec.get("service_name"),
        sample_ratio=float(ratio) if ratio is not None else None,
        propagate_to=frozenset(spec.get("propagate_to") or ()),
    )


def freeze(value: Any) -> Any:
    """Deeply immutable copy of free-form option data: dicts -> MappingProxyType, lists -> tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value
