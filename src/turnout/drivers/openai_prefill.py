"""Prefill on OpenAI-compatible upstreams: how each server family is asked to continue a partial answer.

OpenAI's Chat Completions API has no prefill: a trailing assistant message just starts a new reply. Many compatible
servers do continue one, each in its own dialect, so the dialect is named in the routing file (`options.prefill`
on the provider, or on one model):

| dialect     | the request                                                    | servers                            |
|-------------|----------------------------------------------------------------|------------------------------------|
| `assistant` | a last `assistant` message, continued as is                    | llama.cpp's llama-server (its      |
|             |                                                                | `--prefill-assistant`, on by       |
|             |                                                                | default), Ollama                   |
| `vllm`      | a last `assistant` message plus `continue_final_message: true` | vLLM, SGLang, Aphrodite            |
|             | and `add_generation_prompt: false` (vLLM refuses both true)    |                                    |
| `prefix`    | `prefix: true` on the last `assistant` message                 | DeepSeek (its beta endpoint,       |
|             |                                                                | `base_url: https://api.deepseek.   |
|             |                                                                | com/beta`), Mistral                |

Sources: llama.cpp server README (`--prefill-assistant`: "prefill the assistant's response if the last message is
an assistant message"); Ollama maintainers in ollama/ollama#6778 (a trailing assistant message is continued); vLLM
`entrypoints/openai/protocol.py` (`continue_final_message`: "the final message in the chat is open-ended ... This
allows you to prefill part of the model's response"; `check_generation_prompt`: "Cannot set both
`continue_final_message` and `add_generation_prompt` to True"); SGLang PR #4226; DeepSeek's "Chat Prefix Completion
(Beta)" guide (api-docs.deepseek.com/guides/chat_prefix_completion: the last message must be `assistant` with
`prefix: True`, on `base_url="https://api.deepseek.com/beta"`); Mistral's API spec (`AssistantMessage.prefix`:
"Set this to `true` when adding an assistant message as prefix to condition the model response").

A prefix extends a client's own trailing assistant message (the client's prefill), never a second assistant turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Dialect = Literal["assistant", "vllm", "prefix"]
DIALECTS: tuple[str, ...] = ("assistant", "vllm", "prefix")

OPTION_SCHEMA: Mapping[str, Any] = {
    "enum": list(DIALECTS),
    "description": (
        "how this upstream continues a partial answer (what mid_stream: continue needs): assistant (a last "
        "assistant message, continued as is: llama.cpp, Ollama), vllm (continue_final_message: vLLM, SGLang), "
        "prefix (prefix: true on the last assistant message: DeepSeek beta, Mistral). Omit for OpenAI itself, "
        "which has no prefill"
    ),
}
HINT = (
    "name the upstream's prefill dialect in options.prefill on the provider or the model "
    "(assistant, vllm or prefix); OpenAI itself has none"
)


def dialect_of(options: Mapping[str, Any], model_options: Mapping[str, Any]) -> str | None:
    """The dialect for one model: its own `options.prefill`, else the provider's; None when neither names one."""
    value = model_options.get("prefill", options.get("prefill"))
    return value if value in DIALECTS else None


def with_prefix(body: dict[str, Any], prefix: str, dialect: str) -> None:
    """Add `prefix` to an upstream body (in place) as the partial answer the server must continue."""
    messages = list(body["messages"])
    last = messages[-1] if messages else None
    own = isinstance(last, Mapping) and last.get("role") == "assistant" and not last.get("tool_calls")
    if own and isinstance(last.get("content"), str):  # the client's own prefill: the answer so far extends it
        messages.pop()
        prefix = last["content"] + prefix
    message: dict[str, Any] = {"role": "assistant", "content": prefix}
    if dialect == "prefix":
        message["prefix"] = True
    messages.append(message)
    body["messages"] = messages
    if dialect == "vllm":
        body["continue_final_message"] = True
        body["add_generation_prompt"] = False
