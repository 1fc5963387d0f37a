"""Every exception turnout raises.

```
TurnoutError
├── ConfigError                  routes.yaml is invalid; .problems holds every located problem
├── InvalidRequest               the client's request is malformed (HTTP 400); never sent upstream
├── RouteNotFound                the requested model names no route (HTTP 404)
├── RequestRefused               the caller may not have this now; never sent upstream
│   ├── UnknownClient            no declared client has this key or name (HTTP 401)
│   ├── RouteNotAllowed          the client may not use this route (HTTP 403 permission_denied)
│   ├── ClientRateLimited        the client is over its own rpm/tpm (HTTP 429, .retry_after)
│   └── BudgetExhausted          a client, route or deployment budget has no room for it (HTTP 429
│                                insufficient_quota; .period, .resets_at)
├── ProviderError                one upstream attempt failed; .error_class says which taxonomy class
│   ├── RateLimited              rate_limit
│   ├── QuotaExceeded            quota_exceeded
│   ├── Overloaded               overloaded
│   ├── ServerError              server_error
│   ├── UpstreamTimeout          timeout          (also a builtin TimeoutError)
│   ├── UpstreamConnectionError  connection       (also a builtin ConnectionError)
│   ├── ProtocolError            protocol         (garbage / truncated / unframed upstream output)
│   ├── AuthError                auth
│   ├── ModelNotFound            not_found
│   ├── ContextWindowExceeded    context_window
│   ├── ContentPolicyError       content_policy
│   └── BadRequest               bad_request
└── AllUpstreamsFailed           every option of a route failed or was unusable; .attempts is the trail,
                                 __cause__ is the most meaningful upstream ProviderError
```

Drivers translate every foreign failure (status codes, error bodies, aiohttp exceptions, garbage bytes) into a
ProviderError subclass at their own boundary; `provider_error()` builds the right subclass from a class name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from turnout.types import Attempt


class ErrorClass(StrEnum):
    """The taxonomy every upstream failure is classified into (see the architecture's table)."""

    RATE_LIMIT = "rate_limit"
    QUOTA_EXCEEDED = "quota_exceeded"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    PROTOCOL = "protocol"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    CONTEXT_WINDOW = "context_window"
    CONTENT_POLICY = "content_policy"
    BAD_REQUEST = "bad_request"


# Which classes are the deployment's own fault (count towards its breaker). A client's bad request, a
# content-policy refusal or a too-long prompt say nothing about the deployment's health.
DEPLOYMENT_FAULTS: frozenset[ErrorClass] = frozenset(
    {
        ErrorClass.RATE_LIMIT,
        ErrorClass.QUOTA_EXCEEDED,
        ErrorClass.OVERLOADED,
        ErrorClass.SERVER_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECTION,
        ErrorClass.PROTOCOL,
        ErrorClass.AUTH,
        ErrorClass.NOT_FOUND,
    }
)

# `ProviderError.code`s that drivers set when the request provably never reached the provider (the connection
# could not be opened), so the attempt billed nothing even though no HTTP status came back.
NOT_SENT_CODES: frozenset[str] = frozenset({"connect_failed", "connect_timeout"})

# HTTP status the sidecar answers with when a request finally fails with this class.
HTTP_STATUS: dict[ErrorClass, int] = {
    ErrorClass.RATE_LIMIT: 429,
    ErrorClass.QUOTA_EXCEEDED: 429,
    ErrorClass.OVERLOADED: 503,
    ErrorClass.SERVER_ERROR: 502,
    ErrorClass.TIMEOUT: 504,
    ErrorClass.CONNECTION: 502,
    ErrorClass.PROTOCOL: 502,
    ErrorClass.AUTH: 502,
    ErrorClass.NOT_FOUND: 502,
    ErrorClass.CONTEXT_WINDOW: 400,
    ErrorClass.CONTENT_POLICY: 400,
    ErrorClass.BAD_REQUEST: 400,
}


class TurnoutError(Exception):
    """Base of everything turnout raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in a routing file. `line`/`col` are 1-based; 0 means unknown."""

    file: str
    line: int
    col: int
    path: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.path}: {self.message}" if self.path else f"{where}: {prefix}{self.message}"


class ConfigError(TurnoutError):
    """The routing file is invalid. `problems` lists every error found, each with its location."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid configuration")


class InvalidRequest(TurnoutError):
    """The client's request is malformed; `param` names the offending field (OpenAI's `param`)."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class RouteNotFound(TurnoutError):
    """The requested model names no route."""

    def __init__(self, model: str, routes: Sequence[str]) -> None:
        self.model = model
        self.routes = tuple(routes)
        shown = ", ".join(self.routes[:50])
        super().__init__(f"The model '{model}' does not exist. Available routes: {shown}")


