"""The load pipeline: text -> nodes with marks -> JSON Schema -> templates -> semantic checks -> frozen Config.

Templates are rendered before the semantic checks (not after) so that range checks and reference checks see the
values the router will use, e.g. a `"{{ env.DEADLINE | default('30s') }}"` deadline. Every stage reports into
one `Reporter`, so a file's problems all come out together; only `ConfigError` ever leaves this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from turnout.config import Config
from turnout.drivers.registry import DriverRegistry
from turnout.errors import ConfigError, Problem
from turnout.schema import validate
from turnout.schema.build import build_config
from turnout.schema.checks import Checker
from turnout.schema.problems import Reporter
from turnout.schema.templates import Renderer
from turnout.schema.yamltree import parse


def load_file(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    registry: DriverRegistry | None = None,
) -> Config:
    """Load and check a routing file. Raises ConfigError (with every problem located) for any bad input."""
    source = os.fspath(path)
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(source, 0, 0, "", f"cannot read the file: {exc.strerror or exc}")]) from None
    return load_text(raw, source=source, env=env, registry=registry, base_dir=os.path.dirname(os.path.abspath(source)))


def load_text(
    text: str | bytes,
    *,
    source: str = "<memory>",
    env: Mapping[str, str] | None = None,
    registry: DriverRegistry | None = None,
    base_dir: str | None = None,
) -> Config:
    """Load routing-file text. `env` replaces os.environ for templates; `registry` decides which drivers exist;
    `base_dir` is the file's directory when the text came from one (relative paths in it are relative to it, and
    the spend ledger defaults to a file there; without it the ledger is kept in memory)."""
    reporter = Reporter(source)
    try:
        return _load(text, reporter, os.environ if env is None else env, registry or DriverRegistry(), base_dir)
    except ConfigError:
        raise
    except RecursionError:  # a last line of defence: the parser bounds nesting, so this is not expected
        reporter.at(1, 1, (), "the file is nested too deeply to process")
        raise ConfigError(reporter.errors) from None


def _load(
    text: str | bytes, reporter: Reporter, env: Mapping[str, str], registry: DriverRegistry, base_dir: str | None
) -> Config:
    if isinstance(text, bytes):
        text = _decode(text, reporter)
    data = parse(text, reporter)
    if data is None or (reporter.errors and not isinstance(data, dict)):
        raise ConfigError(reporter.errors)
    reporter.settle()
    validate.check(data, reporter)
    if not isinstance(data, dict):
        raise ConfigError(reporter.errors)
    reporter.settle()
    renderer = Renderer(env, reporter)
    renderer.render_all(data)
    reporter.settle()
    Checker(data, reporter, registry.names(), renderer.disabled, renderer.disabled_at, registry).run()
    if reporter.errors:
        raise ConfigError(reporter.errors)
    return build_config(data, reporter.source, renderer.disabled, reporter.warnings, base_dir)


def locate_problems(text: str | bytes, problems: tuple[Problem, ...] | list[Problem]) -> tuple[Problem, ...]:
    """Fill in line/col for problems reported without them (e.g. by the router's compile step) from their path."""
    if all(p.line for p in problems):
        return tuple(problems)
    reporter = Reporter("")
    try:
        source = text.decode("utf-8-sig") if isinstance(text, bytes) else text
        parse(source, reporter)
    except (UnicodeDecodeError, RecursionError):
        return tuple(problems)
    if reporter.root is None:
        return tuple(problems)
    located = []
    for p in problems:
        if p.line == 0 and p.path:
            line, col = reporter.locate_text_path(p.path)
            p = Problem(p.file, line, col, p.path, p.message, p.severity)
        located.append(p)
    return tuple(located)


def _decode(raw: bytes, reporter: Reporter) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        reporter.at(line, col, (), f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})")
        raise ConfigError(reporter.errors) from None
