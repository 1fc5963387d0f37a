"""`/v1/responses` over plain HTTP: the exact event sequence, byte-for-byte native streams, a coding agent's first
request on every kind of route, what is dropped and named, untranslatable content, errors in OpenAI's shape and
statuses, the end of a failed stream, stored responses across restarts and with the store off or broken, the
access log and metrics."""

from __future__ import annotations

import json

import pytest

from turnout.errors import ErrorClass
from turnout.testing import reply_sse
from turnout.types import Usage

JSON = {"Content-Type": "application/json"}


def parse_sse(raw: bytes) -> list[tuple[str, dict]]:
    """(event name, data) pairs; SSE comments skipped; every event must have both lines."""
    out = []
    for frame in raw.decode().split("\n\n"):
        lines = [line for line in frame.split("\n") if line and not line.startswith(":")]
        if lines:
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
            out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


def function_tool(name: str) -> dict:
    return {
        "type": "function",
        "name": name,
        "description": f"The {name} tool.",
        "strict": False,
        "parameters": {"type": "object", "properties": {"arg": {"type": "string"}}, "required": ["arg"]},
    }


def agent_request(model: str) -> dict:
    """A coding agent's first request, as observed (wire_api = "responses"): streamed, stateless, reasoning kept
    encrypted, eight function tools, a namespace of tools and web search."""
    names = ["shell", "apply_patch", "read_file", "list_dir", "grep", "update_plan", "view_image", "write_file"]
    namespace = {
        "type": "namespace",
        "name": "mcp_docs",
        "description": "Documentation server",
        "tools": [function_tool("search"), function_tool("fetch")],
    }
    return {
        "model": model,
        "instructions": "You are a coding agent. Be precise.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Sandbox: on."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<env>cwd=/repo</env>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "AGENTS.md: run tests"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the failing test."}]},
        ],
        "tools": [function_tool(n) for n in names] + [namespace, {"type": "web_search"}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0198f7a2-agent-session",
        "client_metadata": {"session": "s-1"},
    }


async def test_a_translated_stream_is_the_exact_responses_sequence(responses_serve, backup, http):
    """From a chat-completions upstream: created, in_progress, item added, part added, deltas, text done, part done,
    item done, completed; each event's data `type` equals its name, sequence numbers count 0, 1, 2... with no gap;
    no `[DONE]`; the routing headers on the response."""
    backup.script("chat", backup.stream_text(["Hel", "lo"], usage=Usage(7, 2)))
    async with (
        responses_serve() as s,
        http.post(f"{s.url}/v1/responses", json={"model": "compat", "input": "Hi", "stream": True}) as resp,
    ):
        raw = await resp.read()
        headers = resp.headers
    got = parse_sse(raw)
    assert [name for name, _ in got] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in got)
    assert [data["sequence_number"] for _, data in got] == list(range(len(got)))
    item_id = got[2][1]["item"]["id"]
    assert all(data["item_id"] == item_id for _, data in got[3:8])
    assert got[6][1]["text"] == "Hello"
    final = got[-1][1]["response"]
    assert (final["status"], final["id"], final["model"]) == ("completed", got[0][1]["response"]["id"], "gpt-backup")
    assert final["usage"]["input_tokens"] == 7 and final["usage"]["output_tokens"] == 2
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert b"[DONE]" not in raw
    assert headers["Content-Type"] == "text/event-stream"
    assert (headers["x-turnout-route"], headers["x-turnout-served-by"]) == ("compat", "compat/c1")


async def test_a_responses_upstream_stream_is_forwarded_byte_for_byte(responses_serve, primary, http):
    """From a Responses upstream the client receives exactly the upstream's events, reasoning and encrypted content
    included, nothing added or rewritten."""
    frames = primary.response_events(["The ", "answer."], reasoning="Considering the options.")
    primary.script("responses", reply_sse(frames))
    request = {"model": "native", "input": "Q?", "stream": True, "store": False}
    request["include"] = ["reasoning.encrypted_content"]
    async with responses_serve() as s, http.post(f"{s.url}/v1/responses", json=request) as resp:
        raw = await resp.read()
    assert raw == b"".join(frames)
    assert primary.last.json == {**request, "model": "gpt-test"}


