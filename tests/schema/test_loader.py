"""The loader's public API: what a valid file turns into, and how edge inputs fail."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import pytest

from turnout.config import DEFAULT_ACTIONS, BreakerPolicy, Config, Secret
from turnout.drivers.registry import DriverRegistry
from turnout.errors import ConfigError, ErrorClass
from turnout.schema import load_file, load_text, schema_json

REPO_ROUTES = Path(__file__).resolve().parents[2] / "routes.yaml"

BASE = """\
version: 1
providers:
  mock: {driver: mock}
models:
  echo: {provider: mock}
routes:
  chat: {chain: [echo]}
"""


def _problems(text: str | bytes, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, source="t.yaml", env={}, **kwargs)
    return [str(p) for p in info.value.problems]


def test_repo_routes_yaml_validates_with_no_api_keys():
    """The repository's own routes.yaml loads with an empty environment; keyed providers are disabled."""
    config = load_file(REPO_ROUTES, env={})
    assert set(config.routes) == {"chat", "smart", "tools", "echo", "drill", "embed"}
    disabled = {n for n, p in config.providers.items() if not p.enabled}
    assert disabled == {"openai", "anthropic", "gemini", "xai"}
    assert config.providers["openai"].disabled_reason == "api_key is empty (OPENAI_API_KEY is not set)"
    assert all(config.models[route.chain[-1]].provider == "echo" for route in config.routes.values())  # the mock
    directives = {n for n, p in config.providers.items() if p.options.get("request_directives")}
    assert directives == {"drill"}  # only the drill provider takes per-request faults
    assert not [w for w in config.warnings if "not used" in w.message]


def test_repo_routes_yaml_with_a_key_enables_that_provider():
    """Setting OPENAI_API_KEY enables openai and the key is kept only as a Secret."""
    config = load_file(REPO_ROUTES, env={"OPENAI_API_KEY": "sk-live-abcdef"})
    openai = config.providers["openai"]
    assert openai.enabled
    assert isinstance(openai.api_key, Secret)
    assert openai.api_key.reveal() == "sk-live-abcdef"


def test_values_become_typed_frozen_config():
    """Durations become float seconds, prices Decimal, collections tuples and read-only mappings."""
    config = load_file(REPO_ROUTES, env={})
    assert isinstance(config, Config)
    assert isinstance(config.routes, MappingProxyType)
    assert config.defaults.retry.initial == 0.25
    assert config.breaker.max_recovery_timeout == 600.0
    mini = config.models["gpt-4o-mini"]
    assert mini.price is not None and mini.price.input == Decimal("0.15")
    assert mini.price.cached_input == Decimal("0.075")
    assert mini.supports == frozenset({"tools", "vision", "json", "streaming"})
    assert config.models["claude-haiku"].upstream == "claude-haiku-4-5"
    assert config.models["gpt-4o"].upstream == "gpt-4o"  # defaults to the key
    assert config.pools["small"].members[0].weight == 3.0
    assert config.routes["chat"].chain == ("small", "llama3", "echo")
    assert config.server.max_request_bytes == 8 * 1024 * 1024
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.routes["chat"].chain = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.providers["x"] = config.providers["echo"]  # type: ignore[index]


def test_route_overrides_merge_over_defaults():
    """A route's partial retry and on_error are merged key by key over the file's defaults."""
    text = BASE.replace(
        "  chat: {chain: [echo]}",
        "  chat:\n    chain: [echo]\n    retry: {backoff: {max: 1s}}\n    on_error: {timeout: retry}\n"
        "  plain: {chain: [echo]}",
    ).replace("version: 1", "version: 1\ndefaults:\n  retry: {attempts: 4, backoff: {initial: 100ms}}")
    config = load_text(text, env={})
    chat = config.routes["chat"].policy
    assert (chat.retry.attempts, chat.retry.initial, chat.retry.max) == (4, 0.1, 1.0)
    assert chat.action(ErrorClass.TIMEOUT) == "retry"
    assert chat.action(ErrorClass.BAD_REQUEST) == DEFAULT_ACTIONS[ErrorClass.BAD_REQUEST]
    assert config.routes["plain"].policy is config.defaults  # nothing overridden: shared, not copied


def test_partial_breakers_fill_from_the_next_level_up():
    """A model's partial breaker inherits its provider's, which inherits the file's defaults."""
    text = (
        BASE.replace("version: 1", "version: 1\ndefaults:\n  breaker: {failure_threshold: 7, recovery_timeout: 1m}")
        .replace("{driver: mock}", "{driver: mock, breaker: {half_open_probes: 3}}")
        .replace("{provider: mock}", "{provider: mock, breaker: {recovery_timeout: 5s}}")
    )
    config = load_text(text, env={})
    effective = config.breaker_for(config.models["echo"])
    assert effective == BreakerPolicy(failure_threshold=7, recovery_timeout=5.0, half_open_probes=3)


