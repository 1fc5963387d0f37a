"""The sidecar over plain HTTP: every 4xx path, auth, health/readiness, metrics, access log, client disconnects."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from turnout.errors import ErrorClass
from turnout.testing import Framing, hang

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}


async def post_raw(http, url, data, headers=JSON):
    async with http.post(url + CHAT, data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def test_malformed_json_is_400(serve, http, openai_error):
    """A body that is not JSON is a 400 `invalid_json` in OpenAI's shape."""
    async with serve() as s:
        status, payload, _ = await post_raw(http, s.url, b'{"model": "chat", "messages": [')
    assert status == 400
    assert openai_error(payload, 400)["code"] == "invalid_json"


async def test_invalid_utf8_is_400(serve, http, openai_error):
    """A body that is not UTF-8 is a 400, never a 500."""
    async with serve() as s:
        status, payload, _ = await post_raw(http, s.url, b'{"model": "chat\xff\xfe", "messages": []}')
    assert status == 400
    assert "UTF-8" in openai_error(payload, 400)["message"]


async def test_deep_nesting_is_400(serve, http, openai_error):
    """Absurdly deep JSON nesting is rejected as 400 instead of crashing the parser."""
    async with serve() as s:
        status, payload, _ = await post_raw(http, s.url, b"[" * 200_000 + b"]" * 200_000)
    assert status == 400
    openai_error(payload, 400)


async def test_nan_is_400(serve, http, openai_error):
    """Non-standard JSON constants (NaN, Infinity) are rejected rather than forwarded upstream."""
    async with serve() as s:
        status, payload, _ = await post_raw(
            http, s.url, b'{"model":"chat","messages":[{"role":"user","content":"x"}],"temperature":NaN}'
        )
    assert status == 400
    openai_error(payload, 400)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "chat", "messages": "hi"}, "messages"),
        ({"model": "chat", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "chat", "messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
        ({"model": "chat", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "chat", "messages": MESSAGES, "max_tokens": -3}, "max_tokens"),
        ({"model": "chat", "messages": MESSAGES, "tools": {"a": 1}}, "tools"),
        ([1, 2, 3], None),
    ],
)
async def test_invalid_fields_are_400_naming_the_field(serve, http, primary, openai_error, body, param):
    """Each missing or wrong-typed field is a 400 whose `param` names it; nothing is sent upstream."""
    async with serve() as s:
        status, payload, _ = await post_raw(http, s.url, json.dumps(body).encode())
    assert status == 400
    assert openai_error(payload, 400)["param"] == param
    assert primary.requests == []


@pytest.mark.parametrize("stream", [False, True])
async def test_lone_surrogate_escape_is_400_and_never_reaches_upstream(serve, http, primary, openai_error, stream):
    """A JSON `\\ud800` escape (text no upstream can receive) is a 400 for the client, not a 502 against a provider."""
    body = b'{"model":"chat","messages":[{"role":"user","content":"x\\ud800y"}],"stream":%s}' % (
        b"true" if stream else b"false"
    )
    async with serve() as s:
        status, payload, _ = await post_raw(http, s.url, body)
        breaker = s.sidecar.router.health["primary/p1"].breaker
    assert status == 400, payload
    assert openai_error(payload, 400)["code"] == "invalid_unicode"
    assert breaker.failure_count == 0
    assert primary.requests == []


async def test_body_over_limit_is_413(serve, http, openai_error):
    """A body over server.max_request_size is 413, whether it declares its length or is chunked."""
    big = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "x" * 5000}]}).encode()

    async def chunked():
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    async with serve(server="  max_request_size: 2KB\n") as s:
        declared = await post_raw(http, s.url, big)
        streamed = await post_raw(http, s.url, chunked())
    for status, payload, _ in (declared, streamed):
        assert status == 413
        assert openai_error(payload, 413)["code"] == "request_too_large"
        assert "server.max_request_size" in payload["error"]["message"]  # the routing file's own key


