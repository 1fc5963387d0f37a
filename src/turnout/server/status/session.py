"""The status page's log-in: an admin key given once in a form becomes a signed, expiring session cookie.

A browser cannot send `Authorization: Bearer` on a page load, so `POST /status/login` takes the key from a form
and answers with a cookie that holds `v1.<expiry>.<HMAC-SHA256(key, context + expiry)>`: derived from the key,
never the key itself, so a leaked cookie cannot be turned into a key. Checking it needs no server-side store and
works on every worker and after a restart: the MAC is recomputed under each admin key (constant time). Removing or
rotating a key ends every session made with it. The cookie is `HttpOnly` (no script reads it), `SameSite=Strict`
(no other site's page or link sends it; the page's own requests do) and `Secure` when served over HTTPS.

CSRF: the cookie is accepted only by `GET /status` and `GET /admin/status`, which change nothing; log-in and
log-out are POSTs refused when cross-site (`hosts.cross_site`), so no other page can log a browser in with an
attacker's key or out. Log-out clears the cookie; a copy taken before stays valid until its expiry (`LIFETIME`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from turnout.server.auth import ApiKeys

COOKIE = "turnout_status_session"
LIFETIME = 8 * 3600  # seconds a log-in lasts
_CONTEXT = b"turnout status session v1\x00"
_SKEW = 60  # seconds of clock difference tolerated between workers/replicas


def _message(expires: int) -> bytes:
    return _CONTEXT + str(expires).encode()


def issue(key: str, now: float) -> str:
    """A session token for `key` (already checked to be an admin key), valid for `LIFETIME` seconds from `now`."""
    expires = int(now) + LIFETIME
    mac = hmac.new(key.encode("utf-8", "surrogateescape"), _message(expires), "sha256").digest()
    return f"v1.{expires}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def valid(keys: ApiKeys, token: str | None, now: float) -> bool:
    """True when `token` was issued for one of `keys` and has not expired."""
    if not token or not keys.enabled:
        return False
    version, _, rest = token.partition(".")
    expiry, _, signature = rest.partition(".")
    if version != "v1" or not expiry.isdigit() or len(expiry) > 12:
        return False
    expires = int(expiry)
    if expires <= now or expires > now + LIFETIME + _SKEW:
        return False
    try:
        mac = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (binascii.Error, ValueError):
        return False
    matched = False
    for expected in keys.macs(_message(expires)):
        matched |= hmac.compare_digest(mac, expected)
    return matched


def cookie_header(token: str, *, secure: bool) -> str:
    """The Set-Cookie value that starts a session."""
    return f"{COOKIE}={token}; Max-Age={LIFETIME}; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")


def clearing_header(*, secure: bool) -> str:
    """The Set-Cookie value that ends a session in this browser."""
    return f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")


def token_of(cookies: Mapping[str, str]) -> str | None:
    return cookies.get(COOKIE)
