"""Finding 6: a client's image URL cannot reach internal addresses (checked on the resolved address at connect
time, after normalising every spelling of a host), failures read alike (no port scanner), and fetches share no
cookies."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import aiohttp
import pytest

from turnout.config import ProviderSpec
from turnout.drivers._egress import address_forbidden, guarded_socket, host_address
from turnout.drivers._images import refusal
from turnout.drivers.base import CallContext
from turnout.drivers.gemini import GeminiDriver
from turnout.errors import BadRequest
from turnout.router import Router
from turnout.testing import FakeUpstream, GeminiFake, reply_raw
from turnout.types import ChatRequest

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


class Listener:
    """A TCP listener on a loopback address that only counts the connections it accepts."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            writer.close()

        self.server = await asyncio.start_server(handle, host, 0)
        return self.server.sockets[0].getsockname()[1]


@pytest.fixture
async def listener():
    probe = Listener()
    port = await probe.start("127.0.0.1")
    probe.port = port  # type: ignore[attr-defined]
    yield probe
    assert probe.server is not None
    probe.server.close()


def ask(url: str) -> ChatRequest:
    parts = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}]
    return ChatRequest.create(model="route", messages=[{"role": "user", "content": parts}])


@pytest.fixture
async def gemini():
    async with GeminiFake() as fake, aiohttp.ClientSession() as session:
        fake.default("chat", fake.text("seen"))

        def make(**options) -> GeminiDriver:
            return GeminiDriver(ProviderSpec(name="gem", driver="gemini", base_url=fake.url, options=options))

        yield make, CallContext(session=session, model="gemini-test", attempt_timeout=10), fake


SPELLINGS = [
    "https://0x7f000001:{p}/a.png",
    "https://0x7f.0.0.1:{p}/a.png",
    "https://0177.0.0.1:{p}/a.png",
    "https://2130706433:{p}/a.png",
    "https://127.1:{p}/a.png",
    "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{p}/a.png",  # full-width digits
    "https://127\u30020\u30020\u30021:{p}/a.png",  # ideographic full stops
    "https://127.0.0.1.:{p}/a.png",
    "https://LOCALHOST.:{p}/a.png",
    "https://sub.localhost:{p}/a.png",
    "https://[::ffff:127.0.0.1]:{p}/a.png",
    "https://[::ffff:7f00:1]:{p}/a.png",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_no_spelling_of_loopback_gets_a_connection(gemini, listener, spelling):
    """Hex, octal, decimal, short, full-width, ideographic-dot, trailing-dot and mapped forms never connect."""
    make, ctx, fake = gemini
    url = spelling.format(p=listener.port)
    with pytest.raises(BadRequest) as info:
        await make().send(ask(url), ctx)
    assert info.value.code == "image_fetch_failed"
    assert listener.accepted == 0, f"{url} reached the loopback listener"
    assert fake.requests_to("chat") == []


async def test_a_name_resolving_to_a_private_address_is_refused_at_connect(gemini, listener):
    """A host name (not 'localhost') that resolves to loopback is refused on the resolved address."""
    name = socket.gethostname()
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(name, listener.port, type=socket.SOCK_STREAM)}
    except OSError:
        pytest.skip("the host name does not resolve here")
    if "127.0.0.1" not in resolved or name.endswith("localhost"):
        pytest.skip("the host name does not resolve to 127.0.0.1 here (the test stays on loopback)")
    make, ctx, _ = gemini
    with pytest.raises(BadRequest):
        await make().send(ask(f"https://{name}:{listener.port}/a.png"), ctx)
    assert listener.accepted == 0


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:10.0.0.1",  # IPv4-mapped
        "::ffff:0:a00:1",  # IPv4-translated
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "fe80::1",
        "fc00::1",
        "::1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.251",
        "192.168.1.1",
    ],
)
def test_embedded_and_special_addresses_are_forbidden(address):
    """Addresses that reach private, loopback, link-local or special ranges, directly or embedded, are forbidden."""
    assert address_forbidden(ipaddress.ip_address(address))
    assert refusal(f"https://[{address}]/a.png" if ":" in address else f"https://{address}/a.png", "public")


def test_public_addresses_are_allowed():
    """Globally routable addresses and plain names pass the early check (DNS is checked at connect)."""
    for url in ("https://8.8.8.8/a.png", "https://[2606:4700:4700::1111]/a.png", "https://cdn.example.com/a.png"):
        assert refusal(url, "public") is None, url
    assert host_address("0x08080808") == ipaddress.ip_address("8.8.8.8")


def test_the_connect_time_guard_refuses_private_sockets():
    """aiohttp's socket factory for public fetches refuses a loopback address, even one it resolved itself."""
    with pytest.raises(OSError, match="not a public address"):
        guarded_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 443)))
    with pytest.raises(OSError):
        guarded_socket((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:10.0.0.1", 443, 0, 0)))


async def test_every_failure_reads_the_same(gemini, listener):
    """Closed port, open port speaking no TLS, 404, not an image, too large: one message, so nothing is probed."""
    make, ctx, _ = gemini
    async with FakeUpstream() as host:
        host.default("/missing.png", reply_raw(b"no", status=404, content_type="text/plain"))
        host.default("/page.png", reply_raw(b"<html/>", content_type="text/html"))
        host.default("/big.png", reply_raw(PNG * 100, content_type="image/png"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = sock.getsockname()[1]
        urls = [
            f"http://127.0.0.1:{closed}/a.png",
            f"https://127.0.0.1:{listener.port}/a.png",
            f"{host.url}/missing.png",
            f"{host.url}/page.png",
            f"{host.url}/big.png",
        ]
        messages = set()
        for url in urls:
            with pytest.raises(BadRequest) as info:
                await make(image_urls="any", max_image_bytes=1000).send(ask(url), ctx)
            messages.add(info.value.message.replace(url, "<url>"))
    assert len(messages) == 1, messages


async def test_image_fetches_carry_no_cookies(tmp_path):
    """One client's image host sets a cookie; another client's fetch (and the upstream) never sends it back."""
    async with GeminiFake() as fake, FakeUpstream() as host:
        fake.default("chat", fake.text("seen"))
        host.default("/a.png", reply_raw(PNG, content_type="image/png", headers={"Set-Cookie": "track=client-1"}))
        yaml = f"""\
version: 1
providers:
  gem: {{driver: gemini, base_url: "{fake.url}", api_key: gm-test, options: {{image_urls: any}}}}
models:
  m: {{provider: gem, name: gemini-test}}
routes:
  vision: {{chain: [m]}}
"""
        url = host.url.replace("127.0.0.1", "localhost") + "/a.png"  # a name: cookie jars ignore IP hosts
        async with Router.from_yaml(yaml) as router:
            for _ in range(2):
                await router.chat(ChatRequest.from_openai({**ask(url).body, "model": "vision"}))
        assert len(host.requests) == 2
        assert [r.header("Cookie") for r in host.requests] == [None, None]
        assert all(r.header("Cookie") is None for r in fake.requests)
