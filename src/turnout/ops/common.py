"""What the operator commands share: loading a routing file with located errors, colour, tables, JSON output.

Exit codes (the CLI contract): 0 ok, 1 invalid input or a failed check, 2 usage error; `plan` alone uses 2 for
"changes found" and 1 for every error, so a CI gate can tell the two apart.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

from turnout.config import Config
from turnout.errors import ConfigError

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
DEFAULT_FILE = "routes.yaml"


def load_routing_file(path: str, *, unreadable: int = EXIT_USAGE) -> tuple[Config, Any] | int:
    """(Config, its DispatchGraph), or the exit code after reporting why there is none on stderr.

    An unreadable file exits `unreadable` (2 by default), an invalid one 1 with every problem located as
    `FILE:LINE:COL: path: message` (compile problems, such as a driver rejecting its options, included). The graph
    is None when the router is not installed.
    """
    from turnout.schema import load_text, locate_problems

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        print(f"turnout: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return unreadable
    try:
        config = load_text(raw, source=path, base_dir=os.path.dirname(os.path.abspath(path)))
        return config, compile_or_none(config)
    except ConfigError as exc:
        report_problems(path, locate_problems(raw, exc.problems))
        return EXIT_INVALID


def report_problems(path: str, problems: Sequence[Any]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)
    count = len(problems)
    print(f"{path}: invalid — {count} problem{'' if count == 1 else 's'}", file=sys.stderr)


def compile_or_none(config: Config) -> Any:
    """The dispatch graph (pure, no I/O), or None when the router is not installed; raises ConfigError."""
    try:
        from turnout.router.compile import compile_graph
    except ImportError:
        return None
    return compile_graph(config)


def print_json(data: Any, stream: IO[str] | None = None) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False), file=stream or sys.stdout)


class Style:
    """ANSI colour, only on a terminal: never when NO_COLOR is set, TERM is dumb or the stream is a pipe/file."""

    _CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: IO[str]) -> Style:
        isatty = getattr(stream, "isatty", None)
        tty = bool(isatty and isatty())
        return cls(tty and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb")

    def __call__(self, text: str, *names: str) -> str:
        if not self.enabled or not names:
            return text
        codes = ";".join(self._CODES[n] for n in names)
        return f"\x1b[{codes}m{text}\x1b[0m"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], style: Style, colours: Sequence[str] = ()) -> str:
    """An aligned plain-text table; `colours[i]` (a Style name or "") colours row i after padding."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [style(line(headers), "bold")]
    for i, row in enumerate(rows):
        colour = colours[i] if i < len(colours) else ""
        out.append(style(line(row), colour) if colour else line(row))
    return "\n".join(out) + "\n"


def plural(n: int, noun: str, many: str | None = None) -> str:
    return f"{n} {noun if n == 1 else (many or noun + 's')}"