@pytest.mark.parametrize("value", ["yes", 1, {}, [True]])
async def test_include_usage_must_be_a_boolean(serve, http, openai_error, value):
    """stream_options.include_usage other than true/false/null is a 400 naming the field, never read as truthy."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    body["stream_options"] = {"include_usage": value}
    async with serve() as s:
        status, payload, _ = await post_raw(http, s.url, json.dumps(body).encode())
    assert status == 400
    assert openai_error(payload, 400)["param"] == "stream_options.include_usage"


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def post_untyped(http, url, body, headers):
    """POST with exactly `headers` (aiohttp adds no Content-Type of its own)."""
    async with http.post(url + CHAT, data=body, headers=headers, skip_auto_headers=["Content-Type"]) as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"model=chat", FORM),  # real form data
        (b"[1, 2]", FORM),  # JSON, but not an object
        (b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}', {"Content-Type": "text/xml"}),
        (b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}', {"Content-Type": "text/plain"}),
        (b"--x\r\n\r\n--x--", {"Content-Type": "multipart/form-data; boundary=x"}),
        # what a web page can send cross-origin without a CORS preflight: never accepted from a browser
        (b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}', {**FORM, "Origin": "https://evil"}),
        (b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}', {"Origin": "https://evil"}),
    ],
)
async def test_wrong_content_type_is_415(serve, http, primary, openai_error, body, headers):
    """A non-JSON content type (or a form-encoded or untyped body from a browser) is a 415 in OpenAI's shape."""
    async with serve() as s:
        status, payload = await post_untyped(http, s.url, body, headers)
    assert status == 415
    assert openai_error(payload, 415)["code"] == "unsupported_media_type"
    assert primary.requests == []


@pytest.mark.parametrize("headers", [FORM, {}])
async def test_curl_d_json_body_is_served(serve, http, primary, headers):
    """`curl -d '{json}'` (form-encoded type) and an untyped body are served when the body is a JSON object."""
    primary.default("chat", primary.text("hello curl"))
    body = json.dumps({"model": "chat", "messages": MESSAGES}).encode()
    async with serve() as s:
        status, payload = await post_untyped(http, s.url, body, headers)
    assert status == 200, payload
    assert payload["choices"][0]["message"]["content"] == "hello curl"


async def test_unknown_path_and_wrong_method(serve, http, openai_error):
    """Unknown paths are 404 and known paths with the wrong method 405, both in OpenAI's shape."""
    async with serve() as s:
        async with http.get(f"{s.url}/v1/audio/speech") as resp:
            assert resp.status == 404
            openai_error(await resp.json(), 404)
        async with http.get(f"{s.url}/v1/embeddings") as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "POST"
        async with http.get(f"{s.url}{CHAT}") as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "POST"
            openai_error(await resp.json(), 405)


async def test_client_auth(serve, http, primary, keys, openai_error):
    """With clients declared, chat and models need a client's Bearer key; metrics need the admin key (a client key
    never opens it); health endpoints stay open."""
    primary.default("chat", primary.text("ok"))
    body = {"model": "chat", "messages": MESSAGES}
    clients = f'clients:\n  default: {{keys: ["{keys.client}"]}}\n  second: {{keys: ["second-key-0123456789"]}}\n'
    async with serve(server=keys.admin_server, clients=clients) as s:
        results = {}
        for name, headers in {
            "none": {},
            "wrong": {"Authorization": "Bearer nope"},
            "basic": {"Authorization": f"Basic {keys.client}"},
            "admin": {"Authorization": f"Bearer {keys.admin}"},
            "right": {"Authorization": f"Bearer {keys.client}"},
            "second": {"Authorization": "bearer second-key-0123456789"},
        }.items():
            async with http.post(s.url + CHAT, json=body, headers=headers) as resp:
                results[name] = (resp.status, await resp.json())
        async with http.get(f"{s.url}/v1/models") as resp:
            models_status = resp.status
        async with http.get(f"{s.url}/healthz") as resp:
            health_status = resp.status
        async with http.get(f"{s.url}/readyz") as resp:
            ready_status = resp.status
        metrics = []
        for key in ("", keys.client, keys.admin):
            async with http.get(f"{s.url}/metrics", headers={"Authorization": f"Bearer {key}"}) as resp:
                metrics.append(resp.status)
    for name in ("none", "wrong", "basic", "admin"):
        assert results[name][0] == 401
        assert openai_error(results[name][1], 401)["code"] == "invalid_api_key"
    assert results["right"][0] == 200
    assert results["second"][0] == 200
    assert models_status == 401
    assert metrics == [401, 401, 200]  # protected whenever keys exist (server.protect_metrics: false opens it)
    assert (health_status, ready_status) == (200, 200)
    assert keys.client not in json.dumps(results) and keys.admin not in json.dumps(results)


