"""JSON Schema validation of the plain data, with every jsonschema error turned into a specific located problem.

The validator is compiled once per process (it is immutable); errors are mapped to marks only when they occur.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from turnout.schema.problems import Path, Reporter, did_you_mean, is_secret_path, kind, show

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@cache
def _schema_text() -> str:
    return files("turnout.schema").joinpath("routes.schema.json").read_text(encoding="utf-8")


def schema_json() -> dict[str, Any]:
    """The routing file's JSON Schema (Draft 2020-12), as shipped inside the package (a fresh copy each call)."""
    return json.loads(_schema_text())


@cache
def _validator() -> Draft202012Validator:
    """Validates against a copy with every local `$ref` inlined: ~1.5x faster on big files (no ref lookups)."""
    schema = schema_json()
    return Draft202012Validator(_inline(schema, schema["$defs"]))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
            return {**target, **{k: _inline(v, defs) for k, v in node.items() if k != "$ref"}}
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node


def check(data: Any, reporter: Reporter) -> None:
    """Report every schema violation in `data`."""
    for error in _validator().iter_errors(data):
        _report(error, reporter)


def _report(error: ValidationError, reporter: Reporter) -> None:
    path: Path = tuple(error.absolute_path)
    validator, instance, schema = error.validator, error.instance, error.schema
    if validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extras = [k for k in instance if k not in allowed and not any(p.search(k) for p in patterns)]
        for extra in sorted(extras):
            hint = did_you_mean(extra, allowed) or f"; allowed: {', '.join(allowed)}"
            if extra == "breaker" and path[:1] == ("routes",):
                hint = "; breakers guard a deployment, so set them on the provider or the model, not on a route"
            if extra == "api_keys" and path == ("server",):
                hint = API_KEYS_REPLACED
            reporter.error((*path, extra), f"unknown key '{extra}'{hint}", key=True)
        return
    if "propertyNames" in error.absolute_schema_path and isinstance(instance, str):
        reporter.error((*path, instance), f"invalid name {instance!r}: {_NAME_RULE}", key=True)
        return
    if validator in ("anyOf", "oneOf"):
        _report_choice(error, reporter, path)
        return
    message = _message(error, path)
    if validator == "type" and isinstance(instance, bool | None) and "string" in error.validator_value:
        written = reporter.scalar_text(path)
        if written:  # `provider: off` or `name: null`: YAML 1.1 reads these words as non-strings
            message += f"; YAML reads {written} as {kind(instance)}: quote it ('{written}') to mean the name"
    reporter.error(path, message)


@cache
def _name_pattern() -> str:
    return str(schema_json()["$defs"]["name"]["pattern"])


API_KEYS_REPLACED = (
    ": server.api_keys was replaced. Client keys now belong to clients, each with the routes, limits and budget "
    "it may use (clients: {default: {keys: [...]}} keeps the old behaviour), and the admin endpoints take "
    "server.admin_keys, which client keys no longer open"
)


_NAME_RULE = "names start with a letter or digit and use only letters, digits and . _ : / @ + -"


def _report_choice(error: ValidationError, reporter: Reporter, path: Path) -> None:
    """For anyOf/oneOf: explain via the branch of the instance's own type, else the schema's errorMessage."""
    same_type = [e for e in error.context or () if not (e.validator == "type" and not e.relative_path)]
    deeper = [e for e in same_type if e.relative_path or e.validator in ("additionalProperties", "required")]
    if deeper:
        for sub in deeper:
            _report(sub, reporter)
        return
    custom = error.schema.get("errorMessage")
    if custom:
        reporter.error(path, f"{custom}, got {show(error.instance, path)}")
    elif same_type:
        reporter.error(path, _message(same_type[0], path))
    else:
        reporter.error(path, f"invalid value {show(error.instance, path)}")


def _message(error: ValidationError, path: Path) -> str:
    v, value, arg = error.validator, error.instance, error.validator_value
    got = show(value, path)
    if v == "type":
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in ([arg] if isinstance(arg, str) else arg))
        return f"expected {wanted}, got {kind(value)}" + ("" if isinstance(value, dict | list) else f" ({got})")
    if v == "enum":
        return f"expected one of {', '.join(map(str, arg))}, got {got}{did_you_mean(value, map(str, arg))}"
    if v == "const":
        return f"expected {arg!r}, got {got}"
    if v == "required":
        missing = [k for k in arg if k not in value]
        return f"missing required key '{missing[0]}'" if missing else "missing a required key"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"must be {op} {arg}, got {got}"
    if v == "minItems":
        return "must not be empty" if arg == 1 else f"needs at least {arg} items"
    if v == "minProperties":
        return "must not be empty" if arg == 1 else f"needs at least {arg} entries"
    if v == "minLength":
        return "must not be empty"
    if v == "maxLength":
        return f"is longer than {arg} characters"
    if v == "uniqueItems":
        dupes = [item for i, item in enumerate(value) if item in value[:i]]
        return f"lists {show(dupes[0], path) if dupes else 'an item'} twice"
    if v == "pattern":
        if arg == _name_pattern():
            return f"invalid name {got}: {_NAME_RULE}"
        return f"invalid value {got}"
    return f"invalid value ({v})" if is_secret_path(path) else error.message
