"""aniworld.to's URLs: building them from (key, season, number) and reading those back out of links."""

from __future__ import annotations

import functools
import re
from urllib.parse import urljoin, urlsplit

from aniworld_daemon.errors import ParseError

# A series key: letters and digits in dash-separated words, like one-piece (no leading, trailing or double dash).
_SLUG = r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*"
_NUMBER = r"[0-9]{1,6}"  # bounded: int() refuses digit strings of thousands of characters
KEY_RE = re.compile(rf"^{_SLUG}$")
SERIES_PATH_RE = re.compile(rf"^/anime/stream/(?P<key>{_SLUG})(?:/[^?#]*)?$")
SEASON_PATH_RE = re.compile(rf"^/anime/stream/(?P<key>{_SLUG})/(?:staffel-(?P<season>{_NUMBER})|(?P<movies>filme))/?$")
EPISODE_PATH_RE = re.compile(
    rf"^/anime/stream/(?P<key>{_SLUG})/"
    rf"(?:staffel-(?P<season>{_NUMBER})/episode-(?P<number>{_NUMBER})|filme/film-(?P<film>{_NUMBER}))/?$"
)
# The POST search also finds seasons, episodes and non-anime pages; only series links are results.
SEARCH_LINK_RE = re.compile(rf"^/anime/stream/({_SLUG})/?$")
MOVIES = 0  # movies are season 0 everywhere
SITE_HOST = "aniworld.to"  # the site's own host; a series URL copied from the browser is on it (maybe as www.)


def series_url(base_url: str, key: str) -> str:
    """The series page URL: <base>/anime/stream/<key>."""
    return f"{base_url.rstrip('/')}/anime/stream/{key}"


def season_url(base_url: str, key: str, season: int) -> str:
    """The season page URL; season 0 is the movies page `/filme`."""
    if season == MOVIES:
        return f"{series_url(base_url, key)}/filme"
    return f"{series_url(base_url, key)}/staffel-{season}"


def episode_url(base_url: str, key: str, season: int, number: int) -> str:
    """The episode page URL; season 0 is a movie, `/filme/film-<number>`."""
    if season == MOVIES:
        return f"{series_url(base_url, key)}/filme/film-{number}"
    return f"{series_url(base_url, key)}/staffel-{season}/episode-{number}"


def is_site_host(host: str | None, base_url: str) -> bool:
    """Whether `host` is the site's: aniworld.to or the host of `base_url`, each with or without `www.`, any case.

    The port does not count: a series URL only gives the key, which is always read at `base_url` itself.
    """
    if not host:
        return False
    return _bare_host(host) in _site_hosts(base_url)


def not_on_site(host: str, key: str, base_url: str) -> str:
    """What to tell someone whose series URL is on `host`, another site: which hosts are the site's, what to type."""
    hosts = " or ".join(_site_hosts(base_url))
    return f"the URL is on {host}, not on the site ({hosts}); give the key {key} or {series_url(base_url, key)}"


def _site_hosts(base_url: str) -> tuple[str, ...]:
    """aniworld.to and the host of `base_url`, as _bare_host() gives them, each once."""
    try:
        configured = urlsplit(base_url).hostname or ""
    except ValueError:  # base_url is validated by the config; a malformed one simply adds no host
        configured = ""
    return tuple(dict.fromkeys(name for name in (_bare_host(SITE_HOST), _bare_host(configured)) if name))


def _bare_host(host: str) -> str:
    """A host name compared case-insensitively, without a trailing dot or a leading `www.`."""
    return host.lower().rstrip(".").removeprefix("www.")


def parse_episode_url(url: str) -> tuple[str, int, int]:
    """(key, season, number) of an episode or movie URL (absolute or a path); raises ParseError."""
    match = EPISODE_PATH_RE.match(url_path(url) or "")
    if match is None:
        raise ParseError(f"not an episode URL: {url}", details={"url": url, "missing": "episode path"})
    return episode_place(match)


def parse_season_url(url: str) -> tuple[str, int]:
    """(key, season) of a season or movies URL (absolute or a path); raises ParseError."""
    match = SEASON_PATH_RE.match(url_path(url) or "")
    if match is None:
        raise ParseError(f"not a season URL: {url}", details={"url": url, "missing": "season path"})
    return match["key"], MOVIES if match["movies"] else int(match["season"])


def parse_series_url(url: str) -> str:
    """The key of any URL under a series (series, season or episode page); raises ParseError."""
    match = SERIES_PATH_RE.match(url_path(url) or "")
    if match is None:
        raise ParseError(f"not a series URL: {url}", details={"url": url, "missing": "series path"})
    return match["key"]


def episode_place(match: re.Match[str]) -> tuple[str, int, int]:
    """(key, season, number) of an EPISODE_PATH_RE match; a movie is season 0."""
    if match["film"] is not None:
        return match["key"], MOVIES, int(match["film"])
    return match["key"], int(match["season"]), int(match["number"])


def url_path(url: str) -> str | None:
    """The path of an absolute URL or of a link's path (without query and fragment); None when malformed."""
    url = url.strip()
    if _is_plain_path(url):  # the common case, without urlsplit's cost (a season page has a thousand links)
        return url.split("#", 1)[0].split("?", 1)[0]
    try:
        return urlsplit(url).path
    except ValueError:  # e.g. a malformed IPv6 host
        return None


def absolute_url(base: str, href: str) -> str | None:
    """`href` made absolute against `base`; None for empty, `data:` and `javascript:` links or malformed URLs."""
    href = href.strip()
    if not href or href.startswith(("data:", "javascript:")):
        return None
    origin = _origin(base) if _is_plain_path(href) else None
    if origin is not None:
        return origin + href
    try:
        return urljoin(base, href)
    except ValueError:
        return None


def _is_plain_path(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//") and "/." not in url and "\\" not in url


@functools.lru_cache(maxsize=64)
def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None
