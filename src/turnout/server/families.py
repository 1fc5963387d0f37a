"""Metric families kept in `CellStore` cells, exported through prometheus-client at scrape time.

prometheus-client's own Counter/Histogram take a lock and validate labels on every update, which cost more than
the rest of the sidecar's bookkeeping together. These families are updated only on the event loop's thread
(as is the scrape), so they need no lock: an update is one dict lookup (label tuple -> slot) and an add to a
float64 cell, and a histogram observation one `bisect` more. A series' cells are allocated the first time its
label tuple is seen. `FamilyCollector` renders the families as ordinary counter, gauge and histogram families,
so the exposition format is exactly prometheus-client's.

Cells may live in a file that sibling worker processes read (see `cells.py`); `aggregate.py` sums them.
Each family says how workers combine: counters and histograms add up, gauges add up (`"sum"`) or take the
highest value (`"max"`), over live workers only.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from turnout.server.cells import CellStore

Labels = tuple[str, ...]


class _Family:
    """Shared by the three kinds: a name, label names, and label tuple -> first cell of the series."""

    __slots__ = ("cells", "doc", "labels", "name", "slots", "store")
    kind = ""
    width = 1

    def __init__(self, name: str, doc: str, labels: Sequence[str], store: CellStore | None = None) -> None:
        self.name = name
        self.doc = doc
        self.labels = tuple(labels)
        self.store = store if store is not None else CellStore(capacity=64)
        self.slots: dict[tuple[Any, ...], int] = {}
        self.cells = self.store.attach(self)

    def _slot(self, key: tuple[Any, ...]) -> int:
        slot = self.slots[key] = self.store.allocate(self.name, key, self.width)
        return slot

    def series(self) -> Iterator[tuple[Labels, list[float]]]:
        """Each series' label values (as strings) and its cells, read from this process's store."""
        cells = self.cells
        width = self.width
        for key, slot in self.slots.items():
            yield tuple(str(v) for v in key), list(cells[slot : slot + width])

    def export(self) -> Metric:
        return self.build((labels, values) for labels, values in self.series())

    def build(self, series: Any) -> Metric:  # pragma: no cover - each kind defines it
        raise NotImplementedError

    def empty(self) -> Metric:
        return self.build(())


class CounterFamily(_Family):
    """A counter per label tuple. `name` without the `_total` suffix (added on export)."""

    __slots__ = ()
    kind = "counter"

    def inc(self, key: tuple[Any, ...], amount: float = 1.0) -> None:
        slot = self.slots.get(key)
        if slot is None:
            slot = self._slot(key)
        self.cells[slot] += amount

    def value(self, key: tuple[Any, ...]) -> float:
        slot = self.slots.get(key)
        return 0.0 if slot is None else self.cells[slot]

    def build(self, series: Any) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, values in series:
            family.add_metric(list(labels), values[0])
        return family


class GaugeFamily(_Family):
    """A gauge per label tuple. `clear()` drops every series (a NaN cell is a removed series, never exported).

    `combine` says how `--workers` add up: "sum" (requests in flight) or "max" (the worst breaker state)."""

    __slots__ = ("combine",)
    kind = "gauge"

    def __init__(
        self, name: str, doc: str, labels: Sequence[str], store: CellStore | None = None, *, combine: str = "sum"
    ) -> None:
        super().__init__(name, doc, labels, store)
        self.combine = combine

    def set(self, key: tuple[Any, ...], value: float) -> None:
        slot = self.slots.get(key)
        if slot is None:
            slot = self._slot(key)
        self.cells[slot] = value

    def clear(self) -> None:
        cells = self.cells
        for slot in self.slots.values():
            cells[slot] = math.nan

    def build(self, series: Any) -> Metric:
        family = GaugeMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, values in series:
            if not math.isnan(values[0]):
                family.add_metric(list(labels), values[0])
        return family


class HistogramFamily(_Family):
    """A histogram per label tuple: cells hold the count per bucket (value <= bound, then +Inf) and the sum;
    counts are cumulated on export."""

    __slots__ = ("bounds", "edges")
    kind = "histogram"

    def __init__(
        self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float], store: CellStore | None = None
    ) -> None:
        self.bounds = tuple(sorted(buckets))
        self.edges = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        super().__init__(name, doc, labels, store)

    @property
    def width(self) -> int:  # type: ignore[override]
        return len(self.bounds) + 2

    def observe(self, key: tuple[Any, ...], value: float) -> None:
        base = self.slots.get(key)
        if base is None:
            base = self._slot(key)
        cells = self.cells
        cells[base + bisect_left(self.bounds, value)] += 1
        cells[base + len(self.bounds) + 1] += value

    def build(self, series: Any) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = self.edges
        for labels, values in series:
            running = 0.0
            buckets = []
            for edge, count in zip(edges, values[:-1], strict=True):
                running += count
                buckets.append((edge, running))
            family.add_metric(list(labels), buckets, sum_value=values[-1])
        return family


Family = CounterFamily | GaugeFamily | HistogramFamily


class FamilyCollector(Collector):
    """Exposes a fixed set of families to a `CollectorRegistry`."""

    def __init__(self, families: Sequence[Family]) -> None:
        self._families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.export()

    def describe(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.empty()