def test_templates_render_with_the_injected_env():
    """Templates see only the env mapping passed in, with the default filter available."""
    text = BASE.replace("version: 1", "version: 1\ndefaults:\n  deadline: \"{{ env.DL | default('9s') }}\"")
    assert load_text(text, env={}).defaults.deadline == 9.0
    assert load_text(text, env={"DL": "2m"}).defaults.deadline == 120.0


def test_empty_literal_credential_disables_without_env_detail():
    """A literal empty api_key disables its provider with a plain reason."""
    text = BASE.replace("{driver: mock}", "{driver: mock, api_key: ''}")
    config = load_text(text, env={})
    assert config.providers["mock"].disabled_reason == "api_key is empty"


def test_credential_set_but_empty_names_the_variable():
    """An env variable that is set to an empty string is reported as empty, not unset."""
    text = BASE.replace("{driver: mock}", "{driver: mock, api_key: '{{ env.K }}'}")
    config = load_text(text, env={"K": ""})
    assert config.providers["mock"].disabled_reason == "api_key is empty (K is empty)"


def test_default_falls_back_to_a_set_variable():
    """`env.A | default(env.B)` with only B set renders B: the provider stays enabled."""
    text = BASE.replace("{driver: mock}", "{driver: mock, api_key: '{{ env.A | default(env.B) }}'}")
    config = load_text(text, env={"B": "key-b"})
    assert config.providers["mock"].enabled


def test_explicit_registry_decides_which_drivers_exist():
    """A driver provided only by an explicit registry is accepted; without it the name is unknown."""
    text = BASE.replace("driver: mock", "driver: custom")
    assert any("unknown driver 'custom'" in p for p in _problems(text))

    class Custom:  # a stand-in class: the loader resolves drivers but never instantiates them
        pass

    registry = DriverRegistry({"custom": Custom}, use_entry_points=False)  # type: ignore[dict-item]
    assert load_text(text, env={}, registry=registry).providers["mock"].driver == "custom"


class TextOnly:
    """A plug-in driver that cannot send images, and streams only when its options say so."""

    name = "textonly"
    options_schema = {"type": "object", "additionalProperties": False, "properties": {"sse": {"type": "boolean"}}}
    capability_hints = {"vision": "this upstream takes text only"}

    @classmethod
    def capabilities_for(cls, options, model_options):
        return frozenset({"tools", "streaming"} if options.get("sse") else {"tools"})


TEXT_ONLY = DriverRegistry({"textonly": TextOnly}, use_entry_points=False)  # type: ignore[dict-item]


def test_a_declared_capability_the_driver_cannot_honour_is_located():
    """`vision` on a driver that cannot send images is an error at the `supports` entry, with the driver's hint."""
    text = BASE.replace("driver: mock", "driver: textonly, options: {sse: true}").replace(
        "{provider: mock}", "{provider: mock, supports: [streaming, vision]}"
    )
    assert _problems(text, registry=TEXT_ONLY) == [
        "t.yaml:5:48: models.echo.supports[1]: driver 'textonly' cannot honour 'vision' for this model: "
        "this upstream takes text only"
    ]


def test_what_a_driver_honours_may_depend_on_its_options():
    """The same declaration is valid or not depending on the provider's options (capabilities_for)."""
    text = BASE.replace("driver: mock", "driver: textonly, options: {sse: false}").replace(
        "{provider: mock}", "{provider: mock, supports: [tools, streaming]}"
    )
    assert _problems(text, registry=TEXT_ONLY) == [
        "t.yaml:5:44: models.echo.supports[1]: driver 'textonly' cannot honour 'streaming' for this model: "
        "it offers tools"
    ]
    config = load_text(text.replace("sse: false", "sse: true"), env={}, registry=TEXT_ONLY)
    assert config.models["echo"].supports == {"tools", "streaming"}


def test_a_supports_list_without_streaming_warns_only_where_the_driver_streams():
    """Omitting `streaming` warns at the model when its driver could stream; a chain that cannot stream at all
    warns at the route either way (its streamed requests all fail)."""
    text = BASE.replace("driver: mock", "driver: textonly").replace(
        "{provider: mock}", "{provider: mock, supports: [tools]}"
    )
    assert [w.path for w in load_text(text, env={}, registry=TEXT_ONLY).warnings] == ["routes.chat.chain"]
    streaming = load_text(text.replace("driver: textonly", "driver: textonly, options: {sse: true}"), env={},
                          registry=TEXT_ONLY)  # fmt: skip
    assert [w.path for w in streaming.warnings] == ["models.echo.supports", "routes.chat.chain"]


