"""The polite HTTP client against the fake site: budgets, cooldowns, retries, asserted from its request log."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aniworld_daemon.config import ProviderConfig, default_provider_config
from aniworld_daemon.errors import Blocked, NotFound, ProviderError, Unreachable
from aniworld_daemon.provider.http import HttpClient
from tests.fakesite.server import FakeSite
from tests.helpers import free_port

FEED = "/neue-episoden"
SLACK = 0.015  # scheduling jitter of the event loop and the server, in seconds


@pytest.fixture
def make_client(fakesite: FakeSite) -> Callable[..., HttpClient]:
    """Build HTTP clients (use them with `async with`) for the fake site, provider settings overridden per test."""

    def make(**overrides: Any) -> HttpClient:
        overrides.setdefault("requests_per_second", 50.0)  # fast unless a test is about spacing
        config: ProviderConfig = dataclasses.replace(default_provider_config(fakesite.base_url), **overrides)
        return HttpClient(config, retry_base=0.05)

    return make


async def test_never_more_than_max_connections_in_flight(
    fakesite: FakeSite, make_client: Callable[..., HttpClient]
) -> None:
    """Twelve parallel requests with max_connections 2 reach the site at most two at a time (and do overlap)."""
    fakesite.knobs.latency = 0.1
    async with make_client(max_connections=2, requests_per_second=100.0) as http:
        await asyncio.gather(*(http.get(fakesite.url(FEED)) for _ in range(12)))
    assert fakesite.log.count("site") == 12
    assert fakesite.log.max_concurrency("site") == 2


async def test_request_starts_are_spaced_by_the_rate(
    fakesite: FakeSite, make_client: Callable[..., HttpClient]
) -> None:
    """With 5 requests per second, the site sees consecutive requests at least 200 ms apart."""
    async with make_client(max_connections=4, requests_per_second=5.0) as http:
        await asyncio.gather(*(http.get(fakesite.url(FEED)) for _ in range(6)))
    starts = [record.started for record in fakesite.log.select("site")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(starts) == 6
    assert min(gaps) >= 0.2 - SLACK, gaps


@pytest.mark.parametrize("mode", ["403", "captcha"])
async def test_a_refusal_starts_a_cooldown_with_no_requests(
    fakesite: FakeSite, make_client: Callable[..., HttpClient], mode: str
) -> None:
    """After a 403 or a captcha page, nothing reaches the host until the cooldown ends; then requests flow again."""
    fakesite.knobs.block("site", after=2, mode=mode)
    async with make_client(cooldown=timedelta(seconds=1)) as http:
        await http.get(fakesite.url(FEED))
        await http.get(fakesite.url(FEED))
        with pytest.raises(Blocked) as refused:
            await http.get(fakesite.url(FEED))
        assert refused.value.details["host"] == fakesite.base_url.removeprefix("http://")
        blocked_at = time.monotonic()
        for _ in range(5):  # callers keep asking during the cooldown: answered locally, never sent
            with pytest.raises(Blocked):
                await http.get(fakesite.url(FEED))
        assert fakesite.log.count("site") == 3
        assert [c.strikes for c in http.cooldowns()] == [1]

        fakesite.knobs.unblock("site")
        await asyncio.sleep(max(0.0, blocked_at + 1.0 - time.monotonic()))
        response = await http.get(fakesite.url(FEED))
    assert response.status == 200
    records = fakesite.log.select("site")
    assert [record.status for record in records] == [200, 200, 403 if mode == "403" else 200, 200]
    assert records[3].started - records[2].finished >= 1.0 - SLACK


async def test_a_repeated_refusal_doubles_the_cooldown(
    fakesite: FakeSite, make_client: Callable[..., HttpClient]
) -> None:
    """Refused again right after the first cooldown, the host waits twice as long."""
    fakesite.knobs.block("site", after=0)
    async with make_client(cooldown=timedelta(seconds=0.5)) as http:
        with pytest.raises(Blocked):
            await http.get(fakesite.url(FEED))
        await asyncio.sleep(0.5 + SLACK)
        with pytest.raises(Blocked):
            await http.get(fakesite.url(FEED))  # sent: the first cooldown is over, refused again
        [cooldown] = http.cooldowns()
        assert cooldown.strikes == 2
        fakesite.knobs.unblock("site")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                await http.get(fakesite.url(FEED))
                break
            except Blocked:
                await asyncio.sleep(0.05)
        assert http.cooldowns() == []
    first, second, third = fakesite.log.select("site")
    assert (first.status, second.status, third.status) == (403, 403, 200)
    assert second.started - first.finished >= 0.5 - SLACK
    assert third.started - second.finished >= 1.0 - SLACK


async def test_a_5xx_burst_is_retried_until_it_succeeds(
    fakesite: FakeSite, make_client: Callable[..., HttpClient]
) -> None:
    """Two 503s in a row are retried with backoff; the third attempt succeeds and the caller sees only success."""
    fakesite.knobs.fail_5xx["site"] = 2
    async with make_client() as http:
        response = await http.get(fakesite.url(FEED))
    assert response.status == 200
    assert [record.status for record in fakesite.log.select("site")] == [503, 503, 200]


async def test_retry_after_is_honoured(fakesite: FakeSite, make_client: Callable[..., HttpClient]) -> None:
    """A 503 with Retry-After: 1 makes the client wait a second before the host sees the next request."""
    fakesite.knobs.fail_5xx["site"] = 1
    fakesite.knobs.retry_after = 1
    async with make_client() as http:
        await http.get(fakesite.url(FEED))
    failed, succeeded = fakesite.log.select("site")
    assert succeeded.started - failed.finished >= 1.0 - SLACK


async def test_a_lasting_5xx_gives_up_with_a_provider_error(
    fakesite: FakeSite, make_client: Callable[..., HttpClient]
) -> None:
    """Four 503s in a row end in a ProviderError naming the URL and the last problem."""
    fakesite.knobs.fail_5xx["site"] = 10
    async with make_client() as http:
        with pytest.raises(ProviderError) as failed:
            await http.get(fakesite.url(FEED))
    assert type(failed.value) is ProviderError
    assert failed.value.details == {"url": fakesite.url(FEED), "problem": "HTTP 503"}
    assert fakesite.log.count("site") == 4


async def test_404_is_not_found_and_not_retried(fakesite: FakeSite, make_client: Callable[..., HttpClient]) -> None:
    """A missing page raises NotFound after exactly one request."""
    async with make_client() as http:
        with pytest.raises(NotFound):
            await http.get(fakesite.url("/anime/stream/no-such-series"))
    assert fakesite.log.count("site") == 1


async def test_connection_refused_is_unreachable() -> None:
    """Nothing listening: Unreachable (a ProviderError) after the retries, not an aiohttp exception."""
    url = f"http://127.0.0.1:{free_port()}/"
    config = dataclasses.replace(default_provider_config(url), requests_per_second=100.0)
    async with HttpClient(config, retry_base=0.01) as http:
        with pytest.raises(Unreachable) as failed:
            await http.get(url)
    assert "failed after 4 attempts" in failed.value.message
    assert failed.value.code == "provider_unreachable"


async def test_final_url_stops_at_the_other_origin(fakesite: FakeSite, make_client: Callable[..., HttpClient]) -> None:
    """A redirect link resolves to the hoster's embed URL without a request to the hoster."""
    link_id, hoster = fakesite.any_redirect()
    async with make_client() as http:
        target = await http.final_url(fakesite.url(f"/redirect/{link_id}"))
    assert target.startswith(fakesite.hoster_origin(hoster) + "/")
    assert fakesite.log.count("site") == 1
    assert fakesite.log.count(hoster) == 0


