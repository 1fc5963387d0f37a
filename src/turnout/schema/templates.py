"""Rendering templated values once, at load time, in a Jinja2 sandbox with the process environment as `env`.

Any string value containing `{{` or `{%` is a template. Credentials (a provider's `api_key` and `headers`) are
special: rendering empty, or naming an unset `env` variable, disables the provider with a stated reason instead
of failing the file, so one routing file serves every environment. Every other template failure (syntax error,
undefined name, sandbox violation) is a located config error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from turnout.schema.problems import Path, Reporter, is_secret_path


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


class Renderer:
    """Renders every template in a routing file's data (in place) and records disabled providers."""

    def __init__(self, env: Mapping[str, str], reporter: Reporter) -> None:
        self.env = dict(env)
        self.reporter = reporter
        self.jinja = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.jinja.globals.clear()
        self.disabled: dict[str, str] = {}  # provider name -> reason
        self.disabled_at: dict[str, Path] = {}  # provider name -> the credential that disabled it
        self.templated: set[Path] = set()  # paths whose value came from a template (explain says so)
        self._seen: set[int] = set()

    def render_all(self, data: Any) -> None:
        self._walk(data, ())
        self._credentials(data)

    def _walk(self, value: Any, path: Path) -> None:
        if id(value) in self._seen:  # aliases share containers: render each once
            return
        if isinstance(value, dict):
            self._seen.add(id(value))
            for key, item in value.items():
                if is_template(item) and not _is_credential((*path, key)):
                    value[key] = self._render_or_report(item, (*path, key))
                else:
                    self._walk(item, (*path, key))
        elif isinstance(value, list):
            self._seen.add(id(value))
            for i, item in enumerate(value):
                if is_template(item) and not _is_credential((*path, i)):
                    value[i] = self._render_or_report(item, (*path, i))
                else:
                    self._walk(item, (*path, i))

    def _render_or_report(self, source: str, path: Path) -> str:
        self.templated.add(path)
        if self.reporter.has_error_within(path):  # e.g. a misspelt key: its value is not used anyway
            return source
        try:
            return self._render(source)
        except _FAILURES as exc:
            self._report(exc, path)
        return source

    def _render(self, source: str) -> str:
        return self.jinja.from_string(source).render(env=self.env)

    def _report(self, exc: Exception, path: Path) -> None:
        if isinstance(exc, TemplateSyntaxError):
            message = f"template syntax error: {exc.message or exc}"
        elif isinstance(exc, UndefinedError):
            message = f"template error: {exc.message or exc}"
        elif isinstance(exc, SecurityError):
            message = f"template not allowed in the sandbox: {exc}"
        else:
            message = f"template error: {type(exc).__name__}: {exc}"
        self.reporter.error(path, self._safe(message, path))

    def _credentials(self, data: Any) -> None:
        """Render api_key/headers; an empty result or unset env variable disables the provider."""
        providers = data.get("providers") if isinstance(data, dict) else None
        for name, spec in providers.items() if isinstance(providers, dict) else ():
            if not isinstance(spec, dict):
                continue
            if isinstance(spec.get("api_key"), str):
                spec["api_key"] = self._credential(name, spec["api_key"], ("providers", name, "api_key"), "api_key")
            headers = spec.get("headers")
            for header, value in headers.items() if isinstance(headers, dict) else ():
                if isinstance(value, str):
                    where = ("providers", name, "headers", header)
                    headers[header] = self._credential(name, value, where, f"header '{header}'")

    def _credential(self, provider: str, source: str, path: Path, what: str) -> str:
        if not is_template(source):
            if not source.strip():
                self._disable(provider, f"{what} is empty", path)
            return source
        self.templated.add(path)
        if self.reporter.has_error_within(path):
            return source
        missing, empty = self._env_refs(source)
        try:
            rendered = self._render(source)
        except UndefinedError as exc:
            if missing:  # `{{ env.OPENAI_API_KEY }}` with the variable unset: disabled, not broken
                self._disable(provider, f"{what} is empty ({_names(missing)} {_is(missing)} not set)", path)
                return ""
            self._report(exc, path)
            return source
        except _FAILURES as exc:
            self._report(exc, path)
            return source
        if not rendered.strip():
            unset = f" ({_names(missing)} {_is(missing)} not set)" if missing else ""
            detail = unset or (f" ({_names(empty)} {_is(empty)} empty)" if empty else "")
            self._disable(provider, f"{what} is empty{detail}", path)
            return ""
        return rendered

    def _disable(self, provider: str, reason: str, path: Path) -> None:
        if provider not in self.disabled:
            self.disabled[provider] = reason
            self.disabled_at[provider] = path

    def _env_refs(self, source: str) -> tuple[list[str], list[str]]:
        """Names of `env.X` / `env['X']` the template reads that are unset, and those set but empty."""
        try:
            tree = self.jinja.parse(source)
        except TemplateSyntaxError:
            return [], []  # rendering reports it with its location
        names: list[str] = []
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            if isinstance(node.node, nodes.Name) and node.node.name == "env":
                key = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
                if isinstance(key, str) and key not in names:
                    names.append(key)
        missing = [n for n in names if n not in self.env]
        empty = [n for n in names if n in self.env and not self.env[n].strip()]
        return missing, empty

    def _safe(self, message: str, path: Path) -> str:
        """Jinja messages quote template text, not values; still, never let a credential's value through."""
        if not is_secret_path(path):
            return message
        for value in self.env.values():
            if len(value) >= 4 and value in message:
                message = message.replace(value, "***")
        return message


