"""The sidecar's aiohttp application: endpoints, per-app state, and the runner that serves it.

```
POST /v1/chat/completions   chat, OpenAI's format (JSON or SSE)    auth
POST /v1/messages           chat, Anthropic's Messages format      auth (x-api-key or Bearer)
POST /v1/messages/count_tokens  an input token estimate            auth
POST /v1/embeddings         embeddings, OpenAI's format            auth
POST /v1/responses          chat, OpenAI's Responses API           auth
GET|DELETE /v1/responses/{id}  a stored response                   auth
GET  /v1/models[/{id}]      the routes and their aliases           auth
GET  /healthz               process alive                          open
GET  /readyz                graph loaded, every route usable       open: {"ready", "status", "draining"} only
                                                                   (503 when not ready or draining); the detail
                                                                   with auth
GET  /metrics               Prometheus text                        admin (unless server.protect_metrics: false)
POST /admin/reload          reload the routing file now            admin, and never cross-site
GET  /admin/config          what is served, as `turnout plan` data admin, never cross-site (secrets only in keyed
                                                                   digests)
GET  /admin/spend           spend per client/route/deployment and  admin, never cross-site
                            each budget's standing (`turnout spend`)
GET  /status                the live status page (HTML; `/` redirects) admin or a log-in session, never cross-site
GET  /admin/status          the status page's JSON                 admin or a log-in session, never cross-site
POST /status/login, /logout an admin key once -> session cookie    never cross-site (`turnout.server.status`)
```

"auth" means a client key when the file declares clients (the request then runs as that client); with none, a
loopback Host or one in `server.allowed_hosts` (DNS rebinding, see `hosts.py`). "admin" is the admin key rule:
`server.admin_keys`, never a client key (`turnout.server.callers`, which also says what holds without admin keys).

The chat endpoints are ingresses (`turnout.server.ingress`) on one shared path (`turnout.server.handler`).
`Sidecar` holds what the handlers share: the Router, metrics, the access log, the optional Reloader, the
client-timeout guard and the `server:` settings of the *current* config (swapped on reload). No middleware:
unknown paths and methods are answered by a catch-all route, so the chat hot paths pay for nothing they do not
use. Once `draining` is set (see `drain.py`), every answer closes its connection.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from aiohttp import web

from turnout.config import Config
from turnout.errors import RouteNotAllowed, RouteNotFound
from turnout.redaction import Redactor
from turnout.server import errors
from turnout.server.access_log import AccessLog
from turnout.server.admin_spend import AdminSpend
from turnout.server.auth import ApiKeys
from turnout.server.callers import UNKNOWN_KEY_MESSAGE, Callers, presented_key
from turnout.server.guard import ClientGuard, GuardedRunner
from turnout.server.handler import IngressHandler
from turnout.server.hosts import HostGuard
from turnout.server.ingress.anthropic_messages import AnthropicMessages, CountTokens
from turnout.server.ingress.openai_chat import OpenAIChat
from turnout.server.ingress.openai_embeddings import EmbeddingsHandler
from turnout.server.ingress.openai_responses import ResponsesHandler
from turnout.server.ingress.responses_state import Keeper
from turnout.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from turnout.server.metrics import Metrics
from turnout.server.reload import Reloader, default_loader
from turnout.server.status import STATUS_PATHS, StatusBoard
from turnout.types import Attempt, Splice, Usage

ALLOWED = {  # path -> the method it accepts (for 405 answers)
    "/v1/chat/completions": "POST",
    "/v1/messages": "POST",
    "/v1/messages/count_tokens": "POST",
    "/v1/embeddings": "POST",
    "/v1/responses": "POST",
    "/admin/reload": "POST",
    "/admin/config": "GET",
    "/admin/spend": "GET",
    "/v1/models": "GET",
    "/healthz": "GET",
    "/readyz": "GET",
    "/metrics": "GET",
    **STATUS_PATHS,
}
OWN_REFUSALS = frozenset({"budget_exhausted", "client_rate_limited"})  # turnout's own text: logged as is
NO_ROUTE = "(none)"  # metrics label for requests that named no route: keeps label cardinality bounded
JSON_HEADERS = {"Content-Type": "application/json"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Settings:
    """The `server:` section values that can change on reload (host, port and workers need a restart), and
    whether the file declares clients (then every model request needs a client key)."""

    clients_on: bool
    admin_keys: ApiKeys
    hosts: HostGuard
    max_request_bytes: int
    log_content: bool
    protect_metrics: bool
    drain_timeout: float
    max_in_flight: int
    client_timeout: float

    @classmethod
    def of(cls, config: Config) -> Settings:
        spec = config.server
        clients_on = bool(config.clients)
        admin = ApiKeys(spec.admin_keys)
        protect = (clients_on or admin.enabled) if spec.protect_metrics is None else spec.protect_metrics
        hosts = HostGuard(spec.allowed_hosts, auth_on=clients_on)
        return cls(
            clients_on,
            admin,
            hosts,
            spec.max_request_bytes,
            spec.log_content,
            protect,
            spec.drain_timeout,
            spec.max_in_flight,
            spec.client_timeout,
        )


class Sidecar:
    """Shared state of one app and the small endpoints; the chat endpoints are `IngressHandler`s."""

    def __init__(
        self,
        router: Any,
        *,
        config_path: str | None = None,
        env: Mapping[str, str] | None = None,
        access_log: TextIO | None = None,
        watch: bool | None = None,
        watch_interval: float = 1.0,
        owns_router: bool = True,
        logger: logging.Logger | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.router = router
        self.log = logger or logging.getLogger("turnout.server")
        self.metrics = metrics if metrics is not None else Metrics()
        self.access = AccessLog(access_log)
        self.settings = Settings.of(router.config)
        self.callers = Callers(self)
        self.redactor = Redactor.for_config(router.config)  # what clients must not see in error answers
        self.in_flight = 0  # chat requests in progress (body reading included); mirrored by the in-flight gauge
        self.draining = False
        self.owns_router = owns_router
        self.started_at = int(time.time())
        self.guard = ClientGuard(self.settings.client_timeout, on_close=lambda: self.metrics.reject("header_timeout"))
        self.reloader: Reloader | None = None
        if config_path is not None:
            self.reloader = Reloader(
                router,
                config_path,
                loader=default_loader(env),
                on_config=self._config_changed,
                on_result=self.metrics.reload_result,
                interval=watch_interval,
                timeout=router.config.server.reload_timeout,
            )
        self.watch = (router.config.server.watch if watch is None else watch) and self.reloader is not None

    # -- shared bookkeeping --------------------------------------------------------------------------------
    def _config_changed(self, config: Config) -> None:
        self.settings = Settings.of(config)
        self.guard.timeout = self.settings.client_timeout
        self.redactor = Redactor.for_config(config)
        if self.reloader is not None:
            self.reloader.timeout = config.server.reload_timeout
        self.metrics.sync_breakers(self.router.health)  # reset deployments have fresh breakers: no transition event

    def finished(
        self,
        request: web.Request,
        status: int,
        *,
        route: str | None,
        started: float,
        served_by: str | None = None,
        attempts: tuple[Attempt, ...] = (),
        usage: Usage | None = None,
        cost: float | None = None,
        ttft: float | None = None,
        stream: bool = False,
        error_class: str | None = None,
        error: str | None = None,
        content: Mapping[str, Any] | None = None,
        splices: tuple[Splice, ...] = (),
        ingress: str | None = None,
        client: str | None = None,
        tag: str | None = None,
        unknown_key: str | None = None,
    ) -> None:
        """Count and log one answered request (`ingress`: the client wire format, see `server.ingress`). `route`
        may be what the client sent: an alias is reported as its route, a name that is no route as none. `client`
        is the declared client's name, `tag` its x-turnout-tag, `unknown_key` the digest prefix of a key that matched
        no client.

        Upstream text (the error message of a failure with an error class, attempt details quoting a provider)
        may quote the request, so it is logged only with `server.log_content`; the class, statuses and
        deployments always are.
        """
        name = self.router.graph.route_of(route) if route is not None else None
        label = name if name is not None else NO_ROUTE
        self.metrics.request_done(label, status)
        if self.access.enabled:
            with_text = self.settings.log_content
            if error_class is not None and not with_text and error_class not in OWN_REFUSALS:
                error = None
            self.access.write(
                method=request.method,
                path=request.path,
                status=status,
                route=name,
                served_by=served_by,
                stream=stream,
                attempts=attempts,
                latency=time.perf_counter() - started,
                ttft=ttft,
                usage=usage,
                cost_usd=cost,
                error_class=error_class,
                error=error,
                content=content,
                splices=splices,
                upstream_text=with_text,
                ingress=ingress,
                client=client,
                tag=tag,
                unknown_key=unknown_key,
            )

    def identify(self, request: web.Request, unauthorized: str = UNKNOWN_KEY_MESSAGE) -> str | errors.Failure | None:
        """The declared client making a model request (None: anonymous), or its 401/403 (see `callers.py`)."""
        return self.callers.client(request, unauthorized)

    @property
    def admin_keys(self) -> ApiKeys:
        """The keys that open the admin endpoints (`server.admin_keys`)."""
        return self.settings.admin_keys

    def is_admin(self, request: web.Request) -> bool:
        """The admin key rule: may this request use the admin endpoints? (See `turnout.server.callers`.)"""
        return self.callers.is_admin(request)

    def admin_refusal(self, request: web.Request) -> web.Response | None:
        """The answer that refuses a request that is not an admin's (or is cross-site), or None to serve it. Every
        admin endpoint asks this one function."""
        fail = self.callers.admin_refusal(request)
        return _failure(fail) if fail is not None else None

    # -- endpoints -----------------------------------------------------------------------------------------
    async def models(self, request: web.Request) -> web.Response:
        """The routes the caller may use (a client sees only its own), then their aliases."""
        client = self.identify(request)
        if isinstance(client, errors.Failure):
            return _failure(client)
        routes = self.router.graph.routes
        allowed = self.router.routes_for(client)
        data = [self._model(name) for name in allowed]
        data += [self._model(alias) for name in allowed for alias in routes[name].aliases]
        return web.Response(body=errors.json_bytes({"object": "list", "data": data}), headers=JSON_HEADERS)

    async def model(self, request: web.Request) -> web.Response:
        client = self.identify(request)
        if isinstance(client, errors.Failure):
            return _failure(client)
        name = request.match_info["name"]
        route = self.router.graph.by_name.get(name)
        if route is None:
            return _failure(errors.route_not_found(RouteNotFound(name, self.router.routes_for(client))))
        if not self.router.may_use(client, route.name):
            return _failure(errors.failure(RouteNotAllowed(client or "", name)))
        return web.Response(body=errors.json_bytes(self._model(name)), headers=JSON_HEADERS)

    def _model(self, name: str) -> dict[str, Any]:
        """One `/v1/models` entry: a route (with its aliases), or an alias (`alias_of` names its route). `kind` says
        which endpoint serves it (chat or embeddings)."""
        route = self.router.graph.by_name[name]
        entry: dict[str, Any] = {"id": name, "object": "model", "created": self.started_at, "owned_by": "turnout"}
        entry["kind"] = route.kind
        if name != route.name:
            entry["alias_of"] = route.name
            return entry
        if route.aliases:
            entry["aliases"] = list(route.aliases)
        if route.description:
            entry["description"] = route.description
        return entry

    async def healthz(self, request: web.Request) -> web.Response:
        return self._closing_if_draining(web.Response(body=b'{"status":"ok"}', headers=JSON_HEADERS))

    async def readyz(self, request: web.Request) -> web.Response:
        """200 when every route has a usable deployment; 503 when not, and from the first moment of a drain.

        Anyone gets `{"ready", "status", "draining"}` (probes); an admin (`is_admin`) also the detail: routes,
        disabled providers, open breakers, config path, reload errors and requests in flight."""
        readiness = self.router.readiness()
        draining = self.draining
        ready = bool(readiness.get("ready")) and not draining
        detail: dict[str, Any] = {}
        if self.is_admin(request):
            detail.update(readiness)
            if self.reloader is not None:
                detail.update(self.reloader.status())
            else:
                detail["last_reload_error"] = None
            detail["in_flight"] = self.in_flight
        detail["ready"] = ready
        detail["status"] = "draining" if draining else "ready" if ready else "not_ready"
        detail["draining"] = draining
        response = web.Response(status=200 if ready else 503, body=errors.json_bytes(detail), headers=JSON_HEADERS)
        return self._closing_if_draining(response)

    def _closing_if_draining(self, response: web.StreamResponse) -> web.StreamResponse:
        """During a drain, ask the client to close the connection after this answer (and close it ourselves)."""
        if self.draining:
            response.force_close()
        return response

    async def metrics_endpoint(self, request: web.Request) -> web.StreamResponse:
        settings = self.settings
        if settings.protect_metrics or not (settings.clients_on or settings.admin_keys.enabled):
            refused = self.admin_refusal(request)  # no keys at all: still only loopback/allowed Hosts
            if refused is not None:
                return refused
        response = web.Response(body=self.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})
        return self._closing_if_draining(response)

    async def admin_reload(self, request: web.Request) -> web.Response:
        refused = self.admin_refusal(request)
        if refused is not None:
            return refused
        if self.reloader is None:
            return _failure(
                errors.simple(409, "This server was not started from a file; nothing to reload.", code="no_config_file")
            )
        ok = await self.reloader.reload("POST /admin/reload")
        status = self.reloader.status()
        status["ok"] = ok
        status["routes"] = self.router.routes()
        return web.Response(status=200 if ok else 422, body=errors.json_bytes(status), headers=JSON_HEADERS)

    async def admin_config(self, request: web.Request) -> web.Response:
        """The served file as a snapshot (`turnout.ops.snapshot`): what `turnout plan NEW` compares NEW with."""
        refused = self.admin_refusal(request)
        if refused is not None:
            return refused
        from turnout.ops.snapshot import snapshot

        key = presented_key(request.headers)  # the admin key keys the digests: only its holder can check them
        body = errors.json_bytes({"snapshot": snapshot(self.router.config, key=key)})
        return web.Response(body=body, headers={**JSON_HEADERS, "Cache-Control": "no-store"})

    async def fallback(self, request: web.Request) -> web.Response:
        """Unknown path (404) or a known path with the wrong method (405), in OpenAI's shape."""
        allowed = ALLOWED.get(request.path) or _allowed_under(request.path)
        if allowed is not None:
            fail = errors.simple(
                405, f"Method {request.method} is not allowed on {request.path}.", code="method_not_allowed"
            )
            response = _failure(fail)
            response.headers["Allow"] = allowed
            return response
        return _failure(errors.simple(404, f"Unknown endpoint {request.method} {request.path}.", code="unknown_url"))

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def on_startup(self, app: web.Application) -> None:
        self.router.add_observer(self.metrics)
        self.metrics.sync_breakers(self.router.health)
        if self.owns_router:
            await self.router.start()
        if self.watch and self.reloader is not None:
            self.reloader.start_watching()
        self.guard.start()

    async def on_shutdown(self, app: web.Application) -> None:
        self.draining = True

    async def on_cleanup(self, app: web.Application) -> None:
        await self.guard.stop()
        if self.reloader is not None:
            await self.reloader.stop()
        self.router.remove_observer(self.metrics)
        if self.owns_router:
            await self.router.aclose()
        self.access.flush()


