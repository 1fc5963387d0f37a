"""`Router`: the library entry point. A compiled graph, its health, one HTTP session and observers.

Everything about routing lives in the routing file; the Router takes a `Config` plus a few keyword-only
runtime options (driver classes, observers, clock, sleep, rng, workers), so tests inject time and randomness and
two Routers in one process share nothing. Its state backend (the file's `state:` section, `turnout.state`) holds
rate limits and the usage ledger, and with Redis carries breaker news between processes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp

from turnout.config import Config
from turnout.drivers.base import CallContext, CredentialCheck, Driver, ModelInfo
from turnout.drivers.registry import DriverRegistry
from turnout.embeddings import EmbeddingRequest, EmbeddingResponse
from turnout.errors import InvalidRequest, RouteNotAllowed, RouteNotFound, UnknownClient
from turnout.events import BreakerClosed, BreakerEvent, BreakerOpened, Event, Observer
from turnout.redaction import Redactor
from turnout.router.clients import ClientGates, CompiledClient, clean_tag, client_of_key
from turnout.router.compile import compile_graph
from turnout.router.dispatch import Run, Runtime, dispatch_chat
from turnout.router.embed import EmbeddingRun, check_length, dispatch_embeddings
from turnout.router.graph import CompiledRoute, DispatchGraph, wrong_kind
from turnout.router.health import HealthTable
from turnout.router.streaming import ChatStream
from turnout.state import Period, StateBackend, UsageKey, UsageTotals, open_state
from turnout.telemetry import tracing_for
from turnout.types import ChatRequest, ChatResponse

if TYPE_CHECKING:
    from turnout.telemetry.otel import Tracing

CONNECTOR_LIMIT = 256  # concurrent upstream connections per Router (all hosts)
CONNECTOR_LIMIT_PER_HOST = 64
KEEPALIVE_TIMEOUT = 30.0
DNS_CACHE_TTL = 300
log = logging.getLogger("turnout.router")


class Router:
    """Routes chat requests through the compiled graph of a routing file.

    ```python
    async with Router.from_file("routes.yaml") as router:
        reply = await router.chat(model="chat", messages=[{"role": "user", "content": "hi"}])
    ```
    """

    def __init__(
        self,
        config: Config,
        *,
        drivers: Mapping[str, type[Driver]] | DriverRegistry | None = None,
        observers: Sequence[Observer] = (),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        workers: int = 1,
        tracer_provider: Any = None,
    ) -> None:
        """`workers`: how many processes on this host serve the same file (`turnout serve --workers N` passes N).
        With the local state backend each enforces `limit // workers` of every rpm/tpm limit, so together they
        stay within it; with Redis they share the limits exactly and `workers` only sizes the fallback share.

        `tracer_provider`: an OpenTelemetry TracerProvider to record spans with (turns tracing on unless the file
        says `telemetry: {enabled: false}`); without it the file's `telemetry:` section and the OTEL_* environment
        decide (`turnout.telemetry`). With tracing off nothing of OpenTelemetry is imported or called."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._registry = _registry(drivers)
        self._rng = rng or random.Random()
        self._clock = clock
        self._workers = workers
        self._graph = compile_graph(config, self._registry, rng=self._rng)
        self._state: StateBackend = open_state(
            config.state,
            source=config.source,
            workers=workers,
            clock=clock,
            emit=self._emit,
            on_breaker=self._breaker_news,
        )
        self._health = HealthTable(clock=clock, emit=self._breaker_event, state=self._state)
        self._rt = Runtime(clock=clock, sleep=sleep, rng=self._rng, health=self._health, state=self._state)
        self._tracing = tracing_for(config, tracer_provider=tracer_provider)
        if self._tracing is not None:
            observers = [*observers, self._tracing]
            self._tracing.use(config, self._graph)
            self._rt.upstream_headers = self._tracing.upstream_headers if config.telemetry.propagate_to else None
        self._rt.observe(observers)
        self._health.sync(self._graph)
        self._client_gates = ClientGates(self._state)
        self._client_gates.sync(self._graph.clients)
        self._rt.client_gates = self._client_gates
        self._rt.redactor = Redactor.for_config(config)
        self._session: aiohttp.ClientSession | None = None
        # Request ids: a random per-Router prefix plus a counter (unique, and far cheaper than uuid4 per call).
        self._id_prefix = os.urandom(6).hex()
        self._ids = itertools.count(1)

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | PathLike[str], *, env: Mapping[str, str] | None = None, **options: Any) -> Router:
        """Load, validate and compile a routing file (ConfigError lists every problem)."""
        from turnout.schema import load_file

        registry = _registry(options.get("drivers"))
        return cls(load_file(path, env=env, registry=registry), **{**options, "drivers": registry})

    @classmethod
    def from_yaml(cls, text: str, *, env: Mapping[str, str] | None = None, **options: Any) -> Router:
        """Like `from_file`, from YAML text."""
        from turnout.schema import load_text

        registry = _registry(options.get("drivers"))
        return cls(load_text(text, env=env, registry=registry), **{**options, "drivers": registry})

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Create the Router's one HTTP session (also done lazily by the first request) and open its state
        backend (a Redis backend that cannot connect degrades to local state and keeps trying by itself)."""
        self._ensure_session()
        await self._state.start()

    async def aclose(self) -> None:
        """Close the HTTP session and the state backend (a final flush of usage counters, bounded), and flush the
        spans of a tracer provider the Router built."""
        session, self._session = self._session, None
        try:
            await self._state.aclose()
        finally:
            if session is not None:
                await session.close()
            await self._rt.egress.aclose()
            if self._tracing is not None:
                await self._tracing.aclose()

    def _ensure_session(self) -> aiohttp.ClientSession:
        """The Router's session; a new one when there is none yet, it was closed, or it belongs to an event loop
        that is no longer the running one (a Router reused across `asyncio.run()` calls)."""
        session = self._session
        if session is None or session.closed or session._loop is not asyncio.get_running_loop():
            connector = aiohttp.TCPConnector(
                limit=CONNECTOR_LIMIT,
                limit_per_host=CONNECTOR_LIMIT_PER_HOST,
                keepalive_timeout=KEEPALIVE_TIMEOUT,
                ttl_dns_cache=DNS_CACHE_TTL,
                enable_cleanup_closed=True,
            )
            # Timeouts are per call (from the route's policy), so the session itself has none.
            session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
            self._session = session
        return session

    # -- state ---------------------------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self._graph.config

    @property
    def graph(self) -> DispatchGraph:
        return self._graph

    @property
    def health(self) -> HealthTable:
        return self._health

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def tracing(self) -> Tracing | None:
        """The span recorder (an Observer) when tracing is on; the sidecar wraps its handlers with it."""
        return self._tracing

    @property
    def state(self) -> StateBackend:
        """The state backend (limits, shared breakers, usage ledger) this Router asks."""
        return self._state

    async def usage(self, period: Period = "day", at: Any = None) -> dict[UsageKey, UsageTotals]:
        """Usage and spend per (route, deployment, client) for the UTC day, ISO week or month containing `at` (a
        date or "YYYY-MM-DD"; default today), or all time (`period="total"`). With Redis: every process's."""
        return await self._state.usage(period, at)

    def swap(self, config: Config) -> DispatchGraph:
        """Compile `config` and switch to it atomically; on ConfigError the current graph stays.

        Requests already running finish on the graph they started with; health of deployments whose key,
        breaker policy and limits are unchanged carries over.
        """
        graph = compile_graph(config, self._registry, rng=self._rng)
        traced_before = self._graph.config.telemetry.enabled
        self._state.reconfigure(config.state)
        self._health.sync(graph)
        self._client_gates.sync(graph.clients)
        self._graph = graph
        self._rt.redactor = Redactor.for_config(config)
        tracing = self._tracing
        if tracing is not None:
            tracing.use(config, graph)
            self._rt.upstream_headers = tracing.upstream_headers if config.telemetry.propagate_to else None
        elif config.telemetry.enabled and not traced_before:
            log.warning("telemetry was enabled in the file: restart to start tracing")
        return graph

    def add_observer(self, observer: Observer) -> None:
        self._rt.observe([*self._rt.observers, observer])

    def remove_observer(self, observer: Observer) -> None:
        observers = list(self._rt.observers)
        observers.remove(observer)
        self._rt.observe(observers)

    def _emit(self, event: Event) -> None:
        self._rt.emit(event)

    def _breaker_event(self, event: BreakerEvent) -> None:
        """A breaker changed: tell the observers and, when this process decided it, the other processes."""
        self._rt.emit(event)
        if event.origin is None and type(event) in (BreakerOpened, BreakerClosed):
            entry = self._health.entries.get(event.deployment)
            trips = entry.breaker.trips if entry is not None else 0
            state = "open" if type(event) is BreakerOpened else "closed"
            self._state.breaker_changed(event.deployment, state, event.open_for, trips)

    def _breaker_news(self, key: str, state: str, remaining: float | None, trips: int, origin: str) -> None:
        """Another process opened or closed `key`'s breaker: apply it to ours (skipped if it is not ours)."""
        entry = self._health.entries.get(key)
        if entry is None:
            return
        if state == "open":
            entry.breaker.force_open(remaining or 0.0, trips, origin)
        elif state == "closed":
            entry.breaker.force_close(origin)

    def routes(self) -> list[str]:
        return list(self._graph.routes)

    def route_of(self, model: str) -> str | None:
        """The route a client's `model` names: itself, or the route it is an alias of (None: no route)."""
        return self._graph.route_of(model)

    def _route(self, model: str, kind: str, client: str | None = None) -> CompiledRoute:
        """The route `model` names (by name or alias), which must serve `kind`; RouteNotFound (listing the routes
        `client` may use) or a 400 otherwise."""
        graph = self._graph
        route = graph.by_name.get(model)
        if route is None:
            raise RouteNotFound(model, self.routes_for(client))
        if route.kind != kind:
            raise wrong_kind(route, model)
        return route

    # -- clients -------------------------------------------------------------------------------------------
    def client_of_key(self, key: str) -> str | None:
        """The name of the declared client whose key this is (one SHA-256 and a dict lookup), or None."""
        return client_of_key(self._graph.client_keys, key)

    def routes_for(self, client: str | None) -> list[str]:
        """The routes `client` may use (every route for None, the anonymous caller)."""
        graph = self._graph
        compiled = graph.clients.get(client) if client is not None else None
        if compiled is None or compiled.routes is None:
            return list(graph.routes)
        return [name for name in graph.routes if name in compiled.routes]

    def may_use(self, client: str | None, route: str) -> bool:
        """May `client` (None: anonymous) use the route named `route`?"""
        compiled = self._graph.clients.get(client) if client is not None else None
        return compiled is None or compiled.may_use(route)

    def _client(self, client: str | None, route: CompiledRoute) -> CompiledClient | None:
        """The declared client named `client` (None: anonymous), which must be allowed `route`."""
        if client is None:
            return None
        compiled = self._graph.clients.get(client)
        if compiled is None:
            raise UnknownClient(f"No client named '{client}' is declared in the routing file's clients section.")
        if not compiled.may_use(route.name):
            raise RouteNotAllowed(compiled.name, route.name)
        return compiled

    # -- requests ------------------------------------------------------------------------------------
    def _prepare(
        self,
        request: ChatRequest | None,
        model: str | None,
        messages: Sequence[Mapping[str, Any]] | None,
        params: dict[str, Any],
        stream: bool,
        request_id: str | None,
        client: str | None = None,
        tag: str | None = None,
    ) -> Run:
        if request is None:
            if model is None or messages is None:
                raise InvalidRequest("chat() needs a ChatRequest or model= and messages=", param="model")
            if stream:
                params["stream"] = True
            request = ChatRequest.create(model=model, messages=messages, **params)
        elif model is not None or messages is not None or params:
            raise InvalidRequest("pass either a ChatRequest or keyword arguments, not both", param=None)
        if client is not None and client not in self._graph.clients:
            raise UnknownClient(f"No client named '{client}' is declared in the routing file's clients section.")
        route = self._graph.by_name.get(request.model)
        if route is None or route.kind != "chat":
            route = self._route(request.model, "chat", client)  # raises the right error
        compiled = self._client(client, route)
        if request.stream != stream:
            native = request.native
            request = ChatRequest.from_openai({**request.body, "stream": stream})
            if native is not None:
                request = replace(request, native=replace(native, body={**native.body, "stream": stream}))
        request_id = request_id or f"{self._id_prefix}-{next(self._ids)}"
        return Run(self._rt, route, request, request_id, self._ensure_session(), compiled, clean_tag(tag))

    async def chat(
        self,
        request: ChatRequest | None = None,
        /,
        *,
        model: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        request_id: str | None = None,
        client: str | None = None,
        tag: str | None = None,
        **openai_params: Any,
    ) -> ChatResponse:
        """Answer one chat request through its route.

        `client` names a declared client: its routes, rate limits and budget apply, and its spend is counted under
        its name (None: an anonymous caller, to whom only route and deployment budgets apply). `tag` labels the
        request in events (bounded to 64 characters of letters, digits and `._:/@+-`; others become `_`).

        Raises RouteNotFound, InvalidRequest, UnknownClient, RouteNotAllowed, ClientRateLimited, BudgetExhausted,
        AllUpstreamsFailed (cause: the most meaningful upstream error), or the upstream ProviderError itself when the
        route's action for it is "fail".
        """
        run = self._prepare(request, model, messages, openai_params, False, request_id, client, tag)
        return await dispatch_chat(run)

    async def chat_many(
        self,
        requests: Iterable[ChatRequest | Mapping[str, Any]],
        *,
        concurrency: int = 8,
        return_exceptions: bool = True,
        progress: Callable[[int, int], object] | None = None,
    ) -> list[ChatResponse | Exception]:
        """Answer many requests with at most `concurrency` in flight; the results come in the order of `requests`.

        Each request is a ChatRequest or a mapping of `chat()` keyword arguments (`model`, `messages`, params).
        With `return_exceptions` (the default) a failed request has its classified error in its place
        (AllUpstreamsFailed, ProviderError, RouteNotFound, InvalidRequest) and the others carry on; without it the
        first failure cancels the rest and is raised. `progress(done, total)` is called as each one completes (an
        exception it raises is logged, never stops the batch).
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        items = list(requests)
        total = len(items)
        results: list[Any] = [None] * total
        pending = iter(range(total))
        done = 0

        async def worker() -> None:
            nonlocal done
            for index in pending:  # shared by the workers: each index is taken once
                try:
                    results[index] = await self._one_of_many(items[index])
                except Exception as exc:
                    if not return_exceptions:
                        raise
                    results[index] = exc
                done += 1
                if progress is not None:
                    try:
                        progress(done, total)
                    except Exception:
                        log.exception("chat_many progress callback failed")

        workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, total))]
        try:
            finished, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION) if workers else ((), ())
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        for task in finished:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return results

    async def _one_of_many(self, item: ChatRequest | Mapping[str, Any]) -> ChatResponse:
        if isinstance(item, ChatRequest):
            return await self.chat(item)
        if isinstance(item, Mapping):
            return await self.chat(**item)
        raise InvalidRequest(f"chat_many() takes ChatRequests or mappings, not {type(item).__name__}", param=None)

    async def embed(
        self,
        request: EmbeddingRequest | None = None,
        /,
        *,
        model: str | None = None,
        input: Any = None,
        request_id: str | None = None,
        client: str | None = None,
        tag: str | None = None,
        **openai_params: Any,
    ) -> EmbeddingResponse:
        """Embed `input` (a string, a list of strings, token ids or token-id arrays) through an embeddings route.

        `openai_params` are OpenAI's (`dimensions`, `encoding_format`, `user`...). Fallback, retries, breakers,
        limits, pricing, clients and budgets are chat's (`client`, `tag` as for `chat`). Raises RouteNotFound,
        InvalidRequest (also for a chat route), UnknownClient, RouteNotAllowed, ClientRateLimited, BudgetExhausted,
        AllUpstreamsFailed, or the upstream ProviderError when the route's action for it is "fail".
        """
        if request is None:
            if model is None or input is None:
                raise InvalidRequest("embed() needs an EmbeddingRequest or model= and input=", param="model")
            request = EmbeddingRequest.create(model=model, input=input, **openai_params)
        elif model is not None or input is not None or openai_params:
            raise InvalidRequest("pass either an EmbeddingRequest or keyword arguments, not both", param=None)
        if client is not None and client not in self._graph.clients:
            raise UnknownClient(f"No client named '{client}' is declared in the routing file's clients section.")
        route = self._route(request.model, "embeddings", client)
        compiled = self._client(client, route)
        check_length(route, request)
        request_id = request_id or f"{self._id_prefix}-{next(self._ids)}"
        run = EmbeddingRun(self._rt, route, request, request_id, self._ensure_session(), compiled, clean_tag(tag))
        return await dispatch_embeddings(run)

    def stream(
        self,
        request: ChatRequest | None = None,
        /,
        *,
        model: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        request_id: str | None = None,
        client: str | None = None,
        tag: str | None = None,
        **openai_params: Any,
    ) -> ChatStream:
        """Stream one chat request; see `ChatStream`. RouteNotFound, InvalidRequest, UnknownClient and
        RouteNotAllowed are raised here, at once; ClientRateLimited and BudgetExhausted by the first iteration
        (nothing was sent). `client` and `tag` as for `chat`."""
        run = self._prepare(request, model, messages, openai_params, True, request_id, client, tag)
        return ChatStream(run)

    # -- introspection -------------------------------------------------------------------------------
    async def models(self) -> list[ModelInfo]:
        """The routes, as models (the `id` is the route name), then each alias (`extra["alias_of"]` names its
        route). `extra["kind"]` says what each serves (chat or embeddings)."""
        models: list[ModelInfo] = []
        aliases: list[ModelInfo] = []
        for name, route in self._graph.routes.items():
            window = _largest_window(route.deployments)
            models.append(ModelInfo(id=name, owned_by="turnout", context_window=window, extra={"kind": route.kind}))
            for alias in route.aliases:
                extra = {"kind": route.kind, "alias_of": name}
                aliases.append(ModelInfo(id=alias, owned_by="turnout", context_window=window, extra=extra))
        return models + aliases

    async def check_credentials(self) -> list[CredentialCheck]:
        """One cheap authenticated call per enabled provider, concurrently; disabled ones report why."""
        graph = self._graph
        session = self._ensure_session()
        policy = graph.config.defaults

        async def check(name: str, driver: Driver) -> CredentialCheck:
            ctx = CallContext(
                session=session,
                model="",
                deadline=self._clock() + policy.attempt_timeout,
                attempt_timeout=policy.attempt_timeout,
                connect_timeout=policy.connect_timeout,
                clock=self._clock,
            )
            try:
                async with asyncio.timeout(policy.attempt_timeout):
                    return await driver.check_credentials(ctx)
            except TimeoutError:
                return CredentialCheck(name, False, error_class="timeout", message="no answer in time")
            except Exception as exc:  # a driver bug must not hide the other providers' results
                return CredentialCheck(name, False, error_class="protocol", message=f"{type(exc).__name__}: {exc}")

        results = list(await asyncio.gather(*(check(n, d) for n, d in graph.drivers.items())))
        results += [CredentialCheck(n, False, message=f"disabled: {r}") for n, r in graph.disabled_providers.items()]
        return results

    def readiness(self) -> dict[str, Any]:
        """What /readyz reports: ready when every route has at least one deployment whose breaker admits calls."""
        graph = self._graph
        entries = self._health.entries
        routes: dict[str, dict[str, int]] = {}
        for name, route in graph.routes.items():
            deployments = route.deployments
            usable = sum(1 for d in deployments if entries[d.key].breaker.state != "open")
            routes[name] = {"usable": usable, "total": len(deployments)}
        return {
            "ready": bool(routes) and all(r["usable"] > 0 for r in routes.values()),
            "routes": routes,
            "disabled_providers": dict(graph.disabled_providers),
            "open_breakers": self._health.open_breakers(),
            **self._state.status(),  # "state": "ok" | "degraded" (still ready: requests go on locally), ...
        }

    def __repr__(self) -> str:
        return f"<Router routes={len(self._graph.routes)} deployments={len(self._graph.deployments)}>"


def _registry(drivers: Mapping[str, type[Driver]] | DriverRegistry | None) -> DriverRegistry:
    """Embedder-supplied driver classes win over built-ins and entry points (for loading and compiling alike)."""
    return drivers if isinstance(drivers, DriverRegistry) else DriverRegistry(drivers)


def _largest_window(deployments: Sequence[Any]) -> int | None:
    windows = [d.context_window for d in deployments if d.context_window is not None]
    return max(windows) if windows else None
