"""Every failure the sidecar answers with, in OpenAI's error shape and with the right HTTP status.

`{"error": {"message", "type", "param", "code"}}` is what the `openai` SDK parses into its exception types
(BadRequestError for 400, AuthenticationError 401, NotFoundError 404, RateLimitError 429, InternalServerError
for 5xx...). `failure()` maps turnout's exception tree onto it:

| exception                          | status                                                          |
|------------------------------------|-----------------------------------------------------------------|
| InvalidRequest                     | 400, `param` names the field                                    |
| RouteNotFound                      | 404 `model_not_found`, the message lists the caller's routes     |
| UnknownClient                      | 401 `invalid_api_key`                                           |
| RouteNotAllowed                    | 403 `permission_denied` (names only the route asked for)        |
| ClientRateLimited                  | 429 `rate_limit_exceeded`, Retry-After                          |
| BudgetExhausted                    | 429 `insufficient_quota` (type too, as OpenAI's), Retry-After   |
|                                    | until the reset; `budget`, `period`, `resets_at` in the error   |
| AllUpstreamsFailed, nothing tried  | 503 `no_upstream_available`, with the attempt trail             |
| AllUpstreamsFailed / ProviderError | `HTTP_STATUS[error_class]`; 429 (with Retry-After) only when    |
|                                    | every attempt was rate limited, else 503                        |

`scrub` (the sidecar passes `Redactor.for_clients`) cleans every message and attempt detail a client sees:
clients learn which deployment failed and why, never an upstream's URL, address or port, nor a secret.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from turnout.errors import (
    HTTP_STATUS,
    AllUpstreamsFailed,
    BudgetExhausted,
    ClientRateLimited,
    ErrorClass,
    InvalidRequest,
    ProviderError,
    RequestRefused,
    RouteNotAllowed,
    RouteNotFound,
    UnknownClient,
)
from turnout.types import Attempt

_RATE_CLASSES = frozenset({ErrorClass.RATE_LIMIT.value, ErrorClass.QUOTA_EXCEEDED.value})

# OpenAI's `type` for each status family; `code` carries the specific reason.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    408: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}

_CODE_BY_CLASS = {
    ErrorClass.RATE_LIMIT: "rate_limit_exceeded",
    ErrorClass.QUOTA_EXCEEDED: "insufficient_quota",
    ErrorClass.OVERLOADED: "overloaded",
    ErrorClass.SERVER_ERROR: "upstream_error",
    ErrorClass.TIMEOUT: "upstream_timeout",
    ErrorClass.CONNECTION: "upstream_connection_error",
    ErrorClass.PROTOCOL: "upstream_protocol_error",
    ErrorClass.AUTH: "upstream_auth_error",
    ErrorClass.NOT_FOUND: "upstream_model_not_found",
    ErrorClass.CONTEXT_WINDOW: "context_length_exceeded",
    ErrorClass.CONTENT_POLICY: "content_policy_violation",
    ErrorClass.BAD_REQUEST: "invalid_request",
}


@dataclass(frozen=True, slots=True)
class Failure:
    """An error answer ready to send: status, OpenAI error object, extra headers, and its class for logs."""

    status: int
    error: Mapping[str, Any]
    headers: Mapping[str, str]
    error_class: str | None = None
    attempts: tuple[Attempt, ...] = ()

    def body(self) -> bytes:
        return json.dumps({"error": self.error}, separators=(",", ":"), default=str).encode()

    def event(self) -> bytes:
        """The same error as a final SSE event: the `openai` SDK raises APIError when it reads it."""
        return b"data: " + self.body() + b"\n\n"


def error_object(
    message: str, *, status: int, param: str | None = None, code: str | None = None, **extra: Any
) -> dict[str, Any]:
    kind = _TYPE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"message": message, "type": kind, "param": param, "code": code, **extra}


def simple(status: int, message: str, *, code: str, param: str | None = None) -> Failure:
    """A sidecar-level refusal (auth, size, content type, routing) with no upstream involved."""
    return Failure(status, error_object(message, status=status, param=param, code=code), {})


def invalid_request(exc: InvalidRequest) -> Failure:
    return simple(400, exc.message, code=exc.code, param=exc.param)


def route_not_found(exc: RouteNotFound) -> Failure:
    return simple(404, str(exc), code="model_not_found", param="model")


def refused(exc: RequestRefused) -> Failure:
    """A request refused before dispatch: who is asking, or what they may still spend."""
    if isinstance(exc, RouteNotAllowed):
        return simple(403, exc.message, code="permission_denied", param="model")
    if isinstance(exc, ClientRateLimited):
        fail = simple(429, exc.message, code="rate_limit_exceeded")
        wait = max(1, math.ceil(exc.retry_after or 1))
        return Failure(429, fail.error, {"Retry-After": str(wait)}, "client_rate_limited")
    if isinstance(exc, BudgetExhausted):
        reset = exc.resets_at.strftime("%Y-%m-%dT%H:%M:%SZ") if exc.resets_at is not None else None
        error = error_object(
            exc.message, status=429, code="insufficient_quota", budget=exc.budget, period=exc.period, resets_at=reset
        )
        error["type"] = "insufficient_quota"  # what OpenAI sends for a spent quota (SDKs key on the code)
        headers = {}
        wait = exc.retry_after(datetime.now(UTC))
        if wait is not None:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return Failure(429, error, headers, "budget_exhausted")
    if isinstance(exc, UnknownClient):
        return simple(401, exc.message, code="invalid_api_key")
    return simple(403, exc.message, code="permission_denied")


def host_not_allowed() -> Failure:
    return simple(
        403,
        "This Host is not served: with client authentication off the sidecar answers only loopback names and "
        "server.allowed_hosts (protection against DNS rebinding). Add the name to server.allowed_hosts or declare "
        "clients (with keys).",
        code="host_not_allowed",
    )


def cross_site() -> Failure:
    return simple(
        403, "Admin endpoints refuse cross-site requests (an Origin that is not this server).", code="cross_site"
    )


def too_large(size: int | None, limit: int) -> Failure:
    got = f" ({size} bytes)" if size is not None else ""
    return simple(
        413,
        f"Request body too large{got}: the limit is {limit} bytes (server.max_request_size).",
        code="request_too_large",
    )


def overloaded(limit: int) -> Failure:
    """Refused at once because this process already serves `server.max_in_flight` requests."""
    message = f"The turnout sidecar is at capacity ({limit} requests in flight, server.max_in_flight); retry shortly."
    fail = simple(503, message, code="server_overloaded")
    return Failure(fail.status, fail.error, {"Retry-After": "1"})


def client_timeout(seconds: float) -> Failure:
    """The client did not send its whole body within `server.client_timeout`; the connection is closed after."""
    message = f"The request body did not arrive within {seconds:g}s (server.client_timeout)."
    return simple(408, message, code="request_timeout")


Scrub = Callable[[str], str]


def _unchanged(text: str) -> str:
    return text


def failure(exc: BaseException, scrub: Scrub = _unchanged) -> Failure:
    """Map anything the router raises to the answer the client gets. Unknown exceptions become a bare 500."""
    if isinstance(exc, InvalidRequest):
        return invalid_request(exc)
    if isinstance(exc, RouteNotFound):
        return route_not_found(exc)
    if isinstance(exc, RequestRefused):
        return refused(exc)
    if isinstance(exc, AllUpstreamsFailed):
        return _all_failed(exc, scrub)
    if isinstance(exc, ProviderError):  # failed at once ("fail" action): the router attaches the trail so far
        return _provider_failed(exc, getattr(exc, "attempts", ()), str(exc), scrub)
    return simple(500, "Internal error in the turnout sidecar; see its log.", code="internal_error")


def _all_failed(exc: AllUpstreamsFailed, scrub: Scrub) -> Failure:
    tried = [a for a in exc.attempts if a.outcome == "error"]
    if exc.last_error is None or not tried:
        message = scrub(f"No usable deployment for route '{exc.route}': {_skips(exc.attempts)}")
        error = error_object(message, status=503, code="no_upstream_available", attempts=_trail(exc.attempts, scrub))
        return Failure(503, error, {}, None, exc.attempts)
    everyone_limited = all(a.error_class in _RATE_CLASSES for a in tried)
    return _provider_failed(exc.last_error, exc.attempts, str(exc), scrub, rate_limited_everywhere=everyone_limited)


def _provider_failed(
    err: ProviderError,
    attempts: Sequence[Attempt],
    message: str,
    scrub: Scrub,
    *,
    rate_limited_everywhere: bool = True,
) -> Failure:
    cls = err.error_class
    status = HTTP_STATUS[cls]
    headers: dict[str, str] = {}
    if status == 429 and not rate_limited_everywhere:
        status = 503  # some options failed otherwise: the route is unavailable, not merely throttled
    if status == 429:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after or 1)))
    if cls in (ErrorClass.CONTENT_POLICY, ErrorClass.BAD_REQUEST, ErrorClass.CONTEXT_WINDOW):
        message = err.message  # the provider's own reason is what the client must see
    param = "messages" if cls is ErrorClass.CONTEXT_WINDOW else None
    code = err.code if status == 400 and err.code else _CODE_BY_CLASS[cls]
    extra = {"attempts": _trail(attempts, scrub)} if attempts else {}
    error = error_object(scrub(message), status=status, param=param, code=code, error_class=cls.value, **extra)
    return Failure(status, error, headers, cls.value, tuple(attempts))


def _trail(attempts: Sequence[Attempt], scrub: Scrub) -> list[dict[str, Any]]:
    trail = [a.to_dict() for a in attempts]
    for entry in trail:
        if entry["detail"]:
            entry["detail"] = scrub(entry["detail"])
    return trail


def _skips(attempts: Sequence[Attempt]) -> str:
    if not attempts:
        return "the route has no enabled deployment."
    return "; ".join(f"{a.deployment} {a.detail or a.outcome}" for a in attempts)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
