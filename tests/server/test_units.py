"""Unit checks of the sidecar's small pieces: error mapping, access-log encoding, keys, SSE role chunk, metrics."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from turnout.config import Secret
from turnout.errors import HTTP_STATUS, AllUpstreamsFailed, ErrorClass, InvalidRequest, RouteNotFound, provider_error
from turnout.events import BreakerOpened, FallbackTaken, ResponseCompleted
from turnout.server.access_log import AccessLog
from turnout.server.auth import ApiKeys
from turnout.server.errors import failure
from turnout.server.metrics import Metrics
from turnout.server.sse import role_chunk
from turnout.types import Attempt, ChatChunk, Usage

HOSTILE = 'quote " backslash \\ newline \n tab \t nul \x00 unicode \u00e9\u2028 emoji \U0001f600'


def attempt(cls: str | None, outcome: str = "error") -> Attempt:
    return Attempt("p/m", 0.0, 0.01, outcome, cls, 500 if cls else None, detail=HOSTILE)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", list(ErrorClass))
def test_failure_status_follows_the_taxonomy(cls):
    """A route failing with one class answers that class's HTTP status (429 only when every try was limited)."""
    err = provider_error(cls, "upstream said no", provider="p", model="m", retry_after=2.5)
    fail = failure(AllUpstreamsFailed("r", [attempt(cls.value)], err))
    assert fail.status == HTTP_STATUS[cls]
    assert fail.error["error_class"] == cls.value
    if fail.status == 429:
        assert fail.headers["Retry-After"] == "3"
    json.loads(fail.body())


def test_mixed_failures_ending_in_rate_limit_are_503():
    """If some options failed for other reasons, a final rate limit is not reported as a plain 429."""
    err = provider_error(ErrorClass.RATE_LIMIT, "slow down", provider="p", model="m")
    fail = failure(AllUpstreamsFailed("r", [attempt("server_error"), attempt("rate_limit")], err))
    assert fail.status == 503


def test_nothing_tried_is_503_with_trail():
    """No attempt at all (everything skipped) is 503 no_upstream_available with the skips listed."""
    fail = failure(AllUpstreamsFailed("r", [Attempt("p/m", 0, 0, "skipped", detail="breaker open")], None))
    assert fail.status == 503
    assert fail.error["code"] == "no_upstream_available"
    assert "breaker open" in fail.error["message"]


def test_client_errors_and_unknown_exceptions():
    """InvalidRequest is 400 with param, RouteNotFound 404, and anything unexpected a bare 500 without details."""
    assert failure(InvalidRequest("bad", param="n")).error["param"] == "n"
    assert failure(RouteNotFound("x", ["a", "b"])).status == 404
    internal = failure(RuntimeError("secret internals"))
    assert internal.status == 500 and "secret internals" not in internal.body().decode()


def test_access_log_line_is_valid_json_for_hostile_strings():
    """The hand-assembled access line stays valid JSON whatever the strings and numbers hold."""
    out = io.StringIO()
    AccessLog(out).write(
        method="POST",
        path=HOSTILE,
        status=502,
        route=HOSTILE,
        served_by=None,
        stream=True,
        attempts=[attempt("server_error"), attempt(None, "success")],
        latency=0.5,
        ttft=None,
        usage=Usage.UNKNOWN,
        cost_usd=float("nan"),
        error_class="server_error",
        error=HOSTILE,
        upstream_text=True,
    )
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    entry = json.loads(line)
    assert entry["path"] == HOSTILE and entry["error"] == HOSTILE
    assert entry["attempts"][0]["detail"] == HOSTILE
    assert entry["cost_usd"] is None and entry["prompt_tokens"] is None


def test_access_log_keeps_upstream_text_out_unless_asked():
    """Without upstream_text an error attempt's provider message is dropped; turnout's own details stay."""
    out = io.StringIO()
    provider = Attempt("p/m", 0.0, 0.1, "error", "bad_request", 400, detail="you sent: my secret prompt")
    reset = Attempt("p/m", 0.0, 0.1, "error", "connection", None, detail="cannot connect to upstream: refused")
    skipped = Attempt("q/m", 0.0, 0.0, "skipped", detail="breaker open")
    AccessLog(out).write(
        method="POST", path="/v1/chat/completions", status=400, route="r", served_by=None, stream=False,
        attempts=[provider, reset, skipped], latency=0.1, error_class="bad_request", error=None,
    )  # fmt: skip
    entry = json.loads(out.getvalue())
    assert "my secret prompt" not in out.getvalue()
    assert [a.get("detail") for a in entry["attempts"]] == [None, reset.detail, "breaker open"]
    assert entry["attempts"][0]["status"] == 400