_FAILURES = (
    TemplateError,
    ArithmeticError,
    TypeError,
    ValueError,
    LookupError,
    AttributeError,
    RecursionError,
    MemoryError,
)
_MAX_RESULT = 100_000  # characters/items a template may ask for (config values are short)
_HUGE_SPEC = re.compile(r"%[-+ #0]*\d{6,}|%[-+ #0]*\d*\.\d{6,}|\{[^{}]*:[^{}]*\d{6,}[^{}]*\}")


class _Sandbox(SandboxedEnvironment):
    """The Jinja2 sandbox plus size limits, so a template cannot make the loader allocate gigabytes.

    Guards: `*` on strings/lists, `**`, `%`-formatting and str.format widths, padding methods and filters with
    huge width arguments. Anything past the limits is a SecurityError, reported like any sandbox violation.
    """

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("center", "indent", "format", "truncate", "wordwrap"):
            self.filters[name] = _bounded(self.filters[name])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _too_big_power(left, right):
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and len(seq) * count > _MAX_RESULT:
                    raise SecurityError("result too large")
        if operator == "%" and isinstance(left, str) and _HUGE_SPEC.search(left):
            raise SecurityError("format width too large")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, str) and attribute in ("format", "format_map") and _HUGE_SPEC.search(obj):
            raise SecurityError("format width too large")
        return super().getattr(obj, attribute)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_sizes(args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def _check_sizes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_RESULT:
            raise SecurityError("argument too large")


def _bounded(filter_func: Any) -> Any:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_sizes(args[1:], kwargs)
        if args and isinstance(args[0], str) and filter_func.__name__ == "do_format" and _HUGE_SPEC.search(args[0]):
            raise SecurityError("format width too large")
        return filter_func(*args, **kwargs)

    return bounded


def _too_big_power(base: Any, exponent: Any) -> bool:
    if not isinstance(base, int | float) or not isinstance(exponent, int | float):
        return False
    if abs(base) <= 1:
        return False
    return exponent * math.log10(abs(base)) > 15


def _is_credential(path: Path) -> bool:
    return len(path) >= 3 and path[0] == "providers" and path[2] in ("api_key", "headers")


def _names(names: list[str]) -> str:
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _is(names: list[str]) -> str:
    return "is" if len(names) == 1 else "are"
