"""`GET /admin/spend`: what `turnout spend` prints, as JSON, from the serving process's own view.

Query: `period` (day | week | month | total, default day, UTC), `at` (YYYY-MM-DD: the period containing it,
default today) and `client` (a declared client's name: only its rows and budget). The usage rows come from the
ledger (`Router.usage`: every process's flushed spend plus this one's not flushed yet); each budget's standing from
the meter the budgets are checked against, its reservations in flight included. Admin only (the admin key rule),
never cross-site. A ledger that cannot be read (Redis down, a broken file) is a 503 saying so, never a partial total.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from turnout.ops.spend import report
from turnout.server import errors
from turnout.state.base import StoreError
from turnout.state.ledger import PERIODS, resolve_day

_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


class AdminSpend:
    """The endpoint of one Sidecar."""

    def __init__(self, sidecar: Any) -> None:
        self.sc = sidecar

    async def __call__(self, request: web.Request) -> web.Response:
        refused = self.sc.admin_refusal(request)
        if refused is not None:
            return refused
        query = request.query
        period = query.get("period", "day")
        if period not in PERIODS:
            return _bad(f"period must be one of {', '.join(PERIODS)}, got {period!r}.", "period")
        client = query.get("client") or None
        router = self.sc.router
        if client is not None and client not in router.config.clients:
            return _bad(f"No client named {client!r} is declared in the routing file.", "client")
        try:
            day = resolve_day(query.get("at"))
        except ValueError:
            return _bad("at must be a date such as 2025-06-01.", "at")
        try:
            rows = await router.usage(period, day)
        except StoreError as exc:
            fail = errors.simple(503, f"The spend ledger cannot be read right now: {exc}", code="ledger_unavailable")
            return web.Response(status=503, body=fail.body(), headers=_HEADERS)
        meter = router.state.meter

        def spent_of(scope: str, kind: int) -> tuple[int, int]:
            return meter.spent(scope, kind), meter.reserved.get(scope, 0)

        data = report(router.config, rows, spent_of, period, day, client=client, source=router.state.kind)
        return web.Response(body=errors.json_bytes(data), headers=_HEADERS)


def _bad(message: str, param: str) -> web.Response:
    fail = errors.simple(400, message, code="invalid_request", param=param)
    return web.Response(status=400, body=fail.body(), headers=_HEADERS)
