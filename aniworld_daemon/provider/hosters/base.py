"""What every hoster resolver shares: the media records, the error wrapper and small parsing helpers."""

from __future__ import annotations

import binascii
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import urlsplit

from aniworld_daemon.errors import Blocked, HosterError, ProviderError

if TYPE_CHECKING:
    from aniworld_daemon.provider.http import HttpClient, Response

_T = TypeVar("_T")

LOGGER = logging.getLogger(__name__)

# Quotes, angle brackets, backslashes and whitespace end a URL embedded in HTML or JavaScript.
URL_RE = re.compile(r"""https?://[^\s"'<>\\]+""")
# JW Player setups (Vidmoly, Luluvdo, unpacked Filemoon): the first file of `sources`, not of `tracks`.
JW_SOURCE_RE = re.compile(r"""sources\s*:\s*\[\s*\{[^}]{0,500}?\bfile\s*:\s*["']([^"']*)["']""")


class MediaKind(StrEnum):
    """How the media behind a hoster is delivered."""

    MP4 = "mp4"
    HLS = "hls"


@dataclass(frozen=True, slots=True)
class MediaSource:
    """A direct media URL plus the headers yt-dlp must send to fetch it."""

    url: str
    headers: Mapping[str, str]
    kind: MediaKind
    hoster: str


class Resolver(Protocol):
    """Turns a hoster's embed page URL into a direct media URL."""

    name: str
    display_name: str

    async def resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        """The media behind `embed_url`; raises HosterError, or Blocked when the hoster refuses us."""
        ...


class BaseResolver:
    """Shared error handling: every failure becomes a HosterError naming the hoster and URL, except Blocked."""

    name: str
    display_name: str
    dead_markers: tuple[str, ...] = ()  # lower-case phrases of the hoster's "file deleted" page

    async def resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        """The media behind `embed_url`; raises HosterError, or Blocked when the hoster refuses us."""
        try:
            media_url(embed_url, self.display_name, "hoster URL")
            source = await self._resolve(http, embed_url)
        except Blocked:
            raise  # the caller waits out the cooldown instead of trying the next hoster
        except HosterError as err:
            err.details.update(hoster=self.name, url=embed_url)
            raise
        except ProviderError as err:
            raise HosterError(
                f"{self.display_name}: {err.message}", details={"hoster": self.name, "url": embed_url}
            ) from err
        LOGGER.debug("%s resolved %s to %s (%s)", self.display_name, embed_url, source.url, source.kind)
        return source

    async def _resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        raise NotImplementedError

    def read(self, page: Response, extract: Callable[[str], _T]) -> _T:
        """`extract(page.text)`; when that fails on the hoster's "file deleted" page, the clearer error says so."""
        try:
            return extract(page.text)
        except HosterError:
            check_gone(page.text, self.dead_markers, self.display_name)
            raise

    def error(self, message: str) -> HosterError:
        """A HosterError of this hoster (the URL is added by `resolve`)."""
        return HosterError(f"{self.display_name}: {message}", details={"hoster": self.name})


def fail(hoster: str, message: str) -> HosterError:
    """A HosterError for a pure decoder, which knows its hoster but not the URL."""
    return HosterError(f"{hoster}: {message}", details={"hoster": hoster.lower()})


def first(pattern: re.Pattern[str], text: str, hoster: str, what: str) -> str:
    """The first group of the first match of `pattern` in `text`, or a HosterError saying `what` is missing."""
    match = pattern.search(text)
    if match is None:
        raise fail(hoster, f"no {what} in the page")
    return match.group(1)


def b64text(data: str, hoster: str, encoding: str = "utf-8") -> str:
    """Strict base64 (padding and alphabet checked) decoded to text, or a HosterError."""
    try:
        # strict_mode also refuses data after the padding, which plain b64decode silently drops.
        return binascii.a2b_base64(data.encode("ascii"), strict_mode=True).decode(encoding)
    except (binascii.Error, ValueError) as err:  # UnicodeError is a ValueError too
        raise fail(hoster, f"bad base64 payload ({err})") from err


def media_url(url: str, hoster: str, what: str = "media URL") -> str:
    """`url` if it is an absolute http(s) URL with a host, else a HosterError saying it is not a `what`."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a malformed port or IPv6 literal
        valid = False
    if not valid or URL_RE.fullmatch(url) is None:
        raise fail(hoster, f"not a {what}: {url[:200]!r}")
    return url


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of `url`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def kind_of(url: str, default: MediaKind) -> MediaKind:
    """HLS for an .m3u8 URL, MP4 for an .mp4 URL, else `default`."""
    path = urlsplit(url).path.lower()
    if path.endswith(".m3u8"):
        return MediaKind.HLS
    if path.endswith(".mp4"):
        return MediaKind.MP4
    return default


def jw_source(text: str, hoster: str) -> str:
    """The first `sources: [{file: "..."}]` URL of a JW Player setup."""
    return media_url(first(JW_SOURCE_RE, text, hoster, "player source"), hoster)


def check_gone(text: str, markers: tuple[str, ...], hoster: str) -> None:
    """Raise a clearer HosterError when `text` is the hoster's "file deleted" page."""
    lowered = text.lower()
    if any(marker.lower() in lowered for marker in markers):
        raise fail(hoster, "the video is gone (the hoster says the file was deleted or is unavailable)")