class RequestRefused(TurnoutError):
    """The request was refused before dispatch (who is asking, or what they may still spend); `message` is safe to
    show the caller: it names clients and routes, never keys."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownClient(RequestRefused):
    """No declared client has the key presented (the sidecar), or the name given (`Router.chat(client=...)`)."""

    def __init__(self, message: str = "Invalid API key.") -> None:
        super().__init__(message)


class RouteNotAllowed(RequestRefused):
    """The client may not use this route. The message names only the route asked for, never the allowed ones."""

    def __init__(self, client: str, route: str) -> None:
        super().__init__(f"This API key may not use the model '{route}'.")
        self.client = client
        self.route = route


class ClientRateLimited(RequestRefused):
    """The client is over its own rpm/tpm limit; `retry_after` is the seconds until a request of this size fits."""

    def __init__(self, client: str, reason: str, retry_after: float | None) -> None:
        wait = f" Retry after {max(1, math.ceil(retry_after))}s." if retry_after else ""
        super().__init__(f"Rate limit reached for client '{client}': {reason}.{wait}")
        self.client = client
        self.retry_after = retry_after


class BudgetExhausted(RequestRefused):
    """A budget has no room for this request: `budget` says whose ("client 'team'", "route 'chat'",
    "deployment 'p/m'"), `period` is day | week | month | total, `resets_at` the UTC time it resets (None for
    total), `spent_usd` / `limit_usd` the figures (reservations in flight included)."""

    def __init__(
        self, message: str, *, budget: str, period: str, resets_at: datetime | None, spent_usd: float, limit_usd: float
    ) -> None:
        super().__init__(message)
        self.budget = budget
        self.period = period
        self.resets_at = resets_at
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd

    def retry_after(self, now: datetime) -> float | None:
        """Seconds until the budget resets (None: it never does)."""
        return None if self.resets_at is None else max(0.0, (self.resets_at - now).total_seconds())


class ProviderError(TurnoutError):
    """One upstream attempt failed, classified into the taxonomy.

    `message` and `code` are the provider's own; `retry_after` is seconds the provider asked us to wait (from
    Retry-After, retry-after-ms or Gemini RetryInfo); `after_first_token` is True when the failure happened
    after streamed content already reached the caller.
    """

    error_class: ErrorClass = ErrorClass.SERVER_ERROR

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        after_first_token: bool = False,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.after_first_token = after_first_token
        self.body = body

    @property
    def deployment(self) -> str:
        return f"{self.provider}/{self.model}" if self.provider else self.model

    def __str__(self) -> str:
        where = f"{self.deployment}: " if self.deployment else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{self.error_class.value}{status}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(error_class={self.error_class.value!r}, deployment={self.deployment!r}, "
            f"status={self.status!r}, code={self.code!r}, message={self.message!r})"
        )


class RateLimited(ProviderError):
    error_class = ErrorClass.RATE_LIMIT


class QuotaExceeded(ProviderError):
    error_class = ErrorClass.QUOTA_EXCEEDED


class Overloaded(ProviderError):
    error_class = ErrorClass.OVERLOADED


class ServerError(ProviderError):
    error_class = ErrorClass.SERVER_ERROR


class UpstreamTimeout(ProviderError, TimeoutError):
    error_class = ErrorClass.TIMEOUT


class UpstreamConnectionError(ProviderError, ConnectionError):
    error_class = ErrorClass.CONNECTION


class ProtocolError(ProviderError):
    error_class = ErrorClass.PROTOCOL


class AuthError(ProviderError):
    error_class = ErrorClass.AUTH


class ModelNotFound(ProviderError):
    error_class = ErrorClass.NOT_FOUND


class ContextWindowExceeded(ProviderError):
    error_class = ErrorClass.CONTEXT_WINDOW


class ContentPolicyError(ProviderError):
    error_class = ErrorClass.CONTENT_POLICY


class BadRequest(ProviderError):
    error_class = ErrorClass.BAD_REQUEST


_BY_CLASS: dict[ErrorClass, type[ProviderError]] = {
    cls.error_class: cls
    for cls in (
        RateLimited,
        QuotaExceeded,
        Overloaded,
        ServerError,
        UpstreamTimeout,
        UpstreamConnectionError,
        ProtocolError,
        AuthError,
        ModelNotFound,
        ContextWindowExceeded,
        ContentPolicyError,
        BadRequest,
    )
}


def provider_error(error_class: ErrorClass | str, message: str, **fields: Any) -> ProviderError:
    """Build the ProviderError subclass for `error_class` (drivers classify, this constructs)."""
    return _BY_CLASS[ErrorClass(error_class)](message, **fields)


class AllUpstreamsFailed(TurnoutError):
    """Every option of a route failed or was unusable.

    `attempts` is the full trail (including skipped deployments); `__cause__` is the most meaningful upstream
    error (see `turnout.router.dispatch`), also available as `.last_error`.
    """

    def __init__(self, route: str, attempts: Sequence[Attempt], last_error: ProviderError | None) -> None:
        self.route = route
        self.attempts = tuple(attempts)
        self.last_error = last_error
        tried = sum(1 for a in self.attempts if a.outcome != "skipped")
        detail = f"; last error: {last_error}" if last_error is not None else ""
        super().__init__(f"route '{route}': all upstreams failed ({tried} attempts){detail}")

    @property
    def error_class(self) -> ErrorClass | None:
        return self.last_error.error_class if self.last_error is not None else None
