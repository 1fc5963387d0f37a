"""The Responses API translation without I/O: client bodies in, canonical requests out (tools, items, parameters,
what is dropped or untranslatable); canonical answers and chunks back to Response objects and the event sequence;
an upstream's Response and event stream to canonical values with its own kept."""

from __future__ import annotations

import json

import pytest

from turnout.drivers._framing import SSEParser
from turnout.drivers.openai_responses.answer import response_body
from turnout.drivers.openai_responses.encoder import ResponsesEncoder
from turnout.drivers.openai_responses.request import PLACEHOLDER, responses_request, with_history
from turnout.drivers.openai_responses.stream import ResponsesStream
from turnout.drivers.openai_responses.tools import ToolTable, tool_table
from turnout.drivers.openai_responses.upstream import parse_answer
from turnout.drivers.openai_responses.wire import NATIVE_FORMAT, failure_of, usage_of, wire_usage
from turnout.errors import ErrorClass, InvalidRequest, ProtocolError, ProviderError
from turnout.testing import OpenAIFake, ToolCall
from turnout.types import ChatChunk, ChatResponse, Usage, chunk_data, usage_chunk_data

PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}


def canonical(body):
    return responses_request({"model": "route", **body}).body


def native(body):
    return responses_request({"model": "route", **body}).native


# -- requests ---------------------------------------------------------------------------------------------------


def test_a_string_input_and_instructions_become_system_and_user_messages():
    """`instructions` leads as a system message; a string input is one user message; the client's body rides along."""
    request = responses_request({"model": "route", "instructions": "Be brief.", "input": "Hi"})
    assert request.body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert (request.native.format, request.native.body["input"], request.native.dropped) == (NATIVE_FORMAT, "Hi", ())
    assert request.model == "route" and not request.stream


def test_message_items_become_messages_with_their_parts():
    """input_text and input_image parts (URL and data, detail kept when OpenAI chat knows it), developer as system,
    assistant output_text and refusal as assistant text."""
    out = canonical(
        {
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Rules."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "high"},
                        {"type": "input_image", "image_url": PNG, "detail": "original"},
                    ],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "A cat.", "annotations": []}],
                },
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            ]
        }
    )
    assert out["messages"] == [
        {"role": "system", "content": "Rules."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": PNG}},
            ],
        },
        {"role": "assistant", "content": "A cat."},
        {"role": "assistant", "content": "No."},
    ]


def test_calls_join_their_assistant_turn_and_outputs_become_tool_messages():
    """Calls right after an assistant message (and in a row) are its tool_calls; outputs are tool messages, and the
    images they return follow the last of them in one user message; custom calls carry {"input": ...}; a
    namespace's call is named <namespace>__<name>."""
    out = canonical(
        {
            "input": [
                {"role": "user", "content": "Go."},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Calling."}]},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'},
                {"type": "function_call", "call_id": "c2", "name": "search", "namespace": "docs", "arguments": "{}"},
                {"type": "custom_tool_call", "call_id": "c3", "name": "patch", "input": "*** Begin"},
                {"type": "function_call_output", "call_id": "c1", "output": "18C"},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [{"type": "input_text", "text": "found"}, {"type": "input_image", "image_url": PNG}],
                },
                {"type": "custom_tool_call_output", "call_id": "c3", "output": "applied"},
                {"role": "user", "content": "Thanks."},
            ]
        }
    )
    messages = out["messages"]
    assert messages[1]["content"] == "Calling."
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in messages[1]["tool_calls"]] == [
        ("c1", "weather", '{"city":"Paris"}'),
        ("c2", "docs__search", "{}"),
        ("c3", "patch", '{"input": "*** Begin"}'),
    ]
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "tool", "tool_call_id": "c2", "content": "found"},
        {"role": "tool", "tool_call_id": "c3", "content": "applied"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]},
        {"role": "user", "content": "Thanks."},
    ]


