"""VOE: the 2025 JSON-script scheme, the older base64 `hls` source, the location hop and a bare m3u8 fallback."""

from __future__ import annotations

import json
import re
import string
from typing import TYPE_CHECKING, Any

from aniworld_daemon.errors import HosterError
from aniworld_daemon.provider.hosters.base import (
    URL_RE,
    BaseResolver,
    MediaKind,
    MediaSource,
    b64text,
    fail,
    kind_of,
    media_url,
    origin_of,
)

if TYPE_CHECKING:
    from aniworld_daemon.provider.http import HttpClient

NAME = "VOE"
_LOWER, _UPPER = string.ascii_lowercase, string.ascii_uppercase
ROT13 = str.maketrans(_LOWER + _UPPER, _LOWER[13:] + _LOWER[:13] + _UPPER[13:] + _UPPER[:13])
# Junk the page inserts between the base64 characters; none of them is in the base64 alphabet.
JUNK_RE = re.compile(r"@\$|\^\^|~@|%\?|\*~|!!|#&")
JSON_SCRIPT_RE = re.compile(
    r"""<script[^>]{0,300}?\btype\s*=\s*["']application/json["'][^>]{0,300}>\s*\[?\s*"([^"<]*)"\s*\]?\s*</script>""",
    re.IGNORECASE,
)
HLS_RE = re.compile(r"""["']hls["']\s*:\s*["']([^"']+)["']""")
REDIRECT_RE = re.compile(r"""window\.location\.href\s*=\s*["'](https?://[^"']+)["']""")
DEAD_MARKERS = ("404 - not found", "deleted or never existed", "file was deleted", "video not found")
MAX_HOPS = 3  # VOE hops once to its current domain; more means a loop


def decode_payload(encoded: str) -> dict[str, Any]:
    """Decode the 2025 payload: ROT13, drop junk, base64, shift -3, reverse, base64, JSON object."""
    shifted = b64text(JUNK_RE.sub("", encoded.translate(ROT13)), NAME, "latin-1")
    try:
        unshifted = "".join(chr(ord(char) - 3) for char in shifted)
    except ValueError as err:  # a character below chr(3)
        raise fail(NAME, "bad shifted payload") from err
    inner = b64text(unshifted[::-1], NAME)
    try:
        data = json.loads(inner)
    except (ValueError, RecursionError) as err:
        raise fail(NAME, f"payload is not JSON ({err})") from err
    if not isinstance(data, dict):
        raise fail(NAME, "payload is not a JSON object")
    return data


def decode_json_script(page: str) -> dict[str, Any]:
    """The decoded object of the page's first decodable `<script type="application/json">"..."</script>`."""
    problem: HosterError | None = None
    for match in JSON_SCRIPT_RE.finditer(page):
        try:
            return decode_payload(match.group(1))
        except HosterError as err:
            problem = problem or err
    raise problem or fail(NAME, "no JSON script in the page")


def source_of(data: dict[str, Any]) -> str:
    """The media URL (`source`) of a decoded payload."""
    source = data.get("source")
    if not isinstance(source, str):
        raise fail(NAME, "payload has no source")
    return media_url(source, NAME)


def decode_hls(page: str) -> str:
    """The older `'hls': '<base64 URL>'` source (a plain URL is accepted too)."""
    match = HLS_RE.search(page)
    if match is None:
        raise fail(NAME, "no hls source in the page")
    value = match.group(1)
    return media_url(value if value.startswith(("http://", "https://")) else b64text(value, NAME), NAME)


def locate(page: str) -> tuple[str, bool]:
    """`(url, is_hop)`: the media URL, or the URL of the page a location hop leads to."""
    problem: HosterError | None = None
    if JSON_SCRIPT_RE.search(page):
        try:
            return source_of(decode_json_script(page)), False
        except HosterError as err:
            problem = err
    if HLS_RE.search(page):
        try:
            return decode_hls(page), False
        except HosterError as err:
            problem = problem or err
    hop = REDIRECT_RE.search(page)
    if hop is not None:
        return media_url(hop.group(1), NAME), True
    for candidate in URL_RE.findall(page):
        if ".m3u8" in candidate:
            return media_url(candidate, NAME), False
    raise problem or fail(NAME, "no source (JSON script, hls, location hop or m3u8 URL) in the page")


class VoeResolver(BaseResolver):
    """VOE embeds on any of its rotating domains (`/e/<id>`)."""

    name = "voe"
    display_name = NAME
    dead_markers = DEAD_MARKERS

    async def _resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        url = embed_url
        for _ in range(MAX_HOPS + 1):
            page = await http.get(url)
            target, is_hop = self.read(page, locate)
            if not is_hop:
                origin = origin_of(page.url)
                headers = {"Referer": f"{origin}/", "Origin": origin, "User-Agent": http.user_agent}
                return MediaSource(target, headers, kind_of(target, MediaKind.HLS), self.name)
            url = target
        raise self.error(f"more than {MAX_HOPS} location hops")
