"""The official `openai` SDK, unchanged, against the sidecar's `/v1/responses`: create (text, a function-call round
trip), streams (text deltas, function-call argument deltas), failover before the first token, a mid-stream failure
it raises, reasoning items through a Responses upstream untouched, translation to chat-completions and Anthropic
upstreams, stored conversations (previous_response_id, retrieve, delete) and the errors it raises.

Routes (see conftest): `native` starts at a Responses upstream (the client's body goes through as written),
`compat` at an OpenAI-compatible chat-completions upstream and `claude` at Anthropic (both translated).
"""

from __future__ import annotations

import json

import openai
import pytest

from turnout.errors import ErrorClass
from turnout.testing import ToolCall
from turnout.testing.responses_fake import ENCRYPTED
from turnout.types import Usage

WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ROUTES = ["native", "compat", "claude"]


def client_of(served, api_key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=api_key, max_retries=0, timeout=10)


def fake_of(route, primary, backup, claude):
    return {"native": primary, "compat": backup, "claude": claude}[route]


NINE_THREE = Usage(9, 3)


def script_text(route, fake, pieces, *, stream, usage=NINE_THREE):
    """Script a text answer on the upstream a route starts at, in its own wire format."""
    if route == "native":
        behaviour = fake.stream_response_text(pieces, usage=usage) if stream else fake.response_text("".join(pieces))
        fake.script("responses", behaviour)
    else:
        fake.script(
            "chat", fake.stream_text(pieces, usage=usage) if stream else fake.text("".join(pieces), usage=usage)
        )


def script_calls(route, fake, calls, *, stream):
    if route == "native":
        fake.script("responses", fake.stream_response_calls(calls) if stream else fake.response_calls(calls))
    else:
        fake.script("chat", fake.stream_tool_calls(calls) if stream else fake.tool_calls(calls))


async def test_create_on_a_responses_upstream_returns_its_own_response(responses_serve, primary):
    """The answer is the upstream's Response as it came (its id, usage, settings), with the routing headers; the
    upstream got the client's body with only the model replaced."""
    primary.script("responses", primary.response_text("Hello!", usage=Usage(120, 4, cached_tokens=100)))
    async with responses_serve() as s, client_of(s) as client:
        raw = await client.responses.with_raw_response.create(model="native", input="Say hello", temperature=0.2)
        response = raw.parse()
    assert (response.output_text, response.id, response.model, response.status) == (
        "Hello!",
        "resp_fake0001",
        "gpt-test",
        "completed",
    )
    assert (response.usage.input_tokens, response.usage.input_tokens_details.cached_tokens) == (120, 100)
    assert raw.headers["x-turnout-route"] == "native"
    assert raw.headers["x-turnout-served-by"] == "oai/r1"
    assert float(raw.headers["x-turnout-cost-usd"]) == pytest.approx((120 * 1.0 + 4 * 2.0) / 1e6)
    assert "x-turnout-dropped" not in raw.headers
    assert primary.last.path == "/v1/responses"
    assert primary.last.json == {"model": "gpt-test", "input": "Say hello", "temperature": 0.2}
    assert primary.refused == []


