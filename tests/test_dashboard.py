"""The dashboard (`GET /`) in a real browser: Debian's Chromium driven by Playwright, the real daemon, the fake site.

Each test starts the in-process Application on the fake site (password login on) and a headless Chromium kept off the
network. The page collects console errors and uncaught exceptions; a test fails when there are any. Screenshots for
the README: `ANIWORLD_SCREENSHOTS=1 .venv/bin/pytest tests/test_dashboard.py -k screenshot`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from aniworld_daemon.app import Application
from tests.fakesite.server import FakeSite
from tests.helpers import StartApp, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEY = "dashboard-test-key-0123456789"
PASSWORD = "dashboard password 7"
SERIES = "die-kleinen-baeren"  # five episodes in two seasons, German dub on vidoza
EPISODES = 5
TITLE = "Die kleinen Bären & das große Abenteuer"
INGRESS = "/api/hassio_ingress/abc123token"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
WAIT = 20_000  # ms: the longest a page state may take to appear
# Controls that must have an accessible name in Chromium's accessibility tree.
CONTROL_ROLES = {"button", "textbox", "searchbox", "checkbox", "link", "combobox", "progressbar"}

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)"
    ),
    pytest.mark.timeout(90),
]


def daemon_yaml(site: FakeSite) -> str:
    """Lines after minimal_config's `api:`: key and password, the fake site, nothing followed, downloads on request."""
    return (
        f"  key: {KEY}\n  password: {json.dumps(PASSWORD)}\n"
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "  cooldown: 1s\n  languages: [de-dub]\n  hosters: [vidoza]\n"
        "schedule:\n  run_on_start: false\n  rescan: '0 3 * * *'\n"
        "downloads:\n  auto_start: false\n  min_free_space: 0\n  retry_backoff: 1s\n  retries: 1\n"
    )


@dataclass
class Served:
    """The daemon under test, its config folder, and a way to start it again on the same port and data."""

    app: Application
    base: str
    start: Callable[[], Awaitable[Application]]

    @property
    def library(self) -> Path:
        """The library folder."""
        return self.app.config.library.path

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One API call with the key; its JSON answer (None for none). Fails on an error status."""
        async with (
            aiohttp.ClientSession(headers={"X-Api-Key": KEY}) as session,
            session.request(method, f"{self.base}/{path}", json=body) as response,
        ):
            assert response.status < 400, f"{method} {path}: {response.status} {await response.text()}"
            return await response.json() if response.content_type == "application/json" else None


@pytest.fixture
async def served(fakesite: FakeSite, start_app: StartApp) -> Served:
    """The real daemon on the fake site, with the API key and a password."""
    extra = daemon_yaml(fakesite)
    application = await start_app(extra)
    host, port = application.web.addresses[0]
    return Served(application, f"http://{host}:{port}", lambda: start_app(extra))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless and off the network (Playwright's own browsers are never downloaded)."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()
    # Playwright leaves its driver's subprocess transport to the garbage collector. Collected after this test's loop
    # has closed (in whichever test runs next), its __del__ raises "Event loop is closed": collect it here, while the
    # loop still runs, and let the callbacks its close() schedules run too.
    await asyncio.sleep(0.2)
    gc.collect()
    await asyncio.sleep(0)


@dataclass
class Watched:
    """A page and the console errors and uncaught exceptions it produced."""

    page: Page
    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)  # errors expected (a daemon that is down)

    def problems(self) -> list[str]:
        """The errors no test expected."""
        return [error for error in self.errors if not any(pattern.search(error) for pattern in self.allowed)]


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[Callable[..., Awaitable[Watched]]]:
    """Open pages in fresh contexts; at the end no page may have logged a console error or thrown."""
    watched: list[Watched] = []

    async def open_(url: str, width: int = 1280, height: int = 800) -> Watched:
        context = await browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        entry = Watched(page)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                entry.errors.append(f"console: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: entry.errors.append(f"pageerror: {error}"))
        watched.append(entry)
        await page.goto(url)
        return entry

    yield open_
    problems = [problem for entry in watched for problem in entry.problems()]
    for entry in watched:
        if not entry.page.is_closed():
            await entry.page.context.close()
    assert not problems, "errors in the browser:\n" + "\n".join(problems)


async def log_in(page: Page) -> None:
    """Log in with the password and wait for the queue (and the live stream)."""
    await expect(page.get_by_label("Password")).to_be_visible(timeout=WAIT)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#queue-view")).to_be_visible(timeout=WAIT)
    await expect(page.locator("#connection")).to_have_text("live", timeout=WAIT)


async def follow_by_search(page: Page) -> None:
    """Search the site on the Series tab and follow the series from the results."""
    await page.get_by_role("button", name="Series", exact=True).click()
    await page.get_by_label("Search the site or paste a series URL").fill("kleinen")
    await page.get_by_role("button", name="Search", exact=True).click()
    await page.get_by_role("button", name=f"Follow {TITLE}").click()
    await expect(page.locator("#detail-title")).to_have_text(TITLE, timeout=WAIT)


async def assert_controls_named(page: Page) -> None:
    """Every control in Chromium's accessibility tree (the page as it is now) has a name."""
    cdp = await page.context.new_cdp_session(page)
    tree = await cdp.send("Accessibility.getFullAXTree")
    await cdp.detach()
    unnamed, seen = [], 0
    for node in tree["nodes"]:
        role = node.get("role", {}).get("value")
        if node.get("ignored") or role not in CONTROL_ROLES:
            continue
        seen += 1
        if not str(node.get("name", {}).get("value", "")).strip():
            unnamed.append(f"{role} (backend node {node.get('backendDOMNodeId')})")
    assert seen >= 5, f"only {seen} controls in the accessibility tree"
    assert not unnamed, f"controls without an accessible name: {unnamed}"


