"""The on-disk cache of provider model lists that `turnout models` keeps between runs.

Where: `--cache-dir`, else `$TURNOUT_CACHE_DIR`, else `$XDG_CACHE_HOME/turnout`, else `~/.cache/turnout`; the lists
live in its `models/` folder, one JSON file per provider endpoint (named after the provider plus a digest of
driver and base URL, so two files that call different endpoints by the same provider name never mix). A file holds
the ids, the fetch time (Unix seconds) and the ids that were new at that sync. Nothing secret is stored: no key,
no header; a list is what the provider shows any caller with a valid key.

Writes go to a temporary file that is renamed over the old one, so a concurrent reader never sees half a file;
an unreadable or foreign cache file is ignored (and replaced at the next sync), never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_ENV = "TURNOUT_CACHE_DIR"
FORMAT = 1


def cache_dir(override: str | None = None) -> Path:
    """The folder holding the model lists (see the module docstring for the order of precedence)."""
    if override:
        base = Path(override).expanduser()
    elif os.environ.get(CACHE_ENV):
        base = Path(os.environ[CACHE_ENV]).expanduser()
    elif os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "turnout"
    else:
        base = Path.home() / ".cache" / "turnout"
    return base / "models"


@dataclass(frozen=True, slots=True)
class Listing:
    """One provider's model list as last fetched: ids, when (Unix seconds), and which ids that sync added."""

    provider: str
    driver: str
    endpoint: str
    ids: tuple[str, ...]
    fetched_at: float
    new: tuple[str, ...] = ()
    first_sync: bool = True  # no earlier list to compare with, so "new" is empty rather than everything

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.fetched_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "provider": self.provider,
            "driver": self.driver,
            "endpoint": self.endpoint,
            "fetched_at": self.fetched_at,
            "ids": list(self.ids),
            "new": list(self.new),
            "first_sync": self.first_sync,
        }


class Catalogue:
    """Read and write the cached lists in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, provider: str, driver: str, endpoint: str) -> Path:
        tag = hashlib.sha256(f"{driver}\0{endpoint}".encode()).hexdigest()[:12]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in provider)[:60]
        return self.folder / f"{safe}-{tag}.json"

    def load(self, provider: str, driver: str, endpoint: str) -> Listing | None:
        try:
            data = json.loads(self.path(provider, driver, endpoint).read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or data.get("provider") != provider:
                return None
            return Listing(
                provider=provider,
                driver=str(data["driver"]),
                endpoint=str(data["endpoint"]),
                ids=tuple(str(i) for i in data["ids"]),
                fetched_at=float(data["fetched_at"]),
                new=tuple(str(i) for i in data.get("new", ())),
                first_sync=bool(data.get("first_sync", False)),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def store(self, listing: Listing) -> None:
        """Write atomically (temp file + rename); a read-only cache folder is silently skipped."""
        target = self.path(listing.provider, listing.driver, listing.endpoint)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.folder)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(listing.to_json(), fh, indent=1)
            os.replace(temp, target)
        except OSError:
            return


def synced(previous: Listing | None, provider: str, driver: str, endpoint: str, ids: list[str]) -> Listing:
    """A fresh Listing for `ids`, with the ids new since `previous` (none on the first sync)."""
    unique = tuple(dict.fromkeys(ids))
    if previous is None:
        return Listing(provider, driver, endpoint, unique, time.time(), (), True)
    before = set(previous.ids)
    return Listing(provider, driver, endpoint, unique, time.time(), tuple(i for i in unique if i not in before), False)