@pytest.mark.parametrize("route", ["compat", "claude"])
async def test_create_on_a_translating_route_renders_a_response(responses_serve, primary, backup, claude, route):
    """A chat-completions or Anthropic upstream's answer comes back as a Response in the API's shape: a message
    item with output_text, usage, the request's settings echoed, and the serving model."""
    fake = fake_of(route, primary, backup, claude)
    script_text(route, fake, ["Hi there."], stream=False, usage=Usage(11, 3))
    async with responses_serve() as s, client_of(s) as client:
        response = await client.responses.create(
            model=route, instructions="Be brief.", input="Say hello", max_output_tokens=50
        )
    assert response.output_text == "Hi there."
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == ("gpt-backup" if route == "compat" else "claude-upstream")
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (11, 3, 14)
    assert (response.instructions, response.max_output_tokens, response.store) == ("Be brief.", 50, True)
    item = response.output[0]
    assert (item.type, item.role, item.status, item.id[:4]) == ("message", "assistant", "completed", "msg_")
    if route == "compat":
        assert backup.last.json == {
            "model": "gpt-backup",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
            "max_tokens": 50,
        }
    else:
        sent = claude.last.json
        assert (sent["system"], sent["max_tokens"], sent["messages"]) == (
            [{"type": "text", "text": "Be brief."}],
            50,
            [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        )
        assert claude.refused == []


@pytest.mark.parametrize("route", ROUTES)
async def test_a_function_call_round_trip(responses_serve, primary, backup, claude, route):
    """Turn 1 answers with a function_call item; the client sends its output back with the conversation, and the
    upstream of every format receives the call and its result paired by call_id."""
    fake = fake_of(route, primary, backup, claude)
    script_calls(route, fake, [ToolCall("weather", {"city": "Paris"}, id="call_paris01")], stream=False)
    async with responses_serve() as s, client_of(s) as client:
        history: list = [{"role": "user", "content": "Weather in Paris?"}]
        first = await client.responses.create(model=route, input=history, tools=[WEATHER], store=False)
        call = first.output[0]
        assert (call.type, call.call_id, call.name, json.loads(call.arguments)) == (
            "function_call",
            "call_paris01",
            "weather",
            {"city": "Paris"},
        )
        history += [item.model_dump(exclude_none=True) for item in first.output]
        history.append({"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"})
        script_text(route, fake, ["It is 18C and sunny."], stream=False)
        second = await client.responses.create(model=route, input=history, tools=[WEATHER], store=False)
    assert second.output_text == "It is 18C and sunny."
    sent = fake.last.json
    if route == "native":
        assert sent["input"][1]["type"] == "function_call" and sent["input"][1]["call_id"] == "call_paris01"
        assert sent["input"][2] == {
            "type": "function_call_output",
            "call_id": "call_paris01",
            "output": "18C and sunny",
        }
        assert primary.refused == []
    elif route == "compat":
        assert sent["messages"][1]["tool_calls"][0]["id"] == "call_paris01"
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_paris01", "content": "18C and sunny"}
        assert sent["tools"][0]["function"]["name"] == "weather"
    else:
        assert sent["messages"][1]["content"][0]["id"] == "call_paris01"
        assert sent["messages"][2]["content"][0]["tool_use_id"] == "call_paris01"
        assert claude.refused == []


@pytest.mark.parametrize("route", ROUTES)
async def test_stream_text_deltas(responses_serve, primary, backup, claude, route):
    """`responses.stream` yields each text delta as it comes and a final Response with the text and usage."""
    fake = fake_of(route, primary, backup, claude)
    script_text(route, fake, ["Hel", "lo", " world"], stream=True, usage=Usage(9, 3))
    async with (
        responses_serve() as s,
        client_of(s) as client,
        client.responses.stream(model=route, input="Say hello") as stream,
    ):
        events = [event async for event in stream]
        final = await stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Hel", "lo", " world"]
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert (final.output_text, final.usage.output_tokens, final.usage.input_tokens) == ("Hello world", 3, 9)


@pytest.mark.parametrize("route", ROUTES)
async def test_stream_function_call_argument_deltas(responses_serve, primary, backup, claude, route):
    """Streamed function calls arrive as function_call items whose arguments the SDK assembles from the deltas."""
    fake = fake_of(route, primary, backup, claude)
    calls = [ToolCall("weather", {"city": "Paris"}, id="call_a1"), ToolCall("weather", {"city": "Rome"}, id="call_b2")]
    script_calls(route, fake, calls, stream=True)
    async with (
        responses_serve() as s,
        client_of(s) as client,
        client.responses.stream(model=route, input="Weather?", tools=[WEATHER]) as stream,
    ):
        events = [event async for event in stream]
        final = await stream.get_final_response()
    fragments = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(fragments) >= 2 and "".join(fragments) == '{"city": "Paris"}{"city": "Rome"}'
    done = [e.arguments for e in events if e.type == "response.function_call_arguments.done"]
    assert [json.loads(a) for a in done] == [{"city": "Paris"}, {"city": "Rome"}]
    assert [(i.type, i.call_id, json.loads(i.arguments)) for i in final.output] == [
        ("function_call", "call_a1", {"city": "Paris"}),
        ("function_call", "call_b2", {"city": "Rome"}),
    ]


@pytest.mark.parametrize("fault", ["http", "failed", "error_event"])
async def test_failover_before_the_first_token(responses_serve, primary, backup, fault):
    """The first upstream fails before any output (an HTTP 500, a response.failed, an `error` event): the backup
    serves, and the client reads one clean stream, with two attempts in the headers."""
    if fault == "http":
        primary.script("responses", primary.error(ErrorClass.SERVER_ERROR))
    else:
        primary.script(
            "responses",
            primary.stream_response_failed([], ErrorClass.SERVER_ERROR, as_error_event=fault == "error_event"),
        )
    backup.script("responses", backup.stream_response_text(["From", " backup"]))
    async with (
        responses_serve() as s,
        client_of(s) as client,
        client.responses.with_streaming_response.create(model="native", input="Hi", stream=True) as raw,
    ):
        headers = raw.headers
        events = [event async for event in await raw.parse()]
    assert (headers["x-turnout-served-by"], headers["x-turnout-attempts"]) == ("oai2/r2", "2")
    assert [e.type for e in events].count("response.created") == 1
    assert events[-1].type == "response.completed"
    assert events[-1].response.output[0].content[0].text == "From backup"


@pytest.mark.parametrize("route", ["native", "compat"])
async def test_a_failure_mid_stream_raises_in_the_sdk(responses_serve, primary, backup, route):
    """An upstream failure after the first text ends the stream with response.failed and an `error` event: the SDK
    raises APIError, never returning the cut answer as complete."""
    if route == "native":
        primary.script("responses", primary.stream_response_failed(["partial"], ErrorClass.SERVER_ERROR))
        backup.script("responses", backup.stream_response_text(["never"]))
    else:
        backup.script("chat", backup.stream_error(["partial"], ErrorClass.OVERLOADED))
    seen: list[str] = []

    async def read(client) -> None:
        async with client.responses.stream(model=route, input="Hi") as stream:
            async for event in stream:
                seen.append(event.type)

    async with responses_serve() as s, client_of(s) as client:
        with pytest.raises(openai.APIError) as info:
            await read(client)
    assert "response.output_text.delta" in seen and "response.completed" not in seen
    assert seen[-1] == "response.failed"
    assert info.value.body["code"] == "server_error"
    assert backup.requests_to("responses") == []  # committed: never restarted elsewhere


async def test_reasoning_items_pass_through_untouched(responses_serve, primary):
    """A Responses upstream's reasoning item (summary, encrypted content) reaches the client as it was, and goes back
    to the upstream exactly as the client returns it: a stateless agent's reasoning survives the round trip."""
    primary.script("responses", primary.response_text("Answer one.", reasoning="Thinking it through."))
    async with responses_serve() as s, client_of(s) as client:
        include = ["reasoning.encrypted_content"]
        first = await client.responses.create(
            model="native", input="Question?", store=False, include=include, reasoning={"effort": "high"}
        )
        reasoning = first.output[0]
        assert (reasoning.type, reasoning.encrypted_content) == ("reasoning", ENCRYPTED)
        assert reasoning.summary[0].text == "Thinking it through."
        sent_back = [item.model_dump(exclude_none=True) for item in first.output]
        primary.script("responses", primary.response_text("Answer two."))
        second = await client.responses.create(
            model="native",
            input=[{"role": "user", "content": "Question?"}, *sent_back, {"role": "user", "content": "And then?"}],
            store=False,
            include=include,
            reasoning={"effort": "high"},
        )
    assert second.output_text == "Answer two."
    assert primary.refused == []
    upstream = primary.last.json
    assert upstream["input"][1] == sent_back[0]
    assert upstream["input"][1]["encrypted_content"] == ENCRYPTED
    assert (upstream["store"], upstream["include"], upstream["reasoning"]) == (False, include, {"effort": "high"})


async def test_a_stored_conversation_continues_with_previous_response_id(responses_serve, primary, backup):
    """store (the default) keeps each answer: a request with previous_response_id reaches the upstream with the
    whole conversation as input and no previous_response_id (a Responses upstream), or as the whole canonical
    conversation (a chat-completions upstream); retrieve reads a kept response back."""
    primary.script("responses", primary.response_text("Paris is the capital."))
    async with responses_serve() as s, client_of(s) as client:
        first = await client.responses.create(model="native", input="Capital of France?")
        primary.script("responses", primary.response_text("About 2.1 million."))
        second = await client.responses.create(model="native", input="Its population?", previous_response_id=first.id)
        backup.script("chat", backup.text("It is on the Seine."))
        third = await client.responses.create(
            model="compat", input="Which river?", previous_response_id=second.id, instructions="Be brief."
        )
        again = await client.responses.retrieve(second.id)
    assert primary.refused == []
    native_input = primary.last.json["input"]
    assert native_input[0] == {"role": "user", "content": "Capital of France?"}
    assert native_input[1]["type"] == "message" and native_input[1]["content"][0]["text"] == "Paris is the capital."
    assert native_input[2] == {"role": "user", "content": "Its population?"}
    assert "previous_response_id" not in primary.last.json and not any(
        k.startswith("turnout") for k in primary.last.json
    )
    assert [(m["role"], m["content"]) for m in backup.last.json["messages"]] == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
        ("assistant", "Paris is the capital."),
        ("user", "Its population?"),
        ("assistant", "About 2.1 million."),
        ("user", "Which river?"),
    ]
    assert third.previous_response_id == second.id and third.output_text == "It is on the Seine."
    assert (again.id, again.output_text) == (second.id, "About 2.1 million.")


