"""Test kit for turnout drivers, public for plug-in authors: loopback fake upstreams and a driver contract suite.

- `FakeUpstream` (in `fake.py`): an aiohttp server on 127.0.0.1:0 that records every request and answers from a
  script of *behaviours* (`reply_json`, `reply_raw`, `reply_sse`, `reply_ndjson`, `drop`, `hang`, `slow`,
  `cut_body`, `stall_body`).
- Per-format fakes render *canonical scenarios* as exact wire bytes: `OpenAIFake`, `OllamaFake`, `AnthropicFake`,
  `GeminiFake`. They share `FormatFake` (in `format_fake.py`: endpoint naming, `error`/`html_error`, keep-alives).
- `DriverContract` (in `contract.py`, imported lazily because it needs pytest): subclass it in a test module,
  implement `make_fake()` and `make_driver(base_url)`, and every contract test runs against your driver.

The interface a per-format fake implements (what the contract suite calls). Each method returns a `Behaviour`
to queue with `fake.script("chat", ...)`:

    endpoint(method, path) -> str   name requests: "chat" for the chat endpoint (streaming or not), "models"
                                    for the model list; anything else keeps its path
    text(reply, *, usage=DEFAULT_USAGE, finish_reason="stop")        a complete non-streamed answer
    tool_calls(calls: Sequence[ToolCall], *, usage=DEFAULT_USAGE)     a non-streamed tool-call answer
    stream_text(pieces, *, usage=DEFAULT_USAGE, finish_reason="stop", framing=Framing())
                                    a streamed answer, one content event per piece, then finish/usage/terminator;
                                    `usage=None` means the upstream reports no usage
    stream_tool_calls(calls, *, usage=DEFAULT_USAGE, framing=Framing())
                                    streamed tool calls (arguments in fragments where the format streams them)
    stream_error(pieces, error_class, *, message=None)   content, then an in-stream error event after the 200
    stream_malformed(pieces)        content, then an event whose JSON is broken
    stream_unterminated(pieces)     content, then a clean end of body with no finish and no terminator
    error(error_class, *, message=None, headers=None)     an HTTP error the driver must classify as error_class
                                    (`headers` e.g. {"retry-after": "2"} are sent as given)
    html_error(status=502)          an HTML error page (as from a proxy)
    models(ids)                     the model-list answer

`AnthropicFake` refuses, with the Messages API's own 400, every request the API would refuse (`anthropic_rules`),
before its script answers; a fake decides that in `FakeUpstream.refusal(endpoint, body)`.

Fakes of formats with an embeddings API (`OpenAIFake`, `GeminiFake`, `OllamaFake`) also serve the endpoint
"embeddings" (`embeddings_fake`): `embeddings(dimensions=8, vectors=None, usage=...)` answers each request as
the real API would (refusing what it refuses, with its error body) with deterministic vectors (`expected_vector`),
and `asked_dimensions(recorded)` reads the length a request asked for. `error(...)` serves that endpoint too.
`DriverContract` runs the embeddings checks (`embeddings_contract`) for drivers that define `embed`.

`OpenAIFake` also speaks the prefill dialects (`OpenAIFake(prefill=...)`, `stream_answer(...)`: a canonical answer
continued from whatever prefix a request carries, with scripted breaks).

`usage` values are `turnout.types.Usage`; `Framing(split_every, crlf, comments, delay, cut_after)` selects framing
edge cases, honoured where the format has them (NDJSON has no comments).
"""

from __future__ import annotations

from typing import Any

from turnout.testing.anthropic_fake import AnthropicFake
from turnout.testing.embeddings_fake import EmbeddingsFake, expected_vector
from turnout.testing.fake import (
    Behaviour,
    FakeUpstream,
    Framing,
    RecordedRequest,
    ToolCall,
    cut_body,
    drop,
    hang,
    reply_json,
    reply_ndjson,
    reply_raw,
    reply_sse,
    reply_stream,
    slow,
    sse_frame,
    stall_body,
)
from turnout.testing.format_fake import DEFAULT_USAGE, FormatFake
from turnout.testing.gemini_fake import GeminiFake
from turnout.testing.ollama_fake import OllamaFake
from turnout.testing.openai_fake import OpenAIFake

__all__ = [
    "DEFAULT_USAGE",
    "AnthropicFake",
    "Behaviour",
    "DriverContract",
    "EmbeddingsContract",
    "EmbeddingsFake",
    "FakeUpstream",
    "FormatFake",
    "Framing",
    "GeminiFake",
    "OllamaFake",
    "OpenAIFake",
    "RecordedRequest",
    "ToolCall",
    "cut_body",
    "drop",
    "expected_vector",
    "hang",
    "reply_json",
    "reply_ndjson",
    "reply_raw",
    "reply_sse",
    "reply_stream",
    "slow",
    "sse_frame",
    "stall_body",
]


def __getattr__(name: str) -> Any:
    if name == "DriverContract":  # needs pytest; only test code imports it
        from turnout.testing.contract import DriverContract

        return DriverContract
    if name == "EmbeddingsContract":
        from turnout.testing.embeddings_contract import EmbeddingsContract

        return EmbeddingsContract
    raise AttributeError(f"module 'turnout.testing' has no attribute {name!r}")
