"""The official `openai` SDK, unchanged, against the sidecar: chat, streams, tools, images, and its error types."""

from __future__ import annotations

import json

import openai
import pytest

from turnout.errors import ErrorClass
from turnout.testing import ToolCall
from turnout.types import Usage

MESSAGES = [{"role": "user", "content": "Say hello"}]


async def test_chat_returns_upstream_answer_and_routing_headers(serve, primary):
    """A non-streamed chat is answered by the route's first deployment with the x-turnout-* headers."""
    primary.script("chat", primary.text("Hello there!", usage=Usage(prompt_tokens=10, completion_tokens=4)))
    async with serve() as s:
        raw = await s.client().chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
        reply = raw.parse()
    assert reply.choices[0].message.content == "Hello there!"
    assert reply.model == "gpt-test"  # the upstream model that served it, as OpenAI reports it
    assert reply.usage.total_tokens == 14
    assert raw.headers["x-turnout-route"] == "chat"
    assert raw.headers["x-turnout-served-by"].startswith("primary/")
    assert raw.headers["x-turnout-attempts"] == "1"
    assert float(raw.headers["x-turnout-cost-usd"]) == pytest.approx((10 * 1.0 + 4 * 2.0) / 1e6)
    assert primary.last.json["model"] == "gpt-test"
    assert primary.last.json["messages"] == MESSAGES


async def test_chat_falls_back_and_reports_attempts(serve, primary, backup):
    """When the primary fails with a server error the backup serves and the headers say so."""
    primary.script("chat", primary.error(ErrorClass.SERVER_ERROR))
    backup.script("chat", backup.text("from backup"))
    async with serve() as s:
        raw = await s.client().chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "from backup"
    assert raw.parse().model == "gpt-backup"
    assert raw.headers["x-turnout-served-by"].startswith("backup/")
    assert raw.headers["x-turnout-attempts"] == "2"


async def test_stream_yields_deltas_in_order(serve, primary):
    """A streamed chat arrives through the SDK as the upstream's deltas, with a finish reason and no usage chunk."""
    primary.script("chat", primary.stream_text(["Hel", "lo", " world"]))
    async with serve() as s:
        stream = await s.client().chat.completions.create(model="chat", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)  # the usage-only chunk is not sent to a client that did not ask


