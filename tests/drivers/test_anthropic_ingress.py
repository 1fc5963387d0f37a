"""The Messages ingress translation without I/O: client bodies in, canonical requests out; canonical answers,
chunks and failures back to Messages responses, SSE events and error bodies."""

import json

import pytest

from turnout.drivers.anthropic.ingress_request import messages_request
from turnout.drivers.anthropic.ingress_response import error_status, message_body, stop_reason, wire_usage
from turnout.drivers.anthropic.ingress_stream import MessagesEncoder
from turnout.drivers.anthropic.request import NATIVE_FORMAT, build_request
from turnout.errors import InvalidRequest
from turnout.testing.anthropic_rules import problems
from turnout.types import ChatChunk, ChatResponse, NativeFrames, Usage, chunk_data, usage_chunk_data

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {"name": "weather", "description": "Look it up", "input_schema": {"type": "object", "properties": {}}}


def messages(*turns, **params):
    return {"model": "route", "max_tokens": 100, "messages": list(turns), **params}


def canonical(body, headers=None):
    return messages_request(body, headers).body


def test_system_string_and_blocks_lead_the_canonical_messages():
    """`system` (string, or text blocks joined) becomes the first message; system-role messages stay in place."""
    out = canonical(
        messages(
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "Now in French."}]},
            system=[
                {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be kind."},
            ],
        )
    )
    assert out["messages"] == [
        {"role": "system", "content": "Be brief.\n\nBe kind."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "system", "content": "Now in French."},
    ]


def test_tool_use_and_tool_result_become_tool_calls_and_tool_messages():
    """tool_use blocks become the assistant's tool_calls; tool_result blocks become tool messages first, then the
    rest of the user turn (an image a tool returned included)."""
    out = canonical(
        messages(
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Two calls.", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "no data"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                        ],
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            },
            tools=[WEATHER],
        )
    )
    call = {"type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}, "id": "toolu_1"}
    assert out["messages"][1] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            call,
            {**call, "id": "toolu_2", "function": {**call["function"], "arguments": '{"city": "Rome"}'}},
        ],
    }
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "no data"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "text", "text": "Summarise."},
            ],
        },
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "function": {"name": "weather", "parameters": WEATHER["input_schema"], "description": "Look it up"},
        }
    ]


def test_parameters_map_to_their_openai_names():
    """max_tokens, stop_sequences (OpenAI's first 4), sampling, metadata.user_id, tool_choice and
    disable_parallel_tool_use, output_config json_schema; Anthropic-only fields stay out of the canonical body."""
    out = canonical(
        messages(
            {"role": "user", "content": "hi"},
            max_tokens=0,
            stop_sequences=["a", "b", "c", "d", "e"],
            temperature=0.5,
            top_p=0.9,
            top_k=5,
            metadata={"user_id": "u-1"},
            tools=[WEATHER, {"type": "web_search_20250305", "name": "web_search"}],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            thinking={"type": "enabled", "budget_tokens": 2048},
            output_config={"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
            context_management={"edits": []},
            service_tier="auto",
            stream=True,
        )
    )
    assert {k: v for k, v in out.items() if k not in ("messages", "tools")} == {
        "model": "route",
        "max_tokens": 1,
        "stop": ["a", "b", "c", "d"],
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u-1",
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}}},
        "stream": True,
    }
    assert [t["function"]["name"] for t in out["tools"]] == ["weather"]  # the server tool has no equivalent


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "weather"}, {"type": "function", "function": {"name": "weather"}}),
    ],
)
def test_tool_choices(choice, expected):
    """Each Messages tool choice has its OpenAI counterpart."""
    assert (
        canonical(messages({"role": "user", "content": "hi"}, tools=[WEATHER], tool_choice=choice))["tool_choice"]
        == expected
    )


def test_the_native_body_and_beta_headers_ride_along():
    """The client's own body is kept (the same object) with its anthropic-beta header, nothing else."""
    body = messages({"role": "user", "content": "hi"}, context_management={"edits": []})
    request = messages_request(
        body, {"anthropic-beta": "a,b", "x-api-key": "secret", "anthropic-version": "2023-06-01"}
    )
    assert request.native is not None and request.native.body is body
    assert request.native.format == NATIVE_FORMAT
    assert dict(request.native.headers) == {"anthropic-beta": "a,b"}
    assert request.native.untranslatable == ""
    assert (request.model, request.max_output_tokens, request.needs_tools) == ("route", 100, False)


