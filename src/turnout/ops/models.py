"""`turnout models [FILE] [--sync] [--json]`: the file's models checked against what each provider offers.

Each enabled provider's list comes from its driver's `list_models` (the same call the Router would make), cached on
disk (`turnout.ops.catalogue`) with its fetch time and used until it is older than `--max-age` (default 24h) or
`--sync` asks for a fresh one. The report gives models per provider and those new since the previous sync, and
flags every model of the file whose upstream name its provider does not offer, located as `FILE:LINE:COL` with
"did you mean": the typo that would otherwise surface only as a `not_found` at run time.

Not checked: disabled providers (no key here), drivers that answer any model name (the mock), and Azure, whose
upstream names are deployment names that its model list does not show. Exit 0 when every checked model is
offered, 1 when one is not or a provider's list could not be had at all, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
import time
from dataclasses import dataclass
from typing import Any

from turnout.config import Config, ModelSpec
from turnout.drivers.base import CallContext, Driver
from turnout.errors import Problem, ProviderError
from turnout.ops.catalogue import Catalogue, Listing, cache_dir, synced
from turnout.ops.common import (
    DEFAULT_FILE,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    Style,
    load_routing_file,
    plural,
    print_json,
    table,
)
from turnout.schema.units import format_duration, parse_duration

DEFAULT_MAX_AGE = 24 * 3600.0
UNCHECKABLE = {"mock": "answers any model name", "azure": "upstream names are deployments, not in the model list"}


@dataclass(frozen=True, slots=True)
class ProviderReport:
    """What `models` learnt about one provider: `status` is synced | cached | stale | failed | disabled | skipped."""

    name: str
    driver: str
    status: str
    listing: Listing | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    """A model of the file whose upstream name its provider does not offer."""

    model: str
    provider: str
    upstream: str
    suggestion: str | None
    problem: Problem


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "models",
        help="check the file's models against each provider's model list",
        description="Fetch (or read from the cache) each enabled provider's model list, report models per provider "
        "and new ones, and flag every model in the file that its provider does not offer, with 'did you mean'.",
        epilog="cache: --cache-dir, else $TURNOUT_CACHE_DIR, else $XDG_CACHE_HOME/turnout, else ~/.cache/turnout",
    )
    parser.add_argument("file", nargs="?", default=DEFAULT_FILE, help="routing file (default: ./routes.yaml)")
    parser.add_argument("--sync", action="store_true", help="fetch every list now, whatever the cache holds")
    parser.add_argument("--max-age", default="24h", metavar="DURATION", help="refresh lists older than this (24h)")
    parser.add_argument("--cache-dir", metavar="DIR", help="where the lists are cached")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        max_age = parse_duration(args.max_age)
    except (ValueError, TypeError):
        print(f"turnout models: --max-age: not a duration: {args.max_age!r} (e.g. 30m, 24h)", file=sys.stderr)
        return EXIT_USAGE
    loaded = load_routing_file(args.file)
    if isinstance(loaded, int):
        return loaded
    config, graph = loaded
    catalogue = Catalogue(cache_dir(args.cache_dir))
    reports = asyncio.run(gather(config, graph.drivers, catalogue, sync=args.sync, max_age=max_age))
    findings = locate(args.file, compare(config, reports))
    failed = [r for r in reports if r.status == "failed"]
    if args.json:
        print_json(to_json(config, catalogue, reports, findings))
    else:
        sys.stdout.write(render(config, catalogue, reports, findings, Style.for_stream(sys.stdout)))
    return EXIT_INVALID if findings or failed else EXIT_OK


# ---- fetching -----------------------------------------------------------------------------------------------------


async def gather(
    config: Config, drivers: Any, catalogue: Catalogue, *, sync: bool = False, max_age: float = DEFAULT_MAX_AGE
) -> list[ProviderReport]:
    """One report per provider of the file, in its order; lists fetched concurrently where needed."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        tasks = []
        for name, spec in config.providers.items():
            driver = drivers.get(name)
            if driver is None:
                tasks.append(_done(ProviderReport(name, spec.driver, "disabled", detail=spec.disabled_reason or "")))
            elif spec.driver in UNCHECKABLE:
                tasks.append(_done(ProviderReport(name, spec.driver, "skipped", detail=UNCHECKABLE[spec.driver])))
            else:
                tasks.append(_listing(config, name, driver, catalogue, session, sync=sync, max_age=max_age))
        return list(await asyncio.gather(*tasks))


async def _done(report: ProviderReport) -> ProviderReport:
    return report


async def _listing(
    config: Config, name: str, driver: Driver, catalogue: Catalogue, session: Any, *, sync: bool, max_age: float
) -> ProviderReport:
    spec = config.providers[name]
    endpoint = spec.base_url or f"(default {spec.driver} endpoint)"
    cached = catalogue.load(name, spec.driver, endpoint)
    if cached is not None and not sync and cached.age() < max_age:
        return ProviderReport(name, spec.driver, "cached", cached)
    policy = config.defaults
    ctx = CallContext(
        session=session,
        model="",
        deadline=time.monotonic() + policy.attempt_timeout,
        attempt_timeout=policy.attempt_timeout,
        connect_timeout=spec.connect_timeout or policy.connect_timeout,
    )
    try:
        async with asyncio.timeout(policy.attempt_timeout):
            models = await driver.list_models(ctx)
    except ProviderError as exc:
        return _unfetched(name, spec.driver, cached, f"{exc.error_class.value}: {exc.message}")
    except TimeoutError:
        return _unfetched(
            name, spec.driver, cached, f"timeout: no answer within {format_duration(policy.attempt_timeout)}"
        )
    except Exception as exc:  # a plug-in driver's bug must not hide the other providers
        return _unfetched(name, spec.driver, cached, f"protocol: {type(exc).__name__}: {exc}")
    listing = synced(cached, name, spec.driver, endpoint, [m.id for m in models])
    catalogue.store(listing)
    return ProviderReport(name, spec.driver, "synced", listing)


