"""No credential value ever shows: not in explain (text or JSON), errors, warnings or reprs."""

from __future__ import annotations

import base64
import json
import pickle
from urllib.parse import quote

import pytest

from turnout.errors import ConfigError
from turnout.explain import explain, render_text
from turnout.redaction import Redactor
from turnout.schema import load_text

LITERAL = "sk-literal-SECRET-1111"
FROM_ENV = "sk-env-SECRET-2222"
HEADER = "hdr-SECRET-3333"
CLIENT = "client-SECRET-4444"
ENV = {"OPENAI_API_KEY": FROM_ENV, "PARTNER": HEADER, "TURNOUT_KEY": CLIENT}
SECRETS = (LITERAL, FROM_ENV, HEADER, CLIENT)

FILE = f"""\
version: 1
providers:
  literal: {{driver: openai, api_key: {LITERAL}}}
  templated: {{driver: anthropic, api_key: "{{{{ env.OPENAI_API_KEY }}}}"}}
  partner:
    driver: openai
    base_url: https://partner.example/v1
    headers: {{x-partner-key: "{{{{ env.PARTNER }}}}"}}
    options: {{organization: org-1}}
  dead: {{driver: gemini, api_key: "{{{{ env.MISSING }}}}"}}
models:
  a: {{provider: literal}}
  b: {{provider: templated}}
  c: {{provider: partner}}
  d: {{provider: dead}}
routes:
  chat: {{chain: [a, b, c, d]}}
server:
  admin_keys: ["{{{{ env.TURNOUT_KEY }}}}", {LITERAL}]
clients:
  app: {{keys: ["{{{{ env.TURNOUT_KEY }}}}-client", "{LITERAL}-client"]}}
"""


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_explain_text_and_json_mask_every_credential():
    """Explain shows that keys are set without showing them, in both renderings."""
    config = load_text(FILE, env=ENV)
    data = explain(config)
    _assert_clean(json.dumps(data))
    _assert_clean(render_text(data))
    providers = {p["name"]: p for p in data["providers"]}
    assert providers["literal"]["api_key"] == "***"
    assert providers["partner"]["headers"] == {"x-partner-key": "***"}
    assert providers["partner"]["options"] == {"organization": "org-1"}
    assert providers["dead"]["api_key"] == "not set"


def test_explain_masks_credentials_inside_base_urls():
    """A password or key carried in a provider's base_url (userinfo, ?key=) is masked; the rest of the URL shows."""
    file = FILE.replace(
        "base_url: https://partner.example/v1",
        "base_url: https://bob:{{ env.PARTNER }}@partner.example/v1?api-key={{ env.OPENAI_API_KEY }}&region=eu",
    )
    data = explain(load_text(file, env=ENV))
    _assert_clean(json.dumps(data))
    _assert_clean(render_text(data))
    providers = {p["name"]: p for p in data["providers"]}
    assert providers["partner"]["base_url"] == "https://bob:***@partner.example/v1?api-key=***&region=eu"


def test_reprs_and_warnings_hide_credentials():
    """The Config's repr, its specs' reprs and its warnings never contain a credential."""
    config = load_text(FILE, env=ENV)
    _assert_clean(repr(config))
    _assert_clean(str(config.server))
    _assert_clean("\n".join(str(w) for w in config.warnings))
    assert config.providers["templated"].api_key.reveal() == FROM_ENV  # the value is there, only hidden
    with pytest.raises(TypeError):
        pickle.dumps(config.providers["literal"].api_key)


@pytest.mark.parametrize(
    "mutation",
    [
        ("api_key: " + LITERAL, "api-key: " + LITERAL),  # misspelt key holding a secret
        ("{organization: org-1}", "{auth: {client_secret: " + LITERAL + "}}"),  # a credential in options
        ("api_key: " + LITERAL, "api_key: [" + LITERAL + "]"),  # wrong type
        ('"{{ env.OPENAI_API_KEY }}"', '"{{ env.OPENAI_API_KEY | attr(env.OPENAI_API_KEY) }}"'),  # echoing error
        ('"{{ env.PARTNER }}"', '"{{ env.PARTNER ~ nope }}"'),  # undefined name next to a secret
        ('admin_keys: ["{{ env.TURNOUT_KEY }}", ' + LITERAL + "]", "admin_keys: " + LITERAL),  # list expected
        ('admin_keys: ["{{ env.TURNOUT_KEY }}", ' + LITERAL + "]", "api_keys: [" + LITERAL + "]"),  # replaced key
        ('keys: ["{{ env.TURNOUT_KEY }}-client"', 'keys: ["{{ env.TURNOUT_KEY }}-client", ' + LITERAL),  # a dup
        ('"{LITERAL}-client"'.replace("{LITERAL}", LITERAL), "sha256:" + LITERAL),  # a malformed digest
    ],
    ids=[
        "misspelt-key",
        "options",
        "wrong-type",
        "attr-error",
        "undefined",
        "admin-keys-not-list",
        "api-keys-replaced",
        "duplicate-key",
        "bad-digest",
    ],
)
def test_error_messages_never_echo_credentials(mutation: tuple[str, str]):
    """A broken credential is reported with its location but without its value."""
    old, new = mutation
    assert old in FILE
    with pytest.raises(ConfigError) as info:
        load_text(FILE.replace(old, new), env=ENV)
    assert info.value.problems
    _assert_clean(str(info.value))