def test_reasoning_and_built_in_items_are_dropped_and_named():
    """Reasoning items and built-in tool records never reach a translating upstream; `dropped` names them."""
    request = responses_request(
        {
            "model": "route",
            "input": [
                {"role": "user", "content": "Q"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "web_search_call", "id": "ws_1", "status": "completed"},
                {"type": "reasoning", "id": "rs_2", "summary": []},
            ],
            "tools": [{"type": "web_search"}, {"type": "code_interpreter", "container": {}}, {"type": "web_search"}],
        }
    )
    assert request.body["messages"] == [{"role": "user", "content": "Q"}]
    assert request.native.dropped == (
        "web_search tools",
        "code_interpreter tools",
        "reasoning items",
        "web_search_call items",
    )
    assert request.native.untranslatable == ""
    assert "tools" not in request.body


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"type": "item_reference", "id": "msg_1"}, "'item_reference' items (only OpenAI holds them)"),
        ({"type": "compaction", "encrypted_content": "x"}, "'compaction' items (only OpenAI holds them)"),
        ({"type": "future_item"}, "'future_item' items"),
        ({"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}, "an image given by file_id"),
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}, "audio"),
        (
            {"role": "user", "content": [{"type": "input_file", "file_data": "data:application/pdf;base64,JVBE"}]},
            "a file that is not text (or given by id or URL)",
        ),
        ({"role": "user", "content": [{"type": "input_file", "file_id": "file-2"}]}, "a file that is not text"),
    ],
)
def test_content_with_no_canonical_form_is_untranslatable(item, reason):
    """What only a Responses upstream can read makes the request untranslatable, naming it."""
    request = responses_request({"model": "route", "input": [{"role": "user", "content": "Hi"}, item]})
    assert request.native.untranslatable.startswith(reason)


def test_a_text_file_is_inlined_and_an_untranslatable_only_request_gets_a_placeholder():
    """A text/* file becomes text (its name first); a request with nothing canonical keeps a placeholder message,
    which only a skipped deployment would ever see."""
    text = "data:text/plain;base64," + "aGVsbG8gZmlsZQ=="
    out = canonical(
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_data": text, "filename": "a.txt"}]}]}
    )
    assert out["messages"][0]["content"] == [{"type": "text", "text": "--- a.txt ---\nhello file"}]
    only = responses_request({"model": "route", "input": [{"type": "item_reference", "id": "msg_1"}]})
    assert only.body["messages"] == [PLACEHOLDER] and only.native.untranslatable
    stored = responses_request({"model": "route", "input": "Hi", "conversation": "conv_1"})
    assert stored.native.untranslatable == "a stored conversation (only OpenAI holds it)"


def test_tools_become_function_tools_and_map_back():
    """function (strict only when true, a null schema as an empty object), custom (one string `input`, its grammar
    in the description) and namespace tools (flattened); the table maps canonical names back."""
    table = tool_table(
        [
            {"type": "function", "name": "f", "parameters": None, "strict": False},
            {"type": "function", "name": "g", "description": "G.", "parameters": {"type": "object"}, "strict": True},
            {"type": "custom", "name": "patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start"}},
            {"type": "namespace", "name": "docs", "description": "D", "tools": [{"type": "function", "name": "s"}]},
            {"type": "local_shell"},
        ]
    )
    functions = [f["function"] for f in table.functions]
    assert functions[0] == {"name": "f", "parameters": {"type": "object", "properties": {}}}
    assert functions[1] == {"name": "g", "parameters": {"type": "object"}, "strict": True, "description": "G."}
    assert functions[2]["parameters"]["required"] == ["input"]
    assert functions[2]["description"] == "The input must follow this lark grammar:\nstart"
    assert functions[3]["name"] == "docs__s"
    assert table.dropped == ("local_shell",)
    assert table.origin("docs__s") == ("docs", "s", False)
    assert table.origin("patch") == (None, "patch", True)
    assert table.origin("f") == (None, "f", False)