def test_api_keys_compare_every_key():
    """Only an exact Bearer token (or x-api-key) from the list is accepted, never with an empty list; the repr never
    shows keys."""
    keys = ApiKeys([Secret("alpha"), Secret(""), Secret("beta")])
    assert len(keys) == 2
    assert keys.allows({"Authorization": "Bearer beta"})
    assert not keys.allows({"Authorization": "Bearer bet"})
    assert not keys.allows({"Authorization": "beta"})
    assert not keys.allows({})
    assert keys.allows({"x-api-key": "alpha"})
    assert "alpha" not in repr(keys)
    assert not ApiKeys([]).allows({})
    assert not ApiKeys([]).allows({"Authorization": "Bearer "})


def test_role_chunk_is_added_only_when_missing():
    """A first chunk without delta.role gets an opening role chunk; one that has it does not."""
    plain = ChatChunk(
        data={"id": "c", "model": "m", "created": 1, "choices": [{"index": 0, "delta": {"content": "x"}}]}
    )
    opening = role_chunk(plain)
    assert opening is not None
    assert json.loads(opening[6:])["choices"][0]["delta"]["role"] == "assistant"
    with_role = ChatChunk(
        data={"id": "c", "model": "m", "created": 1, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    )
    assert role_chunk(with_role) is None
    # Forwarded upstream bytes: the byte check, and the parse when the bytes leave any doubt.
    raw_with_role = ChatChunk(raw=b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}')
    assert role_chunk(raw_with_role) is None
    raw_without = ChatChunk(raw=b'{"id":"c","choices":[{"index":0,"delta":{"content":"\\"role\\":\\"assistant\\""}}]}')
    assert json.loads(role_chunk(raw_without)[6:])["choices"][0]["delta"]["role"] == "assistant"
    raw_spaced = ChatChunk(raw=b'{"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}')
    assert role_chunk(raw_spaced) is None


def test_metrics_from_events():
    """Events update the per-app registry: fallbacks, breaker state, tokens, cost and latency."""
    metrics = Metrics()
    metrics(FallbackTaken(1.0, "id", "chat", "p/m", "timeout"))
    metrics(BreakerOpened(1.0, "p/m", open_for=30))
    usage = Usage(prompt_tokens=10, completion_tokens=3)
    metrics(ResponseCompleted(1.0, "id", "chat", "p/m", True, (), usage, 0.25, 1.5, 0.2, None, 0.0003))
    metrics.reload_result(False, 3)
    text = metrics.render().decode()
    assert 'turnout_fallbacks_total{error_class="timeout",from_deployment="p/m",route="chat"} 1.0' in text
    assert 'turnout_breaker_state{deployment="p/m"} 2.0' in text
    assert 'turnout_tokens_total{deployment="p/m",kind="prompt",route="chat"} 10.0' in text
    assert 'turnout_cost_usd_total{deployment="p/m",route="chat"} 0.25' in text
    assert 'turnout_time_to_first_token_seconds_count{route="chat"} 1.0' in text
    assert "turnout_config_last_reload_problems 3.0" in text
    assert Metrics().render() != text.encode()  # a fresh app starts from zero: registries are not shared


def test_histogram_family_matches_prometheus_semantics():
    """Bucket `le` counts are cumulative and a value equal to a bound lands in that bound's bucket."""
    from prometheus_client import CollectorRegistry, generate_latest

    from turnout.server.families import FamilyCollector, HistogramFamily

    family = HistogramFamily("t_seconds", "test", ["route"], [0.1, 1.0])
    for value in (0.05, 0.1, 0.5, 3.0):
        family.observe(("r",), value)
    registry = CollectorRegistry()
    registry.register(FamilyCollector([family]))
    text = generate_latest(registry).decode()
    assert 't_seconds_bucket{le="0.1",route="r"} 2.0' in text
    assert 't_seconds_bucket{le="1.0",route="r"} 3.0' in text
    assert 't_seconds_bucket{le="+Inf",route="r"} 4.0' in text
    assert 't_seconds_count{route="r"} 4.0' in text
    assert 't_seconds_sum{route="r"} 3.65' in text


class _CountingStream(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


async def test_access_log_flushes_once_per_interval_not_per_line():
    """Many lines in a burst cost one flush, issued within FLUSH_INTERVAL (and nothing is lost)."""
    from turnout.server.access_log import FLUSH_INTERVAL

    out = _CountingStream()
    log = AccessLog(out)
    for _ in range(50):
        log.write(
            method="POST",
            path="/v1/chat/completions",
            status=200,
            route="r",
            served_by="p/m",
            stream=False,
            attempts=(),
            latency=0.001,
        )
    assert out.flushes == 0
    await asyncio.sleep(FLUSH_INTERVAL + 0.1)
    assert out.flushes == 1
    assert len(out.getvalue().splitlines()) == 50


def test_serving_raises_the_young_gc_threshold():
    """The sidecar lets the youngest GC generation grow (the default collected every couple of requests), and
    leaves a switched-off collector alone."""
    import subprocess
    import sys

    code = (
        "import gc\n"
        "from turnout.server.run import GC_THRESHOLD, tune_gc\n"
        "gc.set_threshold(700, 10, 10); tune_gc(); assert gc.get_threshold() == (GC_THRESHOLD, 10, 10)\n"
        "gc.set_threshold(0, 10, 10); tune_gc(); assert gc.get_threshold()[0] == 0\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_serving_lifts_the_soft_open_files_limit_to_the_hard_one():
    """`turnout serve` raises a low soft limit on open files (a shell's 1024) to the hard limit, capped."""
    import subprocess
    import sys

    code = (
        "import resource\n"
        "from turnout.server.run import raise_open_files_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
        "now = raise_open_files_limit(ceiling=4096)\n"
        "assert now == resource.getrlimit(resource.RLIMIT_NOFILE)[0] == min(hard, 4096), now\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_banner_warns_when_exposed_without_auth():
    """Binding beyond loopback with client auth off prints why other hosts will get 403s and what to set."""
    from turnout.config import ClientKey, ClientSpec, Config, ServerSpec
    from turnout.server.run import banner

    readiness = {"routes": {"chat": {"usable": 1, "total": 1}}}
    exposed = banner("routes.yaml", Config(), readiness, "0.0.0.0", 8080, 1)
    assert "warning: listening on 0.0.0.0 with client auth off" in exposed
    assert "server.allowed_hosts" in exposed
    assert "warning" not in banner("routes.yaml", Config(), readiness, "127.0.0.1", 8080, 1)
    allowed = Config(server=ServerSpec(allowed_hosts=("gateway.internal",)))
    assert "warning" not in banner("routes.yaml", allowed, readiness, "0.0.0.0", 8080, 1)
    keyed = Config(clients={"app": ClientSpec("app", (ClientKey.of_plaintext("k-123456"),))})
    assert "warning" not in banner("routes.yaml", keyed, readiness, "0.0.0.0", 8080, 1)


def test_banner_names_every_client_endpoint_the_app_serves():
    """The startup banner lists each POST /v1/... ingress the sidecar registers (a new ingress cannot be left out)."""
    from turnout import Router
    from turnout.config import Config
    from turnout.server.app import create_app
    from turnout.server.run import banner

    app = create_app(Router(Config()), access_log=None)
    ingresses = {
        r.resource.canonical
        for r in app.router.routes()
        if r.method == "POST" and r.resource is not None and r.resource.canonical.startswith("/v1/")
    }
    ingresses.discard("/v1/messages/count_tokens")  # a helper of /v1/messages, not an ingress of its own
    assert ingresses >= {"/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings"}
    printed = banner("routes.yaml", Config(), {"routes": {}}, "127.0.0.1", 8080, 1).split("endpoints: ")[-1].split()
    assert ingresses <= set(printed)