@pytest.mark.parametrize("route", ["native", "claude", "compat"])
async def test_a_coding_agents_first_request_is_served_on_every_route(
    responses_serve, primary, backup, claude, http, route
):
    """The agent's first request is accepted everywhere. A Responses upstream gets it as written; a translating one
    gets the function tools (the namespace's flattened), the instructions and messages, and the answer names the
    built-in tool it could not take (x-turnout-dropped), never refusing the request."""
    if route == "native":
        primary.script("responses", primary.stream_response_text(["Looking."]))
    elif route == "claude":
        claude.script("chat", claude.stream_text(["Looking."]))
    else:
        backup.script("chat", backup.stream_text(["Looking."]))
    request = agent_request(route)
    async with responses_serve() as s, http.post(f"{s.url}/v1/responses", json=request) as resp:
        assert resp.status == 200
        got = parse_sse(await resp.read())
        dropped = resp.headers.get("x-turnout-dropped")
    assert got[-1][0] == "response.completed"
    assert "Looking." in json.dumps(got[-1][1]["response"]["output"])
    if route == "native":
        assert dropped is None
        assert primary.last.json == {**request, "model": "gpt-test"} and primary.refused == []
        return
    assert dropped == "web_search tools, reasoning (the model does not declare it)"  # its reasoning: not declared
    if route == "claude":
        sent = claude.last.json
        names = [tool["name"] for tool in sent["tools"]]
        assert claude.refused == []
        assert sent["system"][0]["text"] == "You are a coding agent. Be precise."
    else:
        sent = backup.last.json
        names = [tool["function"]["name"] for tool in sent["tools"]]
        assert sent["parallel_tool_calls"] is False and sent["tool_choice"] == "auto"
        assert [m["role"] for m in sent["messages"]] == ["system", "system", "user", "user", "user"]
    assert names[8:] == ["mcp_docs__search", "mcp_docs__fetch"] and len(names) == 10
    for absent in ("reasoning", "include", "store", "prompt_cache_key", "client_metadata", "input", "instructions"):
        assert absent not in sent


async def test_a_namespaced_call_comes_back_with_its_namespace(responses_serve, backup, http):
    """A call to a namespace's tool on a translating route is a function_call item with `namespace` and the tool's
    own name; a custom tool's call is a custom_tool_call with its free-form input."""
    from turnout.testing import ToolCall

    calls = [ToolCall("mcp_docs__search", {"arg": "aiohttp"}, id="call_ns"), ToolCall("patch", {"input": "*** Begin"})]
    backup.script("chat", backup.tool_calls(calls))
    request = agent_request("compat")
    request["stream"] = False
    request["tools"].append({"type": "custom", "name": "patch", "description": "Apply a patch."})
    async with responses_serve() as s, http.post(f"{s.url}/v1/responses", json=request) as resp:
        answer = await resp.json()
    function, custom = answer["output"]
    assert (function["type"], function["name"], function["namespace"], function["call_id"]) == (
        "function_call",
        "search",
        "mcp_docs",
        "call_ns",
    )
    assert (custom["type"], custom["name"], custom["input"]) == ("custom_tool_call", "patch", "*** Begin")
    patch = backup.last.json["tools"][-1]["function"]
    assert patch["parameters"]["required"] == ["input"] and patch["description"] == "Apply a patch."


async def test_reasoning_items_are_dropped_and_named_for_a_translating_route(responses_serve, claude, http):
    """Reasoning items passed back (another provider's) never reach Anthropic; the header says so."""
    claude.script("chat", claude.text("Done."))
    request = {
        "model": "claude",
        "input": [
            {"role": "user", "content": "Q?"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA=="},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A."}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
            {"role": "user", "content": "More?"},
        ],
    }
    async with responses_serve() as s, http.post(f"{s.url}/v1/responses", json=request) as resp:
        assert resp.status == 200
        dropped = resp.headers["x-turnout-dropped"]
    assert dropped == "reasoning items, web_search_call items"
    assert [m["role"] for m in claude.last.json["messages"]] == ["user", "assistant", "user"]


async def test_untranslatable_content_is_served_only_by_a_responses_upstream(
    responses_serve, primary, http, openai_error
):
    """A PDF only a Responses upstream can read: a chat-completions deployment is skipped with the reason (503 when
    nothing else can serve), and a route that has a Responses deployment serves it there."""
    pdf = {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}
    request = {"model": "compat", "input": [{"role": "user", "content": [pdf, {"type": "input_text", "text": "Sum?"}]}]}
    primary.script("responses", primary.response_text("A summary."))
    async with responses_serve() as s:
        async with http.post(f"{s.url}/v1/responses", json=request) as resp:
            assert resp.status == 503
            error = openai_error(await resp.json(), 503)
        async with http.post(f"{s.url}/v1/responses", json={**request, "model": "native-then-compat"}) as resp:
            assert resp.status == 200
            answer = await resp.json()
    assert error["code"] == "no_upstream_available"
    assert "cannot take a file that is not text" in error["message"]
    assert answer["output"][0]["content"][0]["text"] == "A summary."
    assert primary.last.json["input"][0]["content"][0] == pdf


