"""The status page's per-deployment figures: bounded rings of time buckets, summed over workers."""

from __future__ import annotations

import json
import random
import sys

import pytest

from turnout.server.status import stats
from turnout.server.status.stats import BUCKET, BUCKETS, WINDOW, DeploymentStats, figures, latency_bin, merge


def test_figures_of_one_deployment():
    """Attempts, own-fault errors, error rate, spend and a median within its bin are reported."""
    s = DeploymentStats()
    for i in range(9):
        s.add("p/a", 1000.0 + i, 0.100, failed=i < 3, cost=0.01)
    got = figures(merge([s.summary(1010.0)])["p/a"])
    assert got["requests"] == 9
    assert got["errors"] == 3
    assert got["error_rate"] == pytest.approx(3 / 9)
    assert got["spend_usd"] == pytest.approx(0.09)
    assert got["unpriced"] == 0
    assert 100 / stats.RATIO <= got["p50_ms"] <= 100 * stats.RATIO


def test_median_is_within_a_bin_of_the_true_median():
    """For spread-out latencies the histogram median is within one bin ratio of the exact median."""
    rng = random.Random(7)
    durations = [rng.lognormvariate(-1.5, 1.0) for _ in range(2001)]
    s = DeploymentStats()
    for d in durations:
        s.add("p/a", 50.0, d, failed=False, cost=None)
    exact = sorted(durations)[1000] * 1000
    got = figures(merge([s.summary(50.0)])["p/a"])["p50_ms"]
    assert exact / stats.RATIO <= got <= exact * stats.RATIO


def test_unknown_cost_is_never_a_made_up_zero():
    """Attempts without a known cost leave the spend unknown (None) and are counted as unpriced."""
    s = DeploymentStats()
    s.add("p/a", 10.0, 0.2, failed=False, cost=None)
    got = figures(merge([s.summary(10.0)])["p/a"])
    assert got["spend_usd"] is None
    assert got["unpriced"] == 1


def test_old_buckets_leave_the_window():
    """An attempt older than the window no longer counts; a newer one in the same ring slot replaces it."""
    s = DeploymentStats()
    s.add("p/a", 0.0, 0.1, failed=True, cost=1.0)
    assert figures(merge([s.summary(WINDOW - 1)])["p/a"])["requests"] == 1
    assert "p/a" not in s.summary(WINDOW + BUCKET)
    s.add("p/a", BUCKET * BUCKETS, 0.1, failed=False, cost=None)  # the same slot, BUCKETS buckets later
    got = figures(merge([s.summary(BUCKET * BUCKETS)])["p/a"])
    assert (got["requests"], got["errors"]) == (1, 0)


def test_workers_summaries_add_up_and_survive_json():
    """Two workers' summaries, through JSON (as published), add up to the traffic of both."""
    a, b = DeploymentStats(), DeploymentStats()
    for _ in range(5):
        a.add("p/a", 100.0, 0.05, failed=False, cost=0.5)
    for _ in range(3):
        b.add("p/a", 101.0, 2.0, failed=True, cost=0.5)
        b.add("p/b", 101.0, 1.0, failed=False, cost=None)
    published = [json.loads(json.dumps(x.summary(102.0))) for x in (a, b)]
    total = merge(published)
    assert figures(total["p/a"])["requests"] == 8
    assert figures(total["p/a"])["errors"] == 3
    assert figures(total["p/a"])["spend_usd"] == pytest.approx(4.0)
    assert figures(total["p/b"])["requests"] == 3


def test_memory_is_bounded_whatever_the_traffic():
    """A day of traffic on one deployment keeps at most BUCKETS buckets; removed deployments are dropped."""
    s = DeploymentStats()
    for t in range(0, 86400, 7):
        s.add("p/a", float(t), 0.3, failed=False, cost=0.001)
    ring = s._rings["p/a"]
    assert len(ring.slots) == BUCKETS
    size = sum(sys.getsizeof(c) for c in ring.slots if c is not None)
    assert size < 64 * 1024
    s.add("p/old", 10.0, 0.1, failed=False, cost=None)
    s.retain(["p/a"])
    assert set(s._rings) == {"p/a"}


def test_latency_bins_are_monotonic_and_capped():
    """Longer durations never land in an earlier bin; everything beyond the last edge lands in the last bin."""
    previous = 0
    for ms in range(0, 400_000, 97):
        index = latency_bin(ms / 1000)
        assert index >= previous
        previous = index
    assert latency_bin(10_000.0) == stats.BINS - 1
    assert latency_bin(0.0) == 0


def test_merge_ignores_malformed_entries():
    """A sibling's file with a wrong shape adds nothing instead of breaking the page."""
    good = DeploymentStats()
    good.add("p/a", 5.0, 0.1, failed=False, cost=None)
    bad = {"p/a": [1, 2], "p/b": "x", "p/c": [1, 0, 0, 0, {"999": 5}]}
    total = merge([good.summary(5.0), bad])
    assert figures(total["p/a"])["requests"] == 1
    assert figures(total.get("p/b"))["requests"] == 0
