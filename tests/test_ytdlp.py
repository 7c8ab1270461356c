"""The yt-dlp bridge, with the real yt-dlp and ffprobe against the fake hosters: progress, cancel, resume, errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from aniworld_daemon.downloads.tempfiles import partial_files, remove_files
from aniworld_daemon.downloads.verify import MediaInfo, SourcePromise, probe
from aniworld_daemon.downloads.ytdlp import (
    PROGRESS_INTERVAL,
    CancelToken,
    Progress,
    YtdlpOptions,
    download,
)
from aniworld_daemon.errors import DownloadError, HosterError, StorageError, TransferCancelled
from aniworld_daemon.provider.hosters import MediaKind, MediaSource
from tests.fakesite.core import Media
from tests.fakesite.server import FakeSite

STEM = "Show - S01E01 - Pilot [de-sub]"
QUICK = YtdlpOptions(retries=1, fragment_retries=1, socket_timeout=10)
SECRET = "cookie-value-that-must-never-be-logged"


def mp4_source(site: FakeSite) -> MediaSource:
    """Vidoza's MP4 (no header checks)."""
    return MediaSource(f"{site.hoster_origin('vidoza')}/vod/abc123/v.mp4", {}, MediaKind.MP4, "vidoza")


def hls_source(site: FakeSite) -> MediaSource:
    """Vidmoly's HLS stream; its CDN answers 403 without Vidmoly's Referer, so this also proves the headers are sent."""
    origin = site.hoster_origin("vidmoly")
    return MediaSource(
        f"{origin}/hls/abc123/master.m3u8", {"Referer": f"{origin}/", "Cookie": SECRET}, MediaKind.HLS, "vidmoly"
    )


SOURCES = {MediaKind.MP4: mp4_source, MediaKind.HLS: hls_source}
# The file yt-dlp resumes after a cancel in the first fragment: the .part itself for an MP4; for HLS the first
# segment's own .part (the stream's .part is still empty, the .ytdl file says which fragment comes next).
RESUMED_PART = {MediaKind.MP4: f"{STEM}.mp4.part", MediaKind.HLS: f"{STEM}.mp4.part-Frag1.part"}


def media_size(media: Media, kind: MediaKind) -> int:
    """How many bytes the hoster serves for `kind` (the HLS segments together)."""
    if kind is MediaKind.MP4:
        return media.mp4.stat().st_size
    return sum(path.stat().st_size for path in media.hls_dir.glob("seg*.ts"))


@dataclass
class ProgressRecorder:
    """Collects progress callbacks with their arrival time and thread; optionally cancels at the first bytes."""

    cancel_at_first_bytes: CancelToken | None = None

    def __post_init__(self) -> None:
        self.calls: list[tuple[float, int, Progress]] = []
        self.started = asyncio.Event()

    def __call__(self, progress: Progress) -> None:
        self.calls.append((time.monotonic(), threading.get_ident(), progress))
        if progress.downloaded_bytes > 0:
            self.started.set()
            if self.cancel_at_first_bytes is not None:
                self.cancel_at_first_bytes.cancel()

    @property
    def progress(self) -> list[Progress]:
        """The reports in arrival order."""
        return [progress for _, _, progress in self.calls]


def listing(folder: Path) -> list[Path]:
    """The entries of `folder`, sorted."""
    return sorted(folder.iterdir())