def _unfetched(name: str, driver: str, cached: Listing | None, reason: str) -> ProviderReport:
    """A list that could not be fetched: the stale cached one is still worth checking against."""
    if cached is not None:
        return ProviderReport(name, driver, "stale", cached, f"refresh failed ({reason})")
    return ProviderReport(name, driver, "failed", None, reason)


# ---- comparing ----------------------------------------------------------------------------------------------------


def compare(config: Config, reports: list[ProviderReport]) -> list[Finding]:
    """Every model whose provider has a list and does not offer its upstream name, with the closest offered name."""
    lists = {r.name: r.listing for r in reports if r.listing is not None}
    findings = []
    for model in config.models.values():
        listing = lists.get(model.provider)
        if listing is None or offered(model.upstream, listing.ids, listing.driver):
            continue
        suggestion = closest(model.upstream, listing.ids)
        hint = f"; did you mean '{suggestion}'?" if suggestion else ""
        message = f"provider '{model.provider}' does not offer '{model.upstream}'{hint}"
        problem = Problem(config.source, 0, 0, _path(config, model), message)
        findings.append(Finding(model.key, model.provider, model.upstream, suggestion, problem))
    return findings


def offered(upstream: str, ids: tuple[str, ...], driver: str) -> bool:
    """Is `upstream` in the list, allowing the spellings providers accept (Gemini's `models/`, Ollama's `:latest`)?"""
    name = upstream.removeprefix("models/") if driver == "gemini" else upstream
    available = set(ids)
    if name in available:
        return True
    return driver == "ollama" and ":" not in name and f"{name}:latest" in available


def closest(upstream: str, ids: tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(upstream, ids, n=1, cutoff=0.6)
    return close[0] if close else None


def _path(config: Config, model: ModelSpec) -> str:
    return f"models.{model.key}.name" if model.upstream != model.key else f"models.{model.key}"


def locate(path: str, findings: list[Finding]) -> list[Finding]:
    """Fill in each finding's line and column from the file (as `validate` reports problems)."""
    if not findings:
        return findings
    from turnout.schema import locate_problems

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return findings
    located = locate_problems(raw, [f.problem for f in findings])
    return [Finding(f.model, f.provider, f.upstream, f.suggestion, p) for f, p in zip(findings, located, strict=True)]


# ---- output -------------------------------------------------------------------------------------------------------


def to_json(config: Config, catalogue: Catalogue, reports: list[ProviderReport], findings: list[Finding]) -> dict:
    return {
        "source": config.source,
        "cache_dir": str(catalogue.folder),
        "ok": not findings and not any(r.status == "failed" for r in reports),
        "providers": [
            {
                "provider": r.name,
                "driver": r.driver,
                "status": r.status,
                "detail": r.detail,
                "fetched_at": r.listing.fetched_at if r.listing else None,
                "models": len(r.listing.ids) if r.listing else None,
                "new_since_last_sync": list(r.listing.new) if r.listing else [],
                "ids": list(r.listing.ids) if r.listing else [],
            }
            for r in reports
        ],
        "not_offered": [
            {
                "model": f.model,
                "provider": f.provider,
                "upstream": f.upstream,
                "did_you_mean": f.suggestion,
                "location": str(f.problem),
            }
            for f in findings
        ],
    }


def render(
    config: Config, catalogue: Catalogue, reports: list[ProviderReport], findings: list[Finding], style: Style
) -> str:
    now = time.time()
    rows, colours = [], []
    for r in reports:
        listing = r.listing
        count = str(len(listing.ids)) if listing else "-"
        when = f"{_ago(listing.age(now))} ({r.status})" if listing else r.status
        new = _new(listing)
        rows.append([r.name, r.driver, count, when, new, r.detail])
        colours.append({"failed": "red", "stale": "yellow", "disabled": "dim", "skipped": "dim"}.get(r.status, ""))
    out = [f"{config.source}: model lists (cache {catalogue.folder})", ""]
    out.append(
        table(["provider", "driver", "models", "fetched", "new since last sync", "detail"], rows, style, colours)
    )
    if findings:
        out.append(style("models the provider does not offer:", "bold"))
        out += [style(str(f.problem), "red") for f in findings]
        out.append("")
    checked = sum(1 for r in reports if r.listing is not None)
    failed = sum(1 for r in reports if r.status == "failed")
    tail = f", {plural(failed, 'list')} could not be fetched" if failed else ""
    out.append(f"{plural(checked, 'provider')} checked, {plural(len(findings), 'model')} not offered{tail}")
    return "\n".join(out) + "\n"


def _new(listing: Listing | None) -> str:
    if listing is None:
        return "-"
    if listing.first_sync:
        return "(first sync)"
    if not listing.new:
        return "none"
    names = ", ".join(listing.new[:5]) + (f" and {len(listing.new) - 5} more" if len(listing.new) > 5 else "")
    return f"{len(listing.new)}: {names}"


def _ago(seconds: float) -> str:
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"
