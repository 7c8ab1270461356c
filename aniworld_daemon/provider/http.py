"""The polite HTTP client: browser headers, a per-host budget, retries with backoff, and cooldowns on 403/captcha."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self
from urllib.parse import urljoin, urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from aniworld_daemon.config import ProviderConfig
from aniworld_daemon.errors import Blocked, NotFound, ProviderError, Unreachable

LOGGER = logging.getLogger(__name__)

# A current desktop Chrome: plain Python user agents are what the site's DDoS protection refuses first.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
BROWSER_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7",
}
# Markers of the captcha/challenge pages the site and hosters answer with instead of content (reference section 8).
CAPTCHA_MARKERS = ("cf-turnstile", "hcaptcha.com", "g-recaptcha", "altcha-widget")
MAX_COOLDOWN = timedelta(hours=6)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ATTEMPTS = 4  # one request and three retries
RETRY_BASE = 1.0  # seconds; doubles per retry, with full jitter
RETRY_CAP = 30.0
MAX_RETRY_AFTER = 300.0  # a longer Retry-After is an error, not a five-minute stall of the caller
MAX_REDIRECTS = 10
MAX_BODY = 16 * 1024 * 1024  # pages are < 2 MB; anything far bigger is not a page
TIMEOUT = aiohttp.ClientTimeout(total=60, connect=15, sock_read=30)


@dataclass(frozen=True, slots=True)
class Response:
    """A fetched page: final URL, status, headers, the decoded text and the raw body (for images)."""

    url: str
    status: int
    headers: Mapping[str, str]
    text: str
    body: bytes = field(default=b"", repr=False)


class RequestCounter:
    """Counts the requests sent on behalf of one piece of work (a rescan), retries included."""

    def __init__(self) -> None:
        self.count = 0


# The counter of the work the current task belongs to: tasks started inside inherit it, so a rescan counts its own
# requests exactly while downloads use the same client.
_COUNTER: contextvars.ContextVar[RequestCounter | None] = contextvars.ContextVar("request_counter", default=None)


@contextlib.contextmanager
def count_requests() -> Iterator[RequestCounter]:
    """Count the requests sent by the current task and the tasks it starts, until the block ends."""
    counter = RequestCounter()
    token = _COUNTER.set(counter)
    try:
        yield counter
    finally:
        _COUNTER.reset(token)


# Cooldowns are timed on the monotonic clock and reported in wall time: who waits for one adds this to be sure.
COOLDOWN_MARGIN = timedelta(milliseconds=100)


@dataclass(frozen=True, slots=True)
class Cooldown:
    """A host we must not contact until `until` (UTC), after `strikes` refusals in a row."""

    host: str
    until: datetime
    strikes: int


class _HostBudget:
    """One host's share: at most `max_connections` requests in flight, starts spaced by 1/requests_per_second."""

    def __init__(self, max_connections: int, requests_per_second: float) -> None:
        self.slots = asyncio.Semaphore(max_connections)
        self.interval = 1.0 / requests_per_second
        self.next_start = 0.0  # monotonic time of the earliest allowed next start
        self.lock = asyncio.Lock()
        self.blocked_until = 0.0  # monotonic end of the cooldown
        self.blocked_until_wall: datetime | None = None
        self.strikes = 0

    async def wait_turn(self) -> None:
        """Sleep until this request may start; reserves the following start slot for the next caller."""
        async with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)

    def defer(self, seconds: float) -> None:
        """Push every later start of this host back by at least `seconds` (the host asked us to slow down)."""
        self.next_start = max(self.next_start, time.monotonic() + seconds)