def open_files_under(folder: Path) -> list[str]:
    """The files under `folder` this process holds open (Linux /proc)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed between listing and reading
        if target.startswith(f"{folder}/"):
            found.append(target)
    return found


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    """The download folder."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Empty HOME, XDG cache and working directory: yt-dlp must write nothing into any of them."""
    folders = [tmp_path / "home", tmp_path / "cache", tmp_path / "cwd"]
    for folder in folders:
        folder.mkdir()
    monkeypatch.setenv("HOME", str(folders[0]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(folders[1]))
    monkeypatch.chdir(folders[2])
    return folders


# --- downloads ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [MediaKind.MP4, MediaKind.HLS])
async def test_download_gives_one_playable_file_and_writes_nothing_elsewhere(
    fakesite: FakeSite, media: Media, temp_dir: Path, elsewhere: list[Path], kind: MediaKind
) -> None:
    """MP4 and HLS end as temp_dir/<stem>.mp4 that probes like the source; no other file anywhere."""
    recorder = ProgressRecorder()

    source = SOURCES[kind](fakesite)
    stored: list[SourcePromise] = []
    result = await download(
        source,
        temp_dir,
        STEM,
        options=QUICK,
        on_progress=recorder,
        cancel=CancelToken(),
        on_promise=stored.append,
    )
    path = result.path

    assert path == temp_dir / f"{STEM}.mp4"  # HLS too: yt-dlp remuxes the MPEG-TS stream into MP4 by itself
    assert listing(temp_dir) == partial_files(temp_dir, STEM) == [path]
    assert [listing(folder) for folder in elsewhere] == [[], [], []]
    info = await probe(path)
    original = await probe(media.mp4)
    assert info.duration == pytest.approx(media.duration, abs=0.5)
    assert (info.video_codec, info.width, info.height) == (original.video_codec, original.width, original.height)
    if kind is MediaKind.MP4:
        assert path.read_bytes() == media.mp4.read_bytes()
        # The announced length, handed on once, before the end, so it can be stored for a resume after a kill
        assert stored == [result.promise] == [SourcePromise(source.hoster, size=media.mp4.stat().st_size)]
    else:
        # The playlist's duration in whole seconds, as yt-dlp reads it
        assert stored == [result.promise] == [SourcePromise(source.hoster, duration=float(int(media.duration)))]
    last = recorder.progress[-1]
    assert last.downloaded_bytes == last.total_bytes == media_size(media, kind)
    assert last.percent == 100.0


async def test_progress_is_throttled_delivered_on_the_loop_and_ends_complete(
    fakesite: FakeSite, media: Media, temp_dir: Path
) -> None:
    """A ~2.5 s download reports at most twice a second (plus the final report), always on the loop's thread."""
    size = media_size(media, MediaKind.MP4)
    fakesite.knobs.bandwidth = int(size / 2.5)
    recorder = ProgressRecorder()
    started = time.monotonic()

    await download(mp4_source(fakesite), temp_dir, STEM, options=QUICK, on_progress=recorder, cancel=CancelToken())

    elapsed = time.monotonic() - started
    assert len(recorder.calls) >= 3, recorder.progress  # not just the first and the final report
    assert len(recorder.calls) <= elapsed / PROGRESS_INTERVAL + 2, (elapsed, recorder.progress)
    assert {thread for _, thread, _ in recorder.calls} == {threading.get_ident()}
    downloaded = [progress.downloaded_bytes for progress in recorder.progress]
    assert downloaded == sorted(downloaded)
    assert {progress.total_bytes for progress in recorder.progress} == {size}
    assert (recorder.progress[-1].downloaded_bytes, recorder.progress[-1].total_bytes) == (size, size)
    assert recorder.progress[-1].percent == 100.0


async def test_rate_limit_is_honoured(fakesite: FakeSite, media: Media, temp_dir: Path) -> None:
    """With rate_limit, the download takes about size / rate (loosely: at least 70 % of it)."""
    size = media_size(media, MediaKind.MP4)
    rate = int(size / 1.5)
    started = time.monotonic()

    downloaded = await download(
        mp4_source(fakesite),
        temp_dir,
        STEM,
        options=YtdlpOptions(rate_limit=rate),
        on_progress=lambda _: None,
        cancel=CancelToken(),
    )
    path = downloaded.path

    assert time.monotonic() - started >= size / rate * 0.7
    assert path.stat().st_size == size


# --- cancellation and resume ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [MediaKind.MP4, MediaKind.HLS])
async def test_cancel_via_the_token_keeps_the_partial_files_closed(
    fakesite: FakeSite, media: Media, temp_dir: Path, kind: MediaKind
) -> None:
    """The token stops the download with TransferCancelled; the partial files stay, closed; remove_files clears them."""
    fakesite.knobs.bandwidth = media_size(media, kind) // 4
    token = CancelToken()

    with pytest.raises(TransferCancelled) as cancelled:
        await download(
            SOURCES[kind](fakesite), temp_dir, STEM, options=QUICK, on_progress=ProgressRecorder(token), cancel=token
        )

    assert cancelled.value.code == "download_cancelled"
    partial = partial_files(temp_dir, STEM)
    assert temp_dir / RESUMED_PART[kind] in partial
    assert temp_dir / f"{STEM}.mp4" not in partial
    assert 0 < (temp_dir / RESUMED_PART[kind]).stat().st_size < media_size(media, kind)
    assert open_files_under(temp_dir) == []
    assert remove_files(temp_dir, STEM) == len(partial)
    assert listing(temp_dir) == []


@pytest.mark.parametrize("kind", [MediaKind.MP4, MediaKind.HLS])
async def test_task_cancellation_waits_for_the_thread_and_keeps_the_part(
    fakesite: FakeSite, media: Media, temp_dir: Path, caplog: pytest.LogCaptureFixture, kind: MediaKind
) -> None:
    """Cancelling the awaiting task sets the token, waits until yt-dlp gave up (files closed), then re-raises."""
    caplog.set_level("DEBUG", logger="aniworld_daemon.downloads.ytdlp")
    fakesite.knobs.bandwidth = media_size(media, kind) // 4
    token = CancelToken()
    recorder = ProgressRecorder()
    task = asyncio.create_task(
        download(SOURCES[kind](fakesite), temp_dir, STEM, options=QUICK, on_progress=recorder, cancel=token)
    )
    await asyncio.wait_for(recorder.started.wait(), timeout=10)

    task.cancel()
    await asyncio.sleep(0)
    task.cancel()  # a second cancel while waiting for the thread changes nothing
    with pytest.raises(asyncio.CancelledError):
        await task

    assert token.cancelled
    assert f"{STEM}: download cancelled" in caplog.text  # the worker thread's last words: it had ended
    assert open_files_under(temp_dir) == []
    assert (temp_dir / RESUMED_PART[kind]).stat().st_size > 0
    assert temp_dir / f"{STEM}.mp4" not in partial_files(temp_dir, STEM)


@pytest.mark.parametrize("kind", [MediaKind.MP4, MediaKind.HLS])
async def test_a_cancelled_download_resumes_with_a_range_request(
    fakesite: FakeSite, media: Media, temp_dir: Path, kind: MediaKind
) -> None:
    """The next download of the same stem continues the partial file (`Range: bytes=N-`) and ends playable."""
    fakesite.knobs.bandwidth = media_size(media, kind) // 4
    token = CancelToken()
    source = SOURCES[kind](fakesite)
    with pytest.raises(TransferCancelled):
        await download(source, temp_dir, STEM, options=QUICK, on_progress=ProgressRecorder(token), cancel=token)
    kept = (temp_dir / RESUMED_PART[kind]).stat().st_size
    fakesite.knobs.bandwidth = None
    fakesite.log.clear()

    path = (
        await download(source, temp_dir, STEM, options=QUICK, on_progress=lambda _: None, cancel=CancelToken())
    ).path

    ranged = [(record.status, record.headers.get("Range")) for record in fakesite.log.select(source.hoster)]
    assert (206, f"bytes={kept}-") in ranged
    assert (await probe(path)).duration == pytest.approx(media.duration, abs=0.5)
    if kind is MediaKind.MP4:
        assert path.read_bytes() == media.mp4.read_bytes()
    assert partial_files(temp_dir, STEM) == [path]


@pytest.mark.parametrize("kind", [MediaKind.MP4, MediaKind.HLS])
async def test_a_finished_file_is_not_downloaded_again(
    fakesite: FakeSite, media: Media, temp_dir: Path, kind: MediaKind
) -> None:
    """A stem whose file is complete (say the daemon stopped before moving it) is returned without a media fetch."""
    source = SOURCES[kind](fakesite)
    first = await download(source, temp_dir, STEM, options=QUICK, on_progress=lambda _: None, cancel=CancelToken())
    before = first.path.stat()
    fakesite.log.clear()
    recorder = ProgressRecorder()

    again = await download(
        source, temp_dir, STEM, options=QUICK, on_progress=recorder, cancel=CancelToken(), promise=first.promise
    )

    assert again == first  # the same file, and the promise the caller stored (HLS: read again from the playlist)
    after = again.path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    # One report, the final one: no bytes were fetched (the generic extractor still opens an MP4 once to read its
    # Content-Type, and reads the playlists of an HLS stream, but no segment).
    assert [progress.percent for progress in recorder.progress] == [100.0]
    assert not [record for record in fakesite.log.select(source.hoster) if record.path.endswith(".ts")]


# --- errors ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hoster", "path", "headers", "status"),
    [
        ("vidoza", "/vod/abc123/gone.mp4", {}, 404),
        ("vidmoly", "/hls/abc123/master.m3u8", {"Cookie": SECRET}, 403),  # no Referer: the CDN refuses
    ],
)
async def test_a_refused_media_url_is_a_hoster_error(
    fakesite: FakeSite, temp_dir: Path, hoster: str, path: str, headers: dict[str, str], status: int
) -> None:
    """4xx on the media URL is HosterError (the downloader tries the next hoster), with a clean message."""
    source = MediaSource(fakesite.hoster_origin(hoster) + path, headers, MediaKind.MP4, hoster)

    with pytest.raises(HosterError) as refused:
        await download(source, temp_dir, STEM, options=QUICK, on_progress=lambda _: None, cancel=CancelToken())

    assert refused.value.details == {"hoster": hoster, "status": status}
    assert f"HTTP Error {status}" in refused.value.message
    assert "ERROR:" not in refused.value.message
    assert "\x1b" not in refused.value.message
    assert SECRET not in refused.value.message
    assert listing(temp_dir) == []


