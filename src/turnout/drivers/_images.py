"""Fetching image URLs for wire formats that only take images inline (Gemini `inlineData`, Ollama `images`).

Fetching a URL a client sent is a server-side request made on the client's behalf, so it is policed (the
`image_urls` provider option):
- `public` (default): https only, and only to globally routable addresses, checked on the address actually
  connected to after DNS (see `_egress`), so no spelling of an address and no name resolving to a private one
  reaches an internal host;
- `any`: any http(s) URL (local development, tests);
- `off`: image URLs are refused; only `data:` URLs are accepted.

Limits, per provider: `max_image_bytes` per image (default 20 MB) and `max_request_image_bytes` for all the images
of one request (default 20 MB, Gemini's inline limit for a whole request). A body is read up to the cap and never
cut short silently: one byte over is a refusal. All the fetches of one request share one time limit: at most
`FETCH_TIMEOUT` and never more than half of what is left of the attempt, so a slow image host cannot become the
deployment's timeout.

Every failure to get an image (refused, unreachable, reset, TLS, timeout, HTTP status, not an image, too large)
is the client's problem: a bad_request (`image_fetch_failed`) that never counts against the deployment, since the
provider was never called, and it is worded the same whichever way the fetch failed, so the sidecar cannot be
used to probe which internal hosts and ports answer (the reason is logged at DEBUG for operators). Only what the
URL's text alone decides (a scheme, `image_urls: off`) is named specifically. Redirects are followed by hand (at
most 3), each target policed the same way.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import aiohttp

from turnout.drivers._egress import Egress, host_refusal
from turnout.drivers.base import CallContext
from turnout.errors import BadRequest

ImagePolicy = Literal["public", "any", "off"]
IMAGE_POLICIES: tuple[str, ...] = ("public", "any", "off")
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_REQUEST_IMAGE_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT = 10.0  # seconds for all the image fetches of one request (and at most half the attempt left)
FETCH_FAILED = "image_fetch_failed"

# The provider options every image-inlining driver accepts (merged into its `options_schema`).
IMAGE_OPTIONS_SCHEMA: dict[str, dict] = {
    "image_urls": {
        "enum": list(IMAGE_POLICIES),
        "description": "which image URLs may be fetched and inlined: "
        "public (https, public addresses only, checked after DNS; default), any, off",
    },
    "max_image_bytes": {
        "type": "integer",
        "minimum": 1,
        "description": "largest image fetched from a URL to inline (default 20 MB)",
    },
    "max_request_image_bytes": {
        "type": "integer",
        "minimum": 1,
        "description": "most bytes fetched for all the image URLs of one request together (default 20 MB)",
    },
}
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_READ = 64 * 1024

log = logging.getLogger("turnout.drivers")


def _shown(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def url_mistake(url: str, policy: ImagePolicy) -> str | None:
    """What the client must change whatever the host (image URLs off, a scheme the policy refuses), or None."""
    if policy == "off":
        return "image URLs are disabled for this provider (image_urls: off); send a data: URL"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "image URL must be http(s)"
    if policy == "public" and parts.scheme != "https":
        return "image URL must be https (image_urls: public)"
    return None


def refusal(url: str, policy: ImagePolicy) -> str | None:
    """Why `policy` forbids fetching `url` judging by its text alone, or None when it may be tried (the address
    actually connected to is checked again at connect time)."""
    mistake = url_mistake(url, policy)
    if mistake is not None or policy == "any":
        return mistake
    reason = host_refusal(urlsplit(url).hostname or "")
    return f"image URL host is {reason} (image_urls: public)" if reason else None


class _Failed(Exception):
    """Why one fetch failed (logged at DEBUG; the client gets the generic message)."""


class ImageFetcher:
    """Fetches the image URLs of one request under its provider's policy and limits (see the module docstring)."""

    def __init__(self, ctx: CallContext, *, provider: str, options: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.provider = provider
        self.policy: ImagePolicy = options.get("image_urls", "public")
        self.max_bytes: int = options.get("max_image_bytes", DEFAULT_MAX_IMAGE_BYTES)
        self.bytes_left: int = options.get("max_request_image_bytes", DEFAULT_MAX_REQUEST_IMAGE_BYTES)
        remaining = ctx.remaining()
        self.seconds = FETCH_TIMEOUT if remaining is None else min(FETCH_TIMEOUT, remaining / 2)
        self.deadline = time.monotonic() + self.seconds
        self._done: dict[str, tuple[str, str]] = {}

    async def fetch(self, url: str) -> tuple[str, str]:
        """(mime type, base64 data) of the image at `url`; each URL is fetched once per request."""
        if url in self._done:
            return self._done[url]
        mistake = url_mistake(url, self.policy)
        if mistake is not None:
            raise self._refused(f"{mistake}: {_shown(url)}")
        try:
            mime, data = await self._get(url)
        except Exception as exc:  # refused, unreachable, slow, TLS, status, type, size: one answer for all
            log.debug("image fetch for %s refused or failed (%s: %s)", self.provider, type(exc).__name__, exc)
            raise self._refused(self._generic(url)) from None
        self.bytes_left -= len(data)
        self._done[url] = result = (mime, base64.b64encode(data).decode("ascii"))
        return result

    async def _get(self, url: str) -> tuple[str, bytes]:
        egress = self.ctx.egress
        if egress is None:  # a CallContext built by hand (tests, embedders): a session for this fetch only
            egress = Egress()
            try:
                return await self._follow(url, egress)
            finally:
                await egress.aclose()
        return await self._follow(url, egress)

    async def _follow(self, url: str, egress: Egress) -> tuple[str, bytes]:
        session = egress.session(self.policy)
        target = url
        for _ in range(_MAX_REDIRECTS + 1):
            reason = refusal(target, self.policy)
            if reason is not None:
                raise _Failed(f"refused: {reason}")
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise _Failed("out of time for this request's image fetches")
            timeout = aiohttp.ClientTimeout(total=left, ceil_threshold=1e9)
            async with session.get(target, timeout=timeout, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    target = urljoin(target, location)
                    continue
                return await self._read(resp)
        raise _Failed("too many redirects")

    async def _read(self, resp: aiohttp.ClientResponse) -> tuple[str, bytes]:
        """The whole body, read to its end (never one buffered piece), refused as soon as it passes a cap."""
        if resp.status != 200:
            raise _Failed(f"HTTP {resp.status}")
        mime = resp.content_type
        if not mime.startswith("image/"):
            raise _Failed(f"not an image ({mime})")
        if resp.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise _Failed("a compressed body")
        cap = min(self.max_bytes, self.bytes_left)
        if resp.content_length is not None and resp.content_length > cap:
            raise _Failed(f"{resp.content_length} bytes declared, over the cap of {cap}")
        body = bytearray()
        async for piece in resp.content.iter_chunked(_READ):
            body += piece
            if len(body) > cap:
                raise _Failed(f"more than {cap} bytes")
        return mime, bytes(body)

    def _generic(self, url: str) -> str:
        scheme = "https" if self.policy == "public" else "http(s)"
        where = " public" if self.policy == "public" else ""
        return (
            f"could not fetch the image at {_shown(url)}: it must be a reachable{where} {scheme} URL that answers "
            f"with an image of at most {self.max_bytes} bytes ({self.bytes_left} left for this request's images) "
            f"within {self.seconds:.3g}s"
        )

    def _refused(self, message: str) -> BadRequest:
        return BadRequest(message, provider=self.provider, model=self.ctx.model, code=FETCH_FAILED)
