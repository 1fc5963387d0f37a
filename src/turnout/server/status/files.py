"""How `--workers` share the status page: each publishes its snapshot as a file beside its metric cells.

Every worker writes `DIR/NAME.status.json` (its `local_snapshot`) once a second, by writing a temporary file and
renaming it over the old one, so a reader never sees half a file. The worker that answers `/admin/status` reads
its siblings' files: those of live workers (the supervisor's `.live` marker, see `aggregate.py`) for the routes'
state and figures, and those of workers that exited less than a window ago for their recent events only (a
crashed worker's last errors are what an operator wants to see). A snapshot is at most about a second old; one
older than `STALE` seconds from a live worker (a stuck event loop) is still used and flagged by its age.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from turnout.server.aggregate import live_marker
from turnout.server.status.stats import WINDOW

SUFFIX = ".status.json"
PUBLISH_INTERVAL = 1.0  # seconds between a worker's snapshots
STALE = 10.0


class SnapshotFiles:
    """One worker's view of the directory: where it publishes, and its siblings' snapshots."""

    def __init__(self, directory: str, name: str) -> None:
        self.directory = directory
        self.name = name
        self.path = os.path.join(directory, name + SUFFIX)

    def publish(self, snapshot: dict[str, Any]) -> None:
        """Replace this worker's file atomically (a failure is ignored: the next second tries again)."""
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as fh:
                json.dump(snapshot, fh, separators=(",", ":"))
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    def siblings(self, now: float) -> list[dict[str, Any]]:
        """The other workers' snapshots, each with `live`; exited workers' only for their recent events."""
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        found = []
        for filename in names:
            if not filename.endswith(SUFFIX) or filename == self.name + SUFFIX:
                continue
            name = filename[: -len(SUFFIX)]
            snapshot = _read(os.path.join(self.directory, filename))
            if snapshot is None:
                continue
            live = os.path.exists(live_marker(self.directory, name))
            if not live:
                if now - float(snapshot.get("at") or 0.0) > WINDOW:
                    continue
                snapshot = {key: snapshot.get(key) for key in ("worker", "pid", "at", "config")} | {
                    "recent": snapshot.get("recent") or []
                }
            snapshot["live"] = live
            found.append(snapshot)
        return found


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