async def test_store_false_keeps_nothing_and_delete_forgets(responses_serve, primary):
    """A store: false answer cannot be continued or read; a kept one can be deleted, after which it is gone."""
    primary.script("responses", primary.response_text("Not kept."), primary.response_text("Kept."))
    async with responses_serve() as s, client_of(s) as client:
        transient = await client.responses.create(model="native", input="One", store=False)
        kept = await client.responses.create(model="native", input="Two")
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(transient.id)
        with pytest.raises(openai.BadRequestError) as info:
            await client.responses.create(model="native", input="Three", previous_response_id=transient.id)
        assert info.value.code == "previous_response_not_found"
        assert info.value.body["param"] == "previous_response_id"
        await client.responses.delete(kept.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(kept.id)


async def test_errors_are_the_sdk_classes(responses_serve, primary, backup, keys):
    """Each failure reaches the SDK as the exception it raises for OpenAI's own: AuthenticationError, NotFoundError,
    BadRequestError (naming the field), RateLimitError (with retry-after), InternalServerError."""
    async with responses_serve(clients=keys.clients) as s:
        async with client_of(s, api_key="wrong") as client:
            with pytest.raises(openai.AuthenticationError):
                await client.responses.create(model="native", input="Hi")
        async with client_of(s, api_key=keys.client) as client:
            with pytest.raises(openai.NotFoundError) as missing:
                await client.responses.create(model="nope", input="Hi")
            assert missing.value.code == "model_not_found"
            with pytest.raises(openai.BadRequestError) as bad:
                await client.responses.create(model="native", input=[{"role": "robot", "content": "Hi"}])
            assert bad.value.body["param"] == "input[0].role"
            primary.script("responses", primary.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "7"}))
            backup.script("responses", backup.error(ErrorClass.RATE_LIMIT, headers={"retry-after": "3"}))
            with pytest.raises(openai.RateLimitError) as limited:
                await client.responses.create(model="native", input="Hi")
            assert limited.value.response.headers["retry-after"] == "3"
            primary.script("responses", primary.error(ErrorClass.SERVER_ERROR))
            with pytest.raises(openai.InternalServerError):
                await client.responses.create(model="native-solo", input="Hi")
            primary.script("responses", primary.error(ErrorClass.CONTEXT_WINDOW))
            with pytest.raises(openai.BadRequestError) as window:
                await client.responses.create(model="native-solo", input="Hi")
            assert (window.value.code, window.value.body["param"]) == ("context_length_exceeded", "input")
            with pytest.raises(openai.BadRequestError, match="Background"):
                await client.responses.create(model="native", input="Hi", background=True)


