"""The import gate: a download enters the library only as what its source promised, checked with ffprobe.

What a source promises is stored beside the partial files (see tempfiles.TempFiles.save_promise), so a file finished
by a daemon that was killed before importing it is still checked against it after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aniworld_daemon.errors import DownloadError, ImportRefused

LOGGER = logging.getLogger(__name__)

# yt-dlp reports an HLS stream's duration in whole seconds (the playlist's #EXTINF sum, truncated), and a remuxed
# file's own duration runs a few frames past it: accept [promised - 1, promised + 2). A repeated or missing HLS
# fragment moves it by a whole segment (2 to 10 s), far outside.
DURATION_BELOW = 1.0
DURATION_ABOVE = 2.0
# The ffprobe format names that may carry each extension we import, and the ffmpeg muxer that writes it.
CONTAINERS: dict[str, tuple[frozenset[str], str]] = {
    ".mp4": (frozenset({"mov", "mp4"}), "mp4"),
    ".m4v": (frozenset({"mov", "mp4"}), "mp4"),
    ".mov": (frozenset({"mov"}), "mov"),
    ".mkv": (frozenset({"matroska"}), "matroska"),
    ".webm": (frozenset({"webm"}), "webm"),
    ".ts": (frozenset({"mpegts"}), "mpegts"),
}


@dataclass(frozen=True, slots=True)
class SourcePromise:
    """What the source said the finished file will be: a direct file's full length, an HLS stream's duration."""

    hoster: str
    size: int | None = None  # bytes, the total the server announced (Content-Length + Range offset)
    duration: float | None = None  # seconds, from the HLS playlist

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {"hoster": self.hoster, "size": self.size, "duration": self.duration}

    @classmethod
    def from_json(cls, data: Any) -> SourcePromise | None:
        """The promise stored as `data`, or None when it is not one (a damaged file is no promise)."""
        if not isinstance(data, dict) or not isinstance(data.get("hoster"), str):
            return None
        size, duration = data.get("size"), data.get("duration")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            return None
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int | float) or not 0 < duration < math.inf
        ):
            return None
        return cls(data["hoster"], size, float(duration) if duration is not None else None)


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ffprobe says about a downloaded file."""

    duration: float
    video_codec: str
    width: int | None
    height: int | None
    container: frozenset[str] = frozenset()  # ffprobe's format names: {"mov", "mp4", "m4a", ...}, {"mpegts"}


async def check(
    path: Path,
    promise: SourcePromise | None,
    *,
    resumed: bool,
    timeout: float = 600.0,  # noqa: ASYNC109 - for ffmpeg's remux, which reads the whole file
) -> MediaInfo:
    """The import gate: `path` plays, is in the container its name says (remuxed when not) and is what was promised.

    A direct file must have exactly the promised length; an HLS download the promised duration. A file made from an
    earlier attempt's leftovers (`resumed`) must have a promise to be checked against; a fresh one whose source
    announced nothing (no Content-Length, a live playlist) only has to play. Raises ImportRefused (DownloadError when
    ffprobe or ffmpeg cannot run); the caller drops the file.
    """
    if promise is None or (promise.size is None and promise.duration is None):
        if resumed:
            raise ImportRefused(f"{path.name}: its source's length is unknown, so the resumed file cannot be checked")
        promise = None
    if promise is not None and promise.size is not None:
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        if size != promise.size:
            raise ImportRefused(
                f"{path.name} has {size} bytes, the source announced {promise.size}",
                details={"size": size, "promised": promise.size},
            )
    info = await probe(path)
    formats, muxer = CONTAINERS.get(path.suffix.lower(), (frozenset(), ""))
    if muxer and not info.container & formats:
        LOGGER.info("%s holds %s, not %s: remuxing it", path.name, ",".join(sorted(info.container)), path.suffix)
        await remux(path, muxer, timeout=timeout)
        info = await probe(path)
        if not info.container & formats:
            raise ImportRefused(f"{path.name} is still not {path.suffix} after remuxing")
    if (
        promise is not None
        and promise.duration is not None
        and not (promise.duration - DURATION_BELOW <= info.duration < promise.duration + DURATION_ABOVE)
    ):
        raise ImportRefused(
            f"{path.name} lasts {info.duration:.1f} s, the source {promise.duration:g} s",
            details={"duration": info.duration, "promised": promise.duration},
        )
    return info


