"""Compile a `Config` into an immutable `DispatchGraph` (pure: no I/O).

One driver instance per enabled provider, shared by its deployments. Each route's chain entry becomes a step:
a pool keeps its strategy and members, a bare model becomes a one-member priority pool. Deployments of
disabled providers, and members lacking a capability the route `requires`, are left out of the steps but
listed in `CompiledRoute.excluded` with the reason, so explain and /readyz can show why.

The loader reports kind and dimension mistakes with their locations (`turnout.schema.kinds`); compiling checks the
same rules again, so a `Config` built in code can never chain an embeddings fallback of another vector length.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from turnout.config import CAPABILITIES, OPT_IN_CAPABILITIES, Config, ModelSpec, ProviderSpec, RouteSpec
from turnout.drivers._http import validate_options
from turnout.drivers.base import Driver, honoured, offers_embeddings, unhonoured
from turnout.drivers.registry import DriverRegistry, UnknownDriver
from turnout.errors import ConfigError, Problem
from turnout.router.budgets import BudgetRule
from turnout.router.clients import compile_clients
from turnout.router.graph import CompiledRoute, Deployment, DispatchGraph, Excluded, PlannedMember, PlannedStep, Step
from turnout.router.pricing import TokenPrice
from turnout.router.select import make_strategy
from turnout.state.meter import deployment_scope, route_scope

_ASSUMED_CAPABILITIES = frozenset(CAPABILITIES) - OPT_IN_CAPABILITIES  # a model that declares nothing


def compile_graph(
    config: Config,
    drivers: DriverRegistry | Mapping[str, type[Driver]] | None = None,
    *,
    rng: random.Random | None = None,
) -> DispatchGraph:
    """Build the dispatch graph. Raises ConfigError (every problem at once) when a driver cannot be built."""
    registry = drivers if isinstance(drivers, DriverRegistry) else DriverRegistry(drivers)
    rng = rng or random.Random()
    problems: list[Problem] = []
    built: dict[str, Driver] = {}
    disabled: dict[str, str] = {}
    for name, spec in config.providers.items():
        if not spec.enabled:
            disabled[name] = spec.disabled_reason or "disabled"
            continue
        driver = _build_driver(config, spec, registry, problems)
        if driver is not None:
            built[name] = driver
    if problems:
        raise ConfigError(problems)

    deployments: dict[str, Deployment] = {}
    for model in config.models.values():
        driver = built.get(model.provider)
        if driver is not None and _model_fits(config, model, driver, problems):
            deployment = _deployment(config, model, driver)
            deployments[deployment.key] = deployment
    if problems:
        raise ConfigError(problems)

    routes = {name: _route(config, spec, deployments, disabled, rng) for name, spec in config.routes.items()}
    for route in routes.values():
        _check_kind(config, route, problems)
    by_name = _by_name(config, routes, problems)
    if problems:
        raise ConfigError(problems)
    clients, client_keys = compile_clients(config, routes)
    return DispatchGraph(
        config=config,
        routes=MappingProxyType(routes),
        deployments=MappingProxyType(deployments),
        drivers=MappingProxyType(built),
        disabled_providers=MappingProxyType(disabled),
        by_name=MappingProxyType(by_name),
        clients=clients,
        client_keys=client_keys,
    )


def _by_name(config: Config, routes: dict[str, CompiledRoute], problems: list[Problem]) -> dict[str, CompiledRoute]:
    """Every name a client may send: each route's name, then its aliases (unique; never another route's name)."""
    by_name = dict(routes)
    for route in routes.values():
        for alias in route.aliases:
            owner = by_name.get(alias)
            if owner is not None and owner is not route:
                where = f"routes.{route.name}.aliases"
                problems.append(Problem(config.source, 0, 0, where, f"'{alias}' already names route '{owner.name}'"))
            by_name[alias] = route
    return by_name


def _check_kind(config: Config, route: CompiledRoute, problems: list[Problem]) -> None:
    """Every member of the route's kind; an embeddings route's members all of one vector length."""
    where = f"routes.{route.name}.chain"
    lengths: set[int | None] = set()
    for step in route.plan:
        for member in step.members:
            model = config.models[member.model]
            if model.kind != route.kind:
                message = f"'{model.key}' is a {model.kind} model, but the route serves {route.kind}"
                problems.append(Problem(config.source, 0, 0, where, message))
            elif route.kind == "embeddings":
                lengths.add(model.dimensions)
    if len(lengths) > 1 or None in lengths:
        shown = ", ".join(str(n) for n in sorted(n for n in lengths if n is not None)) or "none"
        message = f"an embeddings route's models must all declare the same dimensions (got {shown})"
        problems.append(Problem(config.source, 0, 0, where, message))


def _build_driver(
    config: Config, spec: ProviderSpec, registry: DriverRegistry, problems: list[Problem]
) -> Driver | None:
    """Resolve and construct one provider's driver; every failure becomes a Problem naming the provider."""
    where = f"providers.{spec.name}"
    try:
        cls = registry.resolve(spec.driver)
    except UnknownDriver as exc:
        problems.append(Problem(config.source, 0, 0, f"{where}.driver", str(exc)))
        return None
    except Exception as exc:  # a plug-in that fails to import is a configuration problem, not a crash
        problems.append(Problem(config.source, 0, 0, f"{where}.driver", f"cannot load driver '{spec.driver}': {exc}"))
        return None
    try:
        return cls(spec)
    except ConfigError as exc:
        problems.extend(exc.problems)
    except Exception as exc:  # bad options: drivers validate them in their constructor
        problems.append(Problem(config.source, 0, 0, where, f"driver '{spec.driver}' rejected its options: {exc}"))
    return None