async def keyboard_reaches(page: Page, names: set[str], presses: int = 40) -> None:
    """Tab through the page from its top: every control in `names` (its text) gets the focus on the way."""
    await page.locator("body").focus()
    reached: set[str] = set()
    for _ in range(presses):
        await page.keyboard.press("Tab")
        reached.add(await page.evaluate("document.activeElement ? document.activeElement.textContent.trim() : ''"))
    assert names <= reached, f"not reached by Tab: {names - reached}"


async def progress_values(page: Page, count: int, within: float = 20.0) -> list[float]:
    """The first active download's progress (aria-valuenow) as it changes, until `count` distinct values."""
    values: list[float] = []
    deadline = asyncio.get_running_loop().time() + within
    bar = page.locator("#active-list [role=progressbar]").first
    while len(values) < count and asyncio.get_running_loop().time() < deadline:
        if await bar.count():
            now = await bar.get_attribute("aria-valuenow")
            if now is not None and (not values or float(now) != values[-1]):
                values.append(float(now))
        await asyncio.sleep(0.05)
    return values


async def test_login_follow_rescan_download(served: Served, fakesite: FakeSite, open_page: Any) -> None:
    """Log in, search and follow, rescan (progress and report), see the episodes queued, download with a moving bar."""
    watched: Watched = await open_page(f"{served.base}/")
    page = watched.page
    await expect(page.get_by_role("button", name="Use this key")).to_be_hidden()
    await log_in(page)
    await assert_controls_named(page)
    await keyboard_reaches(page, {"Log out", "Queue", "Series", "Rescans", "System", "Start", "Pause", "Clear failed"})
    await follow_by_search(page)

    # Every text the live scan status shows, recorded in the page (a single-series rescan is quick).
    await page.evaluate(
        """() => { window.scanTexts = []; const box = document.getElementById('scan-progress');
        new MutationObserver(() => window.scanTexts.push(box.textContent))
          .observe(box, {childList: true, characterData: true, subtree: true}); }"""
    )
    await page.get_by_role("button", name="Rescan this series").click()
    rows = page.locator("#detail-seasons tbody tr")
    await expect(rows).to_have_count(EPISODES, timeout=WAIT)
    await expect(page.locator("#detail-seasons .state-queued")).to_have_count(EPISODES, timeout=WAIT)
    await assert_controls_named(page)
    texts: list[str] = await page.evaluate("window.scanTexts")
    assert any(re.search(r"series \d+/1", text) for text in texts), texts

    await page.get_by_role("button", name="Rescans").click()
    report = page.locator("#scan-list li").first
    await expect(report).to_contain_text("complete", timeout=WAIT)
    await expect(report).to_contain_text("1 series")

    await page.get_by_role("button", name="Queue").click()
    await expect(page.locator("#pending-list li.pending-item")).to_have_count(EPISODES, timeout=WAIT)
    fakesite.knobs.bandwidth = 300_000
    await page.get_by_role("button", name="Start", exact=True).click()
    values = await progress_values(page, 3)
    assert len(values) >= 3, f"the progress bar did not move: {values}"
    assert values == sorted(values), f"the progress bar went back: {values}"
    await expect(page.locator("#active-list .detail").first).to_contain_text("MB/s")
    fakesite.knobs.bandwidth = None
    await expect(page.locator("#completed-list li.completed-item")).to_have_count(EPISODES, timeout=WAIT)
    await expect(page.locator("#queue-stats")).to_contain_text(f"Completed{EPISODES}")
    await assert_controls_named(page)