@pytest.mark.parametrize(
    ("choice", "expected", "names"),
    [
        ("required", "required", ["a", "b"]),
        ({"type": "function", "name": "b"}, {"type": "function", "function": {"name": "b"}}, ["a", "b"]),
        (
            {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "b"}]},
            "required",
            ["b"],
        ),
        ({"type": "web_search_preview"}, "auto", ["a", "b"]),
    ],
)
def test_tool_choice_maps_to_the_canonical_choice(choice, expected, names):
    """Plain choices pass; a named tool becomes a function choice; allowed_tools keeps only those tools; a built-in
    tool's choice (its tool dropped) becomes auto."""
    tools = [{"type": "function", "name": "a"}, {"type": "function", "name": "b"}, {"type": "web_search_preview"}]
    out = canonical({"input": "x", "tools": tools, "tool_choice": choice, "parallel_tool_calls": True})
    assert out["tool_choice"] == expected
    assert [t["function"]["name"] for t in out["tools"]] == names
    assert out["parallel_tool_calls"] is True


def test_parameters_map_to_chat_and_the_rest_are_dropped():
    """max_output_tokens, temperature, top_p, text.format (json_schema / json_object), safety_identifier and stream
    translate; reasoning, include, store, prompt_cache_key and the like do not reach a translating upstream."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    out = canonical(
        {
            "input": "x",
            "max_output_tokens": 300,
            "temperature": 0.5,
            "top_p": 0.9,
            "stream": True,
            "safety_identifier": "user-7",
            "text": {"format": {"type": "json_schema", "name": "n", "schema": schema, "strict": True}},
            "reasoning": {"effort": "high"},
            "include": ["reasoning.encrypted_content"],
            "store": False,
            "prompt_cache_key": "k",
            "parallel_tool_calls": False,
        }
    )
    assert out == {
        "model": "route",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "max_tokens": 300,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "user-7",
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}},
    }
    assert canonical({"input": "x", "text": {"format": {"type": "json_object"}}})["response_format"] == {
        "type": "json_object"
    }


@pytest.mark.parametrize(
    ("body", "param", "wording"),
    [
        ({"input": "x"}, "model", "Missing required parameter: 'model'"),
        ({"model": "r", "input": 7}, "input", "Invalid type for 'input'"),
        ({"model": "r", "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "'robot'"),
        ({"model": "r", "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id", "Missing"),
        ({"model": "r", "input": [{"role": "user", "content": {"a": 1}}]}, "input[0].content", "an object"),
        ({"model": "r", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name", "Missing"),
        ({"model": "r", "input": "x", "tool_choice": "always"}, "tool_choice", "auto, none or required"),
        ({"model": "r", "input": "x", "max_output_tokens": 0}, "max_output_tokens", "at least 1"),
        ({"model": "r", "input": "x", "background": True}, "background", "Background responses"),
        ({"model": "r", "input": []}, "input", "Missing required parameter: 'input'"),
        ({"model": "r", "input": "x", "temperature": 3}, "temperature", "between 0 and 2"),
    ],
)
def test_a_malformed_request_names_the_field(body, param, wording):
    """Each malformed request raises InvalidRequest with OpenAI's param path and wording."""
    with pytest.raises(InvalidRequest) as info:
        responses_request(body)
    assert info.value.param == param and wording in info.value.message


def test_history_goes_before_the_own_input_and_previous_response_id_goes():
    """with_history puts the stored items first, turns a string input into a message and drops the id."""
    body = {"model": "r", "input": "Next?", "previous_response_id": "resp_1", "store": True}
    assert with_history(body, [{"role": "user", "content": "First"}]) == {
        "model": "r",
        "input": [{"role": "user", "content": "First"}, {"role": "user", "content": "Next?"}],
        "store": True,
    }


# -- answers ----------------------------------------------------------------------------------------------------


TEN_FOUR = Usage(10, 4)
FIVE_THREE = Usage(5, 3)


def reply(message, finish="stop", usage=TEN_FOUR):
    return ChatResponse(
        id="chatcmpl-1",
        model="up-model",
        choices=({"index": 0, "message": message, "finish_reason": finish},),
        usage=usage,
        created=1700000000,
    )


