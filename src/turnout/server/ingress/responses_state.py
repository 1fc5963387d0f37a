"""What the Responses ingress keeps: stored responses, `previous_response_id`, and `GET|DELETE /v1/responses/{id}`.

A response is kept when `state.responses.enabled` (the default) and the request did not say `store: false`, in the
state backend's `ResponseStore` (`turnout.state.responses`: the ledger file, memory, or Redis), before the client
sees its end (the JSON answer, or the stream's terminal event): a client that continues it at once always finds it.
A store that fails does not fail the answer (it is logged; the response is then simply not found later).

A request with `previous_response_id` is rebuilt before routing: the stored conversation's items (every earlier
input and output, oldest first) go before its own input, and `previous_response_id` is gone. Every deployment then
gets the whole conversation, whichever served the earlier turns: a Responses upstream as the client's body with a
longer `input`, any other as the canonical translation. The rebuilt body carries `turnout_continues` (turnout's own
key, never sent upstream): the id the client sent, how many items came from the store, and the chain to record.

A response belongs to the client that kept it (the declared client whose key made the request; "" without clients):
only that client can continue it, read it or delete it; for any other it does not exist.

Errors in OpenAI's shape: an unknown or expired id is `400 previous_response_not_found` (`404` for GET and DELETE);
a store that cannot answer is `503 state_unavailable` (the SDK retries it); with `state.responses.enabled: false`,
`previous_response_id` is a `400` that says responses are not kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from aiohttp import web

from turnout import _json
from turnout.drivers.openai_responses.answer import CONTINUES
from turnout.drivers.openai_responses.request import responses_request, with_history
from turnout.drivers.openai_responses.wire import clean_id
from turnout.errors import InvalidRequest
from turnout.server import errors
from turnout.server.errors import Failure
from turnout.state.base import StoreError
from turnout.state.responses import MAX_CHAIN, ChainBroken, StoredResponse, conversation
from turnout.types import ChatRequest

log = logging.getLogger("turnout.server")
# The declared client the current request runs as ("" when anonymous): set by ResponsesHandler for the request's task,
# so the ingress's answer and relay keep what they keep as that client's.
CLIENT: ContextVar[str] = ContextVar("turnout_responses_client", default="")
_JSON = {"Content-Type": "application/json"}


def not_kept_message() -> str:
    return (
        "This turnout does not keep responses (state.responses.enabled is false), so previous_response_id cannot be "
        "used: send the whole conversation as input (with store: false)."
    )


class Keeper:
    """The Responses ingress's view of the state layer, for one Sidecar (whose Router holds the state backend)."""

    def __init__(self, sidecar: Any) -> None:
        self.sc = sidecar

    @property
    def settings(self) -> Any:
        return self.sc.router.config.state.responses

    @property
    def store(self) -> Any:
        return self.sc.router.state.responses

    def storing(self, body: Mapping[str, Any]) -> bool:
        """Is the answer to `body` kept?"""
        return body.get("store") is not False and self.settings.enabled

    async def keep(
        self, body: Mapping[str, Any], response: Mapping[str, Any], *, rendered: bool, encoded: bytes | None = None
    ) -> None:
        """Keep `response` (the Response object answering `body`; `rendered` when turnout wrote it rather than the
        upstream); a failure is logged, never raised."""
        response_id = response.get("id")
        if not isinstance(response_id, str) or not response_id:
            return
        continues = body.get(CONTINUES)
        continues = continues if isinstance(continues, dict) else {}
        own = body.get("input")
        if isinstance(own, str):
            own = [{"role": "user", "content": own}]
        own = list(own or ())[int(continues.get("history") or 0) :]
        record = StoredResponse(
            response_id,
            encoded if encoded is not None else _json.dumps_escaped(response),
            _json.dumps_escaped(own),
            tuple(continues.get("chain") or ()),
            client=CLIENT.get(),
            created=time.time(),
            rendered=rendered,
        )
        try:
            await self.store.put(record, self.settings.ttl)
        except StoreError as exc:
            log.warning("stored responses: cannot keep %s: %s", clean_id(response_id), exc)

    async def continued(self, chat: ChatRequest) -> ChatRequest | Failure:
        """`chat` rebuilt with the conversation its `previous_response_id` continues, or the Failure to answer."""
        assert chat.native is not None
        body = chat.native.body
        previous = body.get("previous_response_id")
        if not isinstance(previous, str) or not previous:
            return errors.invalid_request(_invalid_previous(previous))
        if not self.settings.enabled:
            return errors.simple(400, not_kept_message(), code="responses_not_stored", param="previous_response_id")
        try:
            found = await conversation(self.store, previous)
        except StoreError as exc:
            return unavailable(exc)
        except ChainBroken as exc:
            return not_found(previous, f"Previous response with id '{clean_id(previous)}' cannot be continued: {exc}.")
        if found is None or found[0].client != CLIENT.get():
            return not_found(previous)
        head, items = found
        chain = [*head.chain, head.id]
        if len(chain) > MAX_CHAIN:
            message = f"The conversation is longer than {MAX_CHAIN} responses: send its input instead."
            return errors.simple(400, message, code="conversation_too_long", param="previous_response_id")
        rebuilt = with_history(body, items)
        rebuilt[CONTINUES] = {"id": previous, "history": len(items), "chain": chain}
        try:
            return responses_request(rebuilt)
        except InvalidRequest as exc:
            return errors.invalid_request(exc)

    # -- GET and DELETE /v1/responses/{id} --------------------------------------------------------------------

    async def retrieve(self, request: web.Request) -> web.Response:
        client = self.sc.identify(request)
        if isinstance(client, Failure):
            return _answer(client)
        response_id = request.match_info["response_id"]
        if request.query.get("stream") in ("true", "1"):
            message = "Replaying a stored response as a stream is not supported by turnout; omit 'stream'."
            return _answer(errors.simple(400, message, code="unsupported_parameter", param="stream"))
        record = await self._record(response_id, client or "")
        if isinstance(record, Failure):
            return _answer(record)
        return web.Response(body=record.response, headers=_JSON)

    async def delete(self, request: web.Request) -> web.Response:
        client = self.sc.identify(request)
        if isinstance(client, Failure):
            return _answer(client)
        response_id = request.match_info["response_id"]
        record = await self._record(response_id, client or "")
        if isinstance(record, Failure):
            return _answer(record)
        try:
            await self.store.delete(record.id)
        except StoreError as exc:
            return _answer(unavailable(exc))
        body = _json.dumps_escaped({"id": record.id, "object": "response.deleted", "deleted": True})
        return web.Response(body=body, headers=_JSON)

    async def _record(self, response_id: str, client: str) -> StoredResponse | Failure:
        """The caller's own stored response, or the 404 (also for another client's: for it, it does not exist)."""
        if clean_id(response_id) != response_id or not self.settings.enabled:
            return _missing(response_id)
        try:
            record = await self.store.get(response_id)
        except StoreError as exc:
            return unavailable(exc)
        return record if record is not None and record.client == client else _missing(response_id)


def _invalid_previous(value: Any) -> InvalidRequest:
    return InvalidRequest(
        "Invalid type for 'previous_response_id': expected a string naming a stored response.",
        param="previous_response_id",
    )


def not_found(previous: str, message: str | None = None) -> Failure:
    text = message or f"Previous response with id '{clean_id(previous)}' not found."
    return errors.simple(400, text, code="previous_response_not_found", param="previous_response_id")


def _missing(response_id: str) -> Failure:
    fail = errors.simple(404, f"Response with id '{clean_id(response_id)}' not found.", code="not_found")
    return Failure(fail.status, {**fail.error, "code": None}, {})


def unavailable(exc: StoreError) -> Failure:
    """The store cannot answer: the reason goes to the log (it may name a file), the client is told to retry."""
    log.warning("stored responses unavailable: %s", exc)
    message = "Stored responses are unavailable right now; retry, or send the whole input with store: false."
    return errors.simple(503, message, code="state_unavailable")


def _answer(fail: Failure) -> web.Response:
    return web.Response(status=fail.status, body=fail.body(), headers={**_JSON, **fail.headers})
