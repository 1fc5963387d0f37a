"""`/v1/messages` over plain HTTP: the exact SSE sequence, byte-for-byte native streams, what real agents send,
errors in Anthropic's shape and statuses, routing headers, fallback, metrics and the access log."""

from __future__ import annotations

import json

import pytest

from turnout.errors import ErrorClass
from turnout.testing import Framing, OpenAIFake, ToolCall, reply_sse
from turnout.testing.anthropic_fake import event
from turnout.types import Usage

HI = [{"role": "user", "content": "Say hello"}]
JSON = {"Content-Type": "application/json", "anthropic-version": "2023-06-01"}


def body(**fields):
    return {"model": "claude", "max_tokens": 64, "messages": HI, **fields}


def parse_sse(raw: bytes) -> list[tuple[str, dict]]:
    """(event name, data) pairs; SSE comments skipped; every event must have both lines."""
    out = []
    for frame in raw.decode().split("\n\n"):
        lines = [line for line in frame.split("\n") if line and not line.startswith(":")]
        if lines:
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
            out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


def assert_anthropic_error(payload, error_type):
    assert payload["type"] == "error", payload
    assert payload["error"]["type"] == error_type
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    return payload["error"]


async def test_a_translated_stream_is_the_exact_messages_sequence(messages_serve, primary, http):
    """From an OpenAI upstream: message_start, block start, ping, deltas, block stop, message_delta, message_stop;
    every data `type` equals its event name; no `[DONE]`; routing headers on the response."""
    primary.script("chat", primary.stream_text(["Hel", "lo"], usage=Usage(7, 2)))
    async with (
        messages_serve() as s,
        http.post(f"{s.url}/v1/messages", json=body(model="gpt", stream=True), headers=JSON) as resp,
    ):
        raw = await resp.read()
        headers = resp.headers
    got = parse_sse(raw)
    assert [name for name, _ in got] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in got)
    assert got[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert got[-2][1]["usage"]["output_tokens"] == 2 and got[-2][1]["usage"]["input_tokens"] == 7
    assert b"[DONE]" not in raw
    assert headers["Content-Type"] == "text/event-stream"
    assert (headers["x-turnout-route"], headers["x-turnout-served-by"], headers["x-turnout-attempts"]) == (
        "gpt",
        "oai/g1",
        "1",
    )


async def test_an_anthropic_stream_is_forwarded_byte_for_byte(messages_serve, claude, http):
    """From an Anthropic upstream the client receives exactly the upstream's events (pings, citations, thinking
    signatures, stop_sequence), nothing translated."""
    frames = [
        event(
            "message_start",
            message={
                "id": "msg_9",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-upstream",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 1},
            },
        ),
        event("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""}),
        event("ping"),
        event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Short."}),
        event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "c2lnbmF0dXJl"}),
        event("content_block_stop", index=0),
        event("content_block_start", index=1, content_block={"type": "text", "text": "", "citations": []}),
        event("content_block_delta", index=1, delta={"type": "text_delta", "text": "Hi ###"}),
        event("content_block_stop", index=1),
        event(
            "message_delta", delta={"stop_reason": "stop_sequence", "stop_sequence": "###"}, usage={"output_tokens": 4}
        ),
        event("message_stop"),
    ]
    claude.script("chat", reply_sse(frames, split_every=7))
    async with (
        messages_serve() as s,
        http.post(f"{s.url}/v1/messages?beta=true", json=body(stream=True), headers=JSON) as resp,
    ):
        raw = await resp.read()
    assert raw == b"".join(frames)