def test_content_with_no_canonical_form_is_named():
    """A PDF, a Files API image or a server tool result cannot be translated: the request says which."""
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    text_doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}}
    request = messages_request(
        messages(
            {
                "role": "user",
                "content": [pdf, text_doc, {"type": "image", "source": {"type": "file", "file_id": "f1"}}],
            },
            {
                "role": "assistant",
                "content": [{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}],
            },
            {"role": "user", "content": "go on"},
        )
    )
    assert request.native.untranslatable == (
        "a document that is not plain text, an image from the Files API, 'server_tool_use' blocks"
    )
    assert request.body["messages"][0] == {"role": "user", "content": [{"type": "text", "text": "plain words"}]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        (messages({"role": "robot", "content": 42}), "messages.0.role"),
        (messages({"role": "user", "content": 42}), "messages.0.content"),
        (messages({"role": "user", "content": [{"text": "no type"}]}), "messages.0.content.0"),
        (messages({"role": "user", "content": [{"type": "text"}]}), "messages.0.content.0"),
        (messages({"role": "user", "content": "x"}, tools=[{"input_schema": {"type": "object"}}]), "tools.0.name"),
        (messages({"role": "user", "content": "x"}, tools=[{"name": "w"}]), "tools.0.input_schema"),
        (
            messages({"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}),
            "messages.0.content.0",
        ),
        (messages({"role": "user", "content": [{"type": "tool_result"}]}), "messages.0.content.0"),
        ({"model": "route", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (messages({"role": "user", "content": "x"}, max_tokens=-1), "max_tokens"),
        (messages({"role": "user", "content": "x"}, temperature=1.5), "temperature"),
        (messages({"role": "user", "content": "x"}, stream="yes"), "stream"),
        (messages({"role": "user", "content": "x"}, tools=[WEATHER], tool_choice={"type": "tool"}), "tool_choice.name"),
        (messages({"role": "user", "content": "x"}, system=[{"type": "image"}]), "system.0"),
    ],
)
def test_malformed_requests_name_the_field(body, param):
    """What the Messages API itself refuses is refused here with the field named; the fake's checks agree."""
    with pytest.raises(InvalidRequest) as info:
        messages_request(body)
    assert info.value.param == param
    assert problems(body)


def test_fields_and_blocks_added_to_the_api_later_are_accepted():
    """Unknown top-level fields, block types and tool types never get a 400 (they reach Anthropic as they are)."""
    body = messages(
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "hologram", "data": "x"}]},
        tools=[{"type": "teleport_20990101", "name": "teleport"}],
        speed="fast",
        inference_geo="eu",
    )
    request = messages_request(body)
    assert request.native.untranslatable == "'hologram' blocks"


def test_count_tokens_bodies_need_no_max_tokens():
    """count_tokens takes a Messages body without max_tokens."""
    request = messages_request(
        {"model": "r", "messages": [{"role": "user", "content": "hi"}]}, require_max_tokens=False
    )
    assert request.max_output_tokens is None


ROUND_TRIP = messages(
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Weather?"},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_01A", "name": "weather", "input": {"city": "Paris"}},
        ],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"}]},
    system="Be brief.",
    tools=[WEATHER],
    tool_choice={"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
    stop_sequences=["END"],
    temperature=0.2,
    metadata={"user_id": "u-9"},
)


def test_translation_round_trips_through_the_driver():
    """Messages -> canonical -> the anthropic driver's own translation gives back the client's body (what both
    formats can say): the two directions are inverses, not two independent translators."""
    request = messages_request(ROUND_TRIP)
    back = build_request(request, model="route", provider="p", default_max_tokens=1, stream=False)
    assert back["system"] == [{"type": "text", "text": "Be brief."}]
    assert back["messages"] == [
        {"role": "user", "content": ROUND_TRIP["messages"][0]["content"]},
        {"role": "assistant", "content": ROUND_TRIP["messages"][1]["content"]},
        {"role": "user", "content": [{**ROUND_TRIP["messages"][2]["content"][0]}]},
    ]
    for key in ("tools", "tool_choice", "stop_sequences", "temperature", "metadata", "max_tokens"):
        assert back[key] == ROUND_TRIP[key], key
    assert problems(back) == []


# -- answers ----------------------------------------------------------------------------------------------------


CACHED_USAGE = Usage(20, 5, cached_tokens=8, cache_write_tokens=2)