async def test_browser_headers_are_sent(fakesite: FakeSite, make_client: Callable[..., HttpClient]) -> None:
    """Every request carries a browser User-Agent and Accept-Language, never Python's."""
    async with make_client() as http:
        await http.get(fakesite.url(FEED))
    [record] = fakesite.log.select("site")
    assert record.headers["User-Agent"].startswith("Mozilla/5.0")
    assert "Python" not in record.headers["User-Agent"]
    assert record.headers["Accept-Language"].startswith("de-DE")


@pytest.mark.parametrize("url", ["http://[/e/x", "ftp://127.0.0.1/", "/relative/path", "http:///nohost"])
async def test_a_malformed_url_is_a_provider_error(url: str) -> None:
    """A URL that cannot be requested is a ProviderError before anything is sent, never a ValueError."""
    async with HttpClient(default_provider_config("http://127.0.0.1:1")) as http:
        with pytest.raises(ProviderError) as failed:
            await http.get(url)
    assert "not an http(s) URL" in failed.value.message


async def test_the_cooldown_never_exceeds_six_hours(fakesite: FakeSite, make_client: Callable[..., HttpClient]) -> None:
    """Doubling stops at 6 h: a second refusal with a 4 h base cooldown waits 6 h, not 8 h."""
    fakesite.knobs.block("site", after=0)
    async with make_client(cooldown=timedelta(seconds=0.3)) as http:
        with pytest.raises(Blocked):
            await http.get(fakesite.url(FEED))
        await asyncio.sleep(0.3 + SLACK)
        http.reconfigure(dataclasses.replace(default_provider_config(fakesite.base_url), cooldown=timedelta(hours=4)))
        with pytest.raises(Blocked) as refused:
            await http.get(fakesite.url(FEED))
        [cooldown] = http.cooldowns()
    remaining = cooldown.until - datetime.now(UTC)
    assert cooldown.strikes == 2
    assert timedelta(hours=6) - timedelta(seconds=5) < remaining <= timedelta(hours=6)
    assert refused.value.details["until"] == cooldown.until.isoformat(timespec="seconds")
    assert fakesite.log.count("site") == 2


async def test_refusals_of_one_burst_count_as_one_strike(
    fakesite: FakeSite, make_client: Callable[..., HttpClient]
) -> None:
    """Two requests in flight that are both refused start one cooldown, not a doubled one."""
    fakesite.knobs.block("site", after=0)
    fakesite.knobs.latency = 0.1
    async with make_client(max_connections=2, cooldown=timedelta(minutes=15)) as http:
        results = await asyncio.gather(*(http.get(fakesite.url(FEED)) for _ in range(2)), return_exceptions=True)
        [cooldown] = http.cooldowns()
    assert all(isinstance(result, Blocked) for result in results)
    assert fakesite.log.max_concurrency("site") == 2
    assert cooldown.strikes == 1
    assert cooldown.until - datetime.now(UTC) <= timedelta(minutes=15)
