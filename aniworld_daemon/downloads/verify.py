"""The import gate's tools: ffprobe's view of a downloaded file."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from aniworld_daemon.errors import DownloadError


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ffprobe says about a downloaded file."""

    duration: float
    video_codec: str
    width: int | None
    height: int | None


async def probe(path: Path, *, timeout: float = 60.0) -> MediaInfo:  # noqa: ASYNC109 - the API names it so
    """Run ffprobe on `path` (async subprocess); DownloadError unless it has a video stream and a duration > 0."""
    command = ("ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path))
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError as err:
        raise DownloadError("ffprobe is missing: install ffmpeg (it provides ffprobe)") from err
    try:
        out, err_out = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise DownloadError(
            f"{path.name}: ffprobe did not finish within {timeout:g} s", details={"path": str(path)}
        ) from None
    if process.returncode != 0:
        lines = err_out.decode(errors="replace").strip().splitlines()
        reason = lines[0] if lines else f"exit status {process.returncode}"
        raise DownloadError(f"{path.name} is not playable: ffprobe failed: {reason}", details={"path": str(path)})
    return _media_info(path, out)


def _media_info(path: Path, output: bytes) -> MediaInfo:
    """MediaInfo from ffprobe's JSON, or DownloadError saying why the file is not playable."""
    try:
        data = json.loads(output)
    except ValueError as err:
        raise DownloadError(f"{path.name}: ffprobe printed no JSON", details={"path": str(path)}) from err
    streams = data.get("streams") or []
    video = next((stream for stream in streams if stream.get("codec_type") == "video"), None)
    if video is None:
        raise DownloadError(f"{path.name} is not playable: no video stream", details={"path": str(path)})
    try:
        duration = float((data.get("format") or {}).get("duration") or video.get("duration") or 0)
    except ValueError:
        duration = 0.0
    if duration <= 0:
        raise DownloadError(f"{path.name} is not playable: duration 0", details={"path": str(path)})
    width, height = video.get("width"), video.get("height")
    return MediaInfo(
        duration=duration,
        video_codec=str(video.get("codec_name") or "unknown"),
        width=width if isinstance(width, int) else None,
        height=height if isinstance(height, int) else None,
    )
