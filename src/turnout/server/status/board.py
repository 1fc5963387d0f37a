"""The status page's endpoints on one sidecar app, its observer, and (with `--workers`) its publishing task.

```
GET  /               303 to /status
GET  /status/favicon.svg  the page's icon (static)     the Host guard only
GET  /status         the page (HTML)                  admin (Sidecar.admin_refusal) or a log-in session; with keys
                                                      and neither: the log-in form (401); cross-site: 403
GET  /admin/status   the JSON the page refreshes from  admin or a log-in session; never cross-site
POST /status/login   form field `key` -> session       never cross-site; a wrong key: the form again (401); 10
                                                      wrong keys a minute from one address: 429 (`throttle`)
POST /status/logout  ends this browser's session       never cross-site
```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from aiohttp import web

from turnout.server import errors
from turnout.server.hosts import cross_site
from turnout.server.status import page, session
from turnout.server.status.files import PUBLISH_INTERVAL, SnapshotFiles
from turnout.server.status.observer import StatusObserver
from turnout.server.status.snapshot import build_view, local_snapshot
from turnout.server.status.throttle import LoginThrottle

if TYPE_CHECKING:
    from turnout.server.app import Sidecar

log = logging.getLogger("turnout.server")
STATUS_PATHS = {
    "/": "GET",
    "/status": "GET",
    "/status/favicon.svg": "GET",
    "/admin/status": "GET",
    "/status/login": "POST",
    "/status/logout": "POST",
}
MAX_FORM = 4096  # bytes of a log-in form read at most
FORM = "application/x-www-form-urlencoded"
JSON_HEADERS = {**page.COMMON_HEADERS, "Content-Type": "application/json"}


class StatusBoard:
    """Everything the status page needs on one app (see the module docstring)."""

    def __init__(self, sidecar: Sidecar, *, clock: Any = time.time) -> None:
        self.sc = sidecar
        self.observer = StatusObserver(clock=clock)
        metrics = sidecar.metrics
        directory, name = getattr(metrics, "directory", None), metrics.store.name
        self.files = SnapshotFiles(directory, name) if directory and name else None
        self._task: asyncio.Task[None] | None = None
        self.throttle = LoginThrottle()

    def register(self, app: web.Application) -> None:
        app.router.add_get("/", self.root)
        app.router.add_get("/status", self.page)
        app.router.add_get("/status/favicon.svg", self.icon)
        app.router.add_get("/admin/status", self.data)
        app.router.add_post("/status/login", self.login)
        app.router.add_post("/status/logout", self.logout)
        app.on_startup.append(self.on_startup)
        app.on_cleanup.append(self.on_cleanup)

    # -- who may look ------------------------------------------------------------------------------------
    def _refusal(self, request: web.Request) -> tuple[web.Response | None, bool]:
        """(the refusal or None, whether a log-in session let it through)."""
        refused = self.sc.admin_refusal(request)
        if refused is None:
            return None, False
        if cross_site(request.headers):
            return refused, False
        if session.valid(self.sc.admin_keys, session.token_of(request.cookies), time.time()):
            return None, True
        return refused, False

    # -- endpoints ---------------------------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/status")

    async def icon(self, request: web.Request) -> web.Response:
        """Static and holds nothing: served to any request the Host guard lets through."""
        if not self.sc.settings.hosts.allows(request.headers.get("Host")):
            fail = errors.host_not_allowed()
            return web.Response(status=fail.status, body=fail.body(), headers=JSON_HEADERS)
        return page.favicon()

    async def page(self, request: web.Request) -> web.StreamResponse:
        if cross_site(request.headers):
            return page.cross_site_refusal()
        refused, by_session = self._refusal(request)
        if refused is not None:
            if self.sc.admin_keys.enabled:
                return page.login()
            return refused
        return self.sc._closing_if_draining(page.page(session=by_session))

    async def data(self, request: web.Request) -> web.StreamResponse:
        refused, _ = self._refusal(request)
        if refused is not None:
            return refused
        body = errors.json_bytes(self.view())
        return self.sc._closing_if_draining(web.Response(body=body, headers=JSON_HEADERS))

    async def login(self, request: web.Request) -> web.StreamResponse:
        if cross_site(request.headers):
            return web.Response(status=403, body=errors.cross_site().body(), headers=JSON_HEADERS)
        keys = self.sc.admin_keys
        if not keys.enabled:  # nothing to log in to: the page is open to allowed Hosts
            raise web.HTTPSeeOther("/status")
        address = request.remote or "unknown"
        wait = self.throttle.retry_after(address)
        if wait is not None:
            refused = page.login(f"Too many wrong keys from this address: try again in {wait} s.", status=429)
            refused.headers["Retry-After"] = str(wait)
            return refused
        key = await _form_key(request)
        if key is None or not keys.allows({"Authorization": f"Bearer {key}"}):
            self.throttle.failed(address)
            return page.login("That is not an admin key of this sidecar.")
        self.throttle.succeeded(address)
        response = web.HTTPSeeOther("/status")
        response.headers["Set-Cookie"] = session.cookie_header(session.issue(key, time.time()), secure=request.secure)
        response.headers["Cache-Control"] = "no-store"
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if cross_site(request.headers):
            return web.Response(status=403, body=errors.cross_site().body(), headers=JSON_HEADERS)
        response = web.HTTPSeeOther("/status")
        response.headers["Set-Cookie"] = session.clearing_header(secure=request.secure)
        raise response

    # -- data --------------------------------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """The status JSON: this process's snapshot, and every sibling worker's published one."""
        name = self.files.name if self.files is not None else None
        own = local_snapshot(self.sc, self.observer, name)
        now = own["at"]
        siblings = self.files.siblings(now) if self.files is not None else []
        return build_view(self.sc, [own, *siblings], now)

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def on_startup(self, app: web.Application) -> None:
        self.sc.router.add_observer(self.observer)
        if self.files is not None:
            self._task = asyncio.get_running_loop().create_task(self._publish(), name="turnout-status-publish")

    async def on_cleanup(self, app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(ValueError):
            self.sc.router.remove_observer(self.observer)

    async def _publish(self) -> None:
        """Publish this worker's snapshot for its siblings, once a second, until the app stops."""
        assert self.files is not None
        while True:
            try:
                self.files.publish(local_snapshot(self.sc, self.observer, self.files.name))
            except Exception:  # a bug here must not stop the next second's snapshot, nor the worker
                log.exception("publishing the status snapshot failed")
            await asyncio.sleep(PUBLISH_INTERVAL)


async def _form_key(request: web.Request) -> str | None:
    """The `key` field of a small url-encoded form, or None (wrong type, too big, missing)."""
    media = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media != FORM:
        return None
    body = await request.content.read(MAX_FORM + 1)
    if len(body) > MAX_FORM:
        return None
    values = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=False).get("key")
    key = values[0].strip() if values else ""
    return key or None
