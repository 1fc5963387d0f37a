"""How the status view combines several workers' snapshots: the worst state wins, figures add up."""

from __future__ import annotations

import json

from turnout.server.status.board import StatusBoard
from turnout.server.status.snapshot import build_view, local_snapshot


def member(view: dict, route: str, key: str) -> dict:
    found = [d for r in view["routes"] if r["name"] == route for s in r["steps"] for d in s["deployments"]]
    return next(d for d in found if d["key"] == key)


async def test_a_sibling_with_an_open_breaker_and_degraded_state_shows(serve_status):
    """A live sibling whose breaker is open (probe in 40 s) and whose state backend is degraded makes the view say
    so, counted in workers; in-flight requests and figures add up; an exited sibling adds only its events."""
    async with serve_status() as s:
        board = StatusBoard(s.sidecar)
        own = local_snapshot(s.sidecar, board.observer, "w0-1")
        now = own["at"]
        sibling = json.loads(json.dumps(own))  # as read from its file
        sibling.update(worker="w1-1", pid=1, in_flight=3, live=True)
        sibling["state"].update(state="degraded", state_error="connection refused")
        sibling["deployments"]["drill/drill"].update(breaker="open", probe_at=now + 40, failures=2, trips=1)
        sibling["stats"] = {"echo/echo": [4, 1, 0.5, 4, {"20": 4}]}
        gone = {"worker": "w2-1", "pid": 2, "at": now - 5, "live": False, "config": None,
                "recent": [{"at": now - 5, "kind": "error", "route": "drill", "from": "drill/drill", "to": None,
                            "error_class": "timeout", "status": None, "detail": "1 attempts"}]}  # fmt: skip
        view = build_view(s.sidecar, [own, sibling, gone], now)
    drill = member(view, "drill", "drill/drill")
    assert drill["state"] == "open" and drill["reason"] == "breaker open in 1 of 2 workers"
    assert 39 < drill["probe_in"] <= 40 and drill["breaker"]["open_in"] == 1
    assert member(view, "drill", "echo/echo")["stats"]["requests"] == 4
    assert view["in_flight"] == 3
    assert view["state"]["state"] == "degraded" and view["state"]["degraded_workers"] == 1
    assert view["state"]["error"] == "connection refused"
    assert [w["live"] for w in view["workers"]] == [True, True, False]
    assert view["recent"][0]["worker"] == "w2-1"
