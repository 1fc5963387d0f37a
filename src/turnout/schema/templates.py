"""Rendering templated values once, at load time, in a Jinja2 sandbox with the process environment as `env`.

Any string value containing `{{` or `{%` is a template. Credentials (a provider's `api_key` and `headers`) are
special: rendering empty, or naming an unset `env` variable, disables the provider with a stated reason instead
of failing the file, so one routing file serves every environment. Every other template failure (syntax error,
undefined name, sandbox violation) is a located config error.

Budgets: a template is config, but a loop in one must not hang a reload or eat the machine's memory. Each render
may take at most `MAX_STEPS` template lines (counted by a trace function on the template's own frames, so nested
loops end early), may produce at most `_MAX_RESULT` characters (counted while it renders, never after), and every
operation that could multiply a size (`*`, `**`, `+`, `~`, `%`, padding and format widths, `replace`, `join`) is
checked before it runs. Going over any of them is a located sandbox error.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from collections.abc import Iterable, Mapping
from types import FrameType
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, nodes
from jinja2.compiler import CodeGenerator, Frame
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
        self._keys(data)

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
        template = self.jinja.from_string(source)
        pieces: list[str] = []
        size = 0
        with StepBudget(MAX_STEPS):
            for piece in template.generate(env=self.env):
                size += len(piece)
                if size > _MAX_RESULT:
                    raise SecurityError(f"template output larger than {_MAX_RESULT} characters")
                pieces.append(piece)
        return "".join(pieces)

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

    def _keys(self, data: Any) -> None:
        """Client keys and admin keys: one that renders empty or names an unset variable is dropped (replaced by "")
        with a warning, so one file serves environments where some keys are not set."""
        if not isinstance(data, dict):
            return
        clients = data.get("clients")
        for name, spec in clients.items() if isinstance(clients, dict) else ():
            keys = spec.get("keys") if isinstance(spec, dict) else None
            for i, key in enumerate(keys if isinstance(keys, list) else ()):
                if isinstance(key, str):
                    keys[i] = self._key(key, ("clients", name, "keys", i), f"client '{name}' key")
        server = data.get("server")
        admin = server.get("admin_keys") if isinstance(server, dict) else None
        for i, key in enumerate(admin if isinstance(admin, list) else ()):
            if isinstance(key, str):
                admin[i] = self._key(key, ("server", "admin_keys", i), "admin key")

    def _key(self, source: str, path: Path, what: str) -> str:
        if not is_template(source):
            if not source.strip():
                self.reporter.warning(path, f"{what} is empty: ignored")
            return source
        self.templated.add(path)
        if self.reporter.has_error_within(path):
            return source
        missing, empty = self._env_refs(source)
        try:
            rendered = self._render(source)
        except UndefinedError as exc:
            if missing:
                self.reporter.warning(path, f"{what} is not set ({_names(missing)} {_is(missing)} not set): ignored")
                return ""
            self._report(exc, path)
            return source
        except _FAILURES as exc:
            self._report(exc, path)
            return source
        if not rendered.strip():
            detail = f" ({_names(missing or empty)} {_is(missing or empty)} {'not set' if missing else 'empty'})"
            self.reporter.warning(path, f"{what} renders empty{detail if missing or empty else ''}: ignored")
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
MAX_STEPS = 100_000  # template lines one render may run (a value needs tens; nested loops need millions)
_HUGE_SPEC = re.compile(r"%[-+ #0]*\d{6,}|%[-+ #0]*\d*\.\d{6,}|\{[^{}]*:[^{}]*\d{6,}[^{}]*\}")


class StepBudget:
    """Counts the lines template code runs in this thread (a trace function on `<template>` frames only) and
    raises SecurityError past `limit`. Any tracer already set (a debugger, coverage) is put back afterwards."""

    __slots__ = ("_limit", "_previous", "_steps")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._steps = 0
        self._previous: Any = None

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        return self._local if frame.f_code.co_filename == "<template>" else None

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self._steps += 1
            if self._steps > self._limit:
                raise SecurityError(f"template runs more than {self._limit} steps (a loop too large?)")
        return self._local

    def __enter__(self) -> StepBudget:
        self._previous = sys.gettrace()
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self._previous)


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles `a ~ b` to a join whose size is checked first (Jinja's own `str_join` has no hook)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(SandboxedEnvironment):
    """The Jinja2 sandbox plus size limits, so a template cannot make the loader allocate gigabytes.

    Guards: `*` and `+` on strings/lists, `~`, `**`, `%`-formatting and str.format widths, padding methods and
    filters with huge width arguments, `replace` and `join` (filters and methods) whose result would be too large.
    Anything past the limits is a SecurityError, reported like any sandbox violation.
    """

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("center", "indent", "format", "truncate", "wordwrap", "replace", "join"):
            self.filters[name] = _bounded(self.filters[name])

    @staticmethod
    def bounded_join(items: Iterable[Any]) -> str:
        parts = [str(item) for item in items]
        if sum(len(p) for p in parts) > _MAX_RESULT:
            raise SecurityError("result too large")
        return "".join(parts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _too_big_power(left, right):
            raise SecurityError("exponent too large")
        if operator == "+" and _sized(left) and _sized(right) and len(left) + len(right) > _MAX_RESULT:
            raise SecurityError("result too large")
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
        owner, name = getattr(__obj, "__self__", None), getattr(__obj, "__name__", "")
        if isinstance(owner, str) and name in ("replace", "join"):
            _check_growth(name, owner, args)
        return super().call(__context, __obj, *args, **kwargs)


def _sized(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _check_sizes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_RESULT:
            raise SecurityError("argument too large")


def _check_growth(operation: str, subject: Any, args: tuple[Any, ...]) -> None:
    """Refuse a `replace` or `join` whose result would pass _MAX_RESULT, before it is computed."""
    if operation == "replace" and len(args) >= 2 and isinstance(subject, str):
        old, new = str(args[0]), str(args[1])
        hits = subject.count(old) if old else len(subject) + 1
        if len(subject) + hits * (len(new) - len(old)) > _MAX_RESULT:
            raise SecurityError("result too large")
    elif operation == "join":
        items, separator = (args[0], subject) if isinstance(subject, str) else (subject, args[0] if args else "")
        if isinstance(items, str | list | tuple) and _sized(separator):
            total = sum(len(str(i)) for i in items) + len(separator) * max(0, len(items) - 1)
            if total > _MAX_RESULT:
                raise SecurityError("result too large")


def _bounded(filter_func: Any) -> Any:
    """The filter with its size arguments and (for replace and join) its result size checked first; the wrapper
    keeps Jinja's pass-argument marker, so context-taking filters get their context as before."""
    name = filter_func.__name__

    @functools.wraps(filter_func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_sizes(args[1:], kwargs)
        if args and isinstance(args[0], str) and name == "do_format" and _HUGE_SPEC.search(args[0]):
            raise SecurityError("format width too large")
        if name == "do_replace" and len(args) >= 4:  # (eval_ctx, s, old, new)
            _check_growth("replace", str(args[1]), args[2:4])
        if name == "do_join" and len(args) >= 2:  # (eval_ctx, value, d="", attribute=None)
            separator = str(args[2] if len(args) > 2 else kwargs.get("d", ""))
            args = (args[0], _bounded_items(args[1], separator), *args[2:])
        return filter_func(*args, **kwargs)

    return bounded


def _bounded_items(items: Any, separator: str) -> list[Any]:
    """`items` as a list (a generator is consumed here, once), refused as soon as their joined size would pass
    _MAX_RESULT."""
    taken: list[Any] = []
    total = 0
    for item in items:
        total += len(str(item)) + (len(separator) if taken else 0)
        if total > _MAX_RESULT:
            raise SecurityError("result too large")
        taken.append(item)
    return taken


def _too_big_power(base: Any, exponent: Any) -> bool:
    if not isinstance(base, int | float) or not isinstance(exponent, int | float):
        return False
    if abs(base) <= 1:
        return False
    return exponent * math.log10(abs(base)) > 15


def _is_credential(path: Path) -> bool:
    """Credentials are rendered apart (`_credentials`, `_keys`): an unset variable there is not a file error."""
    if len(path) >= 3 and path[0] == "providers" and path[2] in ("api_key", "headers"):
        return True
    if len(path) >= 3 and path[0] == "clients" and path[2] == "keys":
        return True
    return len(path) >= 2 and path[0] == "server" and path[1] == "admin_keys"


def _names(names: list[str]) -> str:
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _is(names: list[str]) -> str:
    return "is" if len(names) == 1 else "are"
