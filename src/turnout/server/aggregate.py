"""One /metrics for `turnout serve --workers N`: every worker's cells, read from the shared directory and combined.

Each worker writes its metric cells to `DIR/NAME.cells` and `DIR/NAME.keys` (see `cells.py`); the supervisor
creates `DIR/NAME.live` before it starts the worker and deletes it once the worker has exited. A scrape on any
worker reads every store in the directory (its own included, through the same shared pages, so its own values
are current to the last update) and combines them per series:

- counters and histograms add up over **all** stores, those of exited workers too, so a total never goes down
  when a worker crashes and is replaced;
- gauges combine over **live** workers only, as the family says: `sum` (requests in flight) or `max` (breaker
  state, where 2 = open is the worst; problems of the last reload).

Keys files are parsed incrementally (they only grow), so a scrape costs one read of each cells file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from turnout.server.cells import CELL, CELLS_SUFFIX, KEYS_SUFFIX
from turnout.server.families import Family, Labels

LIVE_SUFFIX = ".live"


@dataclass
class _Keys:
    """What one store's keys file said so far: (family, labels, first slot) per series, and where to read on."""

    offset: int = 0
    entries: list[tuple[str, Labels, int]] = field(default_factory=list)


class DirectoryReader:
    """Combines the stores of one directory for the given families (the reader's own definitions of them)."""

    def __init__(self, directory: str, families: Sequence[Family]) -> None:
        self.directory = directory
        self.families = {family.name: family for family in families}
        self._keys: dict[str, _Keys] = {}
        self._final: dict[str, tuple[int, list[float]]] = {}  # exited workers' cells (by key count) stay as read

    def collect(self) -> Iterator[Metric]:
        combined = self.combined()
        for name, family in self.families.items():
            series = combined.get(name, {})
            yield family.build(series.items())

    def combined(self) -> dict[str, dict[Labels, list[float]]]:
        """family name -> label values -> combined cells."""
        out: dict[str, dict[Labels, list[float]]] = {}
        for name, live in self._stores():
            keys = self._read_keys(name)
            if not keys.entries:
                continue
            known = self._final.get(name)
            if known is not None and known[0] == len(keys.entries):
                cells = known[1]
            else:
                cells = self._read_cells(name, keys.entries)
                if not live:
                    self._final[name] = (len(keys.entries), cells)
            for family_name, labels, slot in keys.entries:
                family = self.families.get(family_name)
                if family is None or (family.kind == "gauge" and not live):
                    continue
                values = cells[slot : slot + family.width]
                if len(values) < family.width:
                    values = values + [0.0] * (family.width - len(values))
                _combine(out.setdefault(family_name, {}), labels, values, family)
        return out

    def _stores(self) -> list[tuple[str, bool]]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        present = set(names)
        stores = [n[: -len(KEYS_SUFFIX)] for n in names if n.endswith(KEYS_SUFFIX)]
        return [(name, name + LIVE_SUFFIX in present) for name in sorted(stores)]

    def _read_keys(self, name: str) -> _Keys:
        keys = self._keys.setdefault(name, _Keys())
        try:
            with open(os.path.join(self.directory, name + KEYS_SUFFIX), "rb") as fh:
                fh.seek(keys.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return keys
        end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
        for line in chunk[:end].decode("utf-8").splitlines():
            slot, family, labels = line.split("\t", 2)
            keys.entries.append((family, tuple(json.loads(labels)), int(slot)))
        keys.offset += end
        return keys

    def _read_cells(self, name: str, entries: Sequence[tuple[str, Labels, int]]) -> list[float]:
        widths = {name: family.width for name, family in self.families.items()}
        end = max(slot + widths.get(family, 1) for family, _, slot in entries)
        try:
            with open(os.path.join(self.directory, name + CELLS_SUFFIX), "rb") as fh:
                data = fh.read(end * CELL)
        except FileNotFoundError:
            return []
        usable = len(data) - len(data) % CELL
        return memoryview(data[:usable]).cast("d").tolist()


def _combine(into: dict[Labels, list[float]], labels: Labels, values: list[float], family: Family) -> None:
    current = into.get(labels)
    if family.kind == "gauge":
        value = values[0]
        if math.isnan(value):  # a series this worker removed
            return
        if current is None:
            into[labels] = [value]
        elif getattr(family, "combine", "sum") == "max":
            current[0] = max(current[0], value)
        else:
            current[0] += value
        return
    if current is None:
        into[labels] = list(values)
    else:
        for i, value in enumerate(values):
            current[i] += value


def live_marker(directory: str, name: str) -> str:
    """The file whose presence says the worker that owns store `name` is running."""
    return os.path.join(directory, name + LIVE_SUFFIX)