async def remux(path: Path, muxer: str, *, timeout: float) -> None:  # noqa: ASYNC109 - the API names it so
    """Copy every stream of `path` into the container `muxer` (no re-encoding), replacing `path`; DownloadError."""
    # The name yt-dlp's own fix-ups use: the temp-file owner counts it among the item's partial files.
    stem, suffix = path.name.split(".", 1)[0], path.suffix
    output = path.with_name(f"{stem}.temp{suffix}")
    command = ("ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(path), "-map", "0", "-c", "copy", "-f", muxer)
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            str(output),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as err:
        raise DownloadError("ffmpeg is missing: install ffmpeg") from err
    try:
        _, err_out = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:
        # A timeout or a cancel: the half-written copy goes, the original stays for the caller.
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        await asyncio.to_thread(output.unlink, missing_ok=True)
        raise
    if process.returncode != 0:
        await asyncio.to_thread(output.unlink, missing_ok=True)
        lines = err_out.decode(errors="replace").strip().splitlines()
        raise ImportRefused(f"{path.name}: remuxing failed: {lines[-1] if lines else process.returncode}")
    await asyncio.to_thread(os.replace, output, path)


async def probe(path: Path, *, timeout: float = 60.0) -> MediaInfo:  # noqa: ASYNC109 - the API names it so
    """Run ffprobe on `path` (async subprocess); ImportRefused unless it has a video stream and a duration > 0.

    DownloadError when ffprobe is missing or does not finish within `timeout`.
    """
    # -count_packets reads every packet (demuxing only, no decoding): a file cut short reads fewer than its index
    # lists, while its header alone (an MP4's moov at the start) still gives the full duration.
    command = (
        *("ffprobe", "-v", "error", "-count_packets", "-print_format", "json"),
        *("-show_format", "-show_streams", str(path)),
    )
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError as err:
        raise DownloadError("ffprobe is missing: install ffmpeg (it provides ffprobe)") from err
    try:
        out, err_out = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        await _end(process)
        raise DownloadError(
            f"{path.name}: ffprobe did not finish within {timeout:g} s", details={"path": str(path)}
        ) from None
    except asyncio.CancelledError:
        # A stop or cancel mid-probe: the child must not outlive us, nor its transport the event loop.
        await _end(process)
        raise
    if process.returncode != 0:
        lines = err_out.decode(errors="replace").strip().splitlines()
        reason = lines[0] if lines else f"exit status {process.returncode}"
        raise ImportRefused(f"{path.name} is not playable: ffprobe failed: {reason}", details={"path": str(path)})
    return _media_info(path, out)


def _media_info(path: Path, output: bytes) -> MediaInfo:
    """MediaInfo from ffprobe's JSON, or ImportRefused saying why the file is not playable."""
    try:
        data = json.loads(output)
    except ValueError as err:
        raise ImportRefused(f"{path.name}: ffprobe printed no JSON", details={"path": str(path)}) from err
    streams = data.get("streams") or []
    video = next((stream for stream in streams if stream.get("codec_type") == "video"), None)
    if video is None:
        raise ImportRefused(f"{path.name} is not playable: no video stream", details={"path": str(path)})
    try:
        duration = float((data.get("format") or {}).get("duration") or video.get("duration") or 0)
    except ValueError:
        duration = 0.0
    if duration <= 0:
        raise ImportRefused(f"{path.name} is not playable: duration 0", details={"path": str(path)})
    for stream in streams:
        listed, read = str(stream.get("nb_frames", "")), str(stream.get("nb_read_packets", ""))
        # Only containers with an index (MP4, MOV) list their frames; MPEG-TS and Matroska say N/A.
        if listed.isdigit() and read.isdigit() and int(read) < int(listed):
            raise ImportRefused(
                f"{path.name} is cut short: its {stream.get('codec_type', 'unknown')} stream has {read} of the"
                f" {listed} packets its index lists",
                details={"path": str(path), "packets": int(read), "listed": int(listed)},
            )
    width, height = video.get("width"), video.get("height")
    names = str((data.get("format") or {}).get("format_name") or "")
    return MediaInfo(
        duration=duration,
        video_codec=str(video.get("codec_name") or "unknown"),
        width=width if isinstance(width, int) else None,
        height=height if isinstance(height, int) else None,
        container=frozenset(name for name in names.split(",") if name),
    )


async def _end(process: asyncio.subprocess.Process) -> None:
    """Kill a child that is still running and reap it (shielded: it must finish even while we are cancelled)."""
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(process.wait())
