"""What the fake site and its fake hosters share: knobs, the request log, media files and file serving."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

CAPTCHA_PAGE = """<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>
<div class="cf-turnstile" data-sitekey="0x4AAAAAAA"></div>
<script src="https://challenges.cloudflare.com/turnstile/v0/api.js" async defer></script>
</body></html>"""

MAINTENANCE_PAGE = "<html><head><title>Wartungsarbeiten</title></head><body><p>Bald wieder da.</p></body></html>"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Knobs:
    """Behaviour switches a test flips while the site runs; every field applies from the next request on."""

    latency: float = 0.0  # seconds added before every response
    bandwidth: int | None = None  # bytes per second per connection when serving media; None = unlimited
    # label ("site", "voe", ...) -> number of requests answered normally before the host starts refusing
    block_after: dict[str, int] = field(default_factory=dict)
    block_mode: str = "403"  # "403" answers 403; "captcha" answers 200 with a captcha page
    # label -> number of upcoming requests answered with 503
    fail_5xx: dict[str, int] = field(default_factory=dict)
    retry_after: int | None = None  # when set, 503 answers carry Retry-After with this many seconds
    # path -> status answered instead of the page (200: a maintenance page, as when the site changes an endpoint)
    fail_paths: dict[str, int] = field(default_factory=dict)
    dead_hosters: set[str] = field(default_factory=set)  # hoster names whose embed pages say "file not found"
    garbled_hosters: set[str] = field(default_factory=set)  # hoster names whose embed pages are mangled
    # hoster name -> scheme variant of its embed page (e.g. voe: "json" | "hls" | "redirect" | "m3u8")
    variants: dict[str, str] = field(default_factory=dict)

    def block(self, label: str, after: int = 0, mode: str = "403") -> None:
        """Refuse every request to `label` once it has answered `after` more requests."""
        self.block_mode = mode
        self.block_after[label] = after

    def unblock(self, label: str) -> None:
        """Stop refusing requests to `label`."""
        self.block_after.pop(label, None)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the fake site saw it; times are `time.monotonic()` seconds."""

    label: str
    method: str
    path: str  # path with query string
    headers: dict[str, str]
    started: float
    finished: float
    status: int


class RequestLog:
    """Every request every origin of the fake site served, with timing, for politeness assertions."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self._seen: dict[str, int] = defaultdict(int)

    def count(self, label: str | None = None, path_prefix: str = "") -> int:
        """How many requests `label` (or every origin) received, optionally only under `path_prefix`."""
        return len(self.select(label, path_prefix))

    def select(self, label: str | None = None, path_prefix: str = "") -> list[RequestRecord]:
        """The finished requests of `label` (or all), optionally only under `path_prefix`, in arrival order."""
        return sorted(
            (r for r in self.records if (label is None or r.label == label) and r.path.startswith(path_prefix)),
            key=lambda record: record.started,
        )

    def max_concurrency(self, label: str) -> int:
        """The largest number of requests to `label` that were in flight at the same moment."""
        edges = sorted(
            [(r.started, 1) for r in self.records if r.label == label]
            + [(r.finished, -1) for r in self.records if r.label == label],
            key=lambda edge: (edge[0], edge[1]),  # an end sorts before a start at the same instant
        )
        current = peak = 0
        for _, delta in edges:
            current += delta
            peak = max(peak, current)
        return peak

    def clear(self) -> None:
        """Forget every record (the per-origin counters used by `Knobs.block_after` keep counting)."""
        self.records.clear()

    def arrived(self, label: str) -> int:
        """Count one more arriving request for `label` and return the new total."""
        self._seen[label] += 1
        return self._seen[label]


def observe(label: str, knobs: Knobs, log: RequestLog) -> Middleware:
    """A middleware that logs every request of one origin and applies latency, blocks and 5xx bursts."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        number = log.arrived(label)
        status = 500
        try:
            if knobs.latency:
                await asyncio.sleep(knobs.latency)
            after = knobs.block_after.get(label)
            if after is not None and number > after:
                response: web.StreamResponse
                if knobs.block_mode == "captcha":
                    response = web.Response(text=CAPTCHA_PAGE, content_type="text/html")
                else:
                    response = web.Response(status=403, text="<html><body>403 Forbidden</body></html>")
            elif knobs.fail_5xx.get(label, 0) > 0:
                knobs.fail_5xx[label] -= 1
                headers = {"Retry-After": str(knobs.retry_after)} if knobs.retry_after is not None else {}
                response = web.Response(status=503, text="Service Unavailable", headers=headers)
            elif request.path in knobs.fail_paths:
                response = web.Response(
                    status=knobs.fail_paths[request.path], text=MAINTENANCE_PAGE, content_type="text/html"
                )
            else:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            log.records.append(
                RequestRecord(
                    label=label,
                    method=request.method,
                    path=request.path_qs,
                    headers=dict(request.headers),
                    started=started,
                    finished=time.monotonic(),
                    status=status,
                )
            )

    return middleware


