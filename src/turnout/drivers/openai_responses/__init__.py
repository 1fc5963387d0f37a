"""OpenAI's Responses API (`POST /v1/responses`), one module per wire object, both directions.

```
wire.py            what both directions share: the format's name, ids, usage, statuses, error codes
tools.py           tools and tool_choice -> canonical function tools, and the names back
items.py           input items -> canonical messages
request.py         a client's Responses request -> canonical request (+ the client's body, native)
answer.py          canonical answer -> Response object                       (the inverse of upstream.py)
encoder.py         canonical chunks -> Responses SSE events                  (the inverse of stream.py)

upstream.py        a Responses upstream's answer -> canonical answer (its body kept)
stream.py          a Responses upstream's events -> canonical chunks (its events kept, byte for byte)
native.py          the calls the `openai` driver makes to serve a Responses request natively
```

The ingress side serves the sidecar's `/v1/responses` (`turnout.server.ingress.openai_responses`); the upstream side
is what the `openai` driver uses for a deployment that serves the Responses API itself (OpenAI; any server or model
with `responses: true`), so such a deployment gets the client's request as it was written and its answer goes back
untouched. Both sides read one set of tables (`wire.py`, `tools.py`), and a round trip through both gives back what
the client sent.
"""

from turnout.drivers.openai_responses.native import is_native, native_body, send, stream
from turnout.drivers.openai_responses.wire import NATIVE_FORMAT

__all__ = ["NATIVE_FORMAT", "is_native", "native_body", "send", "stream"]
