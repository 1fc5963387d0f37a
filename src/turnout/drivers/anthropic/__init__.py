"""Anthropic's Messages API, one module per wire object (wire-formats.md section 3).

```
driver.py            AnthropicDriver: the HTTP glue on top of `_http` (send, stream, models, credentials)
request.py           canonical (OpenAI chat) request -> Messages request body (or the client's own, native)
response.py          Messages response and error bodies -> canonical values
stream.py            Messages SSE events -> canonical chunks (a pure state machine)

ingress_request.py   a client's Messages request -> canonical request      (the inverse of request.py)
ingress_response.py  canonical answer / failure -> Messages response, error (the inverse of response.py)
ingress_stream.py    canonical chunks -> Messages SSE events               (the inverse of stream.py)
```

The `ingress_*` modules serve the sidecar's `/v1/messages` (`turnout.server.ingress.anthropic_messages`); they sit
here, beside the driver's direction, so that both directions read one set of tables (stop reasons, tool ids,
thinking blocks) and a round trip through both is tested to give back what the client sent.
"""

from turnout.drivers.anthropic.driver import DEFAULT_BASE_URL, DEFAULT_MAX_TOKENS, DEFAULT_VERSION, AnthropicDriver

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MAX_TOKENS", "DEFAULT_VERSION", "AnthropicDriver"]
