"""The status page's session tokens: derived from an admin key, never containing it, expiring."""

from __future__ import annotations

from turnout.config import Secret
from turnout.server.auth import ApiKeys
from turnout.server.status import session

KEYS = ApiKeys([Secret("key-one-0001"), Secret("key-two-0002")])


def test_a_token_of_any_admin_key_is_valid_until_it_expires():
    """A token issued for either key is accepted until LIFETIME has passed, then refused."""
    for key in ("key-one-0001", "key-two-0002"):
        token = session.issue(key, 1000.0)
        assert session.valid(KEYS, token, 1000.0)
        assert session.valid(KEYS, token, 1000.0 + session.LIFETIME - 1)
        assert not session.valid(KEYS, token, 1000.0 + session.LIFETIME)


def test_a_token_holds_no_key():
    """The token is a version, an expiry and a MAC: no part of the key is in it."""
    token = session.issue("key-one-0001", 1000.0)
    assert "key" not in token and "0001" not in token
    version, expiry, mac = token.split(".")
    assert (version, expiry) == ("v1", str(1000 + session.LIFETIME)) and len(mac) == 43


def test_removing_the_key_ends_its_sessions():
    """A token made with a key that is no longer configured (rotated) is refused; so is any token without keys."""
    token = session.issue("key-one-0001", 1000.0)
    assert not session.valid(ApiKeys([Secret("key-two-0002")]), token, 1000.0)
    assert not session.valid(ApiKeys([]), token, 1000.0)


def test_an_expiry_moved_forward_breaks_the_mac():
    """Editing the expiry (to live longer) invalidates the token; so does one claiming to outlive LIFETIME."""
    token = session.issue("key-one-0001", 1000.0)
    _, expiry, mac = token.split(".")
    assert not session.valid(KEYS, f"v1.{int(expiry) + 60}.{mac}", 1000.0)
    far = session.issue("key-one-0001", 1000.0 + 10 * session.LIFETIME)
    assert not session.valid(KEYS, far, 1000.0)


def test_cookie_attributes():
    """The session cookie is HttpOnly, SameSite=Strict, site-wide, Secure over HTTPS; clearing expires it."""
    plain = session.cookie_header("v1.1.x", secure=False)
    assert plain.startswith(f"{session.COOKIE}=v1.1.x;") and "HttpOnly" in plain and "SameSite=Strict" in plain
    assert "Secure" not in plain and "Secure" in session.cookie_header("t", secure=True)
    assert "Max-Age=0" in session.clearing_header(secure=False)
