"""The aniworld.to provider: search, series, season, episode and feed pages through the polite HTTP client."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aniworld_daemon.errors import NotFound, ParseError, ProviderError, ValidationError
from aniworld_daemon.provider.pages import (
    parse_episode_page,
    parse_feed,
    parse_search_ajax,
    parse_search_json,
    parse_season_page,
    parse_series_page,
    parse_series_with_season,
)
from aniworld_daemon.provider.records import (
    EpisodePage,
    EpisodeSummary,
    FeedEntry,
    HosterLink,
    SearchResult,
    SeasonPage,
    SeriesInfo,
)
from aniworld_daemon.provider.urls import (
    KEY_RE,
    SERIES_PATH_RE,
    episode_url,
    is_site_host,
    not_on_site,
    parse_episode_url,
    parse_season_url,
    parse_series_url,
    season_url,
    series_url,
)

if TYPE_CHECKING:
    from aniworld_daemon.provider.http import HttpClient

__all__ = [
    "AniworldProvider",
    "EpisodePage",
    "EpisodeSummary",
    "FeedEntry",
    "HosterLink",
    "SearchResult",
    "SeasonPage",
    "SeriesInfo",
    "episode_url",
    "normalize_key",
    "parse_episode_page",
    "parse_episode_url",
    "parse_feed",
    "parse_search_ajax",
    "parse_search_json",
    "parse_season_page",
    "parse_season_url",
    "parse_series_page",
    "parse_series_url",
    "parse_series_with_season",
    "season_url",
    "series_url",
]

LOGGER = logging.getLogger(__name__)

KEY_EXAMPLE = "expected a series key like one-piece or a URL like https://aniworld.to/anime/stream/one-piece"


def normalize_key(value: str, base_url: str | None = None) -> str:
    """The series key of a key, or of a series/season/episode URL; raises ValidationError (HTTP 422).

    With `base_url`, a URL must be on the site (aniworld.to or `base_url`'s host): the key of another site's URL would
    silently name whatever series has that slug here. Without it, any host is taken (a path needs none).
    """
    text = value.strip()
    if KEY_RE.match(text):
        return text
    if "://" not in text and not text.startswith("/"):
        text = f"https://{text}"  # "aniworld.to/anime/stream/x" as typed into a shell
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    match = SERIES_PATH_RE.match(parts.path) if parts is not None and parts.scheme in ("http", "https", "") else None
    if parts is None or match is None:
        raise ValidationError(KEY_EXAMPLE, details={"value": value})
    if base_url is not None and parts.netloc and not is_site_host(parts.hostname, base_url):
        host = parts.hostname or parts.netloc
        raise ValidationError(not_on_site(host, match["key"], base_url), details={"value": value, "host": host})
    return match["key"]


class AniworldProvider:
    """Reads aniworld.to: every method is one request (two for a search fallback) and returns typed records."""

    def __init__(self, http: HttpClient, base_url: str) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")

    @property
    def base_url(self) -> str:
        """The site's root address, without a trailing slash."""
        return self._base_url

    def reconfigure(self, base_url: str) -> None:
        """Read the site at a reloaded configuration's address from now on."""
        self._base_url = base_url.rstrip("/")

    async def search(self, query: str) -> list[SearchResult]:
        """Series matching `query`: the JSON search, or the site's form search when that answers no JSON array."""
        keyword = " ".join(query.split())
        if not keyword:
            return []
        headers = {"X-Requested-With": "XMLHttpRequest", "Referer": f"{self.base_url}/search"}
        try:
            response = await self._http.get(
                f"{self.base_url}/ajax/seriesSearch", params={"keyword": keyword}, headers=headers
            )
            return parse_search_json(response.text, self.base_url)
        except (ParseError, NotFound) as err:
            # The site has changed this endpoint before; the form search is the older, stabler one.
            LOGGER.info("the JSON search failed (%s); falling back to the form search", err.message)
        response = await self._http.post(f"{self.base_url}/ajax/search", data={"keyword": keyword}, headers=headers)
        return parse_search_ajax(response.text, self.base_url)

    async def series(self, key: str) -> SeriesInfo:
        """The series page of `key`."""
        url = series_url(self.base_url, _checked(key))
        return parse_series_page((await self._http.get(url)).text, url)

    async def series_with_season(self, key: str, season: int | None = None) -> tuple[SeriesInfo, SeasonPage | None]:
        """One request for both: the series and a season's table (None: the series page and the table it shows).

        A season page carries the whole series header and the season links, so a rescan learns about new seasons
        and new episodes of the latest season from a single page.
        """
        checked = _checked(key)
        url = series_url(self.base_url, checked) if season is None else season_url(self.base_url, checked, season)
        series, page = parse_series_with_season((await self._http.get(url)).text, url)
        if season is not None and page is None:
            raise ParseError(f"{url} has no episode table", details={"url": url, "missing": "episode table"})
        return series, page

    async def cover(self, url: str) -> bytes:
        """The bytes of a cover image."""
        return (await self._http.get(url, headers={"Referer": f"{self.base_url}/"})).body

    async def season(self, key: str, season: int) -> SeasonPage:
        """One season page (`season` 0: the movies page)."""
        url = season_url(self.base_url, _checked(key), season)
        return parse_season_page((await self._http.get(url)).text, url)

    async def episode(self, key: str, season: int, number: int) -> EpisodePage:
        """One episode page (`season` 0: a movie page) with its hoster links."""
        url = episode_url(self.base_url, _checked(key), season, number)
        return parse_episode_page((await self._http.get(url)).text, url)

    async def new_episodes(self) -> list[FeedEntry]:
        """The new-episodes feed: one cheap request tells which series have something new."""
        url = f"{self.base_url}/neue-episoden"
        return parse_feed((await self._http.get(url)).text, url)

    async def resolve_redirect(self, redirect_url: str) -> str:
        """The hoster embed URL a `/redirect/<id>` link leads to (the embed page itself is not fetched)."""
        final = await self._http.final_url(redirect_url, headers={"Referer": f"{self.base_url}/"})
        # A redirect that ends on the site (a login or error page) is not an embed; no resolver could read it.
        if urlsplit(final).netloc.lower() == urlsplit(self.base_url).netloc.lower():
            raise ProviderError(
                f"{redirect_url} led back to the site ({final}), not to a hoster",
                details={"url": redirect_url, "final_url": final},
            )
        return final


def _checked(key: str) -> str:
    # A key goes into a URL path: anything but a slug would read another page (or another site's).
    if not KEY_RE.match(key):
        raise ValidationError(f"not a series key: {key!r}", details={"value": key})
    return key
