"""A routing file's meaning as plain data, comparable across processes: what `turnout plan` compares.

`snapshot(config, salt=...)` lists providers, deployments (every model of the file, keyed "provider/model" as the
health table keys them), pools and routes with their effective policies. The sidecar's `GET /admin/config`
answers with the snapshot of the file it serves, so `turnout plan NEW` compares a file with what is running by
the same code that compares two files.

Secrets never appear. Credentials enter only the *digests*: each component of the deployment's `HealthIdentity`
(the reload's keep-or-reset rule, `turnout.router.health`) as a truncated HMAC-SHA-256 of a canonical encoding,
keyed with the admin key the caller presented and salted per snapshot (the sidecar picks a salt per request, and
the plan digests its side with the same salt and key). Equal components give equal digests, so `keeps_health` on
the digests answers exactly as it does on the identities, while nobody without an admin key can test guesses of a
provider key against them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from turnout.config import Budget, ClientSpec, Config, ModelSpec, ProviderSpec, RouteSpec, Secret
from turnout.explain import breaker_data, mask_options, mask_url, policy_data
from turnout.router.health import HealthIdentity, health_identity

FORMAT = 1
DIGEST_CHARS = 24  # 96 bits: equal identities are told apart from different ones with certainty in practice


def snapshot(config: Config, *, salt: str | None = None, key: str = "") -> dict[str, Any]:
    """The file as plain data (JSON-ready); see the module docstring. `key` keys the digests (the admin key)."""
    salt = salt if salt is not None else os.urandom(8).hex()
    sign = _Signer(salt, key)
    return {
        "format": FORMAT,
        "source": config.source,
        "salt": salt,
        "providers": {name: _provider(p, sign) for name, p in config.providers.items()},
        "deployments": {_key(m): _deployment(config, m, sign) for m in config.models.values()},
        "pools": {
            name: {
                "strategy": pool.strategy,
                "members": [{"deployment": _key(config.models[m.model]), "weight": m.weight} for m in pool.members],
            }
            for name, pool in config.pools.items()
        },
        "routes": {name: _route(config, route) for name, route in config.routes.items()},
        "clients": {name: _client(client, sign) for name, client in config.clients.items()},
        "server": _server(config, sign),
        "state": _state(config, sign),
    }


def _budget(budget: Budget | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {"usd": _money(budget.usd), "per": budget.per, "warn_at": budget.warn_at}


def _client(client: ClientSpec, sign: _Signer) -> dict[str, Any]:
    """A client by name; its keys only counted and digested together (a rotation changes the digest)."""
    return {
        "description": client.description,
        "keys": len(client.keys),
        "keys_digest": sign(sorted(key.digest for key in client.keys)),
        "routes": list(client.routes) if client.routes is not None else None,
        "limits": {"rpm": client.limits.rpm, "tpm": client.limits.tpm},
        "budget": _budget(client.budget),
        "unpriced": "deny" if client.denies_unpriced else "allow",
    }


def _key(model: ModelSpec) -> str:
    return f"{model.provider}/{model.key}"


def _provider(provider: ProviderSpec, sign: _Signer) -> dict[str, Any]:
    return {
        "driver": provider.driver,
        "base_url": mask_url(provider.base_url) if provider.base_url else None,
        "options": mask_options(provider.options),
        "headers": sorted(provider.headers),
        "connect_timeout": provider.connect_timeout,
        "breaker": breaker_data(provider.breaker) if provider.breaker is not None else None,
        "enabled": provider.enabled,
        "disabled_reason": provider.disabled_reason,
        "digest": sign(provider),  # changes with any setting, credentials included
    }


def _deployment(config: Config, model: ModelSpec, sign: _Signer) -> dict[str, Any]:
    price = model.price
    identity = health_identity(config, model)
    return {
        "provider": model.provider,
        "model": model.key,
        "upstream": model.upstream,
        "kind": model.kind,
        "dimensions": model.dimensions,
        "min_dimensions": model.min_dimensions,
        "enabled": config.providers[model.provider].enabled,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "supports": sorted(model.supports) if model.supports is not None else None,
        "price": None
        if price is None
        else {
            "input": _money(price.input),
            "output": _money(price.output),
            "cached_input": _money(price.cached_input),
            "cache_write": _money(price.cache_write),
        },
        "limits": {"rpm": model.limits.rpm, "tpm": model.limits.tpm},
        "budget": _budget(model.budget),
        "breaker": breaker_data(config.breaker_for(model)),
        "health": {name: sign(value) for name, value in identity._asdict().items()},
    }


def _money(value: Decimal | None) -> str | None:
    """USD per 1M tokens as a plain decimal string, equal for equal amounts ("0.60" and "0.6" are both "0.6")."""
    return None if value is None else format(value.normalize(), "f")


def _route(config: Config, route: RouteSpec) -> dict[str, Any]:
    chain = []
    for entry in route.chain:
        pool = config.pools.get(entry)
        if pool is not None:
            members = [_key(config.models[m.model]) for m in pool.members]
            chain.append({"target": entry, "kind": "pool", "strategy": pool.strategy, "deployments": members})
        else:
            chain.append(
                {"target": entry, "kind": "model", "strategy": "single", "deployments": [_key(config.models[entry])]}
            )
    return {
        "description": route.description,
        "kind": route.kind,
        "aliases": list(route.aliases),
        "requires": sorted(route.requires),
        "budget": _budget(route.budget),
        "policy": policy_data(route.policy),
        "chain": chain,
    }


def _server(config: Config, sign: _Signer) -> dict[str, Any]:
    server = config.server
    return {
        "host": server.host,
        "port": server.port,
        "admin_keys": len(server.admin_keys),
        "admin_keys_digest": sign(sorted(key.reveal() for key in server.admin_keys)),
        "max_request_bytes": server.max_request_bytes,
        "log_content": server.log_content,
        "protect_metrics": server.protect_metrics,
        "drain_timeout": server.drain_timeout,
        "watch": server.watch,
    }


def _state(config: Config, sign: _Signer) -> dict[str, Any]:
    """The state section; the url masked, plus a digest of it so a password-only change still shows."""
    state = config.state
    return {
        "backend": state.backend,
        "url": mask_url(state.url.reveal()) if state.url is not None else None,
        "url_digest": sign(state.url) if state.url is not None else None,
        "key_prefix": state.key_prefix,
        "op_timeout": state.op_timeout,
        "sync_interval": state.sync_interval,
        "ledger": state.ledger_written if state.backend == "local" else None,
        "responses_enabled": state.responses.enabled,
        "responses_ttl": state.responses.ttl,
        "responses_max_size": state.responses.max_size,
    }


def health_of(deployment: Mapping[str, Any]) -> HealthIdentity:
    """A snapshot deployment's health digests, as the HealthIdentity that `keeps_health` compares."""
    return HealthIdentity(**deployment["health"])


