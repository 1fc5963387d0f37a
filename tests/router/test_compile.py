"""Compiling a Config into the DispatchGraph, and `turnout explain` rendering that graph."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from turnout import ConfigError
from turnout.explain import explain, render_text
from turnout.router.compile import compile_graph
from turnout.schema import load_text

FILE = """
version: 1
providers:
  oa: {driver: openai, api_key: sk-test}
  mk: {driver: mock}
  gone: {driver: openai, api_key: "{{ env.NOPE | default('') }}"}
models:
  plain: {provider: oa}
  echo: {provider: mk, supports: [prefill, streaming]}
  other: {provider: mk, name: other-1}
  lost: {provider: gone}
pools:
  both: {strategy: weighted, members: [{model: echo, weight: 2}, other]}
routes:
  r: {chain: [plain, both, lost]}
  cont: {chain: [plain, echo], requires: [prefill]}
"""


def graph():
    return compile_graph(load_text(FILE, env={}))


def test_chain_entries_become_steps_of_deployments():
    """A model entry is a one-member priority step; a pool keeps its strategy, members and weights."""
    route = graph().routes["r"]
    assert [(s.name, s.kind, s.strategy.name) for s in route.steps] == [
        ("plain", "model", "priority"),
        ("both", "pool", "weighted"),
    ]
    assert [d.key for d in route.steps[1].deployments] == ["mk/echo", "mk/other"]
    assert route.steps[1].weights == (2.0, 1.0)
    assert route.steps[1].deployments[1].upstream == "other-1"


def test_one_driver_instance_per_provider_is_shared():
    """Deployments of one provider share its driver instance."""
    g = graph()
    assert g.deployments["mk/echo"].driver is g.deployments["mk/other"].driver is g.drivers["mk"]


def test_disabled_providers_are_excluded_but_listed_with_the_reason():
    """A provider without its credential has no deployments; the route lists the member and why."""
    g = graph()
    assert "gone/lost" not in g.deployments
    assert g.disabled_providers["gone"].startswith("api_key is empty")
    assert [e.deployment for e in g.routes["r"].excluded] == ["gone/lost"]


def test_capabilities_are_declared_else_the_drivers():
    """Declared supports win; undeclared means the driver's own capabilities (openai: no prefill)."""
    g = graph()
    assert g.deployments["mk/echo"].capabilities == {"prefill", "streaming"}
    assert "prefill" not in g.deployments["oa/plain"].capabilities
    assert "tools" in g.deployments["oa/plain"].capabilities
    route = g.routes["cont"]
    assert [d.key for d in route.deployments] == ["mk/echo"]
    assert route.excluded[0].reason == "lacks prefill"


def _with(config, section: str, name: str, **changes):
    """`config` with one provider/model replaced (a Config built in code: the loader's checks never saw it)."""
    entries = getattr(config, section)
    return dataclasses.replace(
        config, **{section: MappingProxyType({**entries, name: dataclasses.replace(entries[name], **changes)})}
    )


def test_bad_driver_options_are_a_config_error_naming_the_provider():
    """A driver rejecting its options (in a Config built in code) fails compilation with a problem at the provider."""
    bad = _with(load_text(FILE, env={}), "providers", "mk", options=MappingProxyType({"latency": -5}))
    with pytest.raises(ConfigError) as info:
        compile_graph(bad)
    assert any(p.path.startswith("providers.mk") for p in info.value.problems)


def test_a_declared_capability_the_driver_cannot_honour_fails_compilation():
    """prefill declared on an openai model without a dialect (a Config built in code) is a problem at supports."""
    bad = _with(load_text(FILE, env={}), "models", "plain", supports=frozenset({"prefill", "streaming"}))
    with pytest.raises(ConfigError) as info:
        compile_graph(bad)
    assert [p.path for p in info.value.problems] == ["models.plain.supports"]
    assert "cannot honour 'prefill'" in info.value.problems[0].message


def test_a_prefill_dialect_makes_an_openai_deployment_prefill_capable():
    """options.prefill on the provider, or on one model, adds prefill to the deployment's capabilities."""
    text = FILE.replace("oa: {driver: openai, api_key: sk-test}", "oa: {driver: openai, api_key: sk-test}\n"
                        "  vl: {driver: openai, api_key: sk-test, options: {prefill: vllm}}")  # fmt: skip
    text = text.replace("plain: {provider: oa}", "plain: {provider: oa}\n  own: {provider: oa, options: "
                        "{prefill: prefix}}\n  served: {provider: vl}")  # fmt: skip
    text = text.replace("cont: {chain: [plain, echo]", "more: {chain: [own, served]}\n  cont: {chain: [plain, echo]")
    g = compile_graph(load_text(text, env={}))
    assert "prefill" in g.deployments["oa/own"].capabilities
    assert "prefill" in g.deployments["vl/served"].capabilities
    assert "prefill" not in g.deployments["oa/plain"].capabilities


def test_explain_renders_the_compiled_graph():
    """explain shows effective capabilities from the compiled graph, e.g. a prefill route skipping openai."""
    data = explain(graph())
    cont = next(r for r in data["routes"] if r["name"] == "cont")
    plain = cont["steps"][0]["deployments"][0]
    assert (plain["eligible"], plain["skip_reason"]) == (False, "lacks prefill")
    assert plain["supports"] is None and "tools" in plain["capabilities"]
    text = render_text(data)
    assert "supports: not declared (driver offers" in text
    assert "sk-test" not in text
