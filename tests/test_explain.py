"""`turnout.explain`: routes -> steps -> deployments with effective, inherited policies."""

from __future__ import annotations

import hashlib

from turnout.explain import explain, render_text, summary
from turnout.schema import load_text

FILE = """\
version: 1
defaults:
  deadline: 45s
  breaker: {failure_threshold: 4}
providers:
  mock: {driver: mock, breaker: {recovery_timeout: 10s}}
  gated: {driver: openai, api_key: "{{ env.GATED_KEY }}"}
models:
  smart: {provider: mock, supports: [tools], price: {input: 1.5, output: 6}, breaker: {half_open_probes: 2}}
  plain: {provider: mock, supports: [json], limits: {rpm: 60}}
  locked: {provider: gated}
pools:
  mixed: {strategy: lowest_cost, members: [{model: smart, weight: 2}, plain]}
routes:
  tools:
    description: Tool calls.
    chain: [mixed, locked]
    requires: [tools]
    stall_timeout: 3s
    on_error: {timeout: retry}
"""


def _data() -> dict:
    return explain(load_text(FILE, source="x.yaml", env={}))


def test_steps_expand_pools_and_models_into_deployments():
    """A pool step lists its members with weights; a model step is a single deployment."""
    steps = _data()["routes"][0]["steps"]
    assert [(s["target"], s["kind"], s["strategy"]) for s in steps] == [
        ("mixed", "pool", "lowest_cost"),
        ("locked", "model", "single"),
    ]
    assert [(d["key"], d["weight"]) for d in steps[0]["deployments"]] == [("mock/smart", 2.0), ("mock/plain", 1.0)]


def test_members_lacking_a_required_capability_are_marked_skipped():
    """On a route that requires tools, a member declaring only json is shown as skipped, with why."""
    plain = _data()["routes"][0]["steps"][0]["deployments"][1]
    assert plain["eligible"] is False and plain["skip_reason"] == "lacks tools"
    assert "skipped on this route: lacks tools" in render_text(_data())


def test_effective_policy_and_breaker_are_inherited():
    """Route overrides merge over defaults; breakers merge model over provider over defaults."""
    route = _data()["routes"][0]
    assert route["policy"]["deadline"] == 45.0 and route["policy"]["stall_timeout"] == 3.0
    assert route["policy"]["on_error"]["timeout"] == "retry"
    assert route["policy"]["on_error"]["bad_request"] == "fail"
    smart = route["steps"][0]["deployments"][0]
    assert smart["breaker"]["failure_threshold"] == 4
    assert smart["breaker"]["recovery_timeout"] == 10.0
    assert smart["breaker"]["half_open_probes"] == 2


def test_prices_and_disabled_providers_are_explicit():
    """Prices are decimal strings (cached input defaults to input); disabled deployments say why."""
    data = _data()
    smart, plain = data["routes"][0]["steps"][0]["deployments"]
    assert smart["price"] == {"input": "1.5", "output": "6", "cached_input": "1.5", "cache_write": None}
    assert plain["price"] is None and plain["limits"] == {"rpm": 60, "tpm": None}
    locked = data["routes"][0]["steps"][1]["deployments"][0]
    assert locked["enabled"] is False and locked["disabled_reason"] == "api_key is empty (GATED_KEY is not set)"
    assert "price unknown" in render_text(data)


def test_summary_counts_disabled_providers():
    """The one-line summary counts each section and the disabled providers."""
    config = load_text(FILE, env={})
    assert summary(config) == "1 route, 3 models, 1 pool, 2 providers (1 disabled)"
    assert summary(load_text(FILE, env={"GATED_KEY": "k"})) == "1 route, 3 models, 1 pool, 2 providers"


def test_server_section_shows_backpressure_and_drain_with_keys_masked():
    """The server section is explained with its effective limits (max_in_flight, client_timeout, drain_timeout;
    0 spelled out as no waiting), and admin keys are only counted, never shown."""
    text = FILE + 'server:\n  admin_keys: ["sk-admin-SECRET-77"]\n  max_in_flight: 64\n  drain_timeout: 0\n'
    data = explain(load_text(text, source="x.yaml", env={}))
    server = data["server"]
    assert (server["max_in_flight"], server["client_timeout"], server["drain_timeout"]) == (64, 30.0, 0.0)
    assert server["admin_keys"] == 1
    rendered = render_text(data)
    assert "admin endpoints: 1 admin key(s) (***); metrics need an admin key" in rendered
    assert "at most 64 chat requests in flight per worker" in rendered and "sent within 30s" in rendered
    assert "drain for up to 0 (in-flight requests are cut at once)" in rendered
    assert "SECRET" not in rendered and "SECRET" not in str(data)


def test_restart_and_prefill_dialects_are_explained():
    """A restart route states its buffer and that time to first token becomes the whole answer's latency; a
    deployment continuing prefixes names its dialect."""
    vllm = "  vllm: {driver: openai, base_url: 'http://127.0.0.1:8000/v1', options: {prefill: vllm}}\n"
    text = FILE.replace("  gated: {driver: openai", vllm + "  gated: {driver: openai").replace(
        "  locked: {provider: gated}", "  locked: {provider: gated}\n  qwen: {provider: vllm}"
    )
    text += "  held:\n    chain: [qwen]\n    mid_stream: restart\n    restart_buffer: 64KB\n"
    data = explain(load_text(text, source="x.yaml", env={}))
    held = next(r for r in data["routes"] if r["name"] == "held")
    assert (held["policy"]["mid_stream"], held["policy"]["restart_buffer"]) == ("restart", 65536)
    qwen = held["steps"][0]["deployments"][0]
    assert qwen["prefill"] == "vllm" and "prefill" in qwen["capabilities"]
    report = render_text(data)
    assert "restart (answers held back up to 64KB, so time to first token is the whole answer's latency" in report
    assert "prefill dialect vllm" in report


