"""Who may talk to the sidecar when client authentication is off, and who may use its admin endpoints.

DNS rebinding: a web page on `evil.example` re-points its name at 127.0.0.1; the browser then treats the sidecar
as the page's own origin, so same-origin rules no longer protect it. The request still says `Host: evil.example`,
so with client authentication off (no clients declared) the sidecar answers only loopback Host values
(`localhost`, `*.localhost`, 127.0.0.0/8, `::1`) plus `server.allowed_hosts`. A request without a Host header
cannot come from a browser and is answered. With client keys set every Host is accepted: a rebound page cannot
know a key. `/healthz` and the minimal `/readyz` answer stay open for probes that address the pod by its IP.

Admin endpoints additionally refuse cross-site requests, whatever the keys: an `Origin` that is not the sidecar
itself (scheme-less comparison of host and port against `Host`), or `Sec-Fetch-Site: cross-site / same-site`.
A plain POST needs no CORS preflight, so without this any page could trigger `POST /admin/reload`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_CACHE_SIZE = 256  # distinct Host values remembered per guard (a hostile client cannot grow it further)


def split_host(value: str) -> tuple[str, str]:
    """(host, port) of a Host header value: lower-cased, brackets and trailing dots removed, port '' if none."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest.removeprefix(":")
    host, sep, port = value.rpartition(":")
    if not sep or ":" in host:  # no port, or a bare IPv6 address
        return value.rstrip("."), ""
    return host.rstrip("."), port


def is_loopback_host(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HostGuard:
    """Decides whether a request's Host may be answered (see the module docstring); decisions are cached."""

    __slots__ = ("_any", "_exact", "_open", "_seen", "_suffixes")

    def __init__(self, allowed: Iterable[str], *, auth_on: bool) -> None:
        names = [split_host(a)[0] if not a.startswith(".") else a.strip().lower().rstrip(".") for a in allowed]
        self._any = "*" in names
        self._open = auth_on or self._any
        self._exact = frozenset(n for n in names if not n.startswith("."))
        self._suffixes = tuple(n for n in names if n.startswith("."))
        self._seen: dict[str, bool] = {}

    @property
    def open(self) -> bool:
        """True when every Host is accepted (client keys are set, or allowed_hosts has '*')."""
        return self._open

    def allows(self, host_header: str | None) -> bool:
        if self._open or not host_header:
            return True
        verdict = self._seen.get(host_header)
        if verdict is None:
            verdict = self._judge(host_header)
            if len(self._seen) < _CACHE_SIZE:
                self._seen[host_header] = verdict
        return verdict

    def _judge(self, host_header: str) -> bool:
        host, _ = split_host(host_header)
        if is_loopback_host(host) or host in self._exact:
            return True
        return any(host.endswith(suffix) or host == suffix[1:] for suffix in self._suffixes)


def cross_site(headers: Mapping[str, str]) -> bool:
    """True when a browser sent this request from a page that is not the sidecar's own origin."""
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.lower() in ("cross-site", "same-site"):
        return True
    origin = headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    parts = urlsplit(origin)
    own_host, own_port = split_host(headers.get("Host", ""))
    origin_host = (parts.hostname or "").rstrip(".")
    try:
        origin_port = str(parts.port or ("443" if parts.scheme == "https" else "80"))
    except ValueError:
        return True
    return origin_host != own_host or origin_port != (own_port or ("443" if parts.scheme == "https" else "80"))
