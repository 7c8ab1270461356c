"""SpeedFiles: a base64 chain in `var _0x5opu234 = "..."` decodes to the MP4 URL; media needs a browser UA."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aniworld_daemon.errors import HosterError
from aniworld_daemon.provider.hosters.base import (
    BaseResolver,
    MediaKind,
    MediaSource,
    b64text,
    fail,
    media_url,
)

if TYPE_CHECKING:
    from aniworld_daemon.provider.http import HttpClient

NAME = "SpeedFiles"
# The variable's obfuscated name changes between deployments; the shape (`_0x` + word) does not.
PAYLOAD_RE = re.compile(r"""var\s+_0x\w+\s*=\s*["']([A-Za-z0-9+/=]{16,})["']""")
HEX_RE = re.compile(r"(?:[0-9a-fA-F]{2})*")
DEAD_MARKERS = ("web server is down",)


def decode(encoded: str) -> str:
    """base64, swapcase+reverse, base64, reverse, hex pairs minus 3, swapcase+reverse, base64."""
    step = b64text(encoded, NAME, "ascii").swapcase()[::-1]
    step = b64text(step, NAME, "ascii")[::-1]
    if HEX_RE.fullmatch(step) is None:
        raise fail(NAME, "payload is not hex pairs")
    codes = [int(step[index : index + 2], 16) - 3 for index in range(0, len(step), 2)]
    if not all(0 <= code < 128 for code in codes):
        raise fail(NAME, "payload leaves ASCII after the shift")
    step = "".join(map(chr, codes)).swapcase()[::-1]
    return b64text(step, NAME)


def extract(page: str) -> str:
    """The MP4 URL of a SpeedFiles page: the first `_0x...` payload that decodes to a URL."""
    problem: HosterError | None = None
    for match in PAYLOAD_RE.finditer(page):
        try:
            return media_url(decode(match.group(1)), NAME)
        except HosterError as err:
            problem = problem or err
    raise problem or fail(NAME, "no encoded source in the page")


class SpeedFilesResolver(BaseResolver):
    """SpeedFiles pages (`/<id>`)."""

    name = "speedfiles"
    display_name = NAME
    dead_markers = DEAD_MARKERS

    async def _resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        page = await http.get(embed_url)
        url = self.read(page, extract)
        return MediaSource(url, {"User-Agent": http.user_agent}, MediaKind.MP4, self.name)