def test_each_deployment_states_its_capabilities_once():
    """A deployment shows either its declared supports or the driver's offer, never both."""
    report = render_text(_data())
    assert "supports tools;" in report and "supports json;" in report
    assert "supports: not declared" not in report.split("mock/smart")[1].split("\n")[1]


EMBEDDINGS = """\
version: 1
providers:
  mock: {driver: mock}
models:
  small:
    provider: mock
    kind: embeddings
    dimensions: 1536
    min_dimensions: 256
    context_window: 8192
    price: {input: 0.02}
  backup: {provider: mock, kind: embeddings, dimensions: 1536}
  chat: {provider: mock}
routes:
  embed: {kind: embeddings, chain: [small, backup], aliases: [text-embedding-3-small]}
  chat: {chain: [chat], aliases: [gpt-4o, claude-sonnet-4-5]}
"""


def test_embeddings_routes_and_aliases_are_explained():
    """An embeddings route shows its kind, length and aliases; its deployments their lengths and input price, and no
    chat-only policy (first token, stall, mid-stream) or capability line."""
    data = explain(load_text(EMBEDDINGS, source="e.yaml", env={}))
    embed, chat = data["routes"]
    assert (embed["kind"], embed["dimensions"], embed["aliases"]) == ("embeddings", 1536, ["text-embedding-3-small"])
    assert (chat["kind"], chat["dimensions"], chat["aliases"]) == ("chat", None, ["gpt-4o", "claude-sonnet-4-5"])
    small = embed["steps"][0]["deployments"][0]
    assert (small["kind"], small["dimensions"], small["min_dimensions"]) == ("embeddings", 1536, 256)
    text = render_text(data)
    block = text.split("route chat")[0]
    assert "route embed (embeddings, 1536 dimensions)" in block
    assert "aliases: text-embedding-3-small" in block
    assert (
        "embeddings of 1536 dimensions, 256 to 1536 on request; tokens per input 8192; $0.02 per 1M input tokens"
        in block
    )
    assert "first token" not in block and "mid-stream" not in block and "supports" not in block
    assert "aliases: gpt-4o, claude-sonnet-4-5" in text.split("route chat")[1]


CLIENTS = """\
version: 1
providers: {mock: {driver: mock}}
models:
  echo: {provider: mock, price: {input: 1, output: 2}, budget: {usd: 40, per: month}}
  free: {provider: mock}
routes:
  chat: {chain: [echo, free], budget: {usd: 5, per: week, warn_at: 0.5}}
  search-a: {chain: [echo]}
  other: {chain: [echo]}
clients:
  search-team:
    description: The search service.
    keys: ["{{ env.SEARCH_KEY }}", "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    routes: [chat, "search-*"]
    limits: {rpm: 600}
    budget: {usd: 50, per: day, warn_at: 0.8}
server:
  admin_keys: ["{{ env.ADMIN_KEY }}"]
"""
SECRETS = {"SEARCH_KEY": "sk-search-plaintext-0001", "ADMIN_KEY": "admin-plaintext-0002"}


def test_clients_are_shown_by_name_with_masked_digests_never_keys():
    """explain lists a client's routes, limits and budget; its keys appear only as short digest prefixes."""
    config = load_text(CLIENTS, env=SECRETS)
    data = explain(config)
    text = render_text(data) + str(data)
    [client] = data["clients"]
    assert client["name"] == "search-team" and client["allowed_routes"] == ["chat", "search-a"]
    plaintext_digest = hashlib.sha256(SECRETS["SEARCH_KEY"].encode()).hexdigest()
    assert client["keys"] == [f"sha256:{plaintext_digest[:8]}…", "sha256:9f86d081…"]
    assert client["budget"] == {"usd": "50", "per": "day", "warn_at": 0.8}
    assert data["server"]["admin_keys"] == 1
    for secret in SECRETS.values():
        assert secret not in text
    assert "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" not in text
    assert "search-team — The search service." in text
    assert "budget $50.00 per day (UTC), warn at 80%" in text


def test_budgets_of_routes_and_deployments_are_shown_and_unpriced_members_are_excluded():
    """A route budget and a deployment budget appear where they apply; an unpriced member is skipped on a route
    with a budget, with the reason."""
    data = explain(load_text(CLIENTS, env=SECRETS))
    chat = next(r for r in data["routes"] if r["name"] == "chat")
    assert chat["budget"] == {"usd": "5", "per": "week", "warn_at": 0.5}
    echo, free = chat["steps"][0]["deployments"][0], chat["steps"][1]["deployments"][0]
    assert echo["budget"] == {"usd": "40", "per": "month", "warn_at": None}
    assert free["eligible"] is False
    assert free["skip_reason"] == "no price: the route's budget could not count its calls"
    assert "budget $5.00 per week (UTC), warn at 50%" in render_text(data)
