"""Vidoza: a direct MP4 in the player's `sourcesCode` (or a `<source>` tag); no header checks."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aniworld_daemon.provider.hosters.base import BaseResolver, MediaKind, MediaSource, fail, media_url

if TYPE_CHECKING:
    from aniworld_daemon.provider.http import HttpClient

NAME = "Vidoza"
SOURCES_RE = re.compile(r"""sourcesCode\s*:\s*\[\s*\{[^}]{0,500}?\bsrc\s*:\s*["']([^"']*)["']""")
SOURCE_TAG_RE = re.compile(r"<source\b[^>]{0,2000}>")  # bounded: no quadratic scan of a broken page
SRC_ATTR_RE = re.compile(r"""\bsrc\s*=\s*["']([^"']*)["']""")
DEAD_MARKERS = ("file was deleted", "reason for deletion", "file not found")


def extract(page: str) -> str:
    """The MP4 URL of a Vidoza embed page."""
    match = SOURCES_RE.search(page)
    if match is not None:
        return media_url(match.group(1), NAME)
    for tag in SOURCE_TAG_RE.findall(page):
        src = SRC_ATTR_RE.search(tag)
        if src is not None and "video/mp4" in tag:
            return media_url(src.group(1), NAME)
    raise fail(NAME, "no sourcesCode in the page")


class VidozaResolver(BaseResolver):
    """Vidoza embeds (`/embed-<id>.html`)."""

    name = "vidoza"
    display_name = NAME
    dead_markers = DEAD_MARKERS

    async def _resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        page = await http.get(embed_url)
        url = self.read(page, extract)
        return MediaSource(url, {}, MediaKind.MP4, self.name)
