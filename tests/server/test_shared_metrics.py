"""Metric cells in this process and in files shared by `--workers`, and the scrape that combines them."""

from __future__ import annotations

import math
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from turnout.events import BreakerOpened, ResponseCompleted
from turnout.server.aggregate import DirectoryReader, live_marker
from turnout.server.cells import CellStore
from turnout.server.families import CounterFamily, FamilyCollector, GaugeFamily, HistogramFamily
from turnout.server.metrics import Metrics
from turnout.types import Usage


def worker(directory: Path, name: str, *, live: bool = True) -> Metrics:
    """A worker's Metrics as `turnout serve --workers` builds it, with its liveness marker."""
    if live:
        Path(live_marker(str(directory), name)).touch()
    return Metrics(CellStore.in_directory(str(directory), name), directory=str(directory))


def scrape(metrics: Metrics) -> str:
    return metrics.render().decode()


def sample(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def completed(route: str = "chat", latency: float = 0.2, tokens: int = 10) -> ResponseCompleted:
    usage = Usage(prompt_tokens=tokens, completion_tokens=1)
    return ResponseCompleted(1.0, "id", route, "p/m", False, (), usage, 0.5, latency, None, None, 0.001)


def test_anonymous_store_grows_and_keeps_values():
    """A private store doubles when full and every family keeps its values and keeps counting after the growth."""
    store = CellStore(capacity=4)
    counter = CounterFamily("c", "doc", ["k"], store)
    histogram = HistogramFamily("h", "doc", ["k"], [0.1, 1.0], store)
    counter.inc(("a",), 2)
    for i in range(50):  # 50 series: many growths
        histogram.observe((f"s{i}",), 0.5)
        counter.inc((f"s{i}",))
    counter.inc(("a",), 3)
    assert counter.value(("a",)) == 5
    assert all(counter.value((f"s{i}",)) == 1 for i in range(50))
    registry = CollectorRegistry()
    registry.register(FamilyCollector([histogram]))
    text = generate_latest(registry).decode()
    assert 'h_bucket{k="s49",le="1.0"} 1.0' in text and 'h_sum{k="s0"} 0.5' in text


def test_file_store_is_visible_to_a_reader_at_once(tmp_path):
    """Every update of a worker's cells is in its file the moment it is made (no flush, no snapshot)."""
    metrics = worker(tmp_path, "w0-1")
    reader = DirectoryReader(str(tmp_path), metrics.families)
    metrics.request_done("chat", 200)
    assert reader.combined()["turnout_requests"][("chat", "200")] == [1.0]
    for _ in range(4):
        metrics.request_done("chat", 200)
    assert reader.combined()["turnout_requests"][("chat", "200")] == [5.0]


def test_file_store_grows_without_losing_series(tmp_path):
    """A worker's file store that outgrows its first size keeps old and new series readable by others."""
    store = CellStore.in_directory(str(tmp_path), "w0-1", capacity=8)
    family = CounterFamily("turnout_requests", "doc", ["route", "status"], store)
    for i in range(100):
        family.inc((f"r{i}", 200), i)
    Path(live_marker(str(tmp_path), "w0-1")).touch()
    combined = DirectoryReader(str(tmp_path), [family]).combined()["turnout_requests"]
    assert len(combined) == 100
    assert all(combined[(f"r{i}", "200")] == [float(i)] for i in range(100))
    assert os.path.getsize(tmp_path / "w0-1.cells") >= 100 * 8


def test_scrape_on_any_worker_shows_the_sum(tmp_path):
    """Two workers' counters and histograms add up, whichever worker renders the scrape."""
    a, b = worker(tmp_path, "w0-1"), worker(tmp_path, "w1-2")
    for _ in range(12):
        a.request_done("chat", 200)
        a(completed(latency=0.2))
    for _ in range(8):
        b.request_done("chat", 200)
        b(completed(latency=3.0))
    for text in (scrape(a), scrape(b), scrape(a), scrape(b)):
        assert sample(text, 'turnout_requests_total{route="chat",status="200"}') == 20
        assert sample(text, 'turnout_request_duration_seconds_count{route="chat",stream="false"}') == 20
        assert sample(text, 'turnout_request_duration_seconds_bucket{le="0.25",route="chat",stream="false"}') == 12
        assert sample(text, 'turnout_tokens_total{deployment="p/m",kind="prompt",route="chat"}') == 200
        assert math.isclose(sample(text, 'turnout_cost_usd_total{deployment="p/m",route="chat"}'), 10.0)


def test_an_exited_workers_counters_stay_but_its_gauges_go(tmp_path):
    """When a worker exits (its live marker is gone) its totals still count, so no counter goes down after a
    crash and restart, while its in-flight gauge and breaker states no longer do."""
    old, survivor = worker(tmp_path, "w0-1"), worker(tmp_path, "w1-2")
    for _ in range(7):
        old.request_done("chat", 200)
    old.in_flight_now(3)
    old(BreakerOpened(1.0, "p/m", open_for=30))
    survivor.request_done("chat", 200)
    survivor.in_flight_now(2)
    before = scrape(survivor)
    assert sample(before, 'turnout_requests_total{route="chat",status="200"}') == 8
    assert sample(before, "turnout_in_flight_requests") == 5
    assert sample(before, 'turnout_breaker_state{deployment="p/m"}') == 2

    os.unlink(live_marker(str(tmp_path), "w0-1"))  # what the supervisor does when it reaps the worker
    replacement = worker(tmp_path, "w0-3")
    replacement.request_done("chat", 200)
    after = scrape(replacement)
    assert sample(after, 'turnout_requests_total{route="chat",status="200"}') == 9
    assert sample(after, "turnout_in_flight_requests") == 2
    assert sample(after, 'turnout_breaker_state{deployment="p/m"}') is None  # no live worker holds it


def test_breaker_state_is_the_worst_any_live_worker_holds(tmp_path):
    """The breaker gauge takes the highest state over live workers (2 open > 1 half-open > 0 closed)."""
    a, b = worker(tmp_path, "w0-1"), worker(tmp_path, "w1-2")
    a.breaker.set(("p/m",), 0.0)
    b.breaker.set(("p/m",), 1.0)
    assert sample(scrape(a), 'turnout_breaker_state{deployment="p/m"}') == 1
    a.breaker.set(("p/m",), 2.0)
    assert sample(scrape(b), 'turnout_breaker_state{deployment="p/m"}') == 2


def test_a_cleared_gauge_series_disappears_from_the_combination(tmp_path):
    """A series a worker dropped (a deployment removed by reload) is not exported, from that worker or alone."""
    a = worker(tmp_path, "w0-1")
    a.breaker.set(("gone/m",), 2.0)
    a.breaker.clear()
    a.breaker.set(("kept/m",), 0.0)
    text = scrape(a)
    assert 'deployment="gone/m"' not in text
    assert sample(text, 'turnout_breaker_state{deployment="kept/m"}') == 0


def test_keys_file_is_read_incrementally_and_a_partial_line_waits(tmp_path):
    """A half-written key line is ignored until it is complete; lines already read are not parsed again."""
    family = CounterFamily("turnout_requests", "doc", ["route", "status"])
    reader = DirectoryReader(str(tmp_path), [family])
    cells = memoryview(bytearray(16)).cast("d")
    cells[0], cells[1] = 4.0, 6.0
    (tmp_path / "w0-1.cells").write_bytes(cells.tobytes())
    (tmp_path / "w0-1.keys").write_text('0\tturnout_requests\t["a", "200"]\n1\tturnout_requests\t["b", "2')
    assert reader.combined()["turnout_requests"] == {("a", "200"): [4.0]}
    with open(tmp_path / "w0-1.keys", "a") as fh:
        fh.write('00"]\n')
    assert reader.combined()["turnout_requests"] == {("a", "200"): [4.0], ("b", "200"): [6.0]}  # "a" read once


def test_single_process_metrics_render_as_before():
    """Without a directory, Metrics render this process's cells: gauges start at 0 and families are exported."""
    metrics = Metrics()
    text = scrape(metrics)
    assert "turnout_in_flight_requests 0.0" in text
    assert "turnout_config_last_reload_problems 0.0" in text
    metrics.reject("max_in_flight")
    assert sample(scrape(metrics), 'turnout_rejected_requests_total{reason="max_in_flight"}') == 1


def test_gauge_family_sum_of_unlabelled_series(tmp_path):
    """An unlabelled gauge summed over workers reads as one sample."""
    store_a = CellStore.in_directory(str(tmp_path), "w0-1")
    store_b = CellStore.in_directory(str(tmp_path), "w1-2")
    for name in ("w0-1", "w1-2"):
        Path(live_marker(str(tmp_path), name)).touch()
    GaugeFamily("g", "doc", [], store_a).set((), 4)
    gauge_b = GaugeFamily("g", "doc", [], store_b)
    gauge_b.set((), 5)
    assert DirectoryReader(str(tmp_path), [gauge_b]).combined()["g"] == {(): [9.0]}
