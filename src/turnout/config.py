"""The typed, frozen config model that a routing file loads into.

`turnout.schema` produces it from YAML (with locations and every check); the router compiles it and drivers
are built from its `ProviderSpec`s. Nothing here does I/O or knows about YAML, so embedders can also build a
`Config` in code. Durations are float seconds; prices are `Decimal` USD per 1M tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

from turnout.errors import ErrorClass, Problem

Action = Literal["retry", "next", "fail"]
Strategy = Literal["priority", "round_robin", "weighted", "least_busy", "lowest_latency", "lowest_cost"]
Capability = Literal["tools", "vision", "json", "prefill", "streaming", "reasoning"]
MidStreamPolicy = Literal["error", "continue", "restart"]
Kind = Literal["chat", "embeddings"]  # what a model does and what a route serves
Jitter = Literal["full", "equal", "none"]

STRATEGIES: tuple[str, ...] = ("priority", "round_robin", "weighted", "least_busy", "lowest_latency", "lowest_cost")
CAPABILITIES: tuple[str, ...] = ("tools", "vision", "json", "prefill", "streaming", "reasoning")
# Never assumed for a model whose `supports` is not declared, whatever its driver offers: reasoning parameters sent
# to a model that does not reason are refused with a 400, which fails a request that would have worked without them.
OPT_IN_CAPABILITIES: frozenset[str] = frozenset({"reasoning"})
KINDS: tuple[str, ...] = ("chat", "embeddings")
BUILTIN_DRIVERS: tuple[str, ...] = ("openai", "azure", "anthropic", "gemini", "ollama", "mock")
DEFAULT_RESTART_BUFFER = 256 * 1024  # bytes of answer `mid_stream: restart` holds back (~64k tokens of text)

# The architecture's taxonomy table: what a route does with each error class unless it overrides it.
DEFAULT_ACTIONS: Mapping[ErrorClass, Action] = MappingProxyType(
    {
        ErrorClass.RATE_LIMIT: "retry",
        ErrorClass.QUOTA_EXCEEDED: "next",
        ErrorClass.OVERLOADED: "retry",
        ErrorClass.SERVER_ERROR: "retry",
        ErrorClass.TIMEOUT: "next",
        ErrorClass.CONNECTION: "retry",
        ErrorClass.PROTOCOL: "retry",
        ErrorClass.AUTH: "next",
        ErrorClass.NOT_FOUND: "next",
        ErrorClass.CONTEXT_WINDOW: "next",
        ErrorClass.CONTENT_POLICY: "fail",
        ErrorClass.BAD_REQUEST: "fail",
    }
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Secret:
    """A credential. Its repr and str are masked; only `reveal()` gives the value (to drivers, at call time)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickle a credential by accident
        raise TypeError("Secret values cannot be pickled")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries on the same deployment: delay = uniform(0, min(max, initial * 2**n)) with full jitter."""

    attempts: int = 2  # retries after the first try (0 = try once)
    initial: float = 0.25
    max: float = 8.0
    jitter: Jitter = "full"
    max_retry_after: float = 30.0  # longest Retry-After we sleep for; longer means "move on now"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """Per-deployment circuit breaker: opens after `failure_threshold` consecutive deployment faults."""

    failure_threshold: int = 5
    recovery_timeout: float = 30.0
    half_open_probes: int = 1
    backoff_factor: float = 1.0  # >1 grows the open period on each repeated trip
    max_recovery_timeout: float = 600.0


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything that governs how one request is dispatched; defaults overridden per route."""

    deadline: float = 60.0
    attempt_timeout: float = 30.0
    first_token_timeout: float = 20.0
    stall_timeout: float = 15.0
    connect_timeout: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_error: Mapping[ErrorClass, Action] = field(default_factory=lambda: DEFAULT_ACTIONS)
    mid_stream: MidStreamPolicy = "error"
    restart_buffer: int = DEFAULT_RESTART_BUFFER  # `mid_stream: restart`: bytes held back before committing

    def action(self, error_class: ErrorClass) -> Action:
        return self.on_error[error_class]


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. `cached_input` defaults to `input` when a provider gives no discount."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None


