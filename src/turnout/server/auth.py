"""A set of keys compared in constant time: `server.admin_keys` (`Authorization: Bearer <key>` or `x-api-key`).

Keys come from the routing file (usually templated from the environment) as `Secret`s and are compared with
`hmac.compare_digest` against every configured key, so timing reveals neither which key matched nor how much of
one did. Client keys are looked up by digest instead (`turnout.server.callers`), since there may be many.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from turnout.config import Secret


class ApiKeys:
    """The accepted keys; empty means there are none (see `turnout.server.callers` for what that opens)."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[Secret]) -> None:
        self._keys: tuple[bytes, ...] = tuple(k.reveal().encode() for k in keys if k)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._keys)} keys)"

    def macs(self, message: bytes) -> tuple[bytes, ...]:
        """HMAC-SHA256 of `message` under each key: what a token derived from a key (never the key itself, e.g.
        the status page's session cookie) is compared with."""
        return tuple(hmac.new(key, message, hashlib.sha256).digest() for key in self._keys)

    def allows(self, headers: Mapping[str, str]) -> bool:
        """True when the request's bearer token or its `x-api-key` is one of the keys (never when there are none)."""
        if not self._keys:
            return False
        matched = False
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            matched |= self._known(token)
        api_key = headers.get("x-api-key")
        if api_key is not None:
            matched |= self._known(api_key)
        return matched

    def _known(self, token: str) -> bool:
        # aiohttp decodes header bytes as UTF-8 with surrogateescape: encode the same way, so a token that is
        # not UTF-8 is compared as the bytes it was (and refused) instead of raising (a 500).
        presented = token.strip().encode("utf-8", "surrogateescape")
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        return matched


UNAUTHORIZED_MESSAGE = (
    "Missing or invalid API key. Send 'Authorization: Bearer <key>' with the key of a client declared in the "
    "routing file's clients section."
)