async def test_a_server_error_is_a_download_error_not_a_hoster_error(fakesite: FakeSite, temp_dir: Path) -> None:
    """5xx (after the retries) is a plain DownloadError: the download is retried later, the hoster is not given up."""
    fakesite.knobs.fail_5xx["vidoza"] = 100

    with pytest.raises(DownloadError) as failed:
        await download(
            mp4_source(fakesite), temp_dir, STEM, options=QUICK, on_progress=lambda _: None, cancel=CancelToken()
        )

    assert type(failed.value) is DownloadError
    assert "HTTP Error 503" in failed.value.message
    assert not failed.value.message.startswith("ERROR")


async def test_a_missing_hls_segment_fails_the_download(fakesite: FakeSite, media: Media, temp_dir: Path) -> None:
    """A segment that keeps failing is a DownloadError, not a file with a hole that would still probe fine."""
    fakesite.knobs.bandwidth = media_size(media, MediaKind.HLS) // 4

    def fail_from_now_on(progress: Progress) -> None:
        # Called while the first segment downloads: every later request (the next segment) answers 503.
        fakesite.knobs.fail_5xx["vidmoly"] = 1000

    with pytest.raises(DownloadError) as failed:
        await download(
            hls_source(fakesite), temp_dir, STEM, options=QUICK, on_progress=fail_from_now_on, cancel=CancelToken()
        )

    assert type(failed.value) is DownloadError
    assert temp_dir / f"{STEM}.mp4" not in partial_files(temp_dir, STEM)