def test_a_canonical_answer_becomes_a_response_with_the_settings_echoed():
    """Text becomes a message item; usage is in the Responses shape; the request's settings are echoed with
    OpenAI's defaults for the rest; the model is the one that served."""
    body = {"model": "route", "input": "x", "instructions": "Brief.", "tools": [WEATHER], "temperature": 0.3}
    out = response_body(reply({"role": "assistant", "content": "Hi."}), body, tool_table(body["tools"]), store=False)
    assert (out["object"], out["status"], out["model"], out["created_at"]) == (
        "response",
        "completed",
        "up-model",
        1700000000,
    )
    assert out["id"].startswith("resp_") and len(out["id"]) == 53
    assert out["output"][0]["content"] == [{"type": "output_text", "text": "Hi.", "annotations": [], "logprobs": []}]
    assert out["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 14,
    }
    assert (out["instructions"], out["temperature"], out["tools"], out["store"], out["top_p"]) == (
        "Brief.",
        0.3,
        [WEATHER],
        False,
        1.0,
    )


def test_calls_refusals_and_cut_answers_render_as_their_items_and_status():
    """Tool calls become function_call / custom_tool_call items; a refusal a refusal part; `length` an incomplete
    Response; unknown usage null."""
    table = tool_table([WEATHER, {"type": "custom", "name": "patch"}])
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
        {"id": "c2", "type": "function", "function": {"name": "patch", "arguments": '{"input": "diff"}'}},
    ]
    out = response_body(reply({"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"), {}, table)
    assert [(i["type"], i["call_id"], i.get("arguments"), i.get("input")) for i in out["output"]] == [
        ("function_call", "c1", '{"city":"Rome"}', None),
        ("custom_tool_call", "c2", None, "diff"),
    ]
    refused = response_body(reply({"role": "assistant", "content": None, "refusal": "No."}), {}, ToolTable())
    assert refused["output"][0]["content"] == [{"type": "refusal", "refusal": "No."}]
    cut = response_body(reply({"role": "assistant", "content": "Par"}, "length", Usage.UNKNOWN), {}, ToolTable())
    assert (cut["status"], cut["incomplete_details"], cut["usage"]) == (
        "incomplete",
        {"reason": "max_output_tokens"},
        None,
    )
    own = {"id": "resp_up", "object": "response"}
    assert response_body(ChatResponse(id="x", model="m", choices=(), native=own), {}, ToolTable()) is own


# -- the stream encoder -----------------------------------------------------------------------------------------


def chunk(delta, finish=None):
    data = chunk_data(id="c", model="up-model", created=1, delta=delta, finish_reason=finish)
    return ChatChunk(data=data, finish_reason=finish, is_content=bool(delta.get("content") or delta.get("tool_calls")))


def final(usage=FIVE_THREE, reason="stop"):
    data = usage_chunk_data(id="c", model="up-model", created=1, usage=usage)
    return ChatChunk(data=data, finish_reason=reason, usage=usage, usage_only=True)


def events_of(raw: bytes) -> list[dict]:
    out = []
    for event in SSEParser().feed(raw):
        data = json.loads(event.data)
        assert data["type"] == event.event
        out.append(data)
    return out


def test_the_encoder_streams_function_calls_and_custom_calls():
    """Function calls stream their argument deltas then done events; a custom tool's input comes whole at its end;
    the sequence numbers count every event."""
    table = tool_table([WEATHER, {"type": "custom", "name": "patch"}])
    encoder = ResponsesEncoder({"model": "route"}, table, model="route")
    raw = encoder.feed(chunk({"role": "assistant", "content": ""}))
    start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    raw += encoder.feed(chunk({"tool_calls": [start]}))
    raw += encoder.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}))
    raw += encoder.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Rome"}'}}]}))
    custom = {"index": 1, "id": "call_2", "type": "function", "function": {"name": "patch", "arguments": ""}}
    raw += encoder.feed(chunk({"tool_calls": [custom]}))
    raw += encoder.feed(chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"input": "diff"}'}}]}))
    raw += encoder.feed(chunk({}, "tool_calls")) + encoder.feed(final(reason="tool_calls"))
    raw += encoder.finish(Usage(5, 3))
    got = events_of(raw)
    assert [e["type"] for e in got] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    assert got[2]["item"] == {
        "id": got[2]["item"]["id"],
        "status": "in_progress",
        "call_id": "call_1",
        "type": "function_call",
        "name": "weather",
        "arguments": "",
    }
    assert got[6]["arguments"] == '{"city":"Rome"}'
    assert got[9]["input"] == "diff" and got[10]["item"]["type"] == "custom_tool_call"
    output = got[-1]["response"]["output"]
    assert [i["type"] for i in output] == ["function_call", "custom_tool_call"]
    assert encoder.final is not None and encoder.final["output"] == output