@dataclass(frozen=True, slots=True)
class Media:
    """Real media files made once by ffmpeg: an MP4, an HLS stream (playlist + segments) and a cover image."""

    mp4: Path
    hls_dir: Path  # holds index.m3u8 and seg000.ts ...
    cover: Path
    duration: float  # seconds

    @property
    def hls_playlist(self) -> Path:
        """The HLS playlist file."""
        return self.hls_dir / "index.m3u8"


MEDIA_SECONDS = 6.0


def ensure_media(cache_dir: Path) -> Media:
    """Make the media files in `cache_dir` with ffmpeg unless they are already there."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed: run `make test` (it installs it) or `apt-get install ffmpeg`")
    media = Media(
        mp4=cache_dir / "video.mp4",
        hls_dir=cache_dir / "hls",
        cover=cache_dir / "cover.jpg",
        duration=MEDIA_SECONDS,
    )
    if media.mp4.exists() and media.hls_playlist.exists() and media.cover.exists():
        return media
    cache_dir.mkdir(parents=True, exist_ok=True)
    media.hls_dir.mkdir(exist_ok=True)
    sources = [
        *("-f", "lavfi", "-i", f"testsrc=duration={MEDIA_SECONDS}:size=320x240:rate=25"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:duration={MEDIA_SECONDS}"),
    ]
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"]
    commands = [
        [ffmpeg, "-y", "-loglevel", "error", *sources, *encode, "-movflags", "+faststart", str(media.mp4)],
        [
            *(ffmpeg, "-y", "-loglevel", "error", *sources, *encode),
            *("-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"),
            *("-hls_segment_filename", str(media.hls_dir / "seg%03d.ts"), str(media.hls_playlist)),
        ],
        [
            ffmpeg,
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=navy:s=220x330",
            "-frames:v",
            "1",
            str(media.cover),
        ],
    ]
    for command in commands:
        subprocess.run(command, check=True, timeout=120)
    return media


CHUNK = 16 * 1024


async def serve_file(request: web.Request, path: Path, knobs: Knobs, content_type: str) -> web.StreamResponse:
    """Serve `path` with single-range Range support, throttled to `knobs.bandwidth` bytes/s for this connection."""
    data = await asyncio.to_thread(path.read_bytes)  # the media files are small (a few hundred kB)
    size = len(data)
    start, end = 0, size - 1
    status = 200
    header = request.headers.get("Range", "")
    if header.startswith("bytes="):
        first, _, last = header[len("bytes=") :].split(",")[0].strip().partition("-")
        try:
            if first:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            else:  # a suffix range: the last N bytes
                start = max(size - int(last), 0)
        except ValueError:
            raise web.HTTPBadRequest(text="bad Range header") from None
        if start >= size or start > end:
            raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        status = 206
    response = web.StreamResponse(status=status)
    response.content_type = content_type
    response.content_length = end - start + 1
    response.headers["Accept-Ranges"] = "bytes"
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    await response.prepare(request)
    position = start
    while position <= end:
        chunk = data[position : min(position + CHUNK, end + 1)]
        await response.write(chunk)
        position += len(chunk)
        if knobs.bandwidth:
            await asyncio.sleep(len(chunk) / knobs.bandwidth)
    await response.write_eof()
    return response


@dataclass
class HosterContext:
    """What one fake hoster app needs: its name, the shared knobs, log and media, and its own origin once bound."""

    name: str
    knobs: Knobs
    log: RequestLog
    media: Media
    port: int = 0  # set when the hoster's site is bound

    def origin(self) -> str:
        """The hoster's origin, e.g. `http://127.0.0.1:41234`."""
        return f"http://127.0.0.1:{self.port}"