async def raw_exchange(url: str, request: bytes) -> bytes:
    """Send `request` bytes as they are (headers aiohttp's client would refuse to build) and read the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_non_utf8_bearer_token_is_401(serve, keys, openai_error):
    """An Authorization header that is not UTF-8 is refused with 401 in OpenAI's shape, never a 500."""
    body = json.dumps({"model": "chat", "messages": MESSAGES}).encode()
    async with serve(clients=keys.clients) as s:
        answers = [
            await raw_exchange(
                s.url,
                f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
                + b"Authorization: Bearer \xff\xfe"
                + keys.client.encode()
                + f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body,
            )
            for method, path in (("POST", CHAT), ("GET", "/v1/models"))
        ]
    for answer in answers:
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401"), head
        assert openai_error(json.loads(payload), 401)["code"] == "invalid_api_key"


async def test_metrics_can_be_protected(serve, http, keys):
    """With server.protect_metrics the metrics endpoint needs an admin key even when no client is declared."""
    async with serve(server=f"{keys.admin_server}  protect_metrics: true\n") as s:
        async with http.get(f"{s.url}/metrics") as resp:
            anonymous = resp.status
        async with http.get(f"{s.url}/metrics", headers={"Authorization": f"Bearer {keys.admin}"}) as resp:
            allowed = resp.status
    assert (anonymous, allowed) == (401, 200)


async def test_readyz_reports_detail(serve, http):
    """/readyz is 200 with route and provider detail when every route has a usable deployment."""
    async with serve() as s:
        async with http.get(f"{s.url}/readyz") as resp:
            status, detail = resp.status, await resp.json()
        async with http.get(f"{s.url}/healthz") as resp:
            health = await resp.json()
    assert status == 200
    assert detail["ready"] is True
    assert detail["routes"]["chat"] == {"usable": 2, "total": 2}
    assert "nokey" in detail["disabled_providers"]
    assert detail["last_reload_error"] is None
    assert health == {"status": "ok"}


async def test_readyz_503_when_a_route_has_nothing_usable(serve, http):
    """A route with no usable deployment makes /readyz answer 503."""
    async with serve(extra_routes="  nothing:\n    chain: [dead]\n") as s, http.get(f"{s.url}/readyz") as resp:
        status, detail = resp.status, await resp.json()
    assert status == 503
    assert detail["ready"] is False
    assert detail["routes"]["nothing"]["usable"] == 0


async def test_metrics_count_requests_attempts_fallbacks_tokens(serve, http, primary, backup):
    """After a fallback, /metrics shows the request, both attempts, the fallback, tokens, cost and latency."""
    primary.script("chat", primary.error(ErrorClass.SERVER_ERROR))
    backup.script("chat", backup.text("fine"))
    async with serve() as s:
        async with http.post(s.url + CHAT, json={"model": "chat", "messages": MESSAGES}) as resp:
            assert resp.status == 200
        async with http.post(s.url + CHAT, json={"model": "who-knows", "messages": MESSAGES}) as resp:
            assert resp.status == 404
        async with http.get(f"{s.url}/metrics") as resp:
            text = await resp.text()
    assert 'turnout_requests_total{route="chat",status="200"} 1.0' in text
    assert 'turnout_requests_total{route="(none)",status="404"} 1.0' in text  # client-chosen names never become labels
    assert 'outcome="error"' in text and 'error_class="server_error"' in text
    assert 'turnout_fallbacks_total{error_class="server_error"' in text
    assert 'turnout_tokens_total{deployment="backup/' in text
    assert "turnout_cost_usd_total" in text
    assert 'turnout_request_duration_seconds_count{route="chat",stream="false"} 1.0' in text
    assert "turnout_in_flight_requests 0.0" in text


