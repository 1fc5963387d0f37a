"""Load generation and process accounting for the sidecar benchmark (loopback only, always bounded).

- `run_wrk`: wrk with a generated Lua script (POST body, JSON result line); bounded by `-d`.
- `ProcessTree`: CPU seconds (utime+stime from /proc/<pid>/stat) and RSS of a process and its descendants, so a
  `--workers N` server is measured as a whole.
- `first_token_latency`: a raw-socket keep-alive client timing, sequentially, the gap between sending a streaming
  request and receiving the first `data:` event (what a user perceives as time to first token).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")

_LUA = """
wrk.method = "POST"
wrk.body = [==[%s]==]
wrk.headers["Content-Type"] = "application/json"
%s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKRESULT %%d %%d %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(
    url: str, body: bytes, *, connections: int, seconds: float, threads: int = 1, headers: dict[str, str] | None = None
) -> LoadResult:
    """Run wrk against `url` for `seconds` with `connections` open connections; parse its Lua summary line."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: apt-get install -y nginx wrk")
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit("the benchmark only loads loopback addresses")
    extra = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA % (body.decode(), extra))
    try:
        out = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{max(connections, threads)}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKRESULT")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{out}")
    requests, duration_us, p50, p99, *errors = (int(x) for x in line.split()[1:])
    return LoadResult(requests, duration_us / 1e6, p50 / 1000, p99 / 1000, sum(errors))


class ProcessTree:
    """A root pid and, at each sample, all of its live descendants (Linux /proc)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def pids(self) -> list[int]:
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    todo += [int(c) for c in (task / "children").read_text().split()]
                except OSError:
                    continue
        return found

    def cpu_by_pid(self) -> dict[int, float]:
        """CPU seconds (utime + stime) of every live process in the tree."""
        found: dict[int, float] = {}
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[pid] = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)
        return found

    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_pid().values())

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
            except OSError:
                continue
        return total / (1024 * 1024)


def interleaved_cpu_ms(
    targets: dict[str, tuple[int, int]], payload: bytes, *, rounds: int, connections: int, seconds: float
) -> dict[str, list[float]]:
    """CPU ms per request of each sidecar (name -> (port, pid)) under the same chat load, loaded in turn round by
    round (a, b, a, b, ...) so that a shared machine's drift hits all alike; a 1 s warm-up precedes each sample."""
    cpu: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (port, pid) in targets.items():
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            tree = ProcessTree(pid)
            run_wrk(url, payload, connections=connections, seconds=1)
            before = tree.cpu_seconds()
            result = run_wrk(url, payload, connections=connections, seconds=seconds)
            cpu[name].append((tree.cpu_seconds() - before) * 1000 / max(1, result.requests))
    return cpu


def first_token_latency(port: int, path: str, body: bytes, *, samples: int, extra_headers: str = "") -> list[float]:
    """Sequentially send `samples` streaming requests on one keep-alive connection; return ms to first `data:`.

    The whole response is read before the next request (chunked or Content-Length framing), so each sample
    sees an idle server, as a single user would.
    """
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"{extra_headers}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    results: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(samples):
            started = time.perf_counter()
            sock.sendall(head)
            buf = b""
            first = None
            while True:
                piece = sock.recv(65536)
                if not piece:
                    raise SystemExit("server closed the connection during the TTFT probe")
                buf += piece
                if first is None and b"data:" in buf:
                    first = time.perf_counter() - started
                if _complete(buf):
                    break
            if first is None:
                raise SystemExit(f"no SSE event in response: {buf[:300]!r}")
            results.append(first * 1000)
    return results


def _complete(buf: bytes) -> bool:
    """True once a whole HTTP/1.1 response (chunked or with Content-Length) is in `buf`."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    headers = buf[:end].lower()
    if b"transfer-encoding: chunked" in headers:
        return buf.endswith(b"0\r\n\r\n")
    marker = headers.find(b"content-length:")
    if marker < 0:
        return False
    length = int(headers[marker + 15 :].split(b"\r\n", 1)[0])
    return len(buf) - end - 4 >= length


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
