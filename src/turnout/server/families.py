"""Hot-path metric families: plain dicts updated per request, exported through prometheus-client at scrape time.

prometheus-client's own Counter/Histogram take a lock and validate labels on every update, which cost more than
the rest of the sidecar's bookkeeping together. These families are updated only on the event loop's thread
(as is the scrape), so they need no lock: an update is one dict lookup and an add, and a histogram observation
one `bisect`. `FamilyCollector` renders them as ordinary counter and histogram families, so the exposition
format is exactly prometheus-client's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class CounterFamily:
    """A counter per label tuple. `name` without the `_total` suffix (added on export)."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name = name
        self.doc = doc
        self.labels = tuple(labels)
        self.values: dict[tuple[Any, ...], float] = {}

    def inc(self, key: tuple[Any, ...], amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def export(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric([str(v) for v in key], value)
        return family


class HistogramFamily:
    """A histogram per label tuple: bucket counts (value <= bound) plus sum; cumulated on export."""

    __slots__ = ("bounds", "doc", "labels", "name", "series")

    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name = name
        self.doc = doc
        self.labels = tuple(labels)
        self.bounds = tuple(sorted(buckets))
        self.series: dict[tuple[Any, ...], list[Any]] = {}  # key -> [counts (len(bounds)+1), sum]

    def observe(self, key: tuple[Any, ...], value: float) -> None:
        entry = self.series.get(key)
        if entry is None:
            entry = self.series[key] = [[0] * (len(self.bounds) + 1), 0.0]
        entry[0][bisect_left(self.bounds, value)] += 1
        entry[1] += value

    def export(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for key, (counts, total) in self.series.items():
            running = 0
            buckets = []
            for edge, count in zip(edges, counts, strict=True):
                running += count
                buckets.append((edge, running))
            family.add_metric([str(v) for v in key], buckets, sum_value=total)
        return family


class FamilyCollector(Collector):
    """Exposes a fixed set of families to a `CollectorRegistry`."""

    def __init__(self, families: Sequence[CounterFamily | HistogramFamily]) -> None:
        self._families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.export()

    def describe(self) -> Iterator[Metric]:
        for family in self._families:
            if isinstance(family, CounterFamily):
                yield CounterMetricFamily(family.name, family.doc, labels=family.labels)
            else:
                yield HistogramMetricFamily(family.name, family.doc, labels=family.labels)