async def test_access_log_has_one_line_per_request_without_content(serve, http, primary, keys):
    """Each chat request writes one JSON line with routing and accounting, and no prompt text or secrets."""
    primary.script("chat", primary.text("the answer is xyzzy-plugh"))
    async with serve() as s:
        body = {"model": "chat", "messages": [{"role": "user", "content": "my secret question"}]}
        async with http.post(s.url + CHAT, json=body) as resp:
            assert resp.status == 200
        lines = s.access_lines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["status"] == 200 and entry["route"] == "chat"
    assert entry["served_by"].startswith("primary/")
    assert entry["attempts"][0]["outcome"] == "success"
    assert entry["prompt_tokens"] == 12 and entry["completion_tokens"] == 5
    assert entry["latency_ms"] > 0
    assert "secret question" not in lines[0] and "xyzzy" not in lines[0]
    assert keys.primary not in lines[0]


async def test_a_refusal_reports_its_attempt_in_headers_and_access_log(serve, http, primary):
    """A request failed at once (a refusal) still says an upstream was tried: x-turnout-attempts and the log trail."""
    primary.script("chat", primary.error(ErrorClass.CONTENT_POLICY))
    async with serve() as s:
        body = {"model": "strict", "messages": MESSAGES}
        async with http.post(s.url + CHAT, json=body) as resp:
            status, headers = resp.status, resp.headers
        lines = s.access_lines()
    assert status == 400
    assert headers["x-turnout-attempts"] == "1"
    entry = json.loads(lines[0])
    assert [(a["outcome"], a["error_class"]) for a in entry["attempts"]] == [("error", "content_policy")]


async def test_access_log_content_when_enabled(serve, http, primary):
    """With server.log_content the access line carries the request and the answer text."""
    primary.script("chat", primary.stream_text(["the ", "answer"]))
    async with serve(server="  log_content: true\n") as s:
        body = {"model": "chat", "messages": [{"role": "user", "content": "question?"}], "stream": True}
        async with http.post(s.url + CHAT, json=body) as resp:
            await resp.read()
        entry = json.loads(s.access_lines()[-1])
    assert entry["content"]["response"] == "the answer"
    assert entry["content"]["request"]["messages"][0]["content"] == "question?"
    assert entry["stream"] is True and entry["ttft_ms"] is not None


async def test_secrets_never_leak(serve, http, primary, backup, keys):
    """Provider keys appear in no response body, error, readiness detail, metric or log line."""
    primary.script("chat", primary.error(ErrorClass.AUTH))
    backup.script("chat", backup.error(ErrorClass.AUTH))
    seen = []
    async with serve(server=keys.admin_server, clients=keys.clients) as s:
        auth = {"Authorization": f"Bearer {keys.client}"}
        admin = {"Authorization": f"Bearer {keys.admin}"}
        async with http.post(s.url + CHAT, json={"model": "chat", "messages": MESSAGES}, headers=auth) as resp:
            seen.append(await resp.text())
        for path, headers in (("/readyz", admin), ("/metrics", admin), ("/v1/models", auth), ("/admin/spend", admin)):
            async with http.get(s.url + path, headers=headers) as resp:
                seen.append(await resp.text())
        seen.append(s.access.getvalue())
    # the upstreams did receive the keys, so the test would notice if they were echoed
    assert primary.last.header("Authorization") == f"Bearer {keys.primary}"
    for text in seen:
        for key in (keys.primary, keys.backup, keys.client, keys.admin):
            assert key not in text


