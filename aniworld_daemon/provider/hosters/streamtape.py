"""Streamtape: the `robotlink` script splits the media URL in two strings, the second with a junk prefix."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aniworld_daemon.provider.hosters.base import BaseResolver, MediaKind, MediaSource, fail, media_url

if TYPE_CHECKING:
    from aniworld_daemon.provider.http import HttpClient

NAME = "Streamtape"
ROBOTLINK_RE = re.compile(
    r"""getElementById\(\s*["']robotlink["']\s*\)\.innerHTML\s*=\s*["']([^"']*)["']\s*\+\s*"""
    r"""\(\s*["']([^"']*)["']\s*\)((?:\.substring\(\s*[0-9]{1,4}\s*\))*)"""
)
SUBSTRING_RE = re.compile(r"[0-9]+")
JUNK_PREFIX = "xcd"
DEAD_MARKERS = ("video not found", "maybe it got deleted", "file was deleted")


def join_robotlink(head: str, tail: str, substrings: str = "") -> str:
    """`head` + `tail` with the junk cut off `tail`: by the `.substring(n)` calls if any, else the `xcd` prefix."""
    cuts = [int(number) for number in SUBSTRING_RE.findall(substrings)]
    if cuts:
        for cut in cuts:
            tail = tail[cut:]
    else:
        tail = tail.removeprefix(JUNK_PREFIX)
    return head + tail


def extract(page: str, scheme: str = "https") -> str:
    """The media URL of a Streamtape embed page; the robotlink is scheme-relative (`//host/get_video?...`)."""
    match = ROBOTLINK_RE.search(page)
    if match is None:
        raise fail(NAME, "no robotlink script in the page")
    link = join_robotlink(match.group(1), match.group(2), match.group(3))
    if not link.startswith("//"):
        link = "//" + link.lstrip("/")
    return media_url(f"{scheme}:{link}", NAME)


class StreamtapeResolver(BaseResolver):
    """Streamtape embeds (`/e/<id>`)."""

    name = "streamtape"
    display_name = NAME
    dead_markers = DEAD_MARKERS

    async def _resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        page = await http.get(embed_url)
        url = self.read(page, lambda text: extract(text, urlsplit(page.url).scheme or "https"))
        return MediaSource(url, {}, MediaKind.MP4, self.name)
