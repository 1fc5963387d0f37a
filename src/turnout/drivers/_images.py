"""Fetching image URLs for wire formats that only take images inline (Gemini `inlineData`, Ollama `images`).

Fetching a URL a client sent is a server-side request made on the client's behalf, so it is policed (the
`image_urls` provider option):
- `public` (default): https only, and never a host that is `localhost` or an IP literal in a loopback, private,
  link-local or otherwise non-global range (names that *resolve* to such addresses are not caught: put the sidecar
  behind an egress policy if clients are untrusted);
- `any`: any http(s) URL (local development, tests);
- `off`: image URLs are refused; only `data:` URLs are accepted.
Every failure to get the image (refused, unreachable, slow, missing, not an image, too large) is the client's
problem: a bad_request (`image_fetch_failed`) that never counts against the deployment's breaker or limits, since
the provider was never even called. The fetch has its own time limit, at most half of what is left of the attempt,
so a slow image host cannot turn into the deployment's timeout either. Redirects are followed by hand (at most 3),
each target checked against the policy, so a public URL cannot bounce the fetch to an internal one.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from typing import Literal
from urllib.parse import urljoin, urlsplit

import aiohttp

from turnout.drivers.base import CallContext
from turnout.errors import BadRequest, ProviderError

ImagePolicy = Literal["public", "any", "off"]
IMAGE_POLICIES: tuple[str, ...] = ("public", "any", "off")
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024

# The provider options every image-inlining driver accepts (merged into its `options_schema`).
IMAGE_OPTIONS_SCHEMA: dict[str, dict] = {
    "image_urls": {
        "enum": list(IMAGE_POLICIES),
        "description": "which image URLs may be fetched and inlined: "
        "public (https, no private hosts; default), any, off",
    },
    "max_image_bytes": {
        "type": "integer",
        "minimum": 1,
        "description": "largest image fetched from a URL to inline (default 20 MB)",
    },
}
_MAX_REDIRECTS = 3
FETCH_TIMEOUT = 10.0  # seconds for one image at most; never more than half of what is left of the attempt
FETCH_FAILED = "image_fetch_failed"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _shown(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def refusal(url: str, policy: ImagePolicy) -> str | None:
    """Why `policy` forbids fetching `url`, or None when it may be fetched."""
    if policy == "off":
        return "image URLs are disabled for this provider (image_urls: off); send a data: URL"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "image URL must be http(s)"
    if policy == "any":
        return None
    if parts.scheme != "https":
        return "image URL must be https (image_urls: public)"
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "image URL must not point at localhost (image_urls: public)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_global:
        return "image URL must not point at a non-public address (image_urls: public)"
    return None


async def fetch_images(
    urls: Sequence[str], ctx: CallContext, *, provider: str, policy: ImagePolicy, max_bytes: int
) -> dict[str, tuple[str, str]]:
    """url -> (mime type, base64 data) for each URL, fetched once each, in order."""
    images: dict[str, tuple[str, str]] = {}
    for url in urls:
        images[url] = await fetch_image(url, ctx, provider=provider, policy=policy, max_bytes=max_bytes)
    return images


def _fetch_timeout(ctx: CallContext) -> aiohttp.ClientTimeout:
    remaining = ctx.remaining()
    total = FETCH_TIMEOUT if remaining is None else min(FETCH_TIMEOUT, remaining / 2)
    return aiohttp.ClientTimeout(total=total, ceil_threshold=1e9)


async def fetch_image(
    url: str, ctx: CallContext, *, provider: str, policy: ImagePolicy, max_bytes: int
) -> tuple[str, str]:
    """GET the image, following up to `_MAX_REDIRECTS` redirects, each target checked against the policy."""
    model = ctx.model

    def refused(reason: str) -> BadRequest:
        return BadRequest(reason, provider=provider, model=model, code=FETCH_FAILED)

    target = url
    try:
        for _ in range(_MAX_REDIRECTS + 1):
            reason = refusal(target, policy)
            if reason is not None:
                raise refused(f"{reason}: {_shown(target)}")
            async with ctx.session.get(target, timeout=_fetch_timeout(ctx), allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    target = urljoin(target, location)
                    continue
                if resp.status != 200:
                    raise refused(f"could not fetch image {_shown(url)}: HTTP {resp.status}")
                mime = resp.content_type
                if not mime.startswith("image/"):
                    raise refused(f"{_shown(url)} is not an image ({mime})")
                data = await resp.content.read(max_bytes + 1)
                break
        else:
            raise refused(f"too many redirects fetching image {_shown(url)}")
    except ProviderError:
        raise
    except Exception as exc:  # unreachable, reset, slow, TLS...: the client's URL, not the deployment's fault
        raise refused(f"could not fetch image {_shown(url)}") from exc
    if len(data) > max_bytes:
        raise refused(f"image {_shown(url)} is larger than {max_bytes} bytes")
    return mime, base64.b64encode(data).decode("ascii")
