"""Redactor: which values it finds in a config tree and what it masks, for logs and for clients."""

from __future__ import annotations

from dataclasses import dataclass, field

from turnout.config import Secret
from turnout.redaction import Redactor


@dataclass(frozen=True)
class StateSpec:
    url: str = ""


@dataclass(frozen=True)
class Tree:
    state: StateSpec = field(default_factory=StateSpec)
    keys: tuple[Secret, ...] = ()
    base_url: str = ""


def test_secrets_anywhere_in_a_config_tree_are_found():
    """Secrets, a store URL's password and a base_url's userinfo and key are all masked; other text is not."""
    tree = Tree(
        state=StateSpec(url="redis://:redis-pass-1234@cache.internal:6379/0"),
        keys=(Secret("k-client-5678"),),
        base_url="https://svc:svc-pass-9012@llm.internal/v1?key=qk-3456&region=eu",
    )
    redactor = Redactor.for_config(tree)
    text = "pw redis-pass-1234, key k-client-5678, basic svc:svc-pass-9012, query qk-3456, region eu"
    assert redactor.secrets(text) == "pw ***, key ***, basic ***, query ***, region eu"


def test_for_clients_removes_addresses_and_configured_hosts():
    """URLs, IPv4/IPv6 addresses, host:port pairs, address tuples and configured host names become <host>/<url>."""
    redactor = Redactor.for_config(Tree(base_url="https://llm.internal/v1"))
    text = (
        "Cannot connect to host llm.internal:443 ssl:default [Connect call failed ('10.1.2.3', 443)]; "
        "GET https://llm.internal/v1/chat failed; [fd00::1]:8000 and 192.168.0.7 unreachable; llm.internal down"
    )
    shown = redactor.for_clients(text)
    for leak in ("llm.internal", "10.1.2.3", "fd00::1", "192.168.0.7", "443", "8000", "https://"):
        assert leak not in shown, leak
    assert "Cannot connect to host <host>" in shown


def test_ordinary_text_is_left_alone():
    """Model names with tags, durations and plain messages pass unchanged."""
    redactor = Redactor.for_config(Tree(keys=(Secret("sk-abcdef123456"),)))
    for text in ("model llama3.1:8b not found", "retry after 2.5s", "rate limited: 3 of 3 requests used"):
        assert redactor.for_clients(text) == text


def test_short_values_are_not_treated_as_secrets():
    """A one- to three-character 'secret' would mask ordinary words; it is ignored."""
    assert Redactor.for_config(Tree(keys=(Secret("ab"),))).secrets("about abc") == "about abc"
