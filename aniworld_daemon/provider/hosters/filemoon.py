"""Filemoon: a Dean-Edwards packed script (`eval(function(p,a,c,k,e,d)...)`) that sets up JW Player with HLS."""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING

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

NAME = "Filemoon"
PACKER_START = "eval(function(p,a,c,k,e,"
PACKED_ARGS_RE = re.compile(
    r"""\}\(\s*'((?:[^'\\]|\\.)*)'\s*,\s*([0-9]{1,6})\s*,\s*([0-9]{1,9})\s*,\s*'((?:[^'\\]|\\.)*)'\s*\.split\(\s*'\|'\s*\)""",
    re.DOTALL,
)
ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}
# JavaScript's \w is ASCII-only; so is the packer's word list.
WORD_RE = re.compile(r"\b\w+\b", re.ASCII)
# The packer's digits: 0-9, a-z, then A-Z for radixes 37..62 (String.fromCharCode(c + 29)).
DIGITS = string.digits + string.ascii_lowercase + string.ascii_uppercase
DEAD_MARKERS = ("file was deleted", "page not found", "file not found")


def encode_index(number: int, radix: int) -> str:
    """The packer's `e(c)`: `number` written in `radix` (2..62) with DIGITS."""
    digits = ""
    while True:
        number, digit = divmod(number, radix)
        digits = DIGITS[digit] + digits
        if number == 0:
            return digits


def unescape(literal: str) -> str:
    """The value of a single-quoted JavaScript string literal's body."""
    return ESCAPE_RE.sub(lambda match: ESCAPES.get(match.group(1), match.group(1)), literal)


def unpack(packed_js: str) -> str:
    """Run the packer's decoder: every word of `p` that encodes an index of `k` becomes that keyword."""
    start = packed_js.find(PACKER_START)
    if start < 0:
        raise fail(NAME, "no packed script in the page")
    match = PACKED_ARGS_RE.search(packed_js, start)
    if match is None:
        raise fail(NAME, "the packed script's arguments are malformed")
    payload, radix, count = unescape(match.group(1)), int(match.group(2)), int(match.group(3))
    keywords = unescape(match.group(4)).split("|")
    if not 2 <= radix <= len(DIGITS):
        raise fail(NAME, f"unsupported packer radix {radix}")
    table = {encode_index(index, radix): keywords[index] for index in range(min(count, len(keywords)))}
    return WORD_RE.sub(lambda word: table.get(word.group(0)) or word.group(0), payload)


def extract(page: str) -> str:
    """The playlist URL of a Filemoon embed page (after unpacking)."""
    return jw_source(unpack(page), NAME)


class FilemoonResolver(BaseResolver):
    """Filemoon embeds (`/e/<id>`) of the packed-script generation."""

    name = "filemoon"
    display_name = NAME
    dead_markers = DEAD_MARKERS

    async def _resolve(self, http: HttpClient, embed_url: str) -> MediaSource:
        page = await http.get(embed_url)
        url = self.read(page, extract)
        headers = {"Referer": f"{origin_of(page.url)}/"}
        return MediaSource(url, headers, kind_of(url, MediaKind.HLS), self.name)