def test_problems_are_sorted_and_all_reported():
    """Several independent problems come out together, in file order."""
    text = BASE.replace("chain: [echo]", "chain: [ecko]").replace("driver: mock", "driver: mokc")
    problems = _problems(text)
    assert len(problems) == 2
    assert problems[0].startswith("t.yaml:3:") and "mokc" in problems[0]
    assert problems[1].startswith("t.yaml:7:") and "ecko" in problems[1]


def test_unreadable_file_is_a_config_error(tmp_path: Path):
    """A missing file raises ConfigError naming the file, not OSError."""
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path / "absent.yaml")
    assert "cannot read the file" in str(info.value)


def test_alias_bomb_is_refused():
    """Nested aliases that expand to millions of values are refused instead of exhausting memory."""
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    problems = _problems("\n".join(lines) + "\n")
    assert any("aliases expand to more than" in p for p in problems)


def test_recursive_alias_is_refused():
    """A self-referencing alias is a located error, not a RecursionError."""
    problems = _problems(BASE + "x-loop: &loop [*loop]\n")
    assert any("nesting deeper than" in p for p in problems)


def test_bom_and_crlf_are_accepted():
    """A UTF-8 byte-order mark and Windows line endings load like plain text."""
    raw = ("\ufeff" + BASE).replace("\n", "\r\n").encode("utf-8")
    assert load_text(raw, env={}).routes["chat"].chain == ("echo",)


def test_schema_json_is_draft_2020_12_with_descriptions_everywhere():
    """The shipped schema declares its dialect and id, and every property carries a description."""
    schema = schema_json()
    assert schema["$schema"].endswith("2020-12/schema") and schema["$id"]
    missing: list[str] = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                if "description" not in prop:
                    missing.append(f"{where}.{name}")
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")

    walk(schema, "$")
    assert missing == []


def test_on_error_covers_every_error_class():
    """defaults.on_error names exactly the twelve ErrorClass values."""
    props = schema_json()["properties"]["defaults"]["properties"]["on_error"]["properties"]
    assert set(props) == {c.value for c in ErrorClass}


def test_locate_problems_fills_in_positions_from_paths():
    """Problems reported without a position (e.g. by compile) get one from their path, even with dotted names."""
    text = BASE.replace("  mock: {driver: mock}", '  "my.mock": {driver: mock, options: {x: 1}}').replace(
        "{provider: mock}", '{provider: "my.mock"}'
    )
    from turnout.errors import Problem
    from turnout.schema import locate_problems

    raw = [
        Problem("t.yaml", 0, 0, "providers.my.mock.options", "rejected"),
        Problem("t.yaml", 0, 0, "routes.chat.chain[0]", "no deployment"),
        Problem("t.yaml", 0, 0, "routes.nope", "absent: nearest ancestor"),
        Problem("t.yaml", 4, 2, "kept", "already located"),
    ]
    located = locate_problems(text, raw)
    assert [(p.line, p.col) for p in located] == [(3, 38), (7, 18), (7, 3), (4, 2)]


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 10**10 }}",
        "{{ 2 ** 99999999 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ 'x'.ljust(10**9) }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ '%999999999d'|format(1) }}",
        "{{ 'x'|center(999999999) }}",
        "{{ ''.__class__.__mro__ }}",
    ],
)
def test_templates_cannot_allocate_gigabytes_or_escape(template: str):
    """Huge repetitions, powers, widths and dunder access are located sandbox errors, not MemoryError."""
    text = BASE.replace("{driver: mock}", '{driver: mock, options: {reply: "' + template + '"}}')
    problems = _problems(text)
    assert len(problems) == 1 and problems[0].startswith("t.yaml:3:")
    assert "template not allowed in the sandbox" in problems[0]


def test_ordinary_template_expressions_still_work():
    """Filters, formatting, small arithmetic and string methods render normally."""
    template = "{{ 'ok'|upper }} {{ '%s-%d'|format('a', 3) }} {{ 2**10 }} {{ '{}!'.format('hi') }} {{ 'ab' * 3 }}"
    text = BASE.replace("{driver: mock}", '{driver: mock, options: {reply: "' + template + '"}}')
    assert load_text(text, env={}).providers["mock"].options["reply"] == "OK a-3 1024 hi! ababab"
