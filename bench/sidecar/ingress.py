"""CPU per request of each ingress through one `turnout serve`, against the same nginx upstreams, interleaved.

    python bench/sidecar/ingress.py                          # json and sse, 5 rounds of 3 s per row
    python bench/sidecar/ingress.py --modes sse --rounds 7 --connections 32

Rows (client format -> upstream format):
    chat->openai          POST /v1/chat/completions, OpenAI upstream (the baseline: forwarded bytes)
    messages->openai      POST /v1/messages, OpenAI upstream (request and answer translated)
    messages->anthropic   POST /v1/messages, Anthropic upstream (the client's body passed through, events forwarded)
    chat->anthropic       POST /v1/chat/completions, Anthropic upstream (the driver's translation, for reference)
    embeddings-b64        POST /v1/embeddings, base64 asked and answered (the openai SDK's default): passed through
    embeddings-float      POST /v1/embeddings, floats asked and answered (1536 parsed and written again)
    responses->openai     POST /v1/responses, OpenAI chat-completions upstream (request and answer translated)
    responses->responses  POST /v1/responses, a Responses upstream (the client's body passed through, events forwarded)
    responses->anthropic  POST /v1/responses, Anthropic upstream (translated both ways)
    responses+store       POST /v1/responses with store: true (the default) on the Responses upstream: each answer is
                          also kept in the ledger file (sqlite, on its own thread)

The embeddings rows (one 1536-dimension vector per request) run in the json mode only: embeddings never stream.

Every row is loaded once per round in turn (a, b, c, d, a, b, ...) so a shared machine's drift hits them alike; the
median of the rounds and the median ratio to chat->openai are printed. The sidecar runs as in production (metrics,
access log to a file, breakers, cost accounting). Loopback only; every load is bounded by `--seconds`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import ProcessTree, run_wrk
from upstream import Nginx, free_port, wait_port

SYSTEM = "You are a concise assistant. Answer in one sentence."
QUESTION = "Summarise why a sidecar router should keep its per-request CPU cost low."

ROUTES_YAML = """\
version: 1
defaults:
  deadline: 30s
  attempt_timeout: 10s
providers:
  oai-json: {{driver: openai, base_url: "{base}/json/v1", api_key: bench-key}}
  oai-sse: {{driver: openai, base_url: "{base}/sse/v1", api_key: bench-key}}
  ant-json: {{driver: anthropic, base_url: "{base}/ant-json", api_key: bench-key}}
  ant-sse: {{driver: anthropic, base_url: "{base}/ant-sse", api_key: bench-key}}
  emb-b64: {{driver: openai, base_url: "{base}/emb-b64/v1", api_key: bench-key}}
  emb-float: {{driver: openai, base_url: "{base}/emb-float/v1", api_key: bench-key}}
  resp-json: {{driver: openai, base_url: "{base}/json/v1", api_key: bench-key, options: {{responses: true}}}}
  resp-sse: {{driver: openai, base_url: "{base}/sse/v1", api_key: bench-key, options: {{responses: true}}}}
models:
  gpt-json: {{provider: oai-json, name: gpt-4o-mini, price: {{input: 0.15, output: 0.60}}}}
  gpt-sse: {{provider: oai-sse, name: gpt-4o-mini, price: {{input: 0.15, output: 0.60}}}}
  claude-json: {{provider: ant-json, name: claude-haiku-4-5, price: {{input: 1.0, output: 5.0}}}}
  claude-sse: {{provider: ant-sse, name: claude-haiku-4-5, price: {{input: 1.0, output: 5.0}}}}
  te3-b64: {{provider: emb-b64, name: te3-small, kind: embeddings, dimensions: 1536, price: {{input: 0.02}}}}
  te3-float: {{provider: emb-float, name: te3-small, kind: embeddings, dimensions: 1536, price: {{input: 0.02}}}}
  resp-json: {{provider: resp-json, name: gpt-4o-mini, price: {{input: 0.15, output: 0.60}}}}
  resp-sse: {{provider: resp-sse, name: gpt-4o-mini, price: {{input: 0.15, output: 0.60}}}}
routes:
  openai-json: {{chain: [gpt-json]}}
  openai-sse: {{chain: [gpt-sse]}}
  anthropic-json: {{chain: [claude-json]}}
  anthropic-sse: {{chain: [claude-sse]}}
  embeddings-b64-json: {{kind: embeddings, chain: [te3-b64]}}
  embeddings-float-json: {{kind: embeddings, chain: [te3-float]}}
  responses-json: {{chain: [resp-json]}}
  responses-sse: {{chain: [resp-sse]}}
