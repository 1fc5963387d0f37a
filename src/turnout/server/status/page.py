"""The status page's HTML answers: the page, the log-in form and the "open it directly" refusal.

The HTML is static (`page.html`, `login.html`, package data) except a fresh CSP nonce per answer, which is the only
way its inline style and script may run: the Content-Security-Policy allows nothing else (no other script or style,
no inline event handlers, no `javascript:` URLs, no framing, requests to this origin only) and asks the browser to
refuse any HTML-parsing sink (`require-trusted-types-for 'script'`), so a route description holding markup can only
ever be shown as text. The page reads everything it shows from `/admin/status` and writes it with `textContent`.
"""

from __future__ import annotations

import html
import secrets
from functools import cache
from importlib.resources import files

from aiohttp import web

LOGOUT_FORM = '<form method="post" action="/status/logout"><button type="submit">Log out</button></form>'
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not no-referrer: the browser would then send `Origin: null` on log-in
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def csp(nonce: str) -> str:
    """The page's Content-Security-Policy: its own nonce-bearing style and script, fetches to itself, nothing else."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
        "require-trusted-types-for 'script'; trusted-types 'none'"
    )


@cache
def _template(name: str) -> str:
    return files("turnout.server.status").joinpath(name).read_text(encoding="utf-8")


def _html(status: int, text: str, nonce: str) -> web.Response:
    headers = {**COMMON_HEADERS, "Content-Security-Policy": csp(nonce)}
    return web.Response(status=status, text=text, content_type="text/html", charset="utf-8", headers=headers)


def page(*, session: bool) -> web.Response:
    """The status page; `session`: the browser is logged in with a cookie, so it gets a log-out button."""
    nonce = secrets.token_urlsafe(18)
    text = _template("page.html").replace("__NONCE__", nonce).replace("__LOGOUT__", LOGOUT_FORM if session else "")
    return _html(200, text, nonce)


def login(message: str = "", *, status: int = 401) -> web.Response:
    """The log-in form (401: the page needs a key), with `message` (our own words, escaped all the same)."""
    nonce = secrets.token_urlsafe(18)
    text = _template("login.html").replace("__NONCE__", nonce).replace("__MESSAGE__", html.escape(message))
    return _html(status, text, nonce)


FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M1 11h14M1 11C6 11 9 5 15 5" '
    b'stroke="#007a5a" stroke-width="2" fill="none"/></svg>'
)


def favicon() -> web.Response:
    """A turnout (two tracks parting), so the browser's icon request is answered and the console stays clean."""
    headers = {**COMMON_HEADERS, "Content-Type": "image/svg+xml", "Cache-Control": "max-age=86400"}
    return web.Response(body=FAVICON, headers=headers)


def cross_site_refusal() -> web.Response:
    """403 for a page load from another site: the page is only shown when opened directly (no framing, no links
    that carry a session from elsewhere)."""
    nonce = secrets.token_urlsafe(18)
    text = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>turnout status</title></head><body>"
        "<p>The turnout status page is not shown to requests from another site. Type its address into the "
        "browser's address bar.</p></body></html>"
    )
    return _html(403, text, nonce)