def test_a_cut_answer_ends_incomplete_and_a_failure_ends_failed():
    """finish_reason length gives response.incomplete with an incomplete message; error() gives response.failed with
    the text so far and an `error` event carrying the error flat and nested; nothing follows either."""
    encoder = ResponsesEncoder({}, ToolTable(), model="route")
    raw = encoder.feed(chunk({"content": "Par"})) + encoder.feed(chunk({}, "length")) + encoder.finish(Usage(1, 1))
    got = events_of(raw)
    assert got[-1]["type"] == "response.incomplete"
    assert got[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert got[-2]["item"]["status"] == "incomplete"
    assert encoder.feed(chunk({"content": "more"})) == b"" and encoder.finish(None) == b""

    failing = ResponsesEncoder({}, ToolTable(), model="route")
    raw = failing.feed(chunk({"content": "Half"})) + failing.error(
        "server_error", "upstream broke", error_class="overloaded"
    )
    got = events_of(raw)
    assert [e["type"] for e in got[-2:]] == ["response.failed", "error"]
    assert got[-2]["response"]["output"][0]["content"][0]["text"] == "Half"
    assert got[-1]["code"] == "server_error" and got[-1]["error"] == {
        "type": "server_error",
        "code": "server_error",
        "message": "upstream broke",
        "param": None,
        "error_class": "overloaded",
    }


def test_a_continuation_after_native_events_carries_on_in_the_same_message():
    """Native frames are written as they are; a canonical chunk after them continues the open output_text part with
    the next sequence number, and the final Response holds the whole text."""
    fake = OpenAIFake()
    frames = fake.response_events(["Once upon"])
    head = b"".join(frames[:5])  # up to and including the delta: the part is still open
    machine = ResponsesStream(provider="p", model="m")
    chunks = []
    for event in SSEParser().feed(head):
        chunks += machine.feed(event.event, event.data)
    encoder = ResponsesEncoder({}, ToolTable(), model="route")
    raw = b"".join(encoder.feed(c) for c in chunks)
    assert raw == head
    raw = encoder.feed(chunk({"content": " a time"})) + encoder.feed(chunk({}, "stop")) + encoder.finish(Usage(2, 2))
    got = events_of(raw)
    assert got[0]["type"] == "response.output_text.delta" and got[0]["sequence_number"] == 5
    assert got[0]["item_id"] == "msg_fake0001" and got[0]["content_index"] == 0
    assert got[1]["type"] == "response.output_text.done" and got[1]["text"] == "Once upon a time"
    assert got[-1]["response"]["output"][0]["content"][0]["text"] == "Once upon a time"
    assert got[-1]["response"]["id"] == "resp_fake0001"


# -- an upstream's answers and events --------------------------------------------------------------------------


def test_an_upstream_response_becomes_canonical_with_its_body_kept():
    """Text, calls (a custom tool's input as {"input"}, a namespace's as <namespace>__<name>), usage and the finish
    reason are read; the body itself is `native`."""
    body = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000001,
        "status": "completed",
        "model": "gpt-x",
        "output": [
            {"type": "reasoning", "id": "rs", "summary": []},
            {"type": "message", "content": [{"type": "output_text", "text": "Calling."}]},
            {"type": "function_call", "call_id": "c1", "name": "s", "namespace": "docs", "arguments": "{}"},
            {"type": "custom_tool_call", "call_id": "c2", "name": "patch", "input": "diff"},
        ],
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 3,
            "output_tokens_details": {"reasoning_tokens": 2},
            "total_tokens": 13,
        },
    }
    answer = parse_answer(body, provider="p", model="m")
    assert answer.native is body and answer.finish_reason == "tool_calls" and answer.text == "Calling."
    assert [c["function"]["name"] for c in answer.tool_calls] == ["docs__s", "patch"]
    assert json.loads(answer.tool_calls[1]["function"]["arguments"]) == {"input": "diff"}
    assert answer.usage == Usage(10, 3, cached_tokens=4, reasoning_tokens=2)
    assert (answer.id, answer.model, answer.created) == ("resp_1", "gpt-x", 1700000001)
    incomplete = {**body, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": []}
    assert parse_answer(incomplete, provider="p", model="m").finish_reason == "length"


@pytest.mark.parametrize(
    ("data", "error_class"),
    [
        (
            {"status": "failed", "output": [], "error": {"code": "rate_limit_exceeded", "message": "slow down"}},
            ErrorClass.RATE_LIMIT,
        ),
        (
            {"status": "failed", "output": [], "error": {"code": "server_error", "message": "boom"}},
            ErrorClass.SERVER_ERROR,
        ),
        ({"error": {"code": "context_length_exceeded", "message": "too long"}}, ErrorClass.CONTEXT_WINDOW),
        ({"object": "chat.completion"}, ErrorClass.PROTOCOL),
        ([1, 2], ErrorClass.PROTOCOL),
    ],
)
def test_a_failed_or_foreign_answer_raises_its_class(data, error_class):
    """A failed Response is raised as its classified error; a body that is not a Response is a protocol error."""
    with pytest.raises(ProviderError) as info:
        parse_answer(data, provider="p", model="m")
    assert info.value.error_class is error_class and not info.value.after_first_token


def feed_all(frames: list[bytes]) -> tuple[ResponsesStream, list[ChatChunk]]:
    machine = ResponsesStream(provider="p", model="m")
    chunks = []
    for event in SSEParser().feed(b"".join(frames)):
        chunks += machine.feed(event.event, event.data)
    return machine, chunks


def test_an_upstream_stream_becomes_chunks_carrying_its_events():
    """Role chunk first; text deltas are content; reasoning summaries are reasoning_content (not content); the
    terminal event gives the finish and usage chunks; every frame rides on some chunk, in order, byte for byte."""
    fake = OpenAIFake()
    frames = fake.response_events(["A", "B"], reasoning="hmm", usage=Usage(8, 2))
    machine, chunks = feed_all(frames)
    assert machine.finish() == [] and machine.done
    assert b"".join(c.native.data for c in chunks) == b"".join(frames)
    assert chunks[0].delta == {"role": "assistant", "content": ""} and not chunks[0].is_content
    assert [c.delta.get("reasoning_content") for c in chunks if "reasoning_content" in c.delta] == ["hmm"]
    assert [c.content for c in chunks if c.is_content] == ["A", "B"]
    assert (chunks[-2].finish_reason, chunks[-1].usage) == ("stop", Usage(8, 2))
    assert chunks[-1].native.state.response["status"] == "completed"
    assert chunks[-1].native.state.sequence == len(frames) - 1


def test_an_upstream_stream_of_calls_becomes_tool_call_deltas():
    """A function call's output_item.added is the tool-call start (content), its argument deltas the fragments."""
    _, chunks = feed_all(OpenAIFake().call_events([ToolCall("f", {"a": 1}, id="c9")]))
    calls = [c.delta["tool_calls"][0] for c in chunks if c.delta.get("tool_calls")]
    assert calls[0] == {"index": 0, "id": "c9", "type": "function", "function": {"name": "f", "arguments": ""}}
    assert "".join(c["function"]["arguments"] for c in calls[1:]) == '{"a": 1}'
    assert chunks[-2].finish_reason == "tool_calls"


@pytest.mark.parametrize("as_error_event", [False, True])
def test_a_failed_upstream_stream_raises_after_or_before_the_first_token(as_error_event):
    """response.failed (or an `error` event) raises the classified error, marked after the first token only when
    content already came."""
    fake = OpenAIFake()
    for pieces, after in (([], False), (["x"], True)):
        frames = fake.failed_events(pieces, ErrorClass.RATE_LIMIT, as_error_event=as_error_event)
        with pytest.raises(ProviderError) as info:
            feed_all(frames)
        assert info.value.error_class is ErrorClass.RATE_LIMIT and info.value.after_first_token is after


def test_a_stream_cut_or_out_of_order_is_a_protocol_error():
    """EOF before the terminal event, or an event before response.created, raises ProtocolError."""
    frames = OpenAIFake().response_events(["x"])
    machine, _ = feed_all(frames[:-1])
    with pytest.raises(ProtocolError, match=r"before response\.completed"):
        machine.finish()
    with pytest.raises(ProtocolError, match=r"before response\.created"):
        feed_all(frames[2:])


def test_usage_and_failure_codes_map_both_ways():
    """usage_of/wire_usage invert each other; unknown usage is null; error codes give the class they name."""
    usage = Usage(20, 5, cached_tokens=4, cache_write_tokens=2, reasoning_tokens=1)
    assert (
        usage_of(wire_usage(usage)) == usage and wire_usage(Usage.UNKNOWN) is None and usage_of(None) == Usage.UNKNOWN
    )
    classes = {
        code: failure_of({"code": code, "message": "m"}, provider="p", model="m", after_first_token=False).error_class
        for code in (
            "insufficient_quota",
            "rate_limit_exceeded",
            "context_length_exceeded",
            "invalid_prompt",
            "server_error",
        )
    }
    assert classes == {
        "insufficient_quota": ErrorClass.QUOTA_EXCEEDED,
        "rate_limit_exceeded": ErrorClass.RATE_LIMIT,
        "context_length_exceeded": ErrorClass.CONTEXT_WINDOW,
        "invalid_prompt": ErrorClass.CONTENT_POLICY,
        "server_error": ErrorClass.SERVER_ERROR,
    }


def test_the_quick_path_reads_what_the_full_parse_reads():
    """Deltas read without a whole-event parse (named events) give the same chunks and sequence as the full parse of
    the same events without their `event:` lines; escapes in a delta are decoded the same."""
    fake = OpenAIFake()
    texts = fake.response_events(['Say "hi"\n', "caf\u00e9 \\ok"], reasoning="r")
    calls = fake.call_events([ToolCall("f", {"q": 'a "b"'}, id="c1"), ToolCall("g", {}, id="c2")])
    for frames in (texts, calls):
        named, plain = ResponsesStream(provider="p", model="m"), ResponsesStream(provider="p", model="m")
        quick = [c for e in SSEParser().feed(b"".join(frames)) for c in named.feed(e.event, e.data)]
        full = [c for e in SSEParser().feed(b"".join(frames)) for c in plain.feed(None, e.data)]
        assert [c.data for c in quick] == [c.data for c in full] and len(quick) > 5
        assert named.position.sequence == plain.position.sequence == len(frames) - 1
    assert "".join(c.content for c in quick_texts(texts) if c.content) == 'Say "hi"\ncaf\u00e9 \\ok'


def quick_texts(frames: list[bytes]) -> list[ChatChunk]:
    machine = ResponsesStream(provider="p", model="m")
    return [c for e in SSEParser().feed(b"".join(frames)) for c in machine.feed(e.event, e.data)]