URL_PASSWORD = "url-pass-SECRET-5555"
URL_KEY = "url-key-SECRET-6666"


def test_every_configured_secret_is_masked_in_upstream_echoes():
    """An upstream echo of any configured secret (key, header, client key, URL password or key), in any spelling
    an error text may use, is masked by the config's redactor, also when the echo was cut short."""
    file = FILE.replace(
        "base_url: https://partner.example/v1",
        f"base_url: https://bob:{URL_PASSWORD}@partner.example/v1?api-key={URL_KEY}&region=eu",
    )
    redactor = Redactor.for_config(load_text(file, env=ENV))
    basic = base64.b64encode(f"bob:{URL_PASSWORD}".encode()).decode()
    for secret in (*SECRETS, URL_PASSWORD, URL_KEY, basic):
        for form in (secret, quote(secret, safe=""), json.dumps(secret)[1:-1], f"Bearer {secret}"):
            echo = f'{{"error": "Incorrect API key provided: {form}. Check your key."}}'
            assert secret not in redactor.secrets(echo), form
            assert secret not in redactor.secrets_bytes(echo.encode()).decode()
        cut = redactor.secrets(f"Incorrect API key provided: {secret[:-3]}")
        assert secret[:-3] not in cut and cut.endswith("***")
    assert redactor.secrets("nothing secret here: org-1, region=eu") == "nothing secret here: org-1, region=eu"


REDIS_PASSWORD = "redis-SECRET-5555"
STATE = """\
version: 1
providers: {echo: {driver: mock}}
models: {echo: {provider: echo}}
routes: {chat: {chain: [echo]}}
state:
  backend: redis
  url: "{{ env.REDIS_URL }}"
"""


def test_state_url_password_is_masked_in_explain_and_reprs():
    """The Redis URL's password is masked in explain (text and JSON) and in the config's repr."""
    env = {"REDIS_URL": f"redis://turnout:{REDIS_PASSWORD}@cache.internal:6380/2"}
    config = load_text(STATE, env=env)
    data = explain(config)
    for text in (json.dumps(data), render_text(data), repr(config), str(config.state)):
        assert REDIS_PASSWORD not in text
    assert data["state"]["url"] == "redis://turnout:***@cache.internal:6380/2"
    assert "redis://turnout:***@cache.internal:6380/2" in render_text(data)
    assert config.state.url is not None and config.state.url.reveal() == env["REDIS_URL"]


@pytest.mark.parametrize(
    "url",
    [
        f"http://:{REDIS_PASSWORD}@cache:6379",  # wrong scheme
        f"redis://:{REDIS_PASSWORD}@cache:99999",  # bad port
        f"redis://:{REDIS_PASSWORD}@cache:6379/db{REDIS_PASSWORD}",  # bad database
    ],
    ids=["scheme", "port", "db"],
)
def test_state_url_errors_never_echo_the_password(url: str):
    """An invalid state url is reported at its location without quoting the URL."""
    with pytest.raises(ConfigError) as info:
        load_text(STATE, env={"REDIS_URL": url})
    assert [p.path for p in info.value.problems] == ["state.url"]
    assert REDIS_PASSWORD not in str(info.value)


def test_state_url_of_the_wrong_type_is_not_echoed():
    """A url written as a list is a type error that does not show the value."""
    with pytest.raises(ConfigError) as info:
        load_text(STATE.replace('"{{ env.REDIS_URL }}"', f"[{REDIS_PASSWORD}]"), env={})
    assert REDIS_PASSWORD not in str(info.value)


COLLECTOR_KEY = "otlp-SECRET-7777"
TELEMETRY = """\
version: 1
providers: {echo: {driver: mock}}
models: {echo: {provider: echo}}
routes: {chat: {chain: [echo]}}
telemetry:
  endpoint: "https://ingest:{{ env.COLLECTOR_KEY }}@collector.example:4318"
  headers: {x-api-key: "{{ env.COLLECTOR_KEY }}"}
"""


def test_telemetry_headers_and_endpoint_credentials_are_masked():
    """The collector's header values and an endpoint password never show in explain, reprs or the Redactor's output."""
    config = load_text(TELEMETRY, env={"COLLECTOR_KEY": COLLECTOR_KEY})
    data = explain(config)
    for text in (json.dumps(data), render_text(data), repr(config), str(config.telemetry)):
        assert COLLECTOR_KEY not in text
    assert data["telemetry"]["headers"] == {"x-api-key": "***"}
    assert config.telemetry.headers["x-api-key"].reveal() == COLLECTOR_KEY
    assert COLLECTOR_KEY not in Redactor.for_config(config).secrets(f"export failed: bad key {COLLECTOR_KEY}")