@pytest.mark.parametrize("kind", [MediaKind.MP4, MediaKind.HLS])
async def test_a_full_disk_is_a_storage_error(fakesite: FakeSite, temp_dir: Path, kind: MediaKind) -> None:
    """ENOSPC while writing is StorageError: a .part that is really /dev/full fails every write with it."""
    (temp_dir / f"{STEM}.mp4.part").symlink_to("/dev/full")

    with pytest.raises(StorageError) as full:
        await download(
            SOURCES[kind](fakesite), temp_dir, STEM, options=QUICK, on_progress=lambda _: None, cancel=CancelToken()
        )

    assert full.value.details == {"path": str(temp_dir)}


# --- files ----------------------------------------------------------------------------------------------------------


def test_partial_files_are_exactly_the_stems_files(temp_dir: Path) -> None:
    """Every name yt-dlp uses for a stem is found; other stems (even ones starting with ours) and folders are not."""
    ours = [
        f"{STEM}.mp4",
        f"{STEM}.mp4.part",
        f"{STEM}.mp4.ytdl",
        f"{STEM}.mp4.part-Frag3",
        f"{STEM}.mp4.part-Frag12.part",
        f"{STEM}.temp.mp4",
        f"{STEM}.f1.mp4.part",
    ]
    theirs = [f"{STEM}.5.mp4", f"{STEM}0.mp4", f"{STEM} (2).mp4.part", "other.mp4.part", f"x{STEM}.mp4"]
    for name in ours + theirs:
        (temp_dir / name).write_bytes(b"x")
    (temp_dir / f"{STEM}.d").mkdir()

    assert partial_files(temp_dir, STEM) == sorted(temp_dir / name for name in ours)
    assert remove_files(temp_dir, STEM) == len(ours)
    assert sorted(path.name for path in temp_dir.iterdir()) == sorted([*theirs, f"{STEM}.d"])
    assert partial_files(temp_dir / "missing", STEM) == []
    assert remove_files(temp_dir / "missing", STEM) == 0