BudgetPeriod = Literal["day", "week", "month", "total"]
BUDGET_PERIODS: tuple[str, ...] = ("day", "week", "month", "total")


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending cap: at most `usd` per UTC `per` (day, ISO week, calendar month, or ever). Past `warn_at` (a
    fraction of `usd`) turnout warns once per period; at the cap, requests it would pay for are refused."""

    usd: Decimal
    per: BudgetPeriod = "day"
    warn_at: float | None = None


class ClientKey:
    """One client key, held only as its SHA-256 digest (hex): a plaintext key from the file is hashed at load, so
    nothing after loading holds the key itself. `shown` is what explain and logs may print (a digest prefix)."""

    __slots__ = ("digest",)

    def __init__(self, digest: str) -> None:
        self.digest = digest

    @classmethod
    def of_plaintext(cls, key: str) -> ClientKey:
        return cls(key_digest(key))

    @property
    def shown(self) -> str:
        return f"sha256:{self.digest[:8]}…"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClientKey) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(("ClientKey", self.digest))

    def __repr__(self) -> str:
        return f"ClientKey({self.shown!r})"


def key_digest(key: str) -> str:
    """The SHA-256 hex digest of a key as presented (`sha256:` + this is how a file may name a key)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


UnpricedRule = Literal["deny", "allow"]


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One caller of the sidecar (or of `Router.chat(client=...)`): its keys, the routes it may use (glob
    patterns; None: every route), its own rpm/tpm limits, its budget, and whether a deployment with no price may
    serve it (`unpriced`; "deny" by default when it has a budget: an unpriced call could not be counted)."""

    name: str
    keys: tuple[ClientKey, ...] = ()
    routes: tuple[str, ...] | None = None
    limits: Limits = field(default_factory=Limits)
    budget: Budget | None = None
    unpriced: UnpricedRule | None = None
    description: str = ""

    @property
    def denies_unpriced(self) -> bool:
        return self.budget is not None and self.unpriced != "allow"


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One upstream account/endpoint. `disabled_reason` is set when e.g. its credential rendered empty."""

    name: str
    driver: str
    base_url: str | None = None
    api_key: Secret | None = None
    headers: Mapping[str, Secret] = field(default_factory=lambda: _EMPTY)
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    connect_timeout: float | None = None
    breaker: BreakerPolicy | None = None  # overrides defaults.breaker for this provider's deployments
    disabled_reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model offered by a provider. `upstream` is the provider's id for it; `key` the name in the file.

    An embeddings model (`kind="embeddings"`) returns vectors of `dimensions` floats, or any length from
    `min_dimensions` up to that when a request asks for fewer (None: only its own length).
    """

    key: str
    provider: str
    upstream: str
    kind: Kind = "chat"
    dimensions: int | None = None
    min_dimensions: int | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    supports: frozenset[str] | None = None  # None = not declared (assume capable, OPT_IN_CAPABILITIES aside)
    price: Price | None = None
    limits: Limits = field(default_factory=Limits)
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    breaker: BreakerPolicy | None = None
    budget: Budget | None = None  # the deployment's own cap: exhausted, it is skipped like a limited one

    def declares(self, capability: str) -> bool | None:
        """True/False when declared, None when the file says nothing about capabilities."""
        return None if self.supports is None else capability in self.supports

    def has(self, capability: str) -> bool:
        """Whether the file lets the model count on `capability`: declared, or assumed when nothing is declared
        (never for OPT_IN_CAPABILITIES)."""
        if self.supports is None:
            return capability not in OPT_IN_CAPABILITIES
        return capability in self.supports


@dataclass(frozen=True, slots=True)
class PoolMember:
    model: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class PoolSpec:
    name: str
    strategy: Strategy = "priority"
    members: tuple[PoolMember, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """What clients ask for by name (or by one of its `aliases`). `chain` names pools or models, tried in order;
    `policy` is effective. `kind` says whether it serves chat or embeddings."""

    name: str
    chain: tuple[str, ...]
    policy: Policy = field(default_factory=Policy)
    requires: frozenset[str] = frozenset()
    description: str = ""
    kind: Kind = "chat"
    aliases: tuple[str, ...] = ()
    budget: Budget | None = None  # the route's cap over every client and deployment


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """The `server:` section. `protect_metrics` None means "when the sidecar has keys (clients or admin_keys)".
    Client keys live in the `clients:` section; `admin_keys` open the /admin endpoints (and only those)."""

    host: str = "127.0.0.1"
    port: int = 8080
    admin_keys: tuple[Secret, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_request_bytes: int = 4 * 1024 * 1024
    log_content: bool = False
    protect_metrics: bool | None = None
    drain_timeout: float = 30.0
    reload_timeout: float = 30.0
    watch: bool = True
    max_in_flight: int = 1024
    client_timeout: float = 30.0


StateBackendName = Literal["local", "redis"]
STATE_URL_SCHEMES: tuple[str, ...] = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True, slots=True)
class ResponsesSpec:
    """`state.responses`: the Responses API's stored responses (`previous_response_id`, `GET /v1/responses/{id}`).

    `ttl` is counted from a conversation's latest response; `max_size` bounds the local store (oldest go first).
    All three apply on reload.
    """

    enabled: bool = True
    ttl: float = 30 * 86400.0  # seconds a stored response (and the conversation it ends) can be continued or read
    max_size: int = 256 * 1024**2  # bytes the local store may hold


@dataclass(frozen=True, slots=True)
class StateSpec:
    """The `state:` section: where limits, breaker state and usage counters live (`turnout.state`).

    `backend`, `url`, `key_prefix` and `ledger` need a restart to change; `op_timeout`, `sync_interval` and
    `responses` apply on reload.
    """

    backend: StateBackendName = "local"
    url: Secret | None = None  # redis://, rediss:// or unix://; a secret because it may hold a password
    key_prefix: str = "turnout:"
    op_timeout: float = 0.05  # the longest a request waits on the backend before going on with local state
    sync_interval: float = 1.0  # background flush / reconcile / reconnect period
    ledger: str | None = None  # local backend: the spend ledger's sqlite file (absolute); None keeps it in memory
    ledger_written: str = "memory"  # `ledger` as the file says it (what `turnout plan` compares across machines)
    responses: ResponsesSpec = field(default_factory=ResponsesSpec)

    @property
    def identity(self) -> tuple[object, ...]:
        """What a reload cannot change on a running Router (a new backend would split the shared state)."""
        return (self.backend, self.url, self.key_prefix, self.ledger if self.backend == "local" else None)


TelemetryExporter = Literal["otlp", "console", "global"]
OtlpProtocol = Literal["http/protobuf", "grpc"]


@dataclass(frozen=True, slots=True)
class TelemetrySpec:
    """The `telemetry:` section: OpenTelemetry traces (`turnout.telemetry`). `None` means "as the OTEL_* environment
    says" (and `enabled` None: the file has no telemetry section). Read at start, except `propagate_to`."""

    enabled: bool | None = None
    exporter: TelemetryExporter | None = None
    endpoint: Secret | None = None  # a collector URL may carry a password
    protocol: OtlpProtocol | None = None
    headers: Mapping[str, Secret] = field(default_factory=lambda: _EMPTY)
    service_name: str | None = None
    sample_ratio: float | None = None
    propagate_to: frozenset[str] = frozenset()  # provider names whose upstream calls carry the trace context

    @property
    def identity(self) -> tuple[object, ...]:
        """What a reload cannot change on a running Router (the exporter is built once)."""
        headers = tuple(sorted(self.headers.items()))
        exporter = (self.exporter, self.endpoint, self.protocol, headers)
        return (self.enabled, *exporter, self.service_name, self.sample_ratio)


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, valid routing file. `warnings` are located non-fatal findings (unused names, disabled providers)."""

    version: int = 1
    source: str = "<memory>"
    defaults: Policy = field(default_factory=Policy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    providers: Mapping[str, ProviderSpec] = field(default_factory=lambda: _EMPTY)
    models: Mapping[str, ModelSpec] = field(default_factory=lambda: _EMPTY)
    pools: Mapping[str, PoolSpec] = field(default_factory=lambda: _EMPTY)
    routes: Mapping[str, RouteSpec] = field(default_factory=lambda: _EMPTY)
    server: ServerSpec = field(default_factory=ServerSpec)
    state: StateSpec = field(default_factory=StateSpec)
    clients: Mapping[str, ClientSpec] = field(default_factory=lambda: _EMPTY)
    telemetry: TelemetrySpec = field(default_factory=TelemetrySpec)
    warnings: tuple[Problem, ...] = ()

    def breaker_for(self, model: ModelSpec) -> BreakerPolicy:
        """Model override, else provider override, else the file's default."""
        provider = self.providers.get(model.provider)
        return model.breaker or (provider.breaker if provider else None) or self.breaker
