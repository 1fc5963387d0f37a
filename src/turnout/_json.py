"""JSON on the hot paths: orjson when a safe release is installed (`turnout[fast]`), the stdlib otherwise.

Both give the same values. orjson is only used where it cannot change an answer: releases before 3.9.15 recurse
without limit on nested input (CVE-2024-27454: a deeply nested body crashes the process), so they are ignored;
it reads integers beyond 64 bits as floats, so a body holding a 19-digit run goes to the stdlib, which keeps them
exact; and whatever orjson refuses (NaN, lone surrogates, huge integers on output) is decided by the stdlib.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

SAFE_ORJSON = (3, 9, 15)
# Digits -> "0", everything else -> " ": a 19-digit run is then one substring search (~1.5 us/KB; a regex
# scanning for \d{19} costs more than the stdlib parse it would save).
_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"0" * 19


def orjson_is_safe(version: str) -> bool:
    """True for orjson releases with a nesting limit on loads (3.9.15 and later)."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts))) >= SAFE_ORJSON


def _import_orjson() -> Any:
    try:
        import orjson
    except ImportError:
        return None
    return orjson if orjson_is_safe(getattr(orjson, "__version__", "0")) else None


_orjson = _import_orjson()
FAST = _orjson is not None


def stdlib_dumps(obj: Any) -> bytes:
    """Compact JSON bytes with UTF-8 kept as is (the stdlib encoder)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes | str, fallback: Callable[[Any], Any] = json.loads) -> Any:
    """Parse `data`; what orjson cannot parse exactly is parsed (or refused, with its reason) by `fallback`."""
    if _orjson is not None:
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
        if _LONG_RUN in raw.translate(_DIGITS_ONLY):
            return fallback(data)
        try:
            return _orjson.loads(raw)
        except ValueError:
            pass
    return fallback(data)


def dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compact JSON bytes (no spaces, UTF-8 kept as is); `default` renders values JSON has no type for.

    Text with a lone surrogate cannot be UTF-8: UnicodeEncodeError (a driver turns it into a bad request)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(obj, default=default)
        except TypeError:  # integers beyond 64 bits, lone surrogates, non-string keys, deep nesting
            pass
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=default).encode()


def dumps_escaped(obj: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """`dumps` for what goes to a client: never fails on text, a lone surrogate (an upstream may send `\\ud800`)
    is written as an escape, as the stdlib does."""
    try:
        return dumps(obj, default)
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":"), default=default).encode()
