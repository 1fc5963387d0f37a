"""One structured JSON line per chat request.

Fields: time, method, path, `ingress` (the client's wire format: `openai.chat`, `anthropic.messages`), `client` (the
declared client's name; null when anonymous), `tag` (the request's `x-turnout-tag`, when sent), `unknown_key` (on a
401: the presented key's SHA-256 prefix, never the key), status, route, served_by, stream, attempts (deployment,
outcome, error class, status, duration, detail, `usage_estimated` when a cut attempt was priced from an estimate),
latency_ms, ttft_ms, prompt/completion tokens, cost_usd, error class and message, and `splices` (continued_from,
continued_by, chars_kept) for a stream continued after a cut. Request and response content appear only with
`server.log_content: true` (the request as the client sent it, in its own format), and so does upstream text: a
provider's error message may quote the request, so without it an attempt's detail is kept only when it is turnout's
own (a skip reason, a connection or timeout failure), and the sidecar drops a provider failure's message. Headers
are never logged, and configured secrets are masked in upstream text before it gets here (see `turnout.redaction`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any, TextIO

from turnout.types import Attempt, Splice, Usage

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_quote = encode_basestring  # C-accelerated JSON string quoting; the line is assembled by hand because a
# generic json.dumps of the whole record cost ~3x more on the hot path


FLUSH_INTERVAL = 0.2  # seconds: a line reaches the file/pipe within this, with one flush per interval


class AccessLog:
    """Writes access lines to `stream` (None disables it). Cheap: one formatted string, one buffered write.

    Lines are flushed at most `FLUSH_INTERVAL` after they are written (and on shutdown), not one write syscall per
    request: flushing every line cost ~28 us of CPU per request in `bench/sidecar/run.py` (0.328 -> 0.300 ms).
    """

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._second = -1
        self._stamp = ""
        self._flush_due = False

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def flush(self) -> None:
        self._flush_due = False
        if self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                pass

    def _now(self) -> str:
        """ISO-8601 UTC with milliseconds; the second part is formatted once per second."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def write(
        self,
        *,
        method: str,
        path: str,
        status: int,
        route: str | None,
        served_by: str | None,
        stream: bool,
        attempts: Sequence[Attempt],
        latency: float,
        ttft: float | None = None,
        usage: Usage | None = None,
        cost_usd: float | None = None,
        error_class: str | None = None,
        error: str | None = None,
        content: Mapping[str, Any] | None = None,
        splices: Sequence[Splice] = (),
        upstream_text: bool = False,
        ingress: str | None = None,
        client: str | None = None,
        tag: str | None = None,
        unknown_key: str | None = None,
    ) -> None:
        out = self._stream
        if out is None:
            return
        q = _quote
        text = (
            f'{{"ts":"{self._now()}","method":{q(method)},"path":{q(path)},"ingress":{_opt(ingress)},'
            f'"client":{_opt(client)},"status":{status},'
            f'"route":{_opt(route)},"served_by":{_opt(served_by)},"stream":{"true" if stream else "false"},'
            f'"attempts":[{",".join([_attempt(a, upstream_text) for a in attempts])}],'
            f'"latency_ms":{latency * 1000:.3f},"ttft_ms":{"null" if ttft is None else format(ttft * 1000, ".3f")},'
            f'"prompt_tokens":{_num(usage.prompt_tokens if usage is not None else None)},'
            f'"completion_tokens":{_num(usage.completion_tokens if usage is not None else None)},'
            f'"cost_usd":{_num(cost_usd)}'
        )
        if tag is not None:
            text += f',"tag":{q(tag)}'
        if unknown_key is not None:
            text += f',"unknown_key":{q(unknown_key)}'
        if error_class is not None or error is not None:
            text += f',"error_class":{_opt(error_class)},"error":{_opt(error)}'
        if splices:
            text += f',"splices":{_dumps([s.to_dict() for s in splices])}'
        if content is not None:
            text += f',"content":{_dumps(content)}'
        line = text + "}\n"
        try:
            out.write(line)
        except (OSError, ValueError):  # a closed or broken log stream must never fail a request
            return
        if not self._flush_due:
            self._flush_due = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)
            except RuntimeError:  # no event loop (a synchronous caller): flush now
                self.flush()


_OWN_TEXT = frozenset({"connection", "timeout"})  # classes whose detail, without an HTTP status, turnout wrote


def _attempt(a: Attempt, upstream_text: bool) -> str:
    text = f'{{"deployment":{_quote(a.deployment)},"outcome":"{a.outcome}"'
    if a.error_class is not None:
        text += f',"error_class":{_quote(a.error_class)}'
    if a.status is not None:
        text += f',"status":{int(a.status)}'
    text += f',"ms":{a.duration * 1000:.3f}'
    if a.detail and a.outcome != "success":
        own = a.outcome == "skipped" or a.error_class is None or (a.status is None and a.error_class in _OWN_TEXT)
        if own or upstream_text:
            text += f',"detail":{_quote(a.detail)}'
    if a.estimated:
        text += ',"usage_estimated":true'
    return text + "}"


def _opt(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _num(value: float | None) -> str:
    """A JSON number (or null); non-finite floats become null rather than invalid JSON."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "null"
    return repr(value)
