"""The status page in a real browser: headless Chromium from the system's package manager, driven by Playwright.

Each test loads the page from a running sidecar, opens a deployment's breaker with mock faults, and waits for the
page to show it on its own refresh (no reload), with no console error (a CSP violation is one). Screenshots are
saved in `$TURNOUT_TEST_ARTIFACTS` when set (else in the session's temp dir: a test run leaves nothing in the repo);
with `TURNOUT_UPDATE_SCREENSHOTS=1` the first test also rewrites the README's `docs/images/status-page.png`.
Chromium is installed through apt when missing (tests/conftest.py); under CI=true a missing browser fails the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

REPO = Path(__file__).resolve().parents[3]
README_IMAGE = REPO / "docs" / "images" / "status-page.png"
# As root, in a container without network: no sandbox, no GPU, and nothing that phones home (the closed network
# would refuse it and the console would show the errors).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # the page refreshes every 2 s; generous for a loaded machine
KEY = "admin-key-SECRET-0042"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $TURNOUT_TEST_ARTIFACTS (kept, e.g. for CI to upload), else a temp dir."""
    chosen = os.environ.get("TURNOUT_TEST_ARTIFACTS")
    return Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")


class Tab:
    """One page with everything it logged: console errors and uncaught exceptions must stay empty."""

    def __init__(self, page: Page, artifacts: Path) -> None:
        self.page = page
        self.artifacts = artifacts
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    async def shot(self, name: str) -> Path:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
async def browser(binaries: Callable[[str, str], str], tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A fresh Chromium profile (its own user-data-dir) for one test."""
    chromium = binaries("chromium", "chromium")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()


async def tab(browser: BrowserContext, url: str, artifacts: Path) -> Tab:
    page = browser.pages[0] if browser.pages else await browser.new_page()
    opened = Tab(page, artifacts)
    await page.goto(url)
    return opened


async def post(http: Any, url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    async with http.post(url + "/v1/chat/completions", json=body, headers=headers or {}) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["x-turnout-served-by"]


def card(route: str, key: str, state: str) -> str:
    return f'section[data-route="{route}"] .card[data-key="{key}"][data-state="{state}"]'


async def breaker_opens_on_screen(t: Tab, http: Any, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    """The drill card shows usable, the faults open its breaker, and the same page (no reload) shows it open."""
    page = t.page
    await page.wait_for_selector(card("drill", "drill/drill", "usable"), timeout=WAIT_MS)
    await page.evaluate("window.__sameDocument = true")
    assert await post(http, url, body, headers) == "echo/echo"  # failed over; the 401 opened the breaker
    shown = await page.wait_for_selector(card("drill", "drill/drill", "open"), timeout=WAIT_MS)
    text = await shown.inner_text()
    assert "breaker open" in text and "next probe in" in text
    assert await page.evaluate("window.__sameDocument") is True
    await page.wait_for_function(
        "document.querySelector('#recent').textContent.includes('drill/drill → echo/echo')", timeout=WAIT_MS
    )


async def test_the_repo_routes_page_shows_a_breaker_opening(
    browser, server_kit, http, monkeypatch, tmp_path, artifacts
):
    """On the repo's routes.yaml (no keys set): disabled providers say why, traffic shows in the figures, and a
    breaker opened by a scripted 401 shows as open with its countdown, on the page's own refresh."""
    # A copy, served from a temp dir where its spend ledger is written; the page names the file as
    # `turnout serve routes.yaml` would.
    (tmp_path / "routes.yaml").write_bytes((REPO / "routes.yaml").read_bytes())
    monkeypatch.chdir(tmp_path)
    async with server_kit.serving(Path("routes.yaml"), watch=False) as s:
        hello = [{"role": "user", "content": "Hello, turnout!"}]
        for route in ("echo", "echo", "smart", "tools", "echo"):
            await post(http, s.url, {"model": route, "messages": hello})
        t = await tab(browser, s.url + "/", artifacts)  # the root redirects to the page
        assert t.page.url.endswith("/status")
        fault = {"model": "drill", "messages": hello, "turnout_mock": {"faults": [{"kind": "status", "status": 401}]}}
        await breaker_opens_on_screen(t, http, s.url, fault, {})
        disabled = await t.page.wait_for_selector(card("chat", "openai/gpt-4o-mini", "disabled"), timeout=WAIT_MS)
        assert "OPENAI_API_KEY" in await disabled.inner_text()
        echo = await t.page.wait_for_selector(card("echo", "echo/echo", "usable"))
        assert "req" in await echo.inner_text()
        await t.page.wait_for_timeout(1200)  # let a countdown tick once before the picture
        path = await t.shot("status-page")
    assert t.errors == []
    if os.environ.get("TURNOUT_UPDATE_SCREENSHOTS") == "1":
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_IMAGE)


async def test_a_script_in_a_route_description_is_never_run(browser, serve_status, http, status_kit, artifacts):
    """A description holding <script> and an onerror image is shown as text; neither runs, nothing is injected."""
    async with serve_status() as s:
        t = await tab(browser, s.url + "/status", artifacts)
        await breaker_opens_on_screen(t, http, s.url, status_kit.fault(401), {})
        description = await t.page.wait_for_selector('section[data-route="shady"] .desc', timeout=WAIT_MS)
        assert await description.text_content() == status_kit.hostile
        assert await t.page.evaluate("typeof window.__pwned") == "undefined"
        assert await t.page.evaluate("document.querySelectorAll('main script, main img').length") == 0
        await t.shot("status-page-hostile-description")
    assert t.errors == []


async def test_logging_in_with_a_key_then_out(browser, serve_status, http, status_kit, artifacts):
    """With admin keys the page asks for one; after logging in it shows the routes and their breaker opening;
    logging out brings the form back."""
    async with serve_status(f'  admin_keys: ["{KEY}"]\n') as s:
        t = await tab(browser, s.url + "/status", artifacts)
        page = t.page
        await page.fill("#key", "not-the-key")
        await page.click("button[type=submit]")
        await page.wait_for_selector("text=not an admin key", timeout=WAIT_MS)
        await page.fill("#key", KEY)
        await page.click("button[type=submit]")
        await breaker_opens_on_screen(t, http, s.url, status_kit.fault(401), {"Authorization": f"Bearer {KEY}"})
        cookies = await browser.cookies()
        [cookie] = [c for c in cookies if c["name"] == "turnout_status_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and KEY not in cookie["value"]
        assert await page.evaluate("document.cookie") == ""  # invisible to scripts
        await t.shot("status-page-logged-in")
        await page.click("text=Log out")
        await page.wait_for_selector("#key", timeout=WAIT_MS)
    # the two 401 answers of the log-in form are the only errors a browser may log here
    assert [e for e in t.errors if "401" not in e] == []
