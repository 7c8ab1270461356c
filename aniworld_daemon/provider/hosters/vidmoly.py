"""Vidmoly: a JW Player setup whose `sources` file is an HLS playlist; media needs the embed host as Referer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aniworld_daemon.provider.hosters.base import (
    BaseResolver,
    MediaKind,
    MediaSource,
    jw_source,
    kind_of,
    origin_of,
)

if TYPE_CHECKING:
    from aniworld_daemon.provider.http import HttpClient

NAME = "Vidmoly"
DEAD_MARKERS = ("file was deleted", "video is not available", "notice.php")


def extract(page: str) -> str:
    """The playlist URL of a Vidmoly embed page."""
    return jw_source(page, NAME)


class VidmolyResolver(BaseResolver):
    """Vidmoly embeds (`/embed-<id>.html`)."""

    name = "vidmoly"
    display_name = NAME
    dead_markers = DEAD_MARKERS

    async def _resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        page = await http.get(embed_url)
        url = self.read(page, extract)
        headers = {"Referer": f"{origin_of(page.url)}/"}
        return MediaSource(url, headers, kind_of(url, MediaKind.HLS), self.name)