async def test_stream_usage_chunk_only_when_asked(serve, primary):
    """With stream_options.include_usage the last chunk before [DONE] carries usage and no choices."""
    primary.script("chat", primary.stream_text(["a", "b"], usage=Usage(prompt_tokens=7, completion_tokens=2)))
    async with serve() as s:
        stream = await s.client().chat.completions.create(
            model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 7
    assert chunks[-1].usage.completion_tokens == 2


async def test_stream_usage_chunk_when_upstream_usage_rides_on_the_finish_chunk(serve, primary):
    """With a Groq-style upstream (usage in `x_groq` on the finish chunk) an include_usage client still gets the
    usage chunk, synthesised from what the router accounted."""
    primary.flavor = "groq"
    primary.script("chat", primary.stream_text(["a", "b"], usage=Usage(prompt_tokens=7, completion_tokens=2)))
    async with serve() as s:
        stream = await s.client().chat.completions.create(
            model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ab"
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 2)


async def test_stream_headers_name_the_serving_deployment(serve, primary, backup, http):
    """Stream headers are sent after the commit point, so they name the deployment that actually serves."""
    primary.script("chat", primary.error(ErrorClass.OVERLOADED))
    backup.script("chat", backup.stream_text(["ok"]))
    async with serve() as s:
        body = {"model": "chat", "messages": MESSAGES, "stream": True}
        async with http.post(f"{s.url}/v1/chat/completions", json=body) as resp:
            raw = await resp.read()
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            assert resp.headers["x-turnout-served-by"].startswith("backup/")
            assert resp.headers["x-turnout-attempts"] == "2"
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert all(e.startswith(b"data: ") for e in events)
    first = json.loads(events[0][6:])
    assert first["choices"][0]["delta"]["role"] == "assistant"


async def test_tool_calls_pass_through(serve, primary):
    """A tool-call answer keeps its calls and the request's tools reach the upstream unchanged."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    primary.script("chat", primary.tool_calls([ToolCall("get_weather", {"city": "Paris"}, id="call_1")]))
    async with serve() as s:
        reply = await s.client().chat.completions.create(model="chat", messages=MESSAGES, tools=tools)
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert reply.choices[0].finish_reason == "tool_calls"
    assert primary.last.json["tools"] == tools


async def test_streamed_tool_calls_assemble_in_the_sdk(serve, primary):
    """Streamed tool-call fragments reach the SDK intact, so the arguments reassemble exactly."""
    primary.script("chat", primary.stream_tool_calls([ToolCall("lookup", {"q": "turnout routing"}, id="call_9")]))
    async with serve() as s:
        stream = await s.client().chat.completions.create(
            model="chat", messages=MESSAGES, stream=True, tools=[{"type": "function", "function": {"name": "lookup"}}]
        )
        args = ""
        name = None
        async for chunk in stream:
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                name = call.function.name or name
                args += call.function.arguments or ""
    assert name == "lookup"
    assert json.loads(args) == {"q": "turnout routing"}


async def test_images_pass_through(serve, primary):
    """Image parts are forwarded to an OpenAI-compatible upstream exactly as the client sent them."""
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
    ]
    primary.script("chat", primary.text("a pixel"))
    async with serve() as s:
        await s.client().chat.completions.create(model="chat", messages=[{"role": "user", "content": content}])
    assert primary.last.json["messages"][0]["content"] == content


async def test_invalid_field_is_bad_request_naming_it(serve):
    """A wrong-typed field is a 400 BadRequestError whose param names the field."""
    async with serve() as s:
        with pytest.raises(openai.BadRequestError) as caught:
            await s.client().chat.completions.create(model="chat", messages=MESSAGES, temperature=7)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "temperature"


async def test_unknown_route_is_not_found_listing_routes(serve):
    """An unknown model is a 404 NotFoundError `model_not_found` whose message lists the routes."""
    async with serve() as s:
        with pytest.raises(openai.NotFoundError) as caught:
            await s.client().chat.completions.create(model="gpt-5-ultra", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert "chat" in caught.value.message and "solo" in caught.value.message


async def test_rate_limited_everywhere_stays_429_with_retry_after(serve, primary, backup):
    """When every option was rate limited the client gets 429 with Retry-After (RateLimitError)."""
    primary.script("chat", primary.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "40"}))
    backup.script("chat", backup.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "40"}))
    async with serve() as s:
        with pytest.raises(openai.RateLimitError) as caught:
            await s.client().chat.completions.create(model="chat", messages=MESSAGES)
    assert caught.value.status_code == 429
    assert int(caught.value.response.headers["Retry-After"]) >= 1


async def test_content_policy_is_400_with_providers_reason(serve, primary, backup):
    """A content-policy refusal fails the request as 400 with the provider's own reason, and is not rerouted."""
    primary.script("chat", primary.error(ErrorClass.CONTENT_POLICY))
    async with serve() as s:
        with pytest.raises(openai.BadRequestError) as caught:
            await s.client().chat.completions.create(model="strict", messages=MESSAGES)
    assert "flagged" in caught.value.message
    assert backup.requests_to("chat") == []


async def test_all_upstreams_failing_is_5xx_with_attempt_trail(serve, primary, backup):
    """When every deployment fails the SDK raises InternalServerError and the body carries the attempt trail."""
    primary.script("chat", primary.error(ErrorClass.SERVER_ERROR))
    backup.script("chat", backup.html_error(502))
    async with serve() as s:
        with pytest.raises(openai.InternalServerError) as caught:
            await s.client().chat.completions.create(model="chat", messages=MESSAGES)
    assert caught.value.status_code == 502
    trail = caught.value.body["attempts"]
    assert [a["deployment"].split("/")[0] for a in trail] == ["primary", "backup"]
    assert all(a["outcome"] == "error" for a in trail)


async def test_no_usable_deployment_is_503(serve):
    """A route whose only provider is disabled answers 503 `no_upstream_available`."""
    async with serve(extra_routes="  nothing:\n    chain: [dead]\n") as s:
        with pytest.raises(openai.InternalServerError) as caught:
            await s.client().chat.completions.create(model="nothing", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert caught.value.code == "no_upstream_available"


async def test_mid_stream_failure_is_raised_by_the_sdk(serve, primary, http):
    """A failure after content ends the stream with an error event the SDK raises, never with [DONE]."""
    primary.script("chat", primary.stream_error(["partial ", "answer"], ErrorClass.SERVER_ERROR))
    primary.script("chat", primary.stream_error(["partial"], ErrorClass.SERVER_ERROR))
    async with serve() as s:
        stream = await s.client().chat.completions.create(model="solo", messages=MESSAGES, stream=True)
        seen: list[str] = []

        async def drain() -> None:
            async for chunk in stream:
                seen.append((chunk.choices[0].delta.content or "") if chunk.choices else "")

        with pytest.raises(openai.APIError):
            await drain()
        assert "".join(seen) == "partial answer"
        body = {"model": "solo", "messages": MESSAGES, "stream": True}
        async with http.post(f"{s.url}/v1/chat/completions", json=body) as resp:
            raw = await resp.read()
    assert b"[DONE]" not in raw
    last = [e for e in raw.split(b"\n\n") if e][-1]
    assert json.loads(last[6:])["error"]["message"]
    assert json.loads(s.access_lines()[-1])["error_class"] is not None


async def test_stream_failing_before_first_token_is_a_json_error(serve, primary, backup, http):
    """If every option fails before the first content chunk the client gets a plain JSON error, not an SSE body."""
    primary.script("chat", primary.error(ErrorClass.SERVER_ERROR))
    backup.script("chat", backup.error(ErrorClass.SERVER_ERROR))
    async with serve() as s:
        body = {"model": "chat", "messages": MESSAGES, "stream": True}
        async with http.post(f"{s.url}/v1/chat/completions", json=body) as resp:
            assert resp.status == 502
            assert resp.headers["Content-Type"].startswith("application/json")
            error = (await resp.json())["error"]
    assert error["type"] == "server_error"
    assert len(error["attempts"]) == 2


async def test_models_lists_routes(serve):
    """GET /v1/models lists the routes in OpenAI's list shape, and retrieve() finds one."""
    async with serve() as s:
        client = s.client()
        models = [m async for m in client.models.list()]
        one = await client.models.retrieve("solo")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("nope")
    assert [m.id for m in models] == ["chat", "solo", "strict"]
    assert all(m.object == "model" and m.owned_by == "turnout" for m in models)
    assert one.id == "solo"
