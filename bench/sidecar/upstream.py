"""A fast local "OpenAI" upstream for the sidecar benchmark: nginx answering every POST with canned bytes.

nginx is used so the upstream costs next to nothing and never becomes the bottleneck being measured. Two
OpenAI-style base URLs are served, because nginx cannot look inside a request body to decide between JSON and SSE:

    http://127.0.0.1:PORT/json/v1/chat/completions   -> a canned `chat.completion` (application/json)
    http://127.0.0.1:PORT/sse/v1/chat/completions    -> a canned SSE stream ending with `data: [DONE]`

and two Anthropic-style ones (the same answer in Messages format), for the `anthropic` driver:

    http://127.0.0.1:PORT/ant-json/v1/messages       -> a canned `message`
    http://127.0.0.1:PORT/ant-sse/v1/messages        -> a canned Messages event stream ending with `message_stop`

and two for OpenAI embeddings (one 1536-dimension vector), as base64 (what the `openai` SDK asks by default) and as
floats:

    http://127.0.0.1:PORT/emb-b64/v1/embeddings      -> a canned `list` with a base64 vector
    http://127.0.0.1:PORT/emb-float/v1/embeddings    -> the same vector as floats

The OpenAI-style base URLs also serve the Responses API (the same answer as a Response), for `responses: true`:

    http://127.0.0.1:PORT/json/v1/responses          -> a canned `response`
    http://127.0.0.1:PORT/sse/v1/responses           -> a canned Responses event stream ending with response.completed

It also takes OTLP/HTTP span exports (`POST /v1/traces`, answered 200) for the tracing benchmark (`tracing.py`).

Run it alone with `python bench/sidecar/upstream.py [--port N]` (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MODEL = "gpt-4o-mini-2024-07-18"
WORDS = ["Sure", "!", " Here", " is", " a", " short", " answer", " for", " the", " benchmark", "."]


def free_port() -> int:
    """A loopback port that was free a moment ago (small race accepted: benchmark only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def completion_json() -> bytes:
    """A typical non-streamed OpenAI chat completion (about 40 tokens)."""
    body = {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion",
        "created": 1727346143,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(WORDS), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 31,
            "completion_tokens": len(WORDS),
            "total_tokens": 31 + len(WORDS),
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_bench",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def completion_sse() -> bytes:
    """The OpenAI stream framing: role chunk, one delta per word, finish chunk, usage chunk, [DONE]."""

    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True) -> bytes:
        data: dict = {
            "id": "chatcmpl-bench0001",
            "object": "chat.completion.chunk",
            "created": 1727346180,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
        }
        if usage is not None:
            data["usage"] = usage
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    parts = [chunk({"role": "assistant", "content": "", "refusal": None})]
    parts += [chunk({"content": word}) for word in WORDS]
    parts.append(chunk({}, finish="stop"))
    usage = {"prompt_tokens": 31, "completion_tokens": len(WORDS), "total_tokens": 31 + len(WORDS)}
    parts.append(chunk({}, usage=usage, choices=False))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def message_json() -> bytes:
    """The same answer as a non-streamed Anthropic message."""
    body = {
        "id": "msg_bench0001",
        "type": "message",
        "role": "assistant",
        "model": "claude-bench",
        "content": [{"type": "text", "text": "".join(WORDS)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 31,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": len(WORDS),
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def message_sse() -> bytes:
    """The Messages event stream: message_start, a text block with one delta per word, ping, message_delta, stop."""

    def event(kind: str, **fields: object) -> bytes:
        data = json.dumps({"type": kind, **fields}, separators=(",", ":"))
        return f"event: {kind}\ndata: {data}\n\n".encode()

    message = {
        "id": "msg_bench0001",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-bench",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 31, "output_tokens": 1},
    }
    parts = [event("message_start", message=message)]
    parts.append(event("content_block_start", index=0, content_block={"type": "text", "text": ""}))
    parts.append(event("ping"))
    parts += [event("content_block_delta", index=0, delta={"type": "text_delta", "text": w}) for w in WORDS]
    parts.append(event("content_block_stop", index=0))
    stop = {"stop_reason": "end_turn", "stop_sequence": None}
    parts.append(event("message_delta", delta=stop, usage={"output_tokens": len(WORDS)}))
    parts.append(event("message_stop"))
    return b"".join(parts)


EMBEDDING_DIMENSIONS = 1536


def embeddings_json(encoding: str) -> bytes:
    """An OpenAI embeddings answer holding one vector (the mock's for a fixed text), as floats or base64."""
    from turnout.drivers.mock_vectors import mock_vector
    from turnout.embeddings import as_base64

    vector = mock_vector("benchmark", EMBEDDING_DIMENSIONS)
    data = [{"object": "embedding", "index": 0, "embedding": as_base64(vector) if encoding == "base64" else vector}]
    usage = {"prompt_tokens": 12, "total_tokens": 12}
    body = {"object": "list", "data": data, "model": "text-embedding-3-small", "usage": usage}
    return json.dumps(body, separators=(",", ":")).encode()


def response_object(status: str = "completed", *, output: bool = True) -> dict:
    """The same answer as a Response object."""
    part = {"type": "output_text", "text": "".join(WORDS), "annotations": [], "logprobs": []}
    item = {"id": "msg_bench0001", "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    usage = {
        "input_tokens": 31,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": len(WORDS),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 31 + len(WORDS),
    }
    return {
        "id": "resp_bench0001",
        "object": "response",
        "created_at": 1741476542,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": MODEL,
        "output": [item] if output else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage if output else None,
    }


def response_json() -> bytes:
    return json.dumps(response_object(), separators=(",", ":")).encode()


def response_sse() -> bytes:
    """The Responses event stream: created, in_progress, the message item with one delta per word, completed."""
    sequence = iter(range(1000))

    def event(kind: str, **fields: object) -> bytes:
        data = json.dumps({"type": kind, "sequence_number": next(sequence), **fields}, separators=(",", ":"))
        return f"event: {kind}\ndata: {data}\n\n".encode()

    opening = response_object("in_progress", output=False)
    base = {"item_id": "msg_bench0001", "output_index": 0, "content_index": 0}
    final = response_object()
    item = final["output"][0]
    parts = [event("response.created", response=opening), event("response.in_progress", response=opening)]
    opened = {**item, "status": "in_progress", "content": []}
    parts.append(event("response.output_item.added", output_index=0, item=opened))
    parts.append(event("response.content_part.added", **base, part={**item["content"][0], "text": ""}))
    parts += [event("response.output_text.delta", **base, delta=w, logprobs=[]) for w in WORDS]
    parts.append(event("response.output_text.done", **base, text="".join(WORDS), logprobs=[]))
    parts.append(event("response.content_part.done", **base, part=item["content"][0]))
    parts.append(event("response.output_item.done", output_index=0, item=item))
    parts.append(event("response.completed", response=final))
    return b"".join(parts)


def _nginx_string(body: bytes) -> str:
    """Quote bytes for an nginx `return` directive (its parser understands \\\\, \\' and \\n)."""
    text = body.decode()
    if "$" in text:
        raise ValueError("canned bodies must not contain '$' (nginx would expand it)")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def write_canned(workdir: Path) -> None:
    """The canned bodies nginx serves from files (those too long for a `return` directive)."""
    canned = workdir / "canned"
    canned.mkdir(exist_ok=True)
    bodies = {f"embeddings-{encoding}.json": embeddings_json(encoding) for encoding in ("base64", "float")}
    bodies["responses.sse"] = response_sse()
    for name, body in bodies.items():
        path = canned / name
        path.write_bytes(body)
        path.chmod(0o644)
    for folder in (workdir, canned):  # nginx's workers (user nobody when started as root) must reach the files
        folder.chmod(0o755)


def nginx_conf(workdir: Path, port: int) -> str:
    models = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]})
    return f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    client_max_body_size 16m;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /json/v1/chat/completions {{
            default_type application/json;
            return 200 {_nginx_string(completion_json())};
        }}
        location = /sse/v1/chat/completions {{
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            return 200 {_nginx_string(completion_sse())};
        }}
        location = /ant-json/v1/messages {{
            default_type application/json;
            return 200 {_nginx_string(message_json())};
        }}
        location = /ant-sse/v1/messages {{
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            return 200 {_nginx_string(message_sse())};
        }}
        # Bodies over nginx's 4 KB directive limit are files; a POST reaches them as the 405 the static module
        # answers, redirected (as a GET) to the file with status 200.
        location = /emb-b64/v1/embeddings {{
            error_page 405 =200 /canned/embeddings-base64.json;
            return 405;
        }}
        location = /emb-float/v1/embeddings {{
            error_page 405 =200 /canned/embeddings-float.json;
            return 405;
        }}
        location = /sse/v1/responses {{
            error_page 405 =200 /canned/responses.sse;
            return 405;
        }}
        location /canned/ {{
            internal;
            alias {workdir}/canned/;
            types {{ text/event-stream sse; }}
            default_type application/json;
        }}
        location = /json/v1/responses {{
            default_type application/json;
            return 200 {_nginx_string(response_json())};
        }}
        location = /v1/traces {{
            default_type application/x-protobuf;
            return 200 '';
        }}
        location ~ ^/(json|sse)/v1/models$ {{
            default_type application/json;
            return 200 {_nginx_string(models.encode())};
        }}
    }}
}}
"""


class Nginx:
    """Start/stop an nginx upstream in a private temp dir. `pids()` lists master and worker for CPU sampling."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise SystemExit("nginx not found: apt-get install -y nginx wrk")
        self.binary = binary
        self.port = port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-nginx-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        conf = self.workdir / "nginx.conf"
        write_canned(self.workdir)
        conf.write_text(nginx_conf(self.workdir, self.port))
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.workdir), "-c", str(conf), "-e", str(self.workdir / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Block until something accepts on 127.0.0.1:port, or fail if the process died or time ran out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    nginx = Nginx(args.port or None).start()
    print(
        f"upstream listening on {nginx.base} (json: /json/v1, sse: /sse/v1, ant-json, ant-sse, emb-b64, emb-float)",
        flush=True,
    )
    try:
        assert nginx.proc is not None
        nginx.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        nginx.stop()


if __name__ == "__main__":
    main()