async def queue_all(served: Served) -> list[str]:
    """Follow the series and rescan it through the API: its episodes pending; their ids in queue order."""
    await served.call("POST", "api/anime/add", {"link": SERIES})
    await served.call("POST", "api/anime/rescan", {"key": SERIES})
    for _ in range(200):
        page = await served.call("GET", "api/queue?status=pending")
        if page["total"] == EPISODES:
            return [item["id"] for item in page["items"]]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the rescan did not queue {EPISODES} episodes")


def make_unwritable(library: Path) -> Callable[[], None]:
    """Make the library unwritable even for root (mode 000, and immutable when root ignores modes); the undo."""
    library.chmod(0)
    immutable = os.access(library, os.W_OK) and shutil.which("chattr") is not None
    if immutable:
        subprocess.run(["chattr", "+i", str(library)], check=True)

    def restore() -> None:
        if immutable:
            subprocess.run(["chattr", "-i", str(library)], check=True)
        library.chmod(0o755)

    return restore


async def test_reorder_pause_retry_and_health(served: Served, fakesite: FakeSite, open_page: Any) -> None:
    """Reorder two pending items, pause and resume, retry a failed item, and the banner of an unwritable library."""
    ids = await queue_all(served)
    page = (await open_page(f"{served.base}/")).page
    await log_in(page)
    pending = page.locator("#pending-list li.pending-item")
    await expect(pending).to_have_count(EPISODES, timeout=WAIT)
    labels = [text.strip() for text in await pending.locator(".name").all_text_contents()]
    await page.get_by_role("button", name=f"Move {labels[2]} up").click()
    await expect(pending.locator(".name")).to_have_text([labels[0], labels[2], labels[1], *labels[3:]], timeout=WAIT)
    after = await served.call("GET", "api/queue?status=pending")
    assert [item["id"] for item in after["items"]] == [ids[0], ids[2], ids[1], *ids[3:]]

    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#queue-state")).to_have_text("Queue paused (user)", timeout=WAIT)
    assert (await served.call("GET", "api/queue/status"))["status"]["is_paused"] is True
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("#queue-state")).to_have_text("Queue stopped", timeout=WAIT)

    # Every hoster dead: all fail (one attempt each), then one is retried with the hoster back.
    fakesite.knobs.dead_hosters = {"vidoza"}
    await page.get_by_role("button", name="Start", exact=True).click()
    failed = page.locator("#failed-list li.failed-item")
    await expect(failed).to_have_count(EPISODES, timeout=WAIT)
    await expect(failed.first.locator(".detail")).not_to_be_empty()
    fakesite.knobs.dead_hosters = set()
    await page.get_by_role("button", name=f"Retry {labels[0]}").click()
    await expect(page.locator("#completed-list li.completed-item")).to_have_count(1, timeout=WAIT)
    await expect(failed).to_have_count(EPISODES - 1)
    await page.get_by_role("button", name="Clear failed").click()
    await expect(page.locator("#failed-list li.failed-item")).to_have_count(0, timeout=WAIT)

    restore = make_unwritable(served.library)
    try:
        banner = page.locator("#health-banner")
        await expect(banner).to_be_visible(timeout=WAIT)
        await expect(banner).to_contain_text("not writable")
    finally:
        restore()
    await expect(page.locator("#health-banner")).to_be_hidden(timeout=WAIT)
    await assert_controls_named(page)


# --------------------------------------------------------------------------------------------- ingress


