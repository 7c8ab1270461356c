"""Real encoders of each hoster's obfuscation scheme: the exact inverses of the decoders in provider/hosters."""

from __future__ import annotations

import base64
import json
import random
import re
import string
from collections import Counter
from collections.abc import Mapping
from typing import Any

from aniworld_daemon.provider.hosters.filemoon import DIGITS, encode_index

VOE_JUNK = ("@$", "^^", "~@", "%?", "*~", "!!", "#&")
_LOWER, _UPPER = string.ascii_lowercase, string.ascii_uppercase
_ROT13 = str.maketrans(_LOWER + _UPPER, _LOWER[13:] + _LOWER[:13] + _UPPER[13:] + _UPPER[:13])
_WORD_RE = re.compile(r"\b\w+\b", re.ASCII)


def b64(text: str, encoding: str = "utf-8") -> str:
    """Standard padded base64 of `text`."""
    return base64.b64encode(text.encode(encoding)).decode("ascii")


def rot13(text: str) -> str:
    """ROT13 on ASCII letters; everything else unchanged."""
    return text.translate(_ROT13)


def voe_encode(data: Mapping[str, Any], *, seed: int = 0, junk_every: int = 7) -> str:
    """VOE 2025: JSON -> base64 -> reverse -> shift +3 -> base64 -> junk markers -> ROT13."""
    return voe_encode_text(json.dumps(data, separators=(",", ":")), seed=seed, junk_every=junk_every)


def voe_encode_text(text: str, *, seed: int = 0, junk_every: int = 7) -> str:
    """The VOE 2025 encoding of any text (a broken JSON text makes a garbled page)."""
    shifted = "".join(chr(ord(char) + 3) for char in b64(text)[::-1])
    outer = b64(shifted, "latin-1")
    rng = random.Random(seed)
    pieces: list[str] = []
    for index, char in enumerate(outer):
        pieces.append(char)
        # Never two markers side by side, so that removing them can never form a new one.
        if index % junk_every == junk_every - 1 and index < len(outer) - 1:
            pieces.append(rng.choice(VOE_JUNK))
    return rot13("".join(pieces))


def voe_hls(url: str) -> str:
    """The older VOE `'hls'` value: the URL in base64."""
    return b64(url)


def js_string(text: str) -> str:
    """The body of a single-quoted JavaScript string literal holding `text`."""
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")


def pack(source: str, radix: int = 62) -> str:
    """Dean Edwards' packer: words become indexes (in `radix`) of a keyword list sorted by frequency."""
    if not 2 <= radix <= len(DIGITS):
        raise ValueError(f"radix must be 2..{len(DIGITS)}")
    counts = Counter(_WORD_RE.findall(source))
    words = sorted(counts, key=lambda word: -counts[word])  # stable: ties keep first appearance
    codes = {word: encode_index(index, radix) for index, word in enumerate(words)}
    payload = _WORD_RE.sub(lambda match: codes[match.group(0)], source)
    # A keyword equal to its own code is left empty, as the packer does (`k[c] || e(c)` restores it).
    keywords = "|".join("" if codes[word] == word else word for word in words)
    return (
        "eval(function(p,a,c,k,e,d){e=function(c){return(c<a?'':e(parseInt(c/a)))+((c=c%a)>35?"
        "String.fromCharCode(c+29):c.toString(36))};if(!''.replace(/^/,String)){while(c--){d[e(c)]=k[c]||e(c)}"
        "k=[function(e){return d[e]}];e=function(){return'\\\\w+'};c=1};while(c--){if(k[c]){p=p.replace("
        "new RegExp('\\\\b'+e(c)+'\\\\b','g'),k[c])}}return p}"
        f"('{js_string(payload)}',{radix},{len(words)},'{keywords}'.split('|'),0,{{}}))"
    )


def speedfiles_encode(url: str) -> str:
    """SpeedFiles: the inverse of base64, swapcase+reverse, base64, reverse, hex-3, swapcase+reverse, base64."""
    step = b64(url).swapcase()[::-1]
    step = "".join(f"{ord(char) + 3:02x}" for char in step)[::-1]
    step = b64(step).swapcase()[::-1]
    return b64(step)


def streamtape_split(link: str, cut: int) -> tuple[str, str]:
    """Split a scheme-relative link at `cut` into the robotlink's two strings; the second gets the `xcd` junk."""
    return link[:cut], "xcd" + link[cut:]


def streamtape_script(link: str, cut: int, element: str = "robotlink", *, substrings: bool = True) -> str:
    """The script that writes `link` into an element (`.substring(1).substring(2)` drops the junk)."""
    head, tail = streamtape_split(link, cut)
    calls = ".substring(1).substring(2)" if substrings else ""
    return f"document.getElementById('{element}').innerHTML = '{head}'+ ('{tail}'){calls};"


def dood_token(video_id: str) -> str:
    """A stable per-video Doodstream token (alphanumeric, as the real ones)."""
    rng = random.Random(f"dood-token-{video_id}")
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=24))


def dood_script(pass_path: str, token: str) -> str:
    """Doodstream's player script: `$.get(pass_md5)` then makePlay() with 10 random characters and the token."""
    return (
        'function makePlay(){for(var a="",t="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",'
        "n=t.length,o=0;10>o;o++)a+=t.charAt(Math.floor(Math.random()*n));"
        f'return a+"?token={token}&expiry="+Date.now();}}\n'
        f"$.get('{pass_path}', function(data) {{ dsplayer.src({{type: 'video/mp4', src: data + makePlay()}}); }});"
    )
