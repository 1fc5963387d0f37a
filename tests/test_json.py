"""turnout._json: orjson only where it gives exactly the stdlib's values, and never a release that can crash."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from turnout import _json


@pytest.mark.parametrize(
    ("version", "safe"),
    [("3.8.3", False), ("3.9.14", False), ("3.9.15", True), ("3.10.0", True), ("3.13.0", True), ("4.0", True)],
)
def test_orjson_releases_without_a_nesting_limit_are_not_used(version: str, safe: bool) -> None:
    """CVE-2024-27454: orjson before 3.9.15 recursed without limit on nested input (a segfault)."""
    assert _json.orjson_is_safe(version) is safe


@pytest.mark.parametrize(
    "text",
    [
        b'{"seed": 123456789012345678901234567890}',
        b'{"n": -9999999999999999999}',
        b'{"n": 18446744073709551616}',
        b'{"s": "caf\\u00e9 \\ud83d\\ude00", "f": 0.1, "e": 1e-7, "t": [true, false, null]}',
    ],
)
def test_loads_gives_the_stdlib_values(text: bytes) -> None:
    """Integers beyond 64 bits stay exact integers (orjson would read them as floats)."""
    value = _json.loads(text)
    assert value == json.loads(text)
    assert [type(v) for v in value.values()] == [type(v) for v in json.loads(text).values()]


def test_loads_refusals_are_judged_by_the_fallback() -> None:
    """What orjson refuses goes to the fallback: the stdlib accepts a lone surrogate, a strict decoder refuses."""
    assert _json.loads(b'{"a": "\\ud800"}') == {"a": "\ud800"}

    def strict(data: bytes) -> object:
        raise ValueError("refused by the fallback")

    with pytest.raises(ValueError, match="refused by the fallback"):
        _json.loads(b"[1, NaN]", strict)


def test_dumps_handles_what_orjson_refuses() -> None:
    """Huge integers, lone surrogates and odd values still encode (through the stdlib or `default`)."""
    assert json.loads(_json.dumps({"n": 10**30})) == {"n": 10**30}
    with pytest.raises(UnicodeEncodeError):  # drivers turn this into a bad request (it cannot be sent)
        _json.dumps({"s": "\ud800"})
    assert _json.dumps({"a": "ü", "b": [1, 2.5]}) == '{"a":"ü","b":[1,2.5]}'.encode()
    assert json.loads(_json.dumps({"x": {1, 2}.__class__}, default=str)) == {"x": "<class 'set'>"}


def test_deeply_nested_input_is_an_error_not_a_crash() -> None:
    """A 100,000-deep body is refused by every parser turnout runs on untrusted bytes (in a subprocess: a crash
    there fails this test instead of killing the test run)."""
    code = """
import sys
from turnout import _json
from turnout.drivers._http import loads
from turnout.errors import ProtocolError
from turnout.server.body import decode_body
deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
for parse in (_json.loads, decode_body):
    try:
        parse(deep)
    except (ValueError, RecursionError):
        pass
    else:
        sys.exit("parsed")
try:
    loads(deep, provider="p", model="m")
except ProtocolError:
    print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == "ok"


def test_an_answer_with_a_lone_surrogate_still_encodes() -> None:
    """The sidecar's answer encoder never fails: a lone surrogate from an upstream is written as an escape."""
    from turnout.server.body import encode_body

    body = encode_body({"content": "a\ud800b", "n": 10**30, "odd": {1}})
    assert body.isascii() or b"\\ud800" in body
    assert json.loads(body) == {"content": "a\ud800b", "n": 10**30, "odd": "{1}"}