async def test_a_coding_agents_first_request_is_served(messages_serve, claude, primary, http):
    """`?beta=true`, `stream: true`, 24 tools, `thinking`, `context_management`, `output_config`, `metadata` and an
    `anthropic-beta` list: Anthropic gets all of it (and the betas), an OpenAI fallback the tools it can use."""
    tools = [
        {"name": f"Tool{i}", "description": f"tool {i}", "input_schema": {"type": "object", "properties": {}}}
        for i in range(24)
    ]
    agent = body(
        stream=True,
        system=[{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
        tools=tools,
        thinking={"type": "enabled", "budget_tokens": 4000},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        output_config={"effort": "high"},
        metadata={"user_id": "user_abc_account_123_session_456"},
        max_tokens=32000,
    )
    betas = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"
    claude.script("chat", claude.stream_text(["ok"]))
    primary.script("chat", primary.stream_text(["ok too"]))
    async with messages_serve() as s:
        headers = {**JSON, "anthropic-beta": betas, "x-api-key": "anything", "User-Agent": "claude-cli/2.0"}
        async with http.post(f"{s.url}/v1/messages?beta=true", json=agent, headers=headers) as resp:
            assert resp.status == 200
            await resp.read()
        async with http.post(f"{s.url}/v1/messages?beta=true", json={**agent, "model": "gpt"}, headers=headers) as resp:
            assert resp.status == 200
            assert [n for n, _ in parse_sse(await resp.read())][-1] == "message_stop"
    assert claude.last.json == {**agent, "model": "claude-upstream"}
    assert claude.last.header("anthropic-beta") == betas
    sent = primary.last.json
    assert (
        len(sent["tools"]) == 24 and sent["max_tokens"] == 32000 and sent["user"] == "user_abc_account_123_session_456"
    )
    assert not {"thinking", "context_management", "output_config", "metadata", "system"} & set(sent)


async def test_falls_back_and_says_so(messages_serve, claude, primary, http):
    """An overloaded Anthropic deployment fails over to OpenAI: a Messages answer, two attempts in the headers."""
    claude.script("chat", claude.error(ErrorClass.OVERLOADED))
    primary.script("chat", primary.text("from gpt", usage=Usage(10, 2)))
    async with messages_serve() as s, http.post(f"{s.url}/v1/messages", json=body(), headers=JSON) as resp:
        payload = await resp.json()
        headers = resp.headers
    assert payload["content"] == [{"type": "text", "text": "from gpt"}]
    assert payload["model"] == "gpt-test" and payload["type"] == "message"
    assert (headers["x-turnout-served-by"], headers["x-turnout-attempts"]) == ("oai/g1", "2")
    assert float(headers["x-turnout-cost-usd"]) == pytest.approx((10 * 1.0 + 2 * 2.0) / 1e6)


async def test_a_cut_stream_ends_with_an_error_event(messages_serve, primary, http):
    """A failure after the first text: `event: error` in Anthropic's shape is the last event, no message_stop."""
    primary.script("chat", primary.stream_text(["one ", "two"], framing=Framing(cut_after=3)))
    async with messages_serve() as s:
        async with http.post(f"{s.url}/v1/messages", json=body(model="gpt", stream=True), headers=JSON) as resp:
            raw = await resp.read()
        entry = json.loads(s.access_lines()[-1])
    got = parse_sse(raw)
    assert got[-1][0] == "error"
    assert_anthropic_error(got[-1][1], "api_error")
    assert "message_stop" not in [n for n, _ in got]
    assert entry["error_class"] == "connection" and entry["status"] == 200 and entry["ingress"] == "anthropic.messages"


@pytest.mark.parametrize(
    ("payload", "headers", "status", "error_type"),
    [
        (b"{not json", JSON, 400, "invalid_request_error"),
        (json.dumps(body(max_tokens=None)).encode(), JSON, 400, "invalid_request_error"),
        (json.dumps(body(messages=[{"role": "robot", "content": 42}])).encode(), JSON, 400, "invalid_request_error"),
        (json.dumps(body(model="nope")).encode(), JSON, 404, "not_found_error"),
        (json.dumps(body(model="unavailable")).encode(), JSON, 529, "overloaded_error"),
        (json.dumps(body()).encode(), {"Content-Type": "text/plain"}, 415, "invalid_request_error"),
        (b"x" * 5000, JSON, 413, "request_too_large"),
    ],
)
async def test_errors_have_anthropics_shape_and_status(messages_serve, http, payload, headers, status, error_type):
    """Refusals before any upstream (bad JSON, missing fields, unknown route, no capacity, wrong type, too large)
    use Anthropic's error body and status."""
    async with (
        messages_serve(server="  max_request_size: 4KB\n") as s,
        http.post(f"{s.url}/v1/messages", data=payload, headers=headers) as resp,
    ):
        assert resp.status == status
        assert_anthropic_error(await resp.json(), error_type)


async def test_wrong_method_is_405(messages_serve, http):
    """GET on the Messages endpoints is a 405 naming POST."""
    async with messages_serve() as s:
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            async with http.get(f"{s.url}{path}") as resp:
                assert (resp.status, resp.headers["Allow"]) == (405, "POST")


async def test_client_keys_by_x_api_key_or_bearer(messages_serve, claude, http, keys):
    """With clients declared, `x-api-key` (Anthropic SDKs) and `Authorization: Bearer` (auth tokens) both carry a
    client's key; anything else is 401 authentication_error."""
    claude.default("chat", claude.text("ok"))
    async with messages_serve(clients=keys.clients) as s:
        url = f"{s.url}/v1/messages"
        for auth, expected in (
            ({"x-api-key": keys.client}, 200),
            ({"Authorization": f"Bearer {keys.client}"}, 200),
            ({"Authorization": "Bearer nope", "x-api-key": keys.client}, 200),
            ({"x-api-key": "nope"}, 401),
            ({}, 401),
        ):
            async with http.post(url, json=body(), headers={**JSON, **auth}) as resp:
                assert resp.status == expected, auth
                if expected == 401:
                    error = assert_anthropic_error(await resp.json(), "authentication_error")
                    assert "x-api-key" in error["message"]
            async with http.post(f"{url}/count_tokens", json=body(), headers={**JSON, **auth}) as resp:
                assert resp.status == expected, auth


async def test_content_only_anthropic_understands_skips_other_deployments(messages_serve, claude, primary, http):
    """A PDF document has no OpenAI form: the OpenAI deployment is skipped (the reason in the trail) and the
    Anthropic one serves the client's body as sent."""
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="}}
    claude.script("chat", claude.text("A one-page PDF."))
    request = body(
        model="gpt-then-claude", messages=[{"role": "user", "content": [pdf, {"type": "text", "text": "Summarise"}]}]
    )
    async with messages_serve() as s:
        async with http.post(f"{s.url}/v1/messages", json=request, headers=JSON) as resp:
            payload = await resp.json()
            assert resp.headers["x-turnout-served-by"] == "claude/c1"
        entry = json.loads(s.access_lines()[-1])
    assert payload["content"][0]["text"] == "A one-page PDF."
    assert primary.requests_to("chat") == []
    assert claude.last.json["messages"][0]["content"][0] == pdf
    skipped = entry["attempts"][0]
    assert skipped["outcome"] == "skipped" and "document" in skipped["detail"]


async def test_access_log_and_metrics(messages_serve, claude, http):
    """One access line per request with `ingress` and the path (the client's own body when content is logged);
    the request counts in turnout_requests_total like any chat request."""
    claude.script("chat", claude.text("logged"))
    async with messages_serve(server="  log_content: true\n") as s:
        request = body(system="Be brief.", context_management={"edits": []})
        async with http.post(f"{s.url}/v1/messages?beta=true", json=request, headers=JSON) as resp:
            assert resp.status == 200
        async with http.post(f"{s.url}/v1/messages/count_tokens", json=request, headers=JSON) as resp:
            assert resp.status == 200
        async with http.get(f"{s.url}/metrics") as resp:
            metrics = await resp.text()
        first, second = (json.loads(line) for line in s.access_lines())
    assert (first["ingress"], first["path"], first["route"], first["served_by"]) == (
        "anthropic.messages",
        "/v1/messages",
        "claude",
        "claude/c1",
    )
    assert first["content"] == {"request": request, "response": "logged"}
    assert (second["path"], second["status"], second["attempts"]) == ("/v1/messages/count_tokens", 200, [])
    assert 'turnout_requests_total{route="claude",status="200"} 2.0' in metrics


async def test_count_tokens_answers_without_an_upstream(messages_serve, claude, primary, http):
    """count_tokens is answered at once in Anthropic's shape, with the route header; no upstream is called."""
    async with messages_serve() as s:
        request = {"model": "claude", "messages": HI, "tools": [{"name": "t", "input_schema": {"type": "object"}}]}
        async with http.post(f"{s.url}/v1/messages/count_tokens", json=request, headers=JSON) as resp:
            payload = await resp.json()
            assert resp.headers["x-turnout-route"] == "claude" and resp.headers["x-turnout-attempts"] == "0"
    assert set(payload) == {"input_tokens"} and payload["input_tokens"] > 0
    assert claude.requests == [] and primary.requests == []


async def test_chat_completions_is_unchanged_beside_messages(messages_serve, primary, http):
    """The OpenAI endpoint on the same routes still answers OpenAI's way, logged as `openai.chat`."""
    primary.script("chat", primary.text("plain"))
    async with messages_serve() as s:
        request = {"model": "gpt", "messages": HI}
        async with http.post(f"{s.url}/v1/chat/completions", json=request) as resp:
            payload = await resp.json()
        entry = json.loads(s.access_lines()[-1])
    assert payload["object"] == "chat.completion" and payload["choices"][0]["message"]["content"] == "plain"
    assert entry["ingress"] == "openai.chat"


async def test_tool_use_from_openai_keeps_ids_anthropic_accepts(messages_serve, primary, http):
    """A tool call id with characters Anthropic refuses is rewritten the deterministic way the driver rewrites it."""
    primary.script("chat", primary.tool_calls([ToolCall("weather", {"city": "Oslo"}, id="call:7/x")]))
    async with (
        messages_serve() as s,
        http.post(f"{s.url}/v1/messages", json=body(model="gpt"), headers=JSON) as resp,
    ):
        payload = await resp.json()
    assert payload["content"] == [{"type": "tool_use", "id": "call_7_x", "name": "weather", "input": {"city": "Oslo"}}]
    assert payload["stop_reason"] == "tool_use"


PREFILL = "options: {prefill: assistant}"


async def test_a_cut_anthropic_stream_is_continued_in_the_same_message(messages_serve, claude, http):
    """`mid_stream: continue`: the upstream's own events, then another deployment's continuation in the same open
    text block, and one message_stop: the client reads one whole answer."""
    async with OpenAIFake(model="llama", prefill="assistant") as llama:
        llama.script("chat", llama.stream_answer("The answer is 42, as always."))
        claude.script("chat", claude.stream_text(["The answer", " is"], framing=Framing(cut_after_text=" is")))
        async with (
            messages_serve(
                extra_providers=f'  local: {{driver: openai, base_url: "{llama.url}/v1", {PREFILL}}}\n',
                extra_models="  llama: {provider: local, name: llama, price: {input: 0.1, output: 0.1}}\n",
                extra_routes="  rescue: {chain: [c1, llama], mid_stream: continue}\n",
            ) as s,
            http.post(f"{s.url}/v1/messages", json=body(model="rescue", stream=True), headers=JSON) as resp,
        ):
            raw = await resp.read()
    got = parse_sse(raw)
    names = [n for n, _ in got]
    assert names.count("message_start") == 1 and names[-1] == "message_stop" and "error" not in names
    text = "".join(
        d["delta"]["text"] for n, d in got if n == "content_block_delta" and d["delta"]["type"] == "text_delta"
    )
    assert text == "The answer is 42, as always."
    assert {d["index"] for n, d in got if n == "content_block_delta"} == {0}
    assert llama.last.json["messages"][-1] == {"role": "assistant", "content": "The answer is"}


async def test_clients_routes_and_budgets_in_anthropics_shape(messages_serve, claude, http):
    """The Messages ingress runs as the key's client: a route outside its list is 403 permission_error, a spent
    budget 429 rate_limit_error naming the budget and its reset, count_tokens follows the same routes."""
    claude.default("chat", claude.text("a reply of a few words"))
    clients = 'clients:\n  agent:\n    keys: ["agent-key-0123456789abcdef"]\n    routes: [claude]\n'
    clients += "    budget: {usd: 0.0005, per: day}\n    unpriced: allow\n"
    async with messages_serve(clients=clients) as s:
        auth = {**JSON, "x-api-key": "agent-key-0123456789abcdef"}
        async with http.post(f"{s.url}/v1/messages", json=body(model="gpt"), headers=auth) as resp:
            denied = (resp.status, await resp.json())
        async with http.post(f"{s.url}/v1/messages/count_tokens", json=body(model="gpt"), headers=auth) as resp:
            counted = resp.status
        statuses = []
        for _ in range(50):
            async with http.post(f"{s.url}/v1/messages", json=body(max_tokens=5), headers=auth) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    spent = await resp.json()
                    break
    assert denied[0] == 403 and assert_anthropic_error(denied[1], "permission_error")["message"].endswith("'gpt'.")
    assert counted == 403
    assert statuses[0] == 200 and statuses[-1] == 429
    error = assert_anthropic_error(spent, "rate_limit_error")
    assert "Budget" in error["message"] and "client 'agent'" in error["message"] and "resets at" in error["message"]