async def test_streamed_answers_are_kept_before_their_end_and_continue(responses_serve, primary, backup):
    """A streamed answer is kept before response.completed reaches the client, from a Responses upstream (its own
    Response) and from a translating one (the rendered Response): each is continued at once by the next request."""
    primary.script("responses", primary.stream_response_text(["Paris", " is the capital."]))
    async with responses_serve() as s, client_of(s) as client:
        async with client.responses.stream(model="native", input="Capital of France?") as stream:
            first = await stream.get_final_response()
        backup.script("chat", backup.stream_text(["About ", "2.1 million."]))
        async with client.responses.stream(
            model="compat", input="Its population?", previous_response_id=first.id
        ) as stream:
            second = await stream.get_final_response()
        backup.script("chat", backup.text("The Seine."))
        third = await client.responses.create(model="compat", input="River?", previous_response_id=second.id)
    assert (first.id, second.previous_response_id, third.output_text) == (first.id, first.id, "The Seine.")
    assert [(m["role"], m["content"]) for m in backup.last.json["messages"]] == [
        ("user", "Capital of France?"),
        ("assistant", "Paris is the capital."),
        ("user", "Its population?"),
        ("assistant", "About 2.1 million."),
        ("user", "River?"),
    ]


async def test_a_client_sees_only_the_responses_it_kept(responses_serve, primary, keys):
    """A response belongs to the client whose key kept it: another client can neither continue, read nor delete it
    (for it the id does not exist); its owner still can."""
    teams = f'clients:\n  team-a: {{keys: ["{keys.client}"]}}\n  team-b: {{keys: ["another-key-0005"]}}\n'
    primary.script("responses", primary.response_text("Team A's answer."), primary.response_text("Continued."))
    async with (
        responses_serve(clients=teams) as s,
        client_of(s, api_key=keys.client) as a,
        client_of(s, api_key="another-key-0005") as b,
    ):
        kept = await a.responses.create(model="native", input="Secret plan?")
        with pytest.raises(openai.NotFoundError):
            await b.responses.retrieve(kept.id)
        with pytest.raises(openai.NotFoundError):
            await b.responses.delete(kept.id)
        with pytest.raises(openai.BadRequestError) as info:
            await b.responses.create(model="native", input="And?", previous_response_id=kept.id)
        assert info.value.code == "previous_response_not_found"
        assert (await a.responses.retrieve(kept.id)).output_text == "Team A's answer."
        again = await a.responses.create(model="native", input="And?", previous_response_id=kept.id)
    assert again.output_text == "Continued." and len(primary.requests_to("responses")) == 2
    line = json.loads(s.access_lines()[-1])
    assert line["client"] == "team-a"