def _model_fits(config: Config, model: ModelSpec, driver: Driver, problems: list[Problem]) -> bool:
    """The model's options suit its driver and its `supports` asks only what the driver honours (a file's loader
    checks both with locations; this catches a Config built in code)."""
    where = f"models.{model.key}"
    if model.kind == "embeddings" and not offers_embeddings(driver):
        problems.append(
            Problem(config.source, 0, 0, f"{where}.kind", f"driver '{driver.name}' cannot serve embeddings")
        )
        return False
    schema = getattr(driver, "model_options_schema", None)
    if schema is not None and model.options:
        try:
            validate_options(driver.name, model.provider, schema, model.options)
        except ValueError as exc:
            problems.append(Problem(config.source, 0, 0, f"{where}.options", str(exc)))
            return False
    if model.supports is None or model.kind == "embeddings":
        return True
    options = config.providers[model.provider].options
    wrong = unhonoured(driver, sorted(model.supports), options, model.options)
    for _, message in wrong:
        problems.append(Problem(config.source, 0, 0, f"{where}.supports", message))
    return not wrong


def _deployment(config: Config, model: ModelSpec, driver: Driver) -> Deployment:
    provider = config.providers[model.provider]
    if model.kind == "embeddings":
        capabilities: frozenset[str] = frozenset()  # chat capabilities: an embeddings model has none
    elif model.supports is not None:
        capabilities = model.supports
    else:  # declared nothing: what the driver offers, the opt-in capabilities aside
        offered = honoured(driver, provider.options, model.options)
        capabilities = offered - OPT_IN_CAPABILITIES if offered is not None else _ASSUMED_CAPABILITIES
    key = f"{model.provider}/{model.key}"
    budget = None
    if model.budget is not None and model.price is not None:
        budget = BudgetRule.of(model.budget, deployment_scope(key), f"deployment '{key}'")
    return Deployment(
        key=key,
        provider=model.provider,
        model=model.key,
        upstream=model.upstream,
        driver=driver,
        capabilities=frozenset(capabilities),
        breaker=config.breaker_for(model),
        limits=model.limits,
        price=TokenPrice.from_spec(model.price) if model.price is not None else None,
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        connect_timeout=provider.connect_timeout,
        model_options=MappingProxyType(dict(model.options)),
        native_formats=native_formats(driver, model.options),
        kind=model.kind,
        dimensions=model.dimensions,
        min_dimensions=model.min_dimensions,
        token_input=bool(getattr(driver, "embedding_token_input", False)),
        budget=budget,
    )


def native_formats(driver: Driver, model_options: Mapping[str, Any]) -> frozenset[str]:
    """The client wire formats `driver` sends as they are for one model: `native_formats_for(model_options)` when
    the driver decides per model (the `openai` driver: a model may declare Responses API support), else its
    `native_formats`."""
    per_model = getattr(driver, "native_formats_for", None)
    if callable(per_model):
        return frozenset(per_model(model_options))
    return frozenset(getattr(driver, "native_formats", ()))


def _route(
    config: Config,
    spec: RouteSpec,
    deployments: Mapping[str, Deployment],
    disabled: Mapping[str, str],
    rng: random.Random,
) -> CompiledRoute:
    steps: list[Step] = []
    excluded: list[Excluded] = []
    plan: list[PlannedStep] = []
    for entry in spec.chain:
        pool = config.pools.get(entry)
        if pool is not None:
            members = [(m.model, m.weight) for m in pool.members]
            strategy, kind = pool.strategy, "pool"
        else:
            members, strategy, kind = [(entry, 1.0)], "priority", "model"
        chosen: list[Deployment] = []
        weights: list[float] = []
        planned: list[PlannedMember] = []
        for model_key, weight in members:
            model = config.models.get(model_key)
            if model is None:  # the loader rejects this; a hand-built Config might not
                where = f"routes.{spec.name}.chain"
                raise ConfigError([Problem(config.source, 0, 0, where, f"unknown model or pool '{model_key}'")])
            key = f"{model.provider}/{model.key}"
            deployment = deployments.get(key)
            reason = None
            if deployment is None:
                reason = f"provider '{model.provider}' disabled: {disabled.get(model.provider, 'not available')}"
            else:
                missing = spec.requires - deployment.capabilities
                if missing:
                    reason = f"lacks {', '.join(sorted(missing))}"
                elif spec.budget is not None and deployment.price is None:
                    reason = "no price: the route's budget could not count its calls"
            planned.append(PlannedMember(key, model.key, model.provider, weight, deployment, reason))
            if deployment is None or reason is not None:
                excluded.append(Excluded(key, reason or "not available"))
                continue
            chosen.append(deployment)
            weights.append(weight)
        plan.append(PlannedStep(entry, kind, strategy, tuple(planned)))
        if chosen:
            steps.append(Step(entry, kind, make_strategy(strategy, rng), tuple(chosen), tuple(weights)))
    dimensions = next((config.models[m.model].dimensions for step in plan for m in step.members), None)
    budget = BudgetRule.of(spec.budget, route_scope(spec.name), f"route '{spec.name}'") if spec.budget else None
    budgeted = budget is not None or any(d.budget is not None for step in steps for d in step.deployments)
    return CompiledRoute(
        name=spec.name,
        steps=tuple(steps),
        policy=spec.policy,
        requires=spec.requires,
        description=spec.description,
        excluded=tuple(excluded),
        plan=tuple(plan),
        kind=spec.kind,
        aliases=spec.aliases,
        dimensions=dimensions if spec.kind == "embeddings" else None,
        budget=budget,
        budgeted=budgeted,
    )


compile = compile_graph  # the name the architecture uses; `compile_graph` avoids shadowing the builtin