async def test_client_disconnect_cancels_upstream(serve, http, primary):
    """A client that gives up on a non-streamed request makes the sidecar drop the upstream call at once."""
    primary.script("chat", hang())
    async with serve() as s:
        with pytest.raises(asyncio.TimeoutError):
            await http.post(
                s.url + CHAT, json={"model": "solo", "messages": MESSAGES}, timeout=aiohttp.ClientTimeout(total=0.3)
            )
        assert await primary.wait_disconnect(within=2.0)
        for _ in range(50):
            if s.sidecar.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert s.sidecar.in_flight == 0
        assert json.loads(s.access_lines()[-1])["status"] == 499


async def test_client_disconnect_mid_stream_cancels_upstream(serve, http, primary):
    """Closing a stream after the first chunk cancels the upstream stream promptly, leaking no tasks."""
    primary.script("chat", primary.stream_text([f"w{i} " for i in range(200)], framing=Framing(delay=0.05)))
    async with serve() as s:
        tasks_before = len(asyncio.all_tasks())
        resp = await http.post(s.url + CHAT, json={"model": "solo", "messages": MESSAGES, "stream": True})
        assert resp.status == 200
        await resp.content.readline()
        resp.close()
        assert await primary.wait_disconnect(within=1.0)
        for _ in range(50):
            if s.sidecar.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert s.sidecar.in_flight == 0
        assert len(asyncio.all_tasks()) <= tasks_before
        assert json.loads(s.access_lines()[-1])["status"] == 499


async def test_stream_events_are_not_held_back(serve, http, primary):
    """Each streamed event reaches the client when the upstream sends it, not batched until the end."""
    primary.script("chat", primary.stream_text(["a", "b", "c", "d"], framing=Framing(delay=0.1)))
    async with serve() as s:
        arrivals = []
        async with http.post(s.url + CHAT, json={"model": "solo", "messages": MESSAGES, "stream": True}) as resp:
            async for line in resp.content:
                if line.startswith(b"data: {"):
                    choices = json.loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        arrivals.append(asyncio.get_running_loop().time())
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 0.25  # spread like the upstream's pacing (3 gaps of 0.1 s)


async def test_repeated_disconnects_leak_no_file_descriptors(serve, http, primary):
    """Many clients abandoning streams leave no sockets behind in the sidecar or its upstream pool."""
    import os

    for _ in range(8):
        primary.script("chat", primary.stream_text([f"w{i} " for i in range(100)], framing=Framing(delay=0.02)))
    async with serve() as s:
        baseline = len(os.listdir("/proc/self/fd"))
        for _ in range(8):
            resp = await http.post(s.url + CHAT, json={"model": "solo", "messages": MESSAGES, "stream": True})
            await resp.content.readline()
            resp.close()
        for _ in range(100):
            if s.sidecar.in_flight == 0 and primary.disconnects >= 8:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert s.sidecar.in_flight == 0
        assert primary.disconnects >= 8
        assert len(os.listdir("/proc/self/fd")) <= baseline + 2


async def test_a_burst_stream_is_forwarded_byte_for_byte(serve, http, primary):
    """An upstream that sends its whole stream in one write (read at once, relayed as batches): the client gets
    every upstream event unchanged and in order, then [DONE]; the access log has the full text and token counts."""
    from turnout.testing import reply_sse

    words = ["one ", "two ", "three ", "four ", "five"]
    frames = primary._head() + [primary.chunk({"content": w}) for w in words]
    finish = primary.chunk({}, finish_reason="stop")
    usage = (
        b'data: {"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1727346180,"model":"gpt-test",'
        b'"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}}\n\n'
    )
    primary.script("chat", reply_sse([b"".join([*frames, finish, usage, b"data: [DONE]\n\n"])]))
    async with serve(server="  log_content: true\n") as s:
        body = {"model": "solo", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
        async with http.post(s.url + CHAT, json=body) as resp:
            received = await resp.read()
        entry = json.loads(s.access_lines()[-1])
    assert received == b"".join([*frames, finish, usage, b"data: [DONE]\n\n"])
    assert entry["content"]["response"] == "".join(words)
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (9, 5)
