"""Keeping configured secrets, and the upstreams' addresses, out of text that leaves turnout.

Upstream error text is the provider's and may echo anything: the key it was sent ("Incorrect API key provided:
Bearer sk-..."), a header, the URL it was called on. `Redactor.for_config(config)` gathers every configured
secret value: every `Secret` anywhere in the config (provider API keys and header values, client keys) and the
password, token or key carried in any URL setting (a provider's `base_url` with `user:pass@` or `?key=`, a state
store's `url`, also as the Basic authorization it becomes), in the forms an echo may take (as is, URL-quoted,
JSON-escaped). `secrets()` masks them, including a secret cut short at the end of a truncated message; the
router applies it to every upstream failure before the failure is recorded anywhere (trail, events, logs,
exceptions, client answers).

`for_clients()` also removes what clients have no business knowing: URLs, IP addresses, `host:port` pairs and
the configured upstream host names. Clients see deployment names (`provider/model`), never where they live.
Both run on failure paths only; the happy path never pays for them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from turnout.config import Secret

MASK = "***"
MIN_SECRET = 4  # shorter values would mask ordinary words
MIN_TAIL = 6  # a truncated message ending with this much of a secret's start has that tail masked
_URL_KEYS = re.compile(r"(key|token|secret|password|passwd|pwd|sig|signature|auth|credential)", re.IGNORECASE)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
_ADDRESS_TUPLE = re.compile(r"\(\s*'[^']*'\s*,\s*\d{1,5}(?:\s*,\s*\d+)*\s*\)")  # ('127.0.0.1', 11434)
_IPV6 = re.compile(r"\[[0-9a-fA-F:.%]+\](?::\d{1,5})?")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b")
_HOST_PORT = re.compile(r"\b[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*:\d{2,5}\b")
HOST = "<host>"


class Redactor:
    """Masks the given secret values (and, for clients, addresses) in text; see the module docstring."""

    __slots__ = ("_forms", "_hosts", "_secrets")

    def __init__(self, secrets: frozenset[str] = frozenset(), hosts: frozenset[str] = frozenset()) -> None:
        forms = {form for value in secrets if len(value) >= MIN_SECRET for form in _echo_forms(value)}
        # Longest first, so a secret containing another one is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._forms = tuple(ordered)
        self._secrets = re.compile("|".join(re.escape(f) for f in ordered)) if ordered else None
        names = sorted((h for h in hosts if h), key=len, reverse=True)
        self._hosts = re.compile("|".join(rf"\b{re.escape(h)}\b" for h in names), re.IGNORECASE) if names else None

    @classmethod
    def for_config(cls, config: Any) -> Redactor:
        """Every secret value and upstream host of a `Config` (or any tree of dataclasses, mappings, tuples)."""
        secrets: set[str] = set()
        hosts: set[str] = set()
        for name, value in _walk(config):
            if isinstance(value, Secret):
                revealed = value.reveal()
                secrets.add(revealed)
                if _is_url_name(name) and "://" in revealed:  # a state store's url is a Secret as a whole
                    secrets.update(_url_parts(revealed)[0])
            elif isinstance(value, str) and _is_url_name(name) and "://" in value:
                url_secrets, host = _url_parts(value)
                secrets.update(url_secrets)
                if host:
                    hosts.add(host)
        return cls(frozenset(secrets), frozenset(hosts))

    def secrets(self, text: str) -> str:
        """`text` with every configured secret value masked, also one cut short at the end (a truncated echo)."""
        pattern = self._secrets
        if pattern is None or not text:
            return text
        text = pattern.sub(MASK, text)
        for form in self._forms:
            for size in range(min(len(form) - 1, len(text)), MIN_TAIL - 1, -1):
                if text.endswith(form[:size]):
                    return text[:-size] + MASK
        return text

    def secrets_bytes(self, data: bytes) -> bytes:
        """`secrets()` for a raw upstream body (decoded leniently; unchanged when nothing is found)."""
        if self._secrets is None or not data:
            return data
        text = data.decode("utf-8", "surrogateescape")
        masked = self.secrets(text)
        return data if masked == text else masked.encode("utf-8", "surrogateescape")

    def for_clients(self, text: str) -> str:
        """`text` as a client may see it: no secrets, URLs, addresses, ports or upstream host names."""
        if not text:
            return text
        text = self.secrets(text)
        text = _URL.sub("<url>", text)
        text = _ADDRESS_TUPLE.sub(HOST, text)
        text = _IPV6.sub(HOST, text)
        text = _IPV4.sub(HOST, text)
        text = _HOST_PORT.sub(HOST, text)
        if self._hosts is not None:
            text = self._hosts.sub(HOST, text)
        return text


NOTHING = Redactor()


def _echo_forms(value: str) -> set[str]:
    """The spellings in which an upstream may echo a secret: as is, URL-quoted, JSON-escaped."""
    return {value, quote(value, safe=""), json.dumps(value)[1:-1]}


def _url_parts(url: str) -> tuple[set[str], str | None]:
    """(secret values a URL carries: its password and credential-like query values, its host name)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        password = parts.password
    except ValueError:
        return set(), None
    found = {password} if password else set()
    if parts.username and password:
        userinfo = f"{parts.username}:{password}"
        found.update((userinfo, base64.b64encode(userinfo.encode()).decode()))  # as Basic authorization
    found.update(v for k, v in parse_qsl(parts.query, keep_blank_values=False) if _URL_KEYS.search(k) and v)
    return found, host


def _walk(value: Any, name: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(field name, value) for every leaf of a config tree (bounded depth; configs are shallow)."""
    if depth > 12:
        return
    if isinstance(value, Secret | str):
        yield name, value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _walk(getattr(value, field.name), field.name, depth + 1)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{name}.{key}" if isinstance(key, str) else name, depth + 1)
    elif isinstance(value, tuple | list | frozenset | set):
        for item in value:
            yield from _walk(item, name, depth + 1)


def _is_url_name(name: str) -> bool:
    """A config field that holds a URL (`base_url`, `state.url`, `telemetry.endpoint`)."""
    lowered = name.lower()
    return "url" in lowered or lowered.endswith("endpoint")