async def ingress_proxy(target: str, port: int) -> web.AppRunner:
    """A reverse proxy like Home Assistant's ingress: `INGRESS/...` to the daemon's `/...`, HTTP and WebSocket."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        url = f"{target}{path}" + (f"?{request.query_string}" if request.query_string else "")
        skip = {"host", "connection", "upgrade", "content-length", "transfer-encoding"}
        headers = {name: value for name, value in request.headers.items() if name.lower() not in skip}
        headers["X-Ingress-Path"] = INGRESS
        if request.headers.get("Upgrade", "").lower() == "websocket":
            headers.pop("Origin", None)  # the proxy's own connection; the browser's origin is the proxy's page
            headers = {k: v for k, v in headers.items() if not k.lower().startswith("sec-websocket")}
            client = web.WebSocketResponse()
            await client.prepare(request)
            async with session.ws_connect(url.replace("http", "ws", 1), headers=headers) as upstream:

                async def pump(source: Any, sink: Any) -> None:
                    async for message in source:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            await sink.send_str(message.data)

                tasks = {asyncio.create_task(pump(client, upstream)), asyncio.create_task(pump(upstream, client))}
                _, rest = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in rest:
                    task.cancel()
                await asyncio.gather(*rest, return_exceptions=True)
            await client.close()
            return client
        body = await request.read()
        async with session.request(request.method, url, headers=headers, data=body or None) as answer:
            payload = await answer.read()
            passed = {
                name: value
                for name, value in answer.headers.items()
                if name.lower() not in {"content-length", "transfer-encoding", "connection"}
            }
            return web.Response(status=answer.status, body=payload, headers=passed)

    async def close_session(_: web.Application) -> None:
        await session.close()

    app = web.Application()
    app.router.add_route("*", INGRESS + "/{tail:.*}", forward)
    app.on_cleanup.append(close_session)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_under_an_ingress_prefix(served: Served, open_page: Any) -> None:
    """The short flow through a prefix-stripping proxy: log in, follow, rescan, the episodes queued live."""
    port = free_port()
    runner = await ingress_proxy(served.base, port)
    try:
        page = (await open_page(f"http://127.0.0.1:{port}{INGRESS}/")).page
        await log_in(page)
        await follow_by_search(page)
        await page.get_by_role("button", name="Rescan this series").click()
        await expect(page.locator("#detail-seasons .state-queued")).to_have_count(EPISODES, timeout=WAIT)
        await page.get_by_role("button", name="Queue").click()
        # Nothing reloads the queue after the rescan but the WebSocket's events: through the proxy too.
        await expect(page.locator("#pending-list li.pending-item")).to_have_count(EPISODES, timeout=WAIT)
        assert page.url.startswith(f"http://127.0.0.1:{port}{INGRESS}/")
        await page.context.close()  # before the proxy stops: no requests to a closed port
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------------------------- restart


async def test_reconnects_after_a_restart(served: Served, open_page: Any) -> None:
    """Stop the daemon: the page says it reconnects; a new daemon on the same port and data: live again, no reload."""
    watched: Watched = await open_page(f"{served.base}/")
    watched.allowed = [re.compile(r"ERR_CONNECTION_REFUSED|WebSocket connection to .* failed|ERR_EMPTY_RESPONSE")]
    page = watched.page
    await log_in(page)
    await page.evaluate("window.sameDocument = true")
    await served.app.stop()
    await expect(page.locator("#reconnecting")).to_be_visible(timeout=WAIT)
    served.app = await served.start()
    await expect(page.locator("#reconnecting")).to_be_hidden(timeout=WAIT)
    await expect(page.locator("#connection")).to_have_text("live")
    # Live after the restart: a series followed through the API shows up by the stream's event, in the same document.
    await page.get_by_role("button", name="Series", exact=True).click()
    await served.call("POST", "api/anime/add", {"link": SERIES})
    await expect(page.locator(f'#series-list li[data-key="{SERIES}"]')).to_be_visible(timeout=WAIT)
    assert await page.evaluate("window.sameDocument") is True


# --------------------------------------------------------------------------------------------- screenshots


async def test_screenshots(served: Served, fakesite: FakeSite, open_page: Any, tmp_path: Path) -> None:
    """The README's screenshots: desktop (1280x800) and phone (390x844) width, a download running.

    Taken on every run (so the page renders at both widths); written over docs/screenshots/ only with
    ANIWORLD_SCREENSHOTS=1, the README's regeneration command.
    """
    folder = SCREENSHOTS if os.environ.get("ANIWORLD_SCREENSHOTS") == "1" else tmp_path
    await queue_all(served)
    fakesite.knobs.bandwidth = 100_000
    await served.call("POST", "api/queue/start")
    folder.mkdir(parents=True, exist_ok=True)
    for name, width, height in (("desktop", 1280, 800), ("phone", 390, 844)):
        page = (await open_page(f"{served.base}/", width, height)).page
        await log_in(page)
        await page.wait_for_function(
            "() => Number(document.querySelector('#active-list [role=progressbar]')?.getAttribute('aria-valuenow'))"
            " > 25",
            timeout=WAIT,
        )
        path = folder / f"dashboard-{name}.png"
        await page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000
    fakesite.knobs.bandwidth = None
