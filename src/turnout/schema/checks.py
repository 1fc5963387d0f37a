"""Semantic checks the JSON Schema cannot express, run on the rendered data.

Every check is defensive about shape: the data may also have failed schema validation, and all problems are
reported together. Ranges: every timeout is > 0 and <= 1h (a deadline shorter than an attempt timeout is allowed:
the deadline simply wins); breaker periods may reach 24h.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from turnout.config import OPT_IN_CAPABILITIES, STATE_URL_SCHEMES
from turnout.schema.capabilities import DriverChecks
from turnout.schema.clients import ClientChecks
from turnout.schema.kinds import KindChecks
from turnout.schema.problems import Path, Reporter, did_you_mean
from turnout.schema.templates import is_template
from turnout.schema.units import format_duration, parse_duration, parse_size

if TYPE_CHECKING:
    from turnout.drivers.registry import DriverRegistry

HOUR = 3600.0
DAY = 24 * HOUR
MIB = 1024**2
CREDENTIAL_KEY = re.compile(r"(api_?key|secret|password|passwd|token)$", re.IGNORECASE)
STATE_BACKENDS = ("local", "redis")
KEY_PREFIX = re.compile(r"^[^{}\s]{1,100}$")
MAX_OP_TIMEOUT = 5.0
TIMEOUT_KEYS = ("deadline", "attempt_timeout", "first_token_timeout", "stall_timeout", "connect_timeout")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def duration(
    reporter: Reporter, value: Any, path: Path, *, low: float = 0.0, zero_ok: bool = False, high: float = HOUR
) -> float | None:
    """Parse and range-check a duration; report and return None when it is unusable."""
    if is_template(value):  # its template failed to render, which is already reported
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        reporter.error(path, str(exc))
        return None
    if seconds < low or (seconds == low and not zero_ok):
        reporter.error(path, f"must be {'>=' if zero_ok else '>'} {low:g}s, got {value}")
        return None
    if seconds > high:
        reporter.error(path, f"must be at most {format_duration(high)}, got {value}")
        return None
    return seconds


class Checker:
    """Runs every semantic check over one file's data; `disabled` maps provider name -> reason."""

    def __init__(
        self,
        data: dict[str, Any],
        reporter: Reporter,
        drivers: Iterable[str],
        disabled: dict[str, str],
        disabled_at: dict[str, Path] | None = None,
        registry: DriverRegistry | None = None,
    ):
        self.data = data
        self.registry = registry
        self.r = reporter
        self.drivers = sorted(drivers)
        self.disabled = disabled
        self.disabled_at = disabled_at or {}
        self.providers = _dict(data.get("providers"))
        self.models = _dict(data.get("models"))
        self.pools = _dict(data.get("pools"))
        self.routes = _dict(data.get("routes"))
        self._default_breaker = _dict(_dict(data.get("defaults")).get("breaker"))

    def run(self) -> None:
        self._guarded(self._defaults)
        self._guarded(self._providers)
        self._guarded(self._models)
        self._guarded(self._pools)
        self._guarded(self._routes)
        self._guarded(self._server)
        self._guarded(self._state)
        self._guarded(ClientChecks(self).run)
        self._guarded(self._telemetry)
        self._guarded(self._unused)
        self._guarded(KindChecks(self).run)
        if self.registry is not None:
            self._guarded(DriverChecks(self, self.registry).run)

    def _guarded(self, check: Callable[[], None]) -> None:
        """Run one check as best effort on data the schema already rejected (e.g. a list where a name belongs).

        On schema-valid data a failure here would be a bug, so it surfaces.
        """
        try:
            check()
        except (TypeError, ValueError, AttributeError, KeyError):
            if not self.r.errors:
                raise

    def _defaults(self) -> None:
        defaults = _dict(self.data.get("defaults"))
        self._policy(defaults, ("defaults",), {})
        if "breaker" in defaults:
            self._breaker(defaults["breaker"], ("defaults", "breaker"), {})

    def _policy(self, policy: dict[str, Any], path: Path, inherited_retry: dict[str, Any]) -> None:
        for key in TIMEOUT_KEYS:
            if key in policy:
                duration(self.r, policy[key], (*path, key))
        retry = _dict(policy.get("retry"))
        if "max_retry_after" in retry:
            duration(self.r, retry["max_retry_after"], (*path, "retry", "max_retry_after"), zero_ok=True)
        own = _dict(retry.get("backoff"))
        if own:
            self._backoff(own, _dict(inherited_retry.get("backoff")), (*path, "retry", "backoff"))
        size = policy.get("restart_buffer")
        if isinstance(size, str) and _size_or_none(size) == 0:  # the schema reports malformed sizes
            self.r.error((*path, "restart_buffer"), "must be at least 1 byte")

    def _backoff(self, own: dict[str, Any], inherited: dict[str, Any], path: Path) -> None:
        """initial <= max, comparing this level's values with the ones it inherits (built-in: 250ms, 8s)."""
        values: dict[str, float | None] = {}
        for key, builtin in (("initial", 0.25), ("max", 8.0)):
            if key in own:
                values[key] = duration(self.r, own[key], (*path, key), zero_ok=True)
            else:
                values[key] = _seconds(inherited.get(key), builtin)
        initial, high = values["initial"], values["max"]
        if initial is not None and high is not None and high < initial:
            where = (*path, "max") if "max" in own else (*path, "initial")
            self.r.error(where, f"backoff max ({high:g}s) must be >= initial ({initial:g}s)")

    def _breaker(self, breaker: Any, path: Path, inherited: dict[str, Any]) -> None:
        """Periods up to 24h; recovery_timeout <= max_recovery_timeout (each may be inherited)."""
        breaker = _dict(breaker)
        values: dict[str, float | None] = {}
        for key, builtin in (("recovery_timeout", 30.0), ("max_recovery_timeout", 600.0)):
            if key in breaker:
                values[key] = duration(self.r, breaker[key], (*path, key), high=24 * HOUR)
            else:
                values[key] = _seconds(inherited.get(key), builtin)
        rec, top = values["recovery_timeout"], values["max_recovery_timeout"]
        if rec is not None and top is not None and top < rec:
            key = "max_recovery_timeout" if "max_recovery_timeout" in breaker else "recovery_timeout"
            self.r.error((*path, key), f"max_recovery_timeout ({top:g}s) must be >= recovery_timeout ({rec:g}s)")

    def _providers(self) -> None:
        for name, spec in self.providers.items():
            spec = _dict(spec)
            path = ("providers", name)
            driver = spec.get("driver")
            if isinstance(driver, str) and driver and driver not in self.drivers:
                hint = did_you_mean(driver, self.drivers) or f"; known drivers: {', '.join(self.drivers)}"
                self.r.error((*path, "driver"), f"unknown driver '{driver}'{hint}")
            url = spec.get("base_url")
            if isinstance(url, str) and not is_template(url) and not url.startswith(("http://", "https://")):
                self.r.error((*path, "base_url"), f"base_url must start with http:// or https://, got {url!r}")
            if "connect_timeout" in spec:
                duration(self.r, spec["connect_timeout"], (*path, "connect_timeout"))
            if "breaker" in spec:
                self._breaker(spec["breaker"], (*path, "breaker"), self._default_breaker)
            self._credential_options(spec.get("options"), (*path, "options"))
            if name in self.disabled:
                where = self.disabled_at.get(name, path)
                self.r.warning(where, f"provider '{name}' is disabled: {self.disabled[name]}")

    def _models(self) -> None:
        for name, spec in self.models.items():
            spec = _dict(spec)
            path = ("models", name)
            provider = spec.get("provider")
            if isinstance(provider, str) and provider and provider not in self.providers:
                self.r.error(
                    (*path, "provider"), f"unknown provider '{provider}'{did_you_mean(provider, self.providers)}"
                )
            window, output = spec.get("context_window"), spec.get("max_output_tokens")
            if _is_int(window) and _is_int(output) and output > window:
                self.r.error(
                    (*path, "max_output_tokens"), f"max_output_tokens ({output}) exceeds context_window ({window})"
                )
            if "breaker" in spec:
                provider_breaker = _dict(_dict(self.providers.get(provider)).get("breaker"))
                self._breaker(spec["breaker"], (*path, "breaker"), {**self._default_breaker, **provider_breaker})
            self._credential_options(spec.get("options"), (*path, "options"))

    def _credential_options(self, options: Any, path: Path) -> None:
        """Options are not masked like api_key/headers are, so credentials must not hide in them."""
        for key, value in _dict(options).items():
            if CREDENTIAL_KEY.search(key):
                self.r.error(
                    (*path, key),
                    f"'{key}' looks like a credential; put it in the provider's api_key or headers, which are masked",
                    key=True,
                )
            elif isinstance(value, dict):
                self._credential_options(value, (*path, key))

    def _pools(self) -> None:
        for name, spec in self.pools.items():
            if name in self.models:
                self.r.error(
                    ("pools", name),
                    f"'{name}' names both a pool and a model; chains could not tell them apart",
                    key=True,
                )
            seen: dict[str, int] = {}
            for i, member in enumerate(_list(_dict(spec).get("members"))):
                model, where = _member(member, ("pools", name, "members", i))
                if model is None:
                    continue
                if model in seen:
                    self.r.error(
                        where, f"model '{model}' is listed twice in the pool (first at members[{seen[model]}])"
                    )
                    continue
                seen[model] = i
                if model in self.pools and model not in self.models:
                    self.r.error(where, f"'{model}' is a pool; pool members must be models")
                elif model not in self.models:
                    self.r.error(where, f"unknown model '{model}'{did_you_mean(model, self.models)}")

    def _routes(self) -> None:
        base_retry = _dict(_dict(self.data.get("defaults")).get("retry"))
        for name, spec in self.routes.items():
            spec = _dict(spec)
            path = ("routes", name)
            self._policy(spec, path, base_retry)
            seen: dict[str, int] = {}
            for i, target in enumerate(_list(spec.get("chain"))):
                if not isinstance(target, str) or not target:
                    continue
                if target in seen:
                    self.r.error(
                        (*path, "chain", i), f"'{target}' appears twice in the chain (first at chain[{seen[target]}])"
                    )
                    continue
                seen[target] = i
                if target not in self.pools and target not in self.models:
                    known = [*self.pools, *self.models]
                    self.r.error((*path, "chain", i), f"unknown pool or model '{target}'{did_you_mean(target, known)}")
            self._requires(name, spec, list(seen))
            self._all_disabled(name, list(seen))
            mode = spec.get("mid_stream", _dict(self.data.get("defaults")).get("mid_stream", "error"))
            if "restart_buffer" in spec and mode != "restart":
                self.r.warning(
                    (*path, "restart_buffer"), f"restart_buffer has no effect: this route's mid_stream is {mode}"
                )

    def _requires(self, route: str, spec: dict[str, Any], chain: list[str]) -> None:
        """A directly chained model lacking a required capability is an error; pool members are skipped."""
        needs = [c for c in _list(spec.get("requires")) if isinstance(c, str)]
        for i, target in enumerate(_list(spec.get("chain"))):
            if target not in chain or not needs:
                continue
            members = self._expand(target)
            lacking = {m: [c for c in needs if not _supports(self.models.get(m), c)] for m in members}
            lacking = {m: caps for m, caps in lacking.items() if caps}
            where = ("routes", route, "chain", i)
            if target in self.models and lacking:
                self.r.error(where, _lacks(target, self.models.get(target), lacking[target]))
            elif members and len(lacking) == len(members):
                self.r.error(
                    where, f"no member of pool '{target}' supports {', '.join(needs)}, which the route requires"
                )
            elif lacking:
                self.r.warning(
                    where,
                    f"pool '{target}' members {', '.join(sorted(lacking))} lack a required "
                    f"capability and are skipped on this route",
                )

    def _all_disabled(self, route: str, chain: list[str]) -> None:
        deployments = [m for target in chain for m in self._expand(target)]
        providers = [_dict(self.models.get(m)).get("provider") for m in deployments]
        if providers and all(isinstance(p, str) and p in self.disabled for p in providers):
            self.r.warning(("routes", route, "chain"), "every deployment in this chain is disabled; requests will fail")

    def _expand(self, target: str) -> list[str]:
        if target in self.models:
            return [target]
        members = (_member(m, ())[0] for m in _list(_dict(self.pools.get(target)).get("members")))
        return [m for m in members if m in self.models]

    def _server(self) -> None:
        server = _dict(self.data.get("server"))
        port = server.get("port")
        if (
            isinstance(port, str)
            and not is_template(port)
            and (not port.strip().isdigit() or not 1 <= int(port) <= 65535)
        ):
            self.r.error(("server", "port"), f"expected a port number 1-65535, got {port!r}")
        size = server.get("max_request_size")
        if isinstance(size, str) and _size_or_none(size) == 0:  # the schema reports malformed sizes
            self.r.error(("server", "max_request_size"), "must be at least 1 byte")
        if "drain_timeout" in server:
            duration(self.r, server["drain_timeout"], ("server", "drain_timeout"), zero_ok=True)
        if "client_timeout" in server:
            duration(self.r, server["client_timeout"], ("server", "client_timeout"))
        if "reload_timeout" in server:
            duration(self.r, server["reload_timeout"], ("server", "reload_timeout"))

    def _state(self) -> None:
        """Rendered values of the state section; the url is a secret, so no message quotes it."""
        state = _dict(self.data.get("state"))
        backend = state.get("backend", "local")
        if isinstance(backend, str) and not is_template(backend) and backend not in STATE_BACKENDS:
            self.r.error(
                ("state", "backend"), f"expected local or redis, got {backend!r}{did_you_mean(backend, STATE_BACKENDS)}"
            )
        prefix = state.get("key_prefix")
        if isinstance(prefix, str) and not is_template(prefix) and not KEY_PREFIX.match(prefix):
            self.r.error(
                ("state", "key_prefix"), "must be 1-100 characters without braces or spaces (it rendered otherwise)"
            )
        if "op_timeout" in state:
            duration(self.r, state["op_timeout"], ("state", "op_timeout"), high=MAX_OP_TIMEOUT)
        if "sync_interval" in state:
            duration(self.r, state["sync_interval"], ("state", "sync_interval"), low=0.01, zero_ok=True, high=60.0)
        url = state.get("url")
        if isinstance(url, str) and not is_template(url) and url.strip():
            problem = state_url_problem(url.strip())
            if problem:
                self.r.error(("state", "url"), problem)
            elif backend == "local":
                self.r.warning(("state", "url"), "url is ignored with backend local")
        elif backend == "redis" and not (isinstance(url, str) and is_template(url)):
            where = ("state", "url") if "url" in state else ("state", "backend")
            self.r.error(where, "backend redis needs a url (redis://, rediss:// or unix://); it is missing or empty")
        self._stored_responses(_dict(state.get("responses")))

    def _stored_responses(self, responses: dict[str, Any]) -> None:
        """state.responses: a ttl of a minute at least (a shorter one would drop a conversation between two turns)
        and a store of at least a megabyte (a smaller one could not hold one long answer)."""
        if "ttl" in responses:
            duration(self.r, responses["ttl"], ("state", "responses", "ttl"), low=60.0, zero_ok=True, high=366 * DAY)
        size = responses.get("max_size")
        if isinstance(size, str) and not is_template(size) and (_size_or_none(size) or 0) < MIB:
            self.r.error(("state", "responses", "max_size"), f"must be at least 1MB, got {size}")
        elif isinstance(size, int) and not isinstance(size, bool) and size < MIB:
            self.r.error(("state", "responses", "max_size"), f"must be at least 1MB (1048576 bytes), got {size}")

    def _telemetry(self) -> None:
        """Providers named in propagate_to exist; the endpoint is an http(s) URL; headers that rendered empty."""
        telemetry = _dict(self.data.get("telemetry"))
        for i, name in enumerate(_list(telemetry.get("propagate_to"))):
            if isinstance(name, str) and name not in self.providers:
                self.r.error(
                    ("telemetry", "propagate_to", i),
                    f"unknown provider '{name}'{did_you_mean(name, self.providers)}",
                )
        endpoint = telemetry.get("endpoint")
        if isinstance(endpoint, str) and not is_template(endpoint):
            parts = urlsplit(endpoint.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.r.error(
                    ("telemetry", "endpoint"), "expected an http:// or https:// URL, e.g. http://otel-collector:4318"
                )
        headers = _dict(telemetry.get("headers"))
        for name, value in headers.items():
            if isinstance(value, str) and not value.strip():
                self.r.warning(("telemetry", "headers", name), "rendered empty: this header is not sent")
        if telemetry.get("exporter") in ("console", "global"):
            for key in ("endpoint", "protocol", "headers"):
                if key in telemetry:
                    self.r.warning(("telemetry", key), f"ignored with exporter {telemetry['exporter']}", key=True)

    def _unused(self) -> None:
        used_targets = {
            t for spec in self.routes.values() for t in _list(_dict(spec).get("chain")) if isinstance(t, str)
        }
        for name in self.pools:
            if name not in used_targets:
                self.r.warning(("pools", name), f"pool '{name}' is not used by any route", key=True)
        used_models = {m for t in used_targets for m in self._expand(t) if isinstance(t, str)}
        for name in self.models:
            if name not in used_models:
                self.r.warning(("models", name), f"model '{name}' is not used by any route", key=True)
        used_providers = {p for spec in self.models.values() if isinstance(p := _dict(spec).get("provider"), str)}
        for name in self.providers:
            if name not in used_providers:
                self.r.warning(("providers", name), f"provider '{name}' is not used by any model", key=True)


def state_url_problem(url: str) -> str | None:
    """Why `url` cannot be a Redis URL, without quoting it (it may hold a password); None when it can."""
    if not url.startswith(STATE_URL_SCHEMES):
        scheme = url.split("://", 1)[0] if "://" in url else ""
        shown = f" (got {scheme}://)" if scheme.isalnum() and len(scheme) < 20 else ""
        return f"url must start with redis://, rediss:// or unix://{shown}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "url is not a valid URL (check the host, port and escaping of special characters in the password)"
    if url.startswith("unix://"):
        return None if parts.path else "a unix:// url needs the socket's path, e.g. unix:///run/redis.sock"
    if not parts.hostname:
        return "url has no host, e.g. redis://redis.internal:6379/0"
    if port == 0:
        return "url port must be 1-65535"
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        return "url path must be a database number, e.g. /0"
    return None


def _member(member: Any, path: Path) -> tuple[str | None, Path]:
    if isinstance(member, str):
        return member, path
    model = _dict(member).get("model")
    return (model, (*path, "model")) if isinstance(model, str) else (None, path)


def _lacks(name: str, model: Any, lacking: list[str]) -> str:
    """Why a chained model cannot serve a route that requires `lacking`; an opt-in capability a model without
    `supports` lacks is one it would have by declaring it."""
    message = f"model '{name}' does not support {', '.join(lacking)}, which the route requires"
    if not isinstance(_dict(model).get("supports"), list):
        message += f" (a model has {', '.join(lacking)} only when its supports lists it)"
    return message


def _supports(model: Any, capability: str) -> bool:
    """Whether a model can be counted on for `capability`: declared, or assumed when `supports` is not declared
    (an opt-in capability never is)."""
    supports = _dict(model).get("supports")
    if not isinstance(supports, list):
        return capability not in OPT_IN_CAPABILITIES
    return capability in supports


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(value: Any, fallback: float) -> float | None:
    if value is None:
        return fallback
    try:
        return parse_duration(value)
    except (ValueError, TypeError):
        return None


def _size_or_none(value: str) -> int | None:
    try:
        return parse_size(value)
    except ValueError:
        return None
