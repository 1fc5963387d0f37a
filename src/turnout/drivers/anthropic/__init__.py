"""Anthropic's Messages API, one module per wire object (wire-formats.md section 3).

```
driver.py     AnthropicDriver: the HTTP glue on top of `_http` (send, stream, models, credentials)
request.py    canonical (OpenAI chat) request -> Messages request body
response.py   Messages response and error bodies -> canonical values
stream.py     Messages SSE events -> canonical chunks (a pure state machine)
```
"""

from turnout.drivers.anthropic.driver import DEFAULT_BASE_URL, DEFAULT_MAX_TOKENS, DEFAULT_VERSION, AnthropicDriver

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MAX_TOKENS", "DEFAULT_VERSION", "AnthropicDriver"]
