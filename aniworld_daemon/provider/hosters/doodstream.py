"""Doodstream: `$.get('/pass_md5/...')` yields a base URL; media = base + 10 random chars + token and expiry."""

from __future__ import annotations

import random
import re
import string
import time
from typing import TYPE_CHECKING

from aniworld_daemon.provider.hosters.base import (
    BaseResolver,
    MediaKind,
    MediaSource,
    first,
    media_url,
    origin_of,
)

if TYPE_CHECKING:
    from aniworld_daemon.provider.http import HttpClient

NAME = "Doodstream"
PASS_MD5_RE = re.compile(r"""\$\.get\(\s*["'](/pass_md5/[A-Za-z0-9._~/-]+)["']""")
TOKEN_RE = re.compile(r"""[?&]token=([A-Za-z0-9]+)""")
DEAD_MARKERS = ("video not found", "file you are looking for is not found", "oops! sorry")
ALPHABET = string.ascii_letters + string.digits


def parse_page(page: str) -> tuple[str, str]:
    """`(pass_md5 path, token)` of a Doodstream embed page."""
    return first(PASS_MD5_RE, page, NAME, "pass_md5 request"), first(TOKEN_RE, page, NAME, "token")


def build_media_url(base: str, token: str, *, expiry: int, noise: str) -> str:
    """What the page's makePlay() builds: base + 10 random characters + `?token=...&expiry=...`."""
    return media_url(f"{base.strip()}{noise}?token={token}&expiry={expiry}", NAME)


class DoodstreamResolver(BaseResolver):
    """Doodstream embeds (`/e/<id>` on its rotating domains)."""

    name = "doodstream"
    display_name = NAME
    dead_markers = DEAD_MARKERS

    async def _resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        page = await http.get(embed_url)
        pass_path, token = self.read(page, parse_page)
        origin = origin_of(page.url)
        base = await http.get(f"{origin}{pass_path}", headers={"Referer": page.url})
        noise = "".join(random.choices(ALPHABET, k=10))
        # makePlay() appends Date.now(), i.e. milliseconds since the epoch.
        url = build_media_url(base.text, token, expiry=int(time.time() * 1000), noise=noise)
        # The CDN checks that the media request comes with the UA that asked for pass_md5.
        headers = {"Referer": f"{origin}/", "User-Agent": http.user_agent}
        return MediaSource(url, headers, MediaKind.MP4, self.name)