"""


def chat_body(route: str, stream: bool) -> bytes:
    data: dict = {
        "model": route,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        "max_tokens": 64,
    }
    if stream:
        data["stream"] = True
    return json.dumps(data, separators=(",", ":")).encode()


def messages_body(route: str, stream: bool) -> bytes:
    data: dict = {
        "model": route,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 64,
    }
    if stream:
        data["stream"] = True
    return json.dumps(data, separators=(",", ":")).encode()


def embeddings_body(encoding: str) -> object:
    def build(route: str, stream: bool) -> bytes:
        data = {"model": route, "input": QUESTION, "encoding_format": encoding}
        return json.dumps(data, separators=(",", ":")).encode()

    return build


def responses_body(route: str, stream: bool, *, store: bool = False) -> bytes:
    """What a stateless agent sends (store: false); `store=True` measures keeping every answer as well."""
    data: dict = {"model": route, "instructions": SYSTEM, "input": QUESTION, "max_output_tokens": 64, "store": store}
    if stream:
        data["stream"] = True
    return json.dumps(data, separators=(",", ":")).encode()


def responses_stored(route: str, stream: bool) -> bytes:
    return responses_body(route, stream, store=True)


ROWS = {  # name -> (path, body builder, upstream format)
    "chat->openai": ("/v1/chat/completions", chat_body, "openai"),
    "messages->openai": ("/v1/messages", messages_body, "openai"),
    "messages->anthropic": ("/v1/messages", messages_body, "anthropic"),
    "chat->anthropic": ("/v1/chat/completions", chat_body, "anthropic"),
    "embeddings-b64": ("/v1/embeddings", embeddings_body("base64"), "embeddings-b64"),
    "embeddings-float": ("/v1/embeddings", embeddings_body("float"), "embeddings-float"),
    "responses->openai": ("/v1/responses", responses_body, "openai"),
    "responses->responses": ("/v1/responses", responses_body, "responses"),
    "responses->anthropic": ("/v1/responses", responses_body, "anthropic"),
    "responses+store": ("/v1/responses", responses_stored, "responses"),
}
STREAMLESS = frozenset({"embeddings-b64", "embeddings-float"})


def start_turnout(routes: Path, workdir: Path) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    cmd = [sys.executable, "-c", "from turnout.cli import main; main()"]  # this interpreter's turnout
    cmd += ["serve", str(routes), "--host", "127.0.0.1", "--port", str(port)]
    log = open(workdir / "turnout.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, proc, timeout=30)
    return port, proc


def measure(url: str, payload: bytes, tree: ProcessTree, seconds: float, connections: int) -> float:
    """CPU milliseconds of the sidecar per request over one bounded wrk run (after a 1 s warm-up)."""
    run_wrk(url, payload, connections=connections, seconds=1)
    before = tree.cpu_seconds()
    result = run_wrk(url, payload, connections=connections, seconds=seconds)
    if result.errors:
        raise SystemExit(f"{url}: {result.errors} errors under load")
    return (tree.cpu_seconds() - before) * 1000 / max(1, result.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="json,sse", help="json (non-streamed), sse (streamed), or both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rows", default=",".join(ROWS), help="which rows, comma-separated")
    args = parser.parse_args()
    rows = args.rows.split(",")
    nginx = Nginx().start()
    workdir = Path(tempfile.mkdtemp(prefix="turnout-ingress-"))
    routes = workdir / "routes.yaml"
    routes.write_text(ROUTES_YAML.format(base=nginx.base))
    port, proc = start_turnout(routes, workdir)
    tree = ProcessTree(proc.pid)
    try:
        for mode in args.modes.split(","):
            stream = mode == "sse"
            mode_rows = [row for row in rows if not (stream and row in STREAMLESS)]
            cpu: dict[str, list[float]] = {row: [] for row in mode_rows}
            for _ in range(args.rounds):
                for row in mode_rows:
                    path, build, upstream = ROWS[row]
                    payload = build(f"{upstream}-{mode}", stream)
                    cpu[row].append(
                        measure(f"http://127.0.0.1:{port}{path}", payload, tree, args.seconds, args.connections)
                    )
            base = cpu[mode_rows[0]]
            setup = f"c={args.connections}, {args.seconds:g}s each"
            print(f"\n{mode}: cpu ms/request, median of {args.rounds} rounds ({setup})")
            for row in mode_rows:
                ratio = statistics.median(a / b for a, b in zip(cpu[row], base, strict=True))
                spread = f"{min(cpu[row]):.3f}-{max(cpu[row]):.3f}"
                print(f"  {row:21} {statistics.median(cpu[row]):.3f}  (range {spread})  x{ratio:.2f} of {mode_rows[0]}")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