# --- probe ----------------------------------------------------------------------------------------------------------


async def test_probe_reads_the_video(media: Media) -> None:
    """The source MP4: H.264, its duration, a size."""
    info = await probe(media.mp4)
    assert isinstance(info, MediaInfo)
    assert info.video_codec == "h264"
    assert info.duration == pytest.approx(media.duration, abs=0.5)
    assert info.width is not None
    assert info.height is not None
    assert info.width > info.height > 0


@pytest.fixture(scope="module")
def audio_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-second AAC file without video, made with ffmpeg."""
    path = tmp_path_factory.mktemp("audio") / "sound.m4a"
    command = ["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(path)]
    subprocess.run(command, check=True, timeout=60)
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        ("text", "ffprobe failed: "),
        ("audio", "no video stream"),
        ("image", "duration 0"),  # a JPEG is a video stream without a duration
    ],
)
async def test_probe_refuses_what_is_not_a_video(
    tmp_path: Path, media: Media, audio_only: Path, make: str, reason: str
) -> None:
    """Not a video file: DownloadError saying why."""
    if make == "text":
        path = tmp_path / "page.mp4"
        path.write_text("<html><body>403 Forbidden</body></html>\n", encoding="utf-8")
    else:
        path = audio_only if make == "audio" else media.cover

    with pytest.raises(DownloadError) as refused:
        await probe(path)

    assert reason in refused.value.message
    assert refused.value.details == {"path": str(path)}


async def test_probe_gives_up_at_its_timeout(media: Media) -> None:
    """ffprobe is killed at the timeout (0 here: always exceeded) and the error says so."""
    with pytest.raises(DownloadError, match="did not finish"):
        await probe(media.mp4, timeout=0)


async def test_probe_without_ffprobe_says_to_install_ffmpeg(
    media: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ffprobe on PATH: DownloadError naming the package to install."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DownloadError, match="install ffmpeg"):
        await probe(media.mp4)


async def test_a_cancelled_probe_leaves_no_ffprobe_running(
    media: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop during the verify step kills and reaps ffprobe: no child outlives us, nor its transport the loop."""
    pid_file = tmp_path / "pid"
    slow = tmp_path / "ffprobe"
    slow.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n", encoding="utf-8")
    slow.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    task = asyncio.get_running_loop().create_task(probe(media.mp4))
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text(encoding="utf-8").strip():
        assert time.monotonic() < deadline, "the slow ffprobe did not start"
        await asyncio.sleep(0.02)
    pid = int(pid_file.read_text(encoding="utf-8"))

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not a zombie or an orphan
