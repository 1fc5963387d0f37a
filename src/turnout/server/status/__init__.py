"""The live status page: `GET /status` (HTML) refreshing itself from `GET /admin/status` (JSON).

- `observer.py`: the Router observer (figures per deployment over the last minutes, recent failovers and errors);
- `stats.py`: the bounded time-bucketed figures it keeps;
- `snapshot.py`: this process's snapshot, and the documented JSON view built from every worker's;
- `files.py`: how `--workers` publish their snapshots to each other;
- `session.py`: the log-in form's signed session cookie; `page.py` (+ `page.html`, `login.html`): the HTML answers;
- `board.py`: the endpoints on one app.
"""

from turnout.server.status.board import STATUS_PATHS, StatusBoard

__all__ = ["STATUS_PATHS", "StatusBoard"]
