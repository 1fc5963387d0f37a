"""Where the sidecar's metric values live: float64 cells in this process's memory, or in files its siblings read.

A metric family asks `allocate()` for `width` consecutive cells per label tuple (1 for a counter or a gauge,
buckets + 2 for a histogram) and from then on updates `store.cells[slot]` itself: a memoryview over an mmap,
about as cheap as the dict update it replaced (the hot path takes no lock and makes no call into the store).

`CellStore()` is private to one process (an anonymous mmap): what `turnout serve` with one worker and the
in-process app use. `CellStore.in_directory(dir, name)` is what each `--workers N` worker uses: its cells are a
shared mmap of `NAME.cells`, so every update is in the file the moment it is made (another worker's scrape sees
it at once, and a worker that crashes leaves its totals behind), and `NAME.keys` says which series each slot
holds, one line per allocation (`slot<TAB>family<TAB>["label", ...]`), written before the slot is first used.
`aggregate.py` reads a directory of these.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Sequence
from typing import Any, Protocol

CELL = 8  # bytes per float64
INITIAL_CELLS = 1 << 14  # grows by doubling; a file's unused tail is sparse
CELLS_SUFFIX = ".cells"
KEYS_SUFFIX = ".keys"


class CellUser(Protocol):
    """Holds `cells` and is told the new view when the store grows."""

    cells: memoryview


class CellStore:
    """A growable array of float64 cells with a slot allocator; optionally backed by a file other processes read."""

    def __init__(self, *, capacity: int = INITIAL_CELLS, path: str | None = None) -> None:
        """Cells for this process only, or (`path`) in `path.cells` with keys in `path.keys`, both created new."""
        self.name = os.path.basename(path) if path is not None else None
        self._fd: int | None = None
        self._keys: Any = None
        if path is not None:
            self._fd = os.open(path + CELLS_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            self._keys = open(path + KEYS_SUFFIX, "x", encoding="utf-8")  # noqa: SIM115 - lives with the store
        self._used = 0
        self._capacity = max(1, capacity)
        self._users: list[CellUser] = []
        self._maps: list[mmap.mmap] = []
        self.cells = self._map(self._capacity)

    @classmethod
    def in_directory(cls, directory: str, name: str, *, capacity: int = INITIAL_CELLS) -> CellStore:
        """The store of one `--workers` worker: `directory/name.cells` and `.keys` (must not exist yet)."""
        return cls(capacity=capacity, path=os.path.join(directory, name))

    @property
    def shared(self) -> bool:
        return self._fd is not None

    def attach(self, user: CellUser) -> memoryview:
        """Register a holder of `cells` (updated on growth) and return the current view."""
        self._users.append(user)
        return self.cells

    def allocate(self, family: str, labels: Sequence[Any], width: int) -> int:
        """The first of `width` fresh zeroed cells for one series of `family`; the key is recorded first."""
        slot = self._used
        if slot + width > self._capacity:
            self._grow(slot + width)
        self._used = slot + width
        if self._keys is not None:
            self._keys.write(f"{slot}\t{family}\t{json.dumps([str(v) for v in labels])}\n")
            self._keys.flush()
        return slot

    def _map(self, capacity: int) -> memoryview:
        size = capacity * CELL
        if self._fd is None:
            area = mmap.mmap(-1, size)
        else:
            os.ftruncate(self._fd, size)
            area = mmap.mmap(self._fd, size)
        self._maps.append(area)
        return memoryview(area).cast("d")

    def _grow(self, needed: int) -> None:
        capacity = self._capacity
        while capacity < needed:
            capacity *= 2
        old = self.cells
        cells = self._map(capacity)
        if self._fd is None:  # an anonymous map is a new area: copy; a file map already shows the same bytes
            cells[: len(old)] = old
        self._capacity = capacity
        self.cells = cells
        for user in self._users:
            user.cells = cells
        old.release()
        self._release_old_maps()

    def _release_old_maps(self) -> None:
        """Unmap superseded areas nobody holds a view of any more (a holder keeps its area alive)."""
        kept = []
        for area in self._maps[:-1]:
            try:
                area.close()
            except BufferError:
                kept.append(area)
        self._maps = [*kept, self._maps[-1]]

    def close(self) -> None:
        """Release the maps and files (the files stay on disk for readers)."""
        for user in self._users:
            user.cells = memoryview(b"").cast("d")
        self.cells.release()
        for area in self._maps:
            try:
                area.close()
            except BufferError:
                pass
        self._maps = []
        if self._keys is not None:
            self._keys.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