def reply(message, finish="stop", usage=CACHED_USAGE, native=None):
    choices = ({"index": 0, "message": message, "finish_reason": finish},)
    return ChatResponse(id="chatcmpl-9", model="gpt-test", choices=choices, usage=usage, native=native)


def test_an_anthropic_upstreams_answer_is_returned_untouched():
    """A native answer (an Anthropic deployment's own) is the response, whatever the canonical view says."""
    native = {"id": "msg_1", "type": "message", "content": [{"type": "text", "text": "x", "citations": []}]}
    assert message_body(reply({"role": "assistant", "content": "y"}, native=native), input_estimate=1) is native


def test_a_canonical_answer_is_rendered_as_a_message():
    """Text, then tool_use blocks (ids Anthropic accepts, input objects), the stop reason and Anthropic usage."""
    calls = [
        {"id": "call:1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "", "type": "function", "function": {"name": "clock", "arguments": "not json"}},
    ]
    body = message_body(
        reply({"role": "assistant", "content": "Sure.", "tool_calls": calls}, "tool_calls"), input_estimate=1
    )
    assert body["id"] == "msg_chatcmpl-9" and body["model"] == "gpt-test" and body["type"] == "message"
    assert body["content"] == [
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_chatcmpl-9_1", "name": "clock", "input": {"_invalid_arguments": "not json"}},
    ]
    assert (body["stop_reason"], body["stop_sequence"]) == ("tool_use", None)
    assert body["usage"] == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 2,
        "cache_read_input_tokens": 8,
        "output_tokens": 5,
    }


def test_unknown_usage_becomes_an_estimate_never_zero():
    """When the upstream reported no usage, the counts are turnout's estimate (the API has no 'unknown')."""
    body = message_body(reply({"role": "assistant", "content": "x" * 40}, usage=Usage.UNKNOWN), input_estimate=33)
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (33, 10)
    assert wire_usage(Usage.UNKNOWN, input_estimate=0, output_estimate=0)["output_tokens"] == 0


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons_invert_the_drivers_table(finish, reason):
    """Canonical finish reasons map back to the first Messages reason the driver reads as them."""
    assert stop_reason(finish) == reason


@pytest.mark.parametrize(
    ("status", "error_class", "expected"),
    [
        (400, None, (400, "invalid_request_error")),
        (415, None, (415, "invalid_request_error")),
        (401, None, (401, "authentication_error")),
        (404, None, (404, "not_found_error")),
        (413, None, (413, "request_too_large")),
        (429, "rate_limit", (429, "rate_limit_error")),
        (503, None, (529, "overloaded_error")),
        (503, "overloaded", (529, "overloaded_error")),
        (502, "server_error", (500, "api_error")),
        (504, "timeout", (504, "timeout_error")),
    ],
)
def test_error_statuses_are_anthropics(status, error_class, expected):
    """Each failure gets the status and error type Anthropic documents; being at capacity is 529 overloaded."""
    assert error_status(status, error_class) == expected


# -- streams ----------------------------------------------------------------------------------------------------


def chunk(delta, finish=None, content=True):
    data = chunk_data(id="chatcmpl-7", model="gpt-test", created=1, delta=delta, finish_reason=finish)
    return ChatChunk(data=data, is_content=content, finish_reason=finish)


FINAL_USAGE = Usage(12, 3)


def final(usage=FINAL_USAGE):
    data = usage_chunk_data(id="chatcmpl-7", model="gpt-test", created=1, usage=usage)
    return ChatChunk(data=data, finish_reason="stop", usage=usage, usage_only=True)