async def test_a_failure_after_native_events_continues_their_sequence(responses_serve, primary, http):
    """A Responses upstream fails mid-answer: the client gets the upstream's events, then turnout's response.failed
    (the same response id, the text so far) and an `error` event, numbered on from the upstream's last."""
    primary.script("responses", primary.stream_response_failed(["Half an ", "answer"], ErrorClass.SERVER_ERROR))
    async with (
        responses_serve() as s,
        http.post(f"{s.url}/v1/responses", json={"model": "native-solo", "input": "Q", "stream": True}) as resp,
    ):
        got = parse_sse(await resp.read())
    names = [name for name, _ in got]
    assert names[-2:] == ["response.failed", "error"] and "response.completed" not in names
    numbers = [data["sequence_number"] for _, data in got]
    assert numbers == list(range(len(got)))
    failed = got[-2][1]["response"]
    assert (failed["id"], failed["status"]) == (got[0][1]["response"]["id"], "failed")
    assert failed["error"]["code"] == "server_error"
    assert failed["output"][0]["content"][0]["text"] == "Half an answer"
    error = got[-1][1]
    assert error["code"] == "server_error" and error["error"]["message"] == error["message"]


async def test_errors_use_openais_shape_and_statuses(responses_serve, http, openai_error):
    """A malformed body, an unknown route, a wrong method and an unknown stored response are answered in OpenAI's
    error shape with the status OpenAI uses."""
    async with responses_serve() as s:
        cases = [
            ("POST", "/v1/responses", b"{not json", 400),
            ("POST", "/v1/responses", json.dumps({"model": "nope", "input": "x"}).encode(), 404),
            ("POST", "/v1/responses", json.dumps({"model": "native", "input": 7}).encode(), 400),
            ("GET", "/v1/responses", b"", 405),
            ("GET", "/v1/responses/resp_unknown", b"", 404),
            ("PUT", "/v1/responses/resp_unknown", b"", 405),
        ]
        for method, path, data, status in cases:
            async with http.request(method, f"{s.url}{path}", data=data, headers=JSON) as resp:
                assert resp.status == status, (method, path)
                error = openai_error(await resp.json(), status)
                if status == 405:
                    assert resp.headers["Allow"] in ("POST", "GET, DELETE")
        async with http.post(f"{s.url}/v1/responses", json={"model": "native", "input": 7}) as resp:
            assert (await resp.json())["error"]["param"] == "input"
        async with http.get(f"{s.url}/v1/responses/resp_unknown") as resp:
            error = (await resp.json())["error"]
    assert error["message"] == "Response with id 'resp_unknown' not found."


async def test_stored_responses_outlive_a_restart_in_the_ledger_file(responses_serve, primary, http, tmp_path):
    """With the default ledger file beside the routing file, a response kept before a restart is continued after."""
    primary.script("responses", primary.response_text("First."), primary.response_text("Second."))
    async with responses_serve() as s, http.post(f"{s.url}/v1/responses", json={"model": "native", "input": "A"}) as r:
        first = await r.json()
    assert (tmp_path / "turnout-ledger.sqlite3").exists()
    request = {"model": "native", "input": "B", "previous_response_id": first["id"]}
    async with responses_serve() as s, http.post(f"{s.url}/v1/responses", json=request) as resp:
        assert resp.status == 200
    assert [i.get("content") for i in primary.last.json["input"]][::2] == ["A", "B"]


async def test_with_the_store_off_nothing_is_kept_and_continuing_is_refused(responses_serve, primary, http):
    """state.responses.enabled false: answers say store false, cannot be read back, and previous_response_id is a
    400 that says responses are not kept."""
    primary.script("responses", primary.response_text("Hi."))
    off = "state:\n  responses: {enabled: false}\n"
    async with responses_serve(state=off) as s:
        async with http.post(f"{s.url}/v1/responses", json={"model": "native", "input": "A"}) as resp:
            answer = await resp.json()
        async with http.get(f"{s.url}/v1/responses/{answer['id']}") as resp:
            assert resp.status == 404
        request = {"model": "native", "input": "B", "previous_response_id": answer["id"]}
        async with http.post(f"{s.url}/v1/responses", json=request) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
    assert "does not keep responses" in error["message"] and error["param"] == "previous_response_id"


