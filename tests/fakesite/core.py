"""What the fake site and its fake hosters share: knobs, the request log, media files and file serving."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

LOGGER = logging.getLogger(__name__)

CAPTCHA_PAGE = """<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>
<div class="cf-turnstile" data-sitekey="0x4AAAAAAA"></div>
<script src="https://challenges.cloudflare.com/turnstile/v0/api.js" async defer></script>
</body></html>"""

MAINTENANCE_PAGE = "<html><head><title>Wartungsarbeiten</title></head><body><p>Bald wieder da.</p></body></html>"
NOT_A_VIDEO_PAGE = (
    "<!DOCTYPE html><html><head><title>Video</title></head><body><h1>Please disable your ad blocker</h1>"
    + "<p>"
    + "This video is not available right now. " * 40
    + "</p></body></html>"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HLS_TYPE = "application/vnd.apple.mpegurl"
MP4_TYPE = "video/mp4"
# The playlist types hosters send (the registered one and the legacy ones); segments and MP4s are video/*.
HLS_TYPES = frozenset({HLS_TYPE, "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl"})


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
    # hoster label -> number of upcoming MEDIA requests (MP4, HLS playlist or segment) answered with 503; the
    # hoster's embed pages and other endpoints answer normally, as when only its CDN is overloaded
    fail_media: dict[str, int] = field(default_factory=dict)
    retry_after: int | None = None  # when set, 503 answers carry Retry-After with this many seconds
    # path -> status answered instead of the page (200: a maintenance page, as when the site changes an endpoint)
    fail_paths: dict[str, int] = field(default_factory=dict)
    dead_hosters: set[str] = field(default_factory=set)  # hoster names whose embed pages say "file not found"
    garbled_hosters: set[str] = field(default_factory=set)  # hoster names whose embed pages are mangled
    # hoster name -> scheme variant of its embed page (e.g. voe: "json" | "hls" | "redirect" | "m3u8")
    variants: dict[str, str] = field(default_factory=dict)
    # Misbehaving media (MP4, HLS playlist and segments), per hoster label; every other endpoint answers normally.
    # label -> body bytes of every media response sent before it hangs: the headers and that much of the file go
    # out, then nothing, with the connection kept open until the client leaves or the site stops
    stall_media: dict[str, int] = field(default_factory=dict)
    trickle_every: float | None = None  # during a stall, one more byte every this many seconds (None: nothing at all)
    # label -> body bytes of every media response after which the connection is closed, although its Content-Length
    # announced the whole file (a connection that drops: a client can notice and resume with a Range request)
    cut_media: dict[str, int] = field(default_factory=dict)
    # label -> bytes the hoster has of each media file: only that start of it, served as if it were all of it
    # (Content-Length says so too), as an upload that was cut short; only the file's own content can tell
    short_media: dict[str, int] = field(default_factory=dict)
    html_media: set[str] = field(default_factory=set)  # labels whose media requests get a 200 HTML page, not video
    dead_redirects: set[str] = field(default_factory=set)  # hoster names whose /redirect/<id> lead to a dead port

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
    content_type: str = ""  # of the response, without parameters ("video/mp4"); "" when it has none
    media: bool = False  # a request to a hoster's media endpoint (MP4, HLS playlist or segment), whatever its answer
    body_bytes: int = 0  # bytes of a served file written to the connection (see serve_file)


class RequestLog:
    """Every request every origin of the fake site served, with timing, for politeness assertions."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self._seen: dict[str, int] = defaultdict(int)
        # id() of the requests in flight that reached a media endpoint: media_gate() marks, observe() takes the mark
        # (a set of ids rather than request storage, whose typed keys need a newer aiohttp than we require)
        self._media_marks: set[int] = set()
        self._body_bytes: dict[int, int] = {}  # id() of a request in flight -> file bytes written so far

    def count(self, label: str | None = None, path_prefix: str = "") -> int:
        """How many requests `label` (or every origin) received, optionally only under `path_prefix`."""
        return len(self.select(label, path_prefix))

    def select(self, label: str | None = None, path_prefix: str = "") -> list[RequestRecord]:
        """The finished requests of `label` (or all), optionally only under `path_prefix`, in arrival order."""
        return sorted(
            (r for r in self.records if (label is None or r.label == label) and r.path.startswith(path_prefix)),
            key=lambda record: record.started,
        )

    def media(self, label: str | None = None) -> list[RequestRecord]:
        """The media requests (MP4, HLS playlist, segments) of hoster `label` (or all), any status, in arrival order.

        A request counts as media when it reached a media endpoint (`RequestRecord.media`, so a 503 from
        `Knobs.fail_media` or a 403 from a header check counts too) or was answered with a video or HLS content type.
        """
        return [record for record in self.select(label) if is_media(record)]

    def max_concurrency(self, label: str | None, *, media_only: bool = False) -> int:
        """The largest number of requests to `label` (None: to any origin) in flight at the same moment.

        With `media_only`, only media requests (see `media()`) count.
        """
        records = self.media(label) if media_only else self.select(label)
        edges = sorted(
            [(r.started, 1) for r in records] + [(r.finished, -1) for r in records],
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

    def mark_media(self, request: web.Request) -> None:
        """Note that `request` (still in flight) reached a media endpoint."""
        self._media_marks.add(id(request))

    def add_body_bytes(self, request: web.Request, count: int) -> None:
        """Count `count` more bytes of a file written to `request`'s connection."""
        self._body_bytes[id(request)] = self._body_bytes.get(id(request), 0) + count

    def take_body_bytes(self, request: web.Request) -> int:
        """The file bytes written to `request` (called once, as the request ends)."""
        return self._body_bytes.pop(id(request), 0)

    def take_media_mark(self, request: web.Request) -> bool:
        """Whether `request` was marked by mark_media(); forgets the mark (called once, as the request ends)."""
        if id(request) in self._media_marks:
            self._media_marks.discard(id(request))
            return True
        return False


def is_media(record: RequestRecord) -> bool:
    """Whether a logged request was a media request (see `RequestLog.media`)."""
    return record.media or record.content_type.startswith("video/") or record.content_type in HLS_TYPES


def content_type_of(response: web.StreamResponse) -> str:
    """The response's media type without parameters, "" when it has no Content-Type header."""
    return response.headers.get("Content-Type", "").partition(";")[0].strip().lower()


def media_gate(request: web.Request, ctx: HosterContext) -> web.Response | None:
    """Mark `request` as a media request of hoster `ctx`; a 503 while `Knobs.fail_media[ctx.name]` counts down.

    Called first by every media endpoint, so a failed or refused media request is still logged as media.
    `Knobs.html_media` answers an HTML page instead.
    """
    ctx.log.mark_media(request)
    if ctx.knobs.fail_media.get(ctx.name, 0) > 0:
        ctx.knobs.fail_media[ctx.name] -= 1
        return web.Response(status=503, text="Service Unavailable")  # no Retry-After: a CDN hiccup, not a budget
    if ctx.name in ctx.knobs.html_media:
        # What a hoster's CDN serves when a file is gone or a session is not accepted: a page, with status 200.
        return web.Response(text=NOT_A_VIDEO_PAGE, content_type="text/html")
    return None


def observe(label: str, knobs: Knobs, log: RequestLog) -> Middleware:
    """A middleware that logs every request of one origin and applies latency, blocks and 5xx bursts."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        number = log.arrived(label)
        status = 500
        content_type = ""
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
            content_type = content_type_of(response)
            return response
        except web.HTTPException as exc:
            status = exc.status
            content_type = content_type_of(exc)
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
                    content_type=content_type,
                    media=log.take_media_mark(request),
                    body_bytes=log.take_body_bytes(request),
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
# 640x360 with temporal noise, so the encoder cannot squeeze it, capped at a constant-ish 2.4 Mbit/s: each file is
# about 1.9 MB, above the library scanner's 1 MB floor for episodes (library.MIN_EPISODE_BYTES), and made in well
# under a second. The recipe is written beside the files, so a media dir made by an older recipe is made again.
VIDEO_BITRATE = "2400k"
MEDIA_RECIPE = f"v2 testsrc2 640x360@25 noise {VIDEO_BITRATE} aac {MEDIA_SECONDS}s hls 2s"


def ensure_media(cache_dir: Path) -> Media:
    """Make the media files in `cache_dir` with ffmpeg unless this recipe already made them there."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed: run `make test` (it installs it) or `apt-get install ffmpeg`")
    media = Media(
        mp4=cache_dir / "video.mp4",
        hls_dir=cache_dir / "hls",
        cover=cache_dir / "cover.jpg",
        duration=MEDIA_SECONDS,
    )
    recipe = cache_dir / "recipe.txt"
    made = [media.mp4, media.hls_playlist, media.cover, recipe]
    if all(path.exists() for path in made) and recipe.read_text(encoding="utf-8") == MEDIA_RECIPE:
        return media
    cache_dir.mkdir(parents=True, exist_ok=True)
    if media.hls_dir.exists():
        shutil.rmtree(media.hls_dir)  # no stale segments of another recipe
    media.hls_dir.mkdir()
    sources = [
        *("-f", "lavfi", "-i", f"testsrc2=duration={MEDIA_SECONDS}:size=640x360:rate=25"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:duration={MEDIA_SECONDS}"),
    ]
    encode = [
        *("-vf", "noise=alls=20:allf=t", "-c:v", "libx264", "-preset", "ultrafast"),
        *("-b:v", VIDEO_BITRATE, "-maxrate", VIDEO_BITRATE, "-bufsize", "1200k"),
        *("-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"),
    ]
    quiet = (ffmpeg, "-y", "-loglevel", "error")
    commands = [
        [*quiet, *sources, *encode, "-movflags", "+faststart", str(media.mp4)],
        [
            *quiet,
            *sources,
            *encode,
            *("-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"),
            *("-hls_segment_filename", str(media.hls_dir / "seg%03d.ts"), str(media.hls_playlist)),
        ],
        [*quiet, "-f", "lavfi", "-i", "color=c=navy:s=220x330", "-frames:v", "1", str(media.cover)],
    ]
    for command in commands:
        subprocess.run(command, check=True, timeout=120)
    recipe.write_text(MEDIA_RECIPE, encoding="utf-8")
    return media


CHUNK = 16 * 1024


async def serve_file(
    request: web.Request,
    path: Path,
    knobs: Knobs,
    content_type: str,
    log: RequestLog | None = None,
    *,
    hoster: str | None = None,
) -> web.StreamResponse:
    """Serve `path` with single-range Range support, throttled to `knobs.bandwidth` bytes/s for this connection.

    With `log`, the bytes written are counted on the request's record (`RequestRecord.body_bytes`). With `hoster`
    (a media file of that hoster), `Knobs.short_media`, `stall_media`, `trickle_every` and `cut_media` apply.
    """
    data = await asyncio.to_thread(path.read_bytes)  # the media files are small (about 2 MB at most)
    if hoster is not None and hoster in knobs.short_media:
        data = data[: knobs.short_media[hoster]]
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
    stall = knobs.stall_media.get(hoster) if hoster is not None else None
    cut = knobs.cut_media.get(hoster) if hoster is not None else None
    response = web.StreamResponse(status=status)
    response.content_type = content_type
    response.content_length = end - start + 1
    response.headers["Accept-Ranges"] = "bytes"
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    await response.prepare(request)
    position = start
    # Where this response stops behaving: the first byte it does not send normally (past the end: never).
    limit = start + min(stall if stall is not None else size, cut if cut is not None else size)
    try:
        while position <= end:
            if position >= limit:
                if cut is not None and (stall is None or cut <= stall):
                    LOGGER.debug("%s: dropping the connection after %d bytes", request.path, position - start)
                    if request.transport is not None:
                        request.transport.close()
                    return response
                await _hang(request, data, position, end, knobs, log)
                return response
            chunk = data[position : min(position + CHUNK, end + 1, limit)]
            await response.write(chunk)
            position += len(chunk)
            if log is not None:
                log.add_body_bytes(request, len(chunk))
            if knobs.bandwidth:
                await asyncio.sleep(len(chunk) / knobs.bandwidth)
        await response.write_eof()
    except ConnectionResetError:
        # The client went away mid-stream (a cancelled or killed download): routine for a media server, not an error.
        LOGGER.debug("%s: client left after %d of %d bytes", request.path, position - start, end - start + 1)
    return response


HANG_POLL = 0.2  # seconds between looks at a hanging connection (has the client left?)


async def _hang(
    request: web.Request, data: bytes, position: int, end: int, knobs: Knobs, log: RequestLog | None
) -> None:
    """Send nothing more (or, with `Knobs.trickle_every`, one byte at a time) until the client leaves."""
    LOGGER.debug("%s: hanging after byte %d", request.path, position)
    last_byte = asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(HANG_POLL)
        transport = request.transport
        if transport is None or transport.is_closing():
            return  # the client left (or the site stops)
        now = asyncio.get_running_loop().time()
        if knobs.trickle_every is not None and position <= end and now - last_byte >= knobs.trickle_every:
            last_byte = now
            # Straight to the transport: a response's write() waits for the buffer to drain, which a client that
            # stopped reading never does, and this loop must keep seeing whether the client left.
            transport.write(data[position : position + 1])
            position += 1
            if log is not None:
                log.add_body_bytes(request, 1)


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
