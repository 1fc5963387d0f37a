"""Rendering templated values once, at load time, in a Jinja2 sandbox with the process environment as `env`.

Any string value containing `{{` or `{%` is a template. Credentials (a provider's `api_key` and `headers`) are
special: rendering empty, or naming an unset `env` variable, disables the provider with a stated reason instead
of failing the file, so one routing file serves every environment. Every other template failure (syntax error,
undefined name, sandbox violation) is a located config error.
"""

from __future__ import annotations

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
        self.jinja = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
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


_FAILURES = (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, AttributeError, RecursionError)


def _is_credential(path: Path) -> bool:
    return len(path) >= 3 and path[0] == "providers" and path[2] in ("api_key", "headers")


def _names(names: list[str]) -> str:
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _is(names: list[str]) -> str:
    return "is" if len(names) == 1 else "are"
