"""Durations (`250ms`, `30s`, `2m`, `1h`, plain seconds) and sizes (`512KB`, `8MB`, plain bytes)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)\s*$")
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]i?[bB]|[bB])\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_BYTES = {"b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2, "gb": 1024**3, "gib": 1024**3}


def parse_duration(value: object) -> float:
    """Seconds as a float. Raises ValueError with a user-facing message for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 250ms, 30s, 2m or 1h, got {value}")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a duration such as 250ms, 30s, 2m or 1h, got {value!r}")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def parse_size(value: object) -> int:
    """Bytes as an int; KB/MB/GB are binary (1024-based), as request-size limits conventionally are."""
    if isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)  # JSON Schema's "integer" also admits 8.0
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a size such as 512KB, 8MB or a number of bytes, got {value!r}")
    return int(float(match.group(1)) * _BYTES[match.group(2).lower()])


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 0.25 -> '250ms', 30 -> '30s', 600 -> '10m'."""
    for unit, factor in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= factor and (seconds / factor).is_integer():
            return f"{int(seconds / factor)}{unit}"
    millis = seconds * 1000
    return f"{int(millis)}ms" if millis.is_integer() else f"{seconds:g}s"


def format_size(size: int) -> str:
    """The shortest exact spelling: 262144 -> '256KB', 1048576 -> '1MB', 1000 -> '1000B'."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"
