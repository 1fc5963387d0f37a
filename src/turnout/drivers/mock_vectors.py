"""Deterministic vectors for the mock driver's embeddings: the same input always gives the same vector, in any
process on any machine, so a demo index built through the mock stays valid.

A vector is derived from SHAKE-256 of the input (text as UTF-8, token-id arrays as their decimal list), read as
little-endian signed 32-bit integers and scaled to unit length. A shorter vector (a request asking for fewer
`dimensions`) is the full vector's prefix, scaled to unit length again: what Matryoshka models such as
text-embedding-3 do, so the mock's shortened vectors agree with its full ones as a real model's do. All but the
final scaling runs in C (`struct`, `math.hypot`): ~0.1 ms for 1536 dimensions.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence

DEFAULT_DIMENSIONS = 16  # when the call names no model length (a context built by hand)


def mock_vector(item: str | Sequence[int], size: int, length: int | None = None) -> list[float]:
    """The unit vector for `item` from a model of `size` dimensions, cut to `length` (default: all of it)."""
    if isinstance(item, str):
        seed = item.encode("utf-8", "surrogatepass")
    else:
        seed = b"tokens:" + ",".join(str(t) for t in item).encode()
    words = struct.unpack(f"<{size}i", hashlib.shake_256(seed).digest(4 * size))[: length or size]
    scale = 1.0 / (math.hypot(*words) or 1.0)
    return [w * scale for w in words]


def estimate_tokens(item: str | Sequence[int]) -> int:
    """What the mock reports as an input's tokens: ~4 characters each (token ids count one each)."""
    return len(item) if not isinstance(item, str) else max(1, math.ceil(len(item) / 4))