# ---- digests ------------------------------------------------------------------------------------------------------


class _Signer:
    __slots__ = ("key", "salt")

    def __init__(self, salt: str, key: str) -> None:
        self.salt = salt
        self.key = key

    def __call__(self, value: Any) -> str:
        return digest(value, self.salt, self.key)


def digest(value: Any, salt: str, key: str = "") -> str:
    """Truncated HMAC-SHA-256 (keyed with `key`) of `salt` and `value`'s canonical encoding: equal values, equal
    digests."""
    text = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    message = f"{salt}\0{text}".encode("utf-8", "surrogatepass")
    return hmac.new(key.encode("utf-8", "surrogateescape"), message, hashlib.sha256).hexdigest()[:DIGEST_CHARS]


def canonical(value: Any) -> Any:
    """JSON-ready data that is equal for values Python considers equal (1 == 1.0, mapping order, frozensets)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Secret):
        return ["secret", value.reveal()]
    if isinstance(value, int | float):
        return ["num", repr(float(value))]
    if isinstance(value, Decimal):
        return ["num", repr(float(value))] if value == value.to_integral_value() else ["dec", str(value.normalize())]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return [type(value).__name__, fields]
    if isinstance(value, Mapping):
        return {"map": sorted([json.dumps(canonical(k), sort_keys=True), canonical(v)] for k, v in value.items())}
    if isinstance(value, frozenset | set):
        return {"set": sorted(json.dumps(canonical(v), sort_keys=True) for v in value)}
    if isinstance(value, tuple | list):
        return [canonical(v) for v in value]
    return ["repr", repr(value)]