class HttpClient:
    """One shared aiohttp session with browser headers, a cookie jar and a polite budget per host."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        attempts: int = ATTEMPTS,
        retry_base: float = RETRY_BASE,
    ) -> None:
        self._config = config
        self._attempts = attempts
        self._retry_base = retry_base
        self._budgets: dict[str, _HostBudget] = {}
        self._session: aiohttp.ClientSession | None = None
        self.user_agent = USER_AGENT
        self.requests_made = 0

    async def start(self) -> None:
        """Open the session (idempotent)."""
        if self._session is None:
            # unsafe=True keeps cookies for IP-address hosts too (the fake site, a LAN mirror).
            self._session = aiohttp.ClientSession(
                headers=BROWSER_HEADERS,
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                timeout=TIMEOUT,
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
            )

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        """Start the client."""
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the client."""
        await self.close()

    def reconfigure(self, config: ProviderConfig) -> None:
        """Apply new limits (a config reload); running cooldowns are kept, requests in flight finish as they are."""
        self._config = config
        old, self._budgets = self._budgets, {}
        for host, budget in old.items():
            fresh = self._budget(host)
            fresh.blocked_until, fresh.blocked_until_wall, fresh.strikes = (
                budget.blocked_until,
                budget.blocked_until_wall,
                budget.strikes,
            )

    def cooldown_end(self, host: str) -> datetime | None:
        """When `host` may be asked again (UTC, with COOLDOWN_MARGIN added), None when it is not cooling down."""
        ends = [cooldown.until for cooldown in self.cooldowns() if cooldown.host == host]
        return max(ends) + COOLDOWN_MARGIN if ends else None

    def cooldowns(self) -> list[Cooldown]:
        """The hosts currently in cooldown, for health checks."""
        now = time.monotonic()
        return [
            Cooldown(host, budget.blocked_until_wall, budget.strikes)
            for host, budget in sorted(self._budgets.items())
            if budget.blocked_until > now and budget.blocked_until_wall is not None
        ]

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        allow_redirects: bool = True,
    ) -> Response:
        """GET a page through the host's budget; raises NotFound, Blocked or ProviderError."""
        return await self._request("GET", url, headers=headers, params=params, allow_redirects=allow_redirects)

    async def post(self, url: str, *, data: Mapping[str, str], headers: Mapping[str, str] | None = None) -> Response:
        """POST a form through the host's budget; raises NotFound, Blocked or ProviderError."""
        return await self._request("POST", url, headers=headers, data=data)

    async def final_url(self, url: str, *, headers: Mapping[str, str] | None = None) -> str:
        """Where a redirect link leads: same-host hops are followed, the first other-host target is not fetched."""
        start_host = _host(url)
        current = url
        for _ in range(MAX_REDIRECTS):
            response = await self._request("GET", current, headers=headers, allow_redirects=False)
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUSES or not location:
                if current == url:
                    raise ProviderError(f"{url} did not redirect (status {response.status})", details={"url": url})
                return current
            try:
                current = urljoin(current, location)
            except ValueError as err:
                raise ProviderError(f"{url} redirected to an invalid URL: {location!r}", details={"url": url}) from err
            if _host(current) != start_host:
                return current
        raise ProviderError(f"{url} redirected more than {MAX_REDIRECTS} times", details={"url": url})

    def _budget(self, host: str) -> _HostBudget:
        budget = self._budgets.get(host)
        if budget is None:
            budget = _HostBudget(self._config.max_connections, self._config.requests_per_second)
            self._budgets[host] = budget
        return budget

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        allow_redirects: bool = True,
    ) -> Response:
        if self._session is None:
            raise ProviderError("the HTTP client is not started", details={"url": url})
        host = _host(url)
        if not host:
            raise ProviderError(f"not an http(s) URL: {url}", details={"url": url})
        budget = self._budget(host)
        last_problem = ""
        response: Response | None = None
        for attempt in range(1, self._attempts + 1):
            async with budget.slots:
                await budget.wait_turn()
                # Checked after waiting: a request queued behind a refused one must not go out during the cooldown.
                self._check_cooldown(host, budget, url)
                try:
                    response = await self._send(
                        method, url, headers=headers, params=params, data=data, allow_redirects=allow_redirects
                    )
                except aiohttp.TooManyRedirects as err:
                    raise ProviderError(f"{url} redirected too often", details={"url": url}) from err
                except (TimeoutError, aiohttp.ClientError) as err:
                    response = None
                    last_problem = _describe(err)
                    LOGGER.debug("%s %s failed (attempt %d/%d): %s", method, url, attempt, self._attempts, last_problem)
            if response is not None and response.status not in RETRY_STATUSES:
                return self._accept(response, host, budget)
            delay = self._retry_delay(attempt)
            if response is not None:
                last_problem = f"HTTP {response.status}"
                retry_after = _retry_after(response.headers.get("Retry-After"))
                if retry_after is not None:
                    if retry_after > MAX_RETRY_AFTER:
                        break
                    budget.defer(retry_after)  # the whole host waits, not only this request
                    delay = max(delay, retry_after)
                LOGGER.debug("%s %s answered %s (attempt %d/%d)", method, url, response.status, attempt, self._attempts)
            if attempt < self._attempts:
                await asyncio.sleep(delay)
        # No answer at all on the last attempt: the host is down or unreachable, not just unhappy with one page.
        error = Unreachable if response is None else ProviderError
        raise error(
            f"{method} {url} failed after {self._attempts} attempts: {last_problem}",
            details={"url": url, "problem": last_problem},
        )

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        data: Mapping[str, str] | None,
        allow_redirects: bool,
    ) -> Response:
        assert self._session is not None
        self.requests_made += 1
        if (counter := _COUNTER.get()) is not None:
            counter.count += 1
        async with self._session.request(
            method,
            url,
            headers=dict(headers or {}),
            params=dict(params) if params else None,
            data=dict(data) if data is not None else None,
            allow_redirects=allow_redirects,
            max_redirects=MAX_REDIRECTS,
        ) as resp:
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_BODY:
                    raise ProviderError(f"{url} sent more than {MAX_BODY} bytes", details={"url": url})
            charset = resp.charset or "utf-8"
            try:
                text = body.decode(charset, errors="replace")
            except LookupError:  # an unknown charset name in Content-Type
                text = body.decode("utf-8", errors="replace")
            return Response(
                url=str(resp.url),
                status=resp.status,
                headers=CIMultiDictProxy(CIMultiDict(resp.headers)),
                text=text,
                body=bytes(body),
            )

    def _accept(self, response: Response, host: str, budget: _HostBudget) -> Response:
        status = response.status
        if status == 403 or (status == 200 and _is_captcha(response.text)):
            raise self._block(host, budget, response.url, "captcha page" if status == 200 else "HTTP 403")
        if status == 404:
            raise NotFound(f"{response.url} does not exist (404)", details={"url": response.url, "status": 404})
        if status >= 400 or (status >= 300 and status not in REDIRECT_STATUSES):
            raise ProviderError(
                f"{response.url} answered HTTP {status}", details={"url": response.url, "status": status}
            )
        budget.strikes = 0  # an answered request after a cooldown: the next refusal starts small again
        return response

    def _block(self, host: str, budget: _HostBudget, url: str, reason: str) -> Blocked:
        if budget.blocked_until > time.monotonic():
            # Another request of the same burst was refused first: one refusal, one strike.
            return self._blocked_error(host, budget, url)
        budget.strikes += 1
        length = min(self._config.cooldown * 2 ** (budget.strikes - 1), MAX_COOLDOWN)
        budget.blocked_until = time.monotonic() + length.total_seconds()
        budget.blocked_until_wall = datetime.now(UTC) + length
        LOGGER.warning(
            "%s refused us (%s); no requests to it for %s (until %s)",
            host,
            reason,
            _format_length(length),
            budget.blocked_until_wall.isoformat(timespec="seconds"),
        )
        return self._blocked_error(host, budget, url)

    def _check_cooldown(self, host: str, budget: _HostBudget, url: str) -> None:
        if budget.blocked_until > time.monotonic():
            raise self._blocked_error(host, budget, url)

    @staticmethod
    def _blocked_error(host: str, budget: _HostBudget, url: str) -> Blocked:
        until = budget.blocked_until_wall or datetime.now(UTC)
        return Blocked(
            f"{host} refused us; cooling down until {until.isoformat(timespec='seconds')}",
            details={"host": host, "url": url, "until": until.isoformat(timespec="seconds")},
        )

    def _retry_delay(self, attempt: int) -> float:
        # Full jitter: clients that failed together do not come back together.
        return random.uniform(0, min(RETRY_CAP, self._retry_base * 2 ** (attempt - 1)))


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[/e/x": an invalid IPv6 literal
        return ""
    return parts.netloc.lower() if parts.scheme in ("http", "https") and parts.hostname else ""


def _is_captcha(text: str) -> bool:
    return any(marker in text for marker in CAPTCHA_MARKERS)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        return None  # the HTTP-date form is rare; the normal backoff applies then


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__


def _format_length(length: timedelta) -> str:
    seconds = int(length.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60}m"
    return f"{length.total_seconds():g}s"