SIDECAR_KEY = web.AppKey("sidecar", Sidecar)


def _allowed_under(path: str) -> str | None:
    """The methods a path with an id accepts (for 405 answers)."""
    if path.startswith("/v1/models/"):
        return "GET"
    if path.startswith("/v1/responses/"):
        return "GET, DELETE"
    return None


def _failure(fail: errors.Failure) -> web.Response:
    return web.Response(status=fail.status, body=fail.body(), headers={**JSON_HEADERS, **fail.headers})


def create_app(
    router: Any,
    *,
    config_path: str | None = None,
    env: Mapping[str, str] | None = None,
    access_log: TextIO | None = None,
    watch: bool | None = None,
    watch_interval: float = 1.0,
    owns_router: bool = True,
    metrics: Metrics | None = None,
) -> web.Application:
    """Build the sidecar app around `router`. With `config_path` it can reload (watch, SIGHUP, /admin/reload).

    The app starts the Router's session on startup and closes it on cleanup unless `owns_router=False`.
    `access_log` is a text stream for the JSON access lines (None: no access log). `metrics`: where the
    counters live (default: this app only; `turnout serve --workers` passes a shared store).
    """
    sidecar = Sidecar(
        router,
        config_path=config_path,
        env=env,
        access_log=access_log,
        watch=watch,
        watch_interval=watch_interval,
        owns_router=owns_router,
        metrics=metrics,
    )
    # The chat endpoint reads its body itself against the current server.max_request_size (a reload may change it);
    # aiohttp's cap is set to the same value for anything that would read a body the generic way.
    app = web.Application(client_max_size=sidecar.settings.max_request_bytes)
    app[SIDECAR_KEY] = sidecar
    tracing = getattr(router, "tracing", None)  # a SERVER span per request when the Router traces
    app.router.add_post("/v1/chat/completions", traced(IngressHandler(sidecar, OpenAIChat()).__call__, tracing))
    app.router.add_post("/v1/messages", traced(IngressHandler(sidecar, AnthropicMessages()).__call__, tracing))
    app.router.add_post("/v1/messages/count_tokens", CountTokens(sidecar).__call__)
    app.router.add_post("/v1/embeddings", traced(EmbeddingsHandler(sidecar).__call__, tracing))
    keeper = Keeper(sidecar)
    app.router.add_post("/v1/responses", traced(ResponsesHandler(sidecar, keeper).__call__, tracing))
    app.router.add_get("/v1/responses/{response_id}", keeper.retrieve, allow_head=False)
    app.router.add_delete("/v1/responses/{response_id}", keeper.delete)
    app.router.add_get("/v1/models", sidecar.models, allow_head=False)
    app.router.add_get("/v1/models/{name}", sidecar.model, allow_head=False)
    app.router.add_get("/healthz", sidecar.healthz)
    app.router.add_get("/readyz", sidecar.readyz)
    app.router.add_get("/metrics", sidecar.metrics_endpoint)
    app.router.add_post("/admin/reload", sidecar.admin_reload)
    app.router.add_get("/admin/config", sidecar.admin_config, allow_head=False)
    app.router.add_get("/admin/spend", AdminSpend(sidecar).__call__, allow_head=False)
    StatusBoard(sidecar).register(app)  # GET / (redirect), /status, /admin/status; POST /status/login, /logout
    app.router.add_route("*", "/{tail:.*}", sidecar.fallback)
    app.on_startup.append(sidecar.on_startup)
    app.on_shutdown.append(sidecar.on_shutdown)
    app.on_cleanup.append(sidecar.on_cleanup)
    return app


def traced(handler: Handler, tracing: Any) -> Handler:
    """`handler` inside a SERVER span per request when the Router traces (`turnout.telemetry`); else `handler`
    itself, so with tracing off the request path is exactly what it was."""
    return handler if tracing is None else tracing.server(handler)


MIN_SHUTDOWN_TIMEOUT = 0.001  # aiohttp reads a shutdown timeout of 0 as "no limit"


def make_runner(app: web.Application, *, drain_timeout: float | None = None) -> web.AppRunner:
    """A runner that cancels a handler when its client disconnects (so the upstream call is cancelled at once),
    closes connections that do not send their request within `server.client_timeout`, and lets in-flight
    requests finish for up to `drain_timeout` seconds on `cleanup()` (0: none). `turnout serve` drains with
    `drain.drain()` instead, which also refuses new connections first and honours the cap exactly."""
    sidecar = app[SIDECAR_KEY]
    timeout = sidecar.settings.drain_timeout if drain_timeout is None else drain_timeout
    return GuardedRunner(
        app,
        guard=sidecar.guard,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=max(MIN_SHUTDOWN_TIMEOUT, timeout),
    )


def default_access_stream() -> TextIO:
    return sys.stdout