async def test_a_broken_store_never_fails_an_answer_and_continuing_is_a_503(responses_serve, backup, http, tmp_path):
    """A ledger path that cannot be opened: answers still go out (the keep is logged), and previous_response_id is a
    503 asking to retry, without the server's file path in it."""
    (tmp_path / "broken").mkdir()
    backup.script("chat", backup.text("Still here."))
    async with responses_serve(state="state:\n  ledger: broken\n") as s:
        async with http.post(f"{s.url}/v1/responses", json={"model": "compat", "input": "A"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["output"][0]["content"][0]["text"] == "Still here."
        request = {"model": "compat", "input": "B", "previous_response_id": "resp_whatever"}
        async with http.post(f"{s.url}/v1/responses", json=request) as resp:
            assert resp.status == 503
            error = (await resp.json())["error"]
    assert error["code"] == "state_unavailable" and str(tmp_path) not in error["message"]


async def test_previous_response_id_with_redis_is_shared_by_replicas(responses_serve, primary, http, redis_server):
    """With the redis backend a response kept through one sidecar is continued through another."""
    primary.script("responses", primary.response_text("One."), primary.response_text("Two."))
    state = f'state:\n  backend: redis\n  url: "{redis_server.url}"\n  key_prefix: "i16:"\n'
    async with responses_serve(state=state) as a, responses_serve(state=state) as b:
        async with http.post(f"{a.url}/v1/responses", json={"model": "native", "input": "A"}) as resp:
            first = await resp.json()
        request = {"model": "native", "input": "B", "previous_response_id": first["id"]}
        async with http.post(f"{b.url}/v1/responses", json=request) as resp:
            assert resp.status == 200
        async with http.get(f"{b.url}/v1/responses/{first['id']}") as resp:
            assert (await resp.json())["id"] == first["id"]
    assert redis_server.command("EXISTS", f"{{i16:}}resp:{first['id']}") == 1
    assert [i.get("content") for i in primary.last.json["input"]][::2] == ["A", "B"]


async def test_the_access_log_and_metrics_name_the_ingress(responses_serve, backup, http):
    """One access-log line per request with `ingress: openai.responses`; the request counted under its route."""
    backup.script("chat", backup.text("Hi."))
    async with responses_serve() as s:
        async with http.post(f"{s.url}/v1/responses", json={"model": "compat", "input": "A"}) as resp:
            assert resp.status == 200
        async with http.get(f"{s.url}/metrics") as resp:
            metrics = await resp.text()
        line = json.loads(s.access_lines()[-1])
    assert (line["ingress"], line["route"], line["status"], line["path"]) == (
        "openai.responses",
        "compat",
        200,
        "/v1/responses",
    )
    assert 'turnout_requests_total{route="compat",status="200"} 1.0' in metrics


async def test_a_continued_conversation_keeps_upstream_ids_and_drops_turnouts(responses_serve, primary, backup, http):
    """Continuing on a Responses upstream: the items of an answer it gave itself keep their ids (it knows them); the
    items of an answer turnout rendered go without theirs (made up: the upstream would look them up in vain)."""
    backup.script("chat", backup.text("Rendered by turnout."))
    primary.script("responses", primary.response_text("From OpenAI."), primary.response_text("Again."))
    async with responses_serve() as s:
        async with http.post(f"{s.url}/v1/responses", json={"model": "compat", "input": "A"}) as resp:
            rendered = await resp.json()
        request = {"model": "native", "input": "B", "previous_response_id": rendered["id"]}
        async with http.post(f"{s.url}/v1/responses", json=request) as resp:
            upstream_own = await resp.json()
        request = {"model": "native", "input": "C", "previous_response_id": upstream_own["id"]}
        async with http.post(f"{s.url}/v1/responses", json=request) as resp:
            assert resp.status == 200
    items = primary.last.json["input"]
    assert [i.get("content") if "role" in i and i.get("type") != "message" else i["type"] for i in items] == [
        "A",
        "message",
        "B",
        "message",
        "C",
    ]
    assert "id" not in items[1] and items[1]["content"][0]["text"] == "Rendered by turnout."
    assert items[3]["id"] == upstream_own["output"][0]["id"] and primary.refused == []
