"""Driver glue the built-in HTTP drivers share: request headers, fetching a model list, one model-list entry.

Every driver sends the provider's configured extra headers and then its API key, in the header its upstream
wants (`auth_headers`); every model list is a GET whose JSON body must carry an array under one key
(`fetch_model_list`); and every entry keeps the upstream's own fields in `ModelInfo.extra` (`model_info`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from turnout.drivers._http import ErrorParser, open_request, read_json
from turnout.drivers.base import ModelInfo
from turnout.errors import ProtocolError

if TYPE_CHECKING:
    from turnout.config import ProviderSpec
    from turnout.drivers.base import CallContext


def auth_headers(spec: ProviderSpec, key_header: str | None = None) -> dict[str, str]:
    """The provider's extra headers, then its API key (if any): `Authorization: Bearer <key>`, or the bare key in
    `key_header` for upstreams with their own header (`x-api-key`, `x-goog-api-key`, Azure's `api-key`)."""
    headers = {name: value.reveal() for name, value in spec.headers.items()}
    if spec.api_key:
        if key_header is None:
            headers["Authorization"] = f"Bearer {spec.api_key.reveal()}"
        else:
            headers[key_header] = spec.api_key.reveal()
    return headers


async def fetch_model_list(
    ctx: CallContext,
    url: str,
    *,
    provider: str,
    key: str,
    headers: Mapping[str, str],
    params: Mapping[str, str] | None = None,
    error_parser: ErrorParser | None = None,
    optional: bool = False,
) -> Mapping[str, Any]:
    """GET one model-list page and return its JSON object, which must hold an array under `key`.

    `optional`: a page without `key` is an empty page (Gemini omits `models` when there are none), not an error.
    """
    async with open_request(
        ctx, "GET", url, provider=provider, model="", headers=headers, params=params, error_parser=error_parser
    ) as resp:
        data = await read_json(resp, provider=provider, model="")
    items = data.get(key, [] if optional else None) if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise ProtocolError(f"model list has no '{key}' array", provider=provider)
    return data


def model_info(item: Mapping[str, Any], model_id: str, owned_by: str, window: Any = None) -> ModelInfo:
    """One model-list entry; the upstream's own fields are kept whole in `extra`, a non-integer window is unknown."""
    return ModelInfo(
        id=model_id,
        owned_by=owned_by,
        context_window=window if isinstance(window, int) else None,
        extra=MappingProxyType(dict(item)),
    )
