"""docs/observability.md stays true: every field of the status JSON and every metric is documented there."""

from __future__ import annotations

import re
from pathlib import Path

from turnout.server.metrics import Metrics

DOC = (Path(__file__).resolve().parents[3] / "docs" / "observability.md").read_text()


def documented(name: str) -> bool:
    return re.search(rf"`[^`]*\b{re.escape(name)}\b[^`]*`", DOC) is not None


async def test_every_status_json_field_is_documented(serve_status, http, status_kit):
    """Each key of a real answer (top level, route, step, deployment, its parts, recent, reload, worker) is named
    in the observability page."""
    async with serve_status() as s:
        for _ in range(2):
            async with http.post(s.url + "/v1/chat/completions", json=status_kit.fault()) as resp:
                assert resp.status == 200
        s.path.write_text(s.path.read_text().replace("chain: [echo]", "chain: [nowhere]"))
        async with http.post(s.url + "/admin/reload") as resp:
            assert resp.status == 422
        async with http.get(s.url + "/admin/status") as resp:
            view = await resp.json()
    route = view["routes"][0]
    deployment = route["steps"][0]["deployments"][1]
    keys = set(view) | set(route) | set(route["steps"][0]) | set(deployment)
    keys |= set(deployment["breaker"]) | set(deployment["stats"]) | set(view["state"]) | set(view["config"])
    keys |= set(view["recent"][0]) | set(view["reloads"][0]) | set(view["workers"][0])
    missing = sorted(k for k in keys if not documented(k))
    assert missing == []


def test_every_metric_is_documented():
    """Each metric family the sidecar exports has its row in the metrics table."""
    names = [f.name + ("_total" if f.kind == "counter" else "") for f in Metrics().families]
    missing = [name for name in names if f"| `{name}` |" not in DOC]
    assert missing == []
