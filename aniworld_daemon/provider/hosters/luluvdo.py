"""Luluvdo: the JW Player page of `/dl?op=embed&file_code=<id>&auto=1`; media needs Origin/Referer of the host."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from aniworld_daemon.provider.hosters.base import (
    BaseResolver,
    MediaKind,
    MediaSource,
    fail,
    jw_source,
    kind_of,
    origin_of,
)

if TYPE_CHECKING:
    from aniworld_daemon.provider.http import HttpClient

NAME = "Luluvdo"
FILE_CODE_RE = re.compile(r"^[A-Za-z0-9]+$")
DEAD_MARKERS = ("no longer available", "file not found", "has been deleted")


def file_code(embed_url: str) -> str:
    """The file code of `/e/<code>`, `/d/<code>`, `/<code>` or a `/dl?file_code=<code>` URL."""
    try:
        parts = urlsplit(embed_url)
    except ValueError as err:  # e.g. a broken IPv6 literal
        raise fail(NAME, "malformed embed URL") from err
    codes = parse_qs(parts.query).get("file_code") or [segment for segment in parts.path.split("/") if segment][-1:]
    if not codes or FILE_CODE_RE.match(codes[0]) is None:
        raise fail(NAME, "no file code in the embed URL")
    return codes[0]


def extract(page: str) -> str:
    """The media URL of the `/dl?op=embed` page."""
    return jw_source(page, NAME)


class LuluvdoResolver(BaseResolver):
    """Luluvdo embeds (`/e/<id>`): the player page is fetched directly."""

    name = "luluvdo"
    display_name = NAME
    dead_markers = DEAD_MARKERS

    async def _resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        code = file_code(embed_url)  # first: it also rejects a malformed URL
        page = await http.get(
            f"{origin_of(embed_url)}/dl",
            params={"op": "embed", "file_code": code, "auto": "1"},
            headers={"Referer": embed_url},
        )
        url = self.read(page, extract)
        origin = origin_of(page.url)
        headers = {"Referer": f"{origin}/", "Origin": origin}
        return MediaSource(url, headers, kind_of(url, MediaKind.HLS), self.name)
