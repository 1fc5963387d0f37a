"""Protocol fuzz: malformed and hostile requests always get a 4xx in OpenAI's error shape, never a 500.

The sidecar runs in a background thread with its own event loop so Hypothesis can drive it with a plain
blocking client. Every generated request names no real route or breaks a field, so each must be refused; the
number of examples is bounded (a few hundred, a few seconds).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turnout.testing import OpenAIFake

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
NOT_A_ROUTE = "fuzz-target-model"
FIELDS = [
    "model",
    "messages",
    "stream",
    "temperature",
    "top_p",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "tools",
    "stream_options",
    "response_format",
]

HOSTILE_STRINGS = st.sampled_from(
    ["a\nb", "x\r\nSet-Cookie: a=b", "\x00", "\u2028", "\ud800"[:0] + "\u00e9\u4e2d", "chat\n", " ", "x" * 5000]
)
json_scalars = st.one_of(
    HOSTILE_STRINGS,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=25,
)


class Client:
    """A blocking keep-alive HTTP client that reconnects when the server closes the connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, body: bytes, content_type: str | None = "application/json") -> tuple[int, bytes]:
        headers = {"Content-Length": str(len(body))}
        if content_type is not None:
            headers["Content-Type"] = content_type
        for attempt in range(2):
            try:
                self.conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def client(tmp_path_factory, server_kit) -> Any:
    """The sidecar (256KB body limit) and an upstream fake, served from a background thread."""
    ready = threading.Event()
    state: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.default("chat", fake.text("ok"))
            path = tmp_path_factory.mktemp("fuzz") / "routes.yaml"
            path.write_text(server_kit.routes_yaml(fake.url, fake.url, server="  max_request_size: 256KB\n"))
            async with server_kit.serving(path) as served:
                state["port"] = int(served.url.rsplit(":", 1)[1])
                state["stop"] = asyncio.Event()
                state["fake"] = fake
                ready.set()
                await state["stop"].wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(15)
    yield Client(state["port"])
    loop.call_soon_threadsafe(state["stop"].set)
    thread.join(15)
    assert state["fake"].requests == []  # nothing hostile was ever forwarded upstream


def refused(status: int, body: bytes, server_kit: Any) -> None:
    assert 400 <= status < 500, (status, body[:300])
    server_kit.assert_openai_error(json.loads(body), status)


@SETTINGS
@given(value=json_values)
def test_arbitrary_json_bodies_are_refused(client, server_kit, value):
    """Any JSON value as the body (naming no route) is a 4xx in OpenAI's shape."""
    if isinstance(value, dict) and "model" in value:
        value["model"] = NOT_A_ROUTE
    status, body = client.post(json.dumps(value).encode())
    refused(status, body, server_kit)


@SETTINGS
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_hostile_field_values_are_refused(client, server_kit, field, value):
    """A body with one field replaced by any JSON value is refused: 400 naming the field, or 404 for the route."""
    body = {"model": NOT_A_ROUTE, "messages": [{"role": "user", "content": "hi"}], field: value}
    if field == "model" and value == "chat":
        body["model"] = NOT_A_ROUTE
    status, raw = client.post(json.dumps(body).encode())
    refused(status, raw, server_kit)
    if status == 400 and field != "model":
        param = json.loads(raw)["error"]["param"]
        assert param is None or param.split("[")[0].split(".")[0] == field, (field, param)


@SETTINGS
@given(
    data=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            None,
            "application/json",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/xml",
            "application/x-www-form-urlencoded",
            "",
            "*/*",
            "\u00e9",
        ]
    ),
)
def test_random_bytes_and_content_types_are_refused(client, server_kit, data, content_type):
    """Arbitrary bytes (mostly invalid UTF-8 or JSON) under any content type get a 4xx, never a 500."""
    if content_type is not None and not content_type.isascii():
        content_type = "application/x-unknown"
    status, body = client.post(data, content_type)
    refused(status, body, server_kit)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(depth=st.integers(min_value=500, max_value=100_000), opener=st.sampled_from([b"[", b'{"a":']))
def test_deep_nesting_is_refused(client, server_kit, depth, opener):
    """Deeply nested JSON (up to 100k levels) is refused cleanly instead of exhausting the parser."""
    closer = b"]" if opener == b"[" else b"}"
    status, body = client.post(opener * depth + b"1" + closer * depth)
    refused(status, body, server_kit)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(min_value=300_000, max_value=2_000_000), digits=st.integers(min_value=5000, max_value=20000))
def test_huge_values_are_refused(client, server_kit, size, digits):
    """Bodies over the limit are 413; integers too long to parse are 400."""
    status, body = client.post(b'{"model":"chat","messages":"' + b"x" * size + b'"}')
    assert status == 413
    refused(status, body, server_kit)
    status, body = client.post(b'{"model":"chat","messages":[],"n":' + b"9" * digits + b"}")
    refused(status, body, server_kit)