def events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        if frame:
            name, data = frame.split("\n")
            out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_a_text_stream_is_the_exact_messages_event_sequence():
    """message_start, text block start, one ping, text deltas, block stop, message_delta with usage, message_stop."""
    encoder = MessagesEncoder(model="route", input_estimate=9)
    raw = b"".join(
        encoder.feed(c)
        for c in (
            chunk({"role": "assistant", "content": ""}, content=False),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop", False),
            final(),
        )
    )
    raw += encoder.finish(Usage(12, 3))
    got = events(raw)
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
    start = got[0][1]["message"]
    assert (start["id"], start["model"], start["content"], start["usage"]["input_tokens"]) == (
        "msg_chatcmpl-7",
        "gpt-test",
        [],
        9,
    )
    assert got[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert [d["delta"]["text"] for n, d in got if n == "content_block_delta"] == ["Hel", "lo"]
    assert got[6][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert got[6][1]["usage"]["output_tokens"] == 3 and got[6][1]["usage"]["input_tokens"] == 12
    assert encoder.feed(chunk({"content": "late"})) == b"" and encoder.finish(None) == b""


def test_tool_calls_stream_as_tool_use_blocks_with_input_json_deltas():
    """Each streamed tool call opens a tool_use block (after the text block closes) fed by input_json_delta."""
    encoder = MessagesEncoder(model="route", input_estimate=1)
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    second = {"index": 1, "id": "call_2", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
    raw = b"".join(
        encoder.feed(c)
        for c in (
            chunk({"content": "Let me look."}),
            chunk({"tool_calls": [first]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Paris"}'}}]}),
            chunk({"tool_calls": [second]}),
            chunk({}, "tool_calls", False),
        )
    )
    got = events(raw + encoder.finish(Usage(1, 1)))
    starts = [d for n, d in got if n == "content_block_start"]
    assert [s["content_block"] for s in starts] == [
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}},
        {"type": "tool_use", "id": "call_2", "name": "clock", "input": {}},
    ]
    fragments = [d["delta"]["partial_json"] for n, d in got if n == "content_block_delta" and d["index"] == 1]
    assert json.loads("".join(fragments)) == {"city": "Paris"}
    assert [d["index"] for n, d in got if n == "content_block_stop"] == [0, 1, 2]
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_native_frames_are_forwarded_and_a_continuation_carries_on_in_the_open_block():
    """An Anthropic upstream's frames go out byte for byte; a continuation from another deployment continues the
    open text block, then closes the message itself."""
    encoder = MessagesEncoder(model="route", input_estimate=1)
    frames = b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n'
    opened = b'event: content_block_start\ndata: {"type":"content_block_start","index":1}\n\n'
    native = ChatChunk(
        data=chunk({"content": "Hi"}).data, is_content=True, native=NativeFrames(frames + opened, 2, 1, "text")
    )
    assert encoder.feed(native) == frames + opened
    raw = encoder.feed(chunk({"content": " there"})) + encoder.finish(Usage(3, 2))
    got = events(raw)
    assert got[0] == (
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": " there"}},
    )
    assert [n for n, _ in got[1:]] == ["content_block_stop", "message_delta", "message_stop"]


def test_native_message_stop_ends_the_encoders_part():
    """Once the upstream's own message_stop went out, nothing more is written (no second closing)."""
    encoder = MessagesEncoder(model="route", input_estimate=1)
    end = NativeFrames(b"event: message_stop\ndata: {}\n\n", 1)
    encoder.feed(ChatChunk(data=chunk({}, "stop").data, finish_reason="stop", native=end))
    assert encoder.stopped and encoder.finish(Usage(1, 1)) == b""


def test_an_error_ends_the_stream_without_message_stop():
    """After a failure the stream's last event is `error`, in Anthropic's shape, and nothing follows it."""
    encoder = MessagesEncoder(model="route", input_estimate=1)
    encoder.feed(chunk({"content": "par"}))
    got = events(encoder.error("overloaded_error", "Overloaded", error_class="overloaded"))
    assert got == [
        (
            "error",
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded", "error_class": "overloaded"},
            },
        )
    ]
    assert encoder.finish(None) == b""


def test_signed_thinking_blocks_are_streamed_whole():
    """An Anthropic upstream's thinking block (signature included) reaches the client as a thinking block."""
    encoder = MessagesEncoder(model="route", input_estimate=1)
    block = {"type": "thinking", "thinking": "Hmm.", "signature": "sig=="}
    got = events(encoder.feed(chunk({"thinking_blocks": [block]}, content=False)) + encoder.finish(Usage(1, 1)))
    deltas = [d["delta"] for n, d in got if n == "content_block_delta"]
    assert deltas == [{"type": "thinking_delta", "thinking": "Hmm."}, {"type": "signature_delta", "signature": "sig=="}]


def test_a_lone_surrogate_in_a_delta_is_written_as_its_json_escape():
    """Text an upstream's `\\ud800` escape produced cannot be UTF-8: the event carries the same escape, valid."""
    encoder = MessagesEncoder(model="route", input_estimate=1)
    got = events(encoder.feed(chunk({"content": "a\ud800 é"})))
    assert got[-1][1]["delta"]["text"] == "a\ud800 é"
