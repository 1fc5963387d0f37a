"""Requests made on a client's behalf (fetching the image URLs it sent): where they may go, checked at connect time.

A URL a client sends is an attacker's choice of target, so the check that matters is on the address actually
connected to, after DNS: the `public` sessions' connector creates every socket through `guarded_socket`, which
refuses any address that is not globally routable. That covers names resolving to private addresses, DNS
rebinding (each connection is checked, not an earlier lookup) and every spelling of an address, because the
operating system has already parsed it by then. `host_refusal` adds an early check of the URL's host text,
normalised the way resolvers read it (full-width digits and dots, IDNA, trailing dots, `0x7f000001`,
`0177.0.0.1`, `2130706433`, `127.1`), so the obvious cases never leave the process.

An IPv6 address that carries an IPv4 one (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, NAT64
`64:ff9b::/96`, 6to4 `2002::/16`) is judged by that IPv4 address too; the local-use NAT64 prefix `64:ff9b:1::/48`,
Teredo `2001::/32` and zone ids are refused outright. Multicast and every non-global range are refused.

Fetches use their own sessions (`Egress`), never the upstream session: no cookie jar (`DummyCookieJar`, so one
client's image host cannot set cookies that ride along on another client's fetch), no keep-alive (a connection
is never reused for another client's URL), no proxy from the environment, no transparent decompression.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import unicodedata
from typing import Any

import aiohttp

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT (RFC 2765)
_DOTS = {0x3002: ".", 0xFF0E: ".", 0xFF61: "."}  # the full stops IDNA treats as dots
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def normalise_host(host: str) -> str:
    """The host as a resolver reads it: NFKC (full-width digits and letters), IDNA dots, lower case, no brackets,
    no trailing dots."""
    host = unicodedata.normalize("NFKC", host).translate(_DOTS)
    return host.strip().strip("[]").lower().rstrip(".")


def ipv4_any_form(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any form `inet_aton` accepts (1 to 4 parts; decimal, 0-octal or 0x-hex), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            digits, base = part[2:], 16
        elif len(part) > 1 and part[0] == "0":
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        if not digits:
            return None
        try:
            numbers.append(int(digits, base))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (24 - 8 * index)
    return ipaddress.IPv4Address(value)


def host_address(host: str) -> IPAddress | None:
    """The address a host text names literally (after `normalise_host`), or None for a name."""
    text = normalise_host(host)
    if "%" in text:  # an IPv6 zone id
        text = text.split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return ipv4_any_form(text)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, translated, compatible, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _COMPATIBLE or address in _TRANSLATED:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_forbidden(address: IPAddress) -> bool:
    """True unless `address` (and any IPv4 address inside it) is globally routable unicast."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id or address in _NAT64_LOCAL or address in _TEREDO:
            return True
        inner = embedded_ipv4(address)
        if inner is not None and address_forbidden(inner):
            return True
    return not address.is_global or address.is_multicast


def host_refusal(host: str) -> str | None:
    """Why a URL's host text is refused before any lookup (local names, non-public literals), or None."""
    text = normalise_host(host)
    if not text:
        return "no host"
    if text in _LOCAL_NAMES or text.endswith(".localhost"):
        return "a local name"
    address = host_address(text)
    if address is not None and address_forbidden(address):
        return "a non-public address"
    if address is None:
        try:
            text.encode("idna")
        except UnicodeError:
            return "not a valid host name"
    return None


def guarded_socket(addr_info: Any) -> socket.socket:
    """aiohttp's socket factory for `public` fetches: refuses to create a socket for a non-public address."""
    family, type_, proto, _, sockaddr = addr_info
    try:
        address = ipaddress.ip_address(sockaddr[0])
    except ValueError:
        raise OSError(f"refused to connect to {sockaddr[0]!r}: not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and len(sockaddr) > 3 and sockaddr[3]:
        raise OSError("refused to connect: an IPv6 zone")
    if address_forbidden(address):
        raise OSError(f"refused to connect to {address}: not a public address")
    return socket.socket(family=family, type=type_, proto=proto)


class Egress:
    """The HTTP sessions for client-supplied URLs, one per `image_urls` policy, created on first use (one Router
    owns one; `aclose()` closes them)."""

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def session(self, policy: str) -> aiohttp.ClientSession:
        """The session for `policy`: `public` connects only to global addresses, anything else anywhere."""
        session = self._sessions.get(policy)
        if session is None or session.closed or session._loop is not asyncio.get_running_loop():
            connector = aiohttp.TCPConnector(
                limit=64,
                force_close=True,
                socket_factory=guarded_socket if policy == "public" else None,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"Accept": "image/*", "Accept-Encoding": "identity"},
            )
            self._sessions[policy] = session
        return session

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
