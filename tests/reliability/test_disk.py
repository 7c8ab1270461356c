"""Disks that fail for real: the library's disk runs full, the data dir's disk runs full, the library's disk goes away.

Each test mounts small file systems of its own (a `tmpfs` with `size=`, and bind mounts of one to play a NAS that can
drop away), so it needs root; every mount is undone (lazily: a daemon may still hold files) at the end. The daemon is
the real subprocess against the in-process fake site, so every wait polls with asyncio.sleep.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aniworld_daemon.downloads.disk import is_disk_full
from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME
from aniworld_daemon.errors import DownloadError, StorageError
from aniworld_daemon.library import unavailable
from tests.fakesite.server import FakeSite
from tests.helpers import Daemon, Restarts, ffprobe, integrity, minimal_config, query

KEY = "disk-test-api-key-0123456789abcdef"
SERIES = "blade-of-dawn"
TITLE = "Blade of Dawn"
SEASON = 2  # four episodes; the German dub comes from Vidoza as one MP4 file (its size is known before it arrives)
EPISODES = (1, 2, 3, 4)
PARTIAL_RE = re.compile(r"\.part(?:-Frag\d+)?(?:\.part)?$|\.ytdl$|\.temp\.")
LIBRARY_EXTRAS = frozenset({"tvshow.nfo", "poster.jpg"})
# The naming template's path of an episode of the season (the title may be left out of a name that is too long)
EPISODE_PATH = (
    rf"{re.escape(TITLE)} \(2015\)/Season {SEASON:02d}/{re.escape(TITLE)} - S{SEASON:02d}E(\d\d)(?: - .+)?\.mp4"
)
WAIT = 60.0  # seconds any one step may take on a loaded machine before the test gives up


class Mounts:
    """The file systems one test mounted, undone in reverse order by close()."""

    def __init__(self) -> None:
        self._points: list[Path] = []

    def tmpfs(self, point: Path, size: int) -> None:
        """Mount a tmpfs of `size` bytes (rounded up to pages) on `point`, creating the folder."""
        point.mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point))
        self._points.append(point)

    def bind(self, source: Path, point: Path) -> None:
        """Show `source` at `point` (a NAS share mounted on the library's folder)."""
        point.mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(source), str(point))
        self._points.append(point)

    def resize(self, point: Path, size: int) -> None:
        """Grow (or shrink) the tmpfs on `point`: space freed without touching a file."""
        _mount("-o", f"remount,size={size}", str(point))

    def unmount(self, point: Path) -> None:
        """Unmount `point` lazily (files the daemon holds open stay valid): the folder is empty at once."""
        subprocess.run(["umount", "-l", str(point)], check=True, capture_output=True, timeout=30)
        self._points.remove(point)

    def close(self) -> None:
        """Undo every mount still there."""
        while self._points:
            point = self._points.pop()
            if os.path.ismount(point):
                subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True, timeout=30)


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], check=False, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed: {result.stderr.strip()}")


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    """Mount file systems for the test; all are unmounted at its end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a bind mount needs root")
    made = Mounts()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def run(tmp_path: Path, daemon: Callable[..., Daemon]) -> Iterator[Restarts]:
    """The test's folder and a daemon starter; every daemon's log is printed at the end (shown on failure)."""
    state = Restarts(tmp_path, tmp_path / "config.yaml", daemon)
    yield state
    for number, text in enumerate(state.all_logs(), 1):
        print(f"----- daemon {number} log -----\n{text}")


def write_config(run: Restarts, site: FakeSite, port: int, downloads: str, schedule: str = "") -> None:
    """One followed season of Vidoza MP4s, rescanned at the start (and then hourly unless `schedule` says)."""
    run.config.write_text(
        minimal_config(
            port,
            f"  key: {KEY}\n"
            f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
            "  cooldown: 1s\n  languages: [de-dub]\n  hosters: [vidoza]\n"
            f"schedule:\n  run_on_start: true\n  rescan: {{every: 1h}}\n{schedule}"
            f"downloads:\n  retries: 3\n  retry_backoff: 1s\n  min_free_space: 0\n{downloads}"
            f"series:\n  - key: {SERIES}\n    seasons: [{SEASON}]\n",
        ),
        encoding="utf-8",
    )


@pytest.fixture
async def session(port: int) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the daemon's API on `port`, with its API key."""
    async with aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": KEY}, timeout=aiohttp.ClientTimeout(total=15)
    ) as client:
        yield client


async def started(run: Restarts) -> Daemon:
    """Launch the daemon and wait until it is ready."""
    process = run.launch()
    await process.until(lambda: "Ready" in process.log, "the daemon to be ready", WAIT)
    return process


async def get(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    """GET a JSON route: (status, body)."""
    async with session.get(path) as response:
        return response.status, await response.json()


async def post(session: aiohttp.ClientSession, path: str, body: object) -> tuple[int, Any]:
    """POST JSON to a route: (status, body or None)."""
    async with session.post(path, json=body) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def checks(session: aiohttp.ClientSession) -> dict[str, tuple[str, str]]:
    """The health checks of /api/system/status: name -> (level, message)."""
    status, body = await get(session, "/api/system/status")
    assert status == 200, body
    return {check["name"]: (check["level"], check["message"]) for check in body["checks"]}


async def until(process: Daemon, check: Callable[[], Awaitable[bool]], what: str, seconds: float = WAIT) -> None:
    """Poll an async `check` every 0.1 s; fail with the log on timeout or when the daemon exits."""
    deadline = time.monotonic() + seconds
    while not await check():
        if process.process.poll() is not None:
            pytest.fail(f"the daemon exited ({process.process.returncode}) while waiting for {what}:\n{process.log}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}:\n{process.log}")
        await asyncio.sleep(0.1)


def items(run: Restarts) -> dict[int, tuple[str, int, str | None, str | None]]:
    """Episode number -> (status, attempts, error code, file path) of the live or last queue item of each episode."""
    rows = query(
        run.database,
        "SELECT number, status, attempts, error_code, file_path FROM downloads"
        " WHERE series_key = ? ORDER BY created_at",
        SERIES,
    )
    return {number: (status, attempts, code, path) for number, status, attempts, code, path in rows}


async def scans_over(run: Restarts) -> bool:
    """Whether a rescan was stored and none runs now."""
    rows = query(run.database, "SELECT status FROM scans")
    return bool(rows) and all(status != "running" for (status,) in rows)


async def scan_ended(run: Restarts, scan_id: str) -> bool:
    """Whether the rescan `scan_id` was stored and has ended."""
    rows = query(run.database, "SELECT status FROM scans WHERE id = ?", scan_id)
    return bool(rows) and rows[0][0] != "running"


def states(run: Restarts) -> dict[int, str]:
    """Episode number -> state of the followed season's episodes."""
    rows = query(run.database, "SELECT number, state FROM episodes WHERE series_key = ? AND season = ?", SERIES, SEASON)
    return dict(rows)


def library_files(library: Path) -> tuple[list[Path], list[Path]]:
    """(videos and other files in the library outside the temp dir, files in the temp dir)."""
    outside = [
        path for path in library.rglob("*") if path.is_file() and TEMP_DIR_NAME not in path.relative_to(library).parts
    ]
    temp = sorted((library / TEMP_DIR_NAME).glob("*"))
    return sorted(outside), temp


def assert_library_holds_only_episodes(library: Path, site: FakeSite, numbers: tuple[int, ...]) -> None:
    """Every file outside the temp dir is a whole episode at its template path (byte for byte the source), or an
    NFO/poster; exactly one per episode in `numbers`."""
    outside, _ = library_files(library)
    source = site.media.mp4.read_bytes()
    seen: list[int] = []
    for path in outside:
        if path.name in LIBRARY_EXTRAS:
            continue
        relative = str(path.relative_to(library))
        match = re.fullmatch(EPISODE_PATH, relative)
        assert match is not None, f"not an episode at its template path: {relative}"
        assert path.read_bytes() == source, f"{relative} is not the whole source"
        seen.append(int(match.group(1)))
    assert sorted(seen) == sorted(numbers), (seen, numbers)


def place_episodes(library: Path, site: FakeSite, numbers: tuple[int, ...]) -> None:
    """Put episodes into a library as a media server's user would have them (a later rescan finds them)."""
    folder = library / f"{TITLE} (2015)" / f"Season {SEASON:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        (folder / f"{TITLE} - S{SEASON:02d}E{number:02d}.mp4").write_bytes(site.media.mp4.read_bytes())


async def stop(process: Daemon) -> None:
    """Stop the daemon with SIGTERM; it must exit cleanly, without a traceback in its log."""
    process.signal(signal.SIGTERM)
    assert await process.exited(30) == 0, process.log
    assert "Traceback" not in process.log


# -- the rules: which failure is the disk's, and when the library is not there ----------------------------------------


class _YtdlpError(Exception):
    """As yt-dlp reports a failed write: its own error, the original kept in `exc_info`."""

    def __init__(self, message: str, original: BaseException) -> None:
        super().__init__(message)
        self.exc_info = (type(original), original, None)


def _wrapped(inner: BaseException, outer: Exception) -> Exception:
    """`outer` raised from `inner`, as the daemon wraps a library's error."""
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("error", "full"),
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), True),
        (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), True),  # a quota is as full as a disk
        (_wrapped(OSError(errno.ENOSPC, "x"), StorageError("cannot move the download")), True),
        (_YtdlpError("unable to write data", OSError(errno.ENOSPC, "x")), True),
        # yt-dlp and ffmpeg (a remux) often keep only the text
        (
            _wrapped(
                DownloadError("ERROR: unable to write data: [Errno 28] No space left on device"), StorageError("x")
            ),
            True,
        ),
        (
            DownloadError("Postprocessing: Conversion failed! av_interleaved_write_frame(): No space left on device"),
            True,
        ),
        (OSError(errno.ENOENT, os.strerror(errno.ENOENT)), False),
        (_wrapped(OSError(errno.EIO, "x"), StorageError("cannot move the download")), False),
        (DownloadError("HTTP Error 503: Service Unavailable"), False),
    ],
)
def test_a_full_disk_is_told_from_other_failures(error: Exception, full: bool) -> None:
    assert is_disk_full(error) is full


@pytest.mark.parametrize(
    ("entries", "known", "problem"),
    [
        (None, 0, "does not exist"),  # a missing root is never worked on (the daemon created it at its start)
        ((), 3, "is empty, but 3 episode files were there"),
        ((TEMP_DIR_NAME,), 3, "is empty"),  # our temp dir alone is no library
        ((), 0, None),  # a new library
        (("Show",), 3, None),
        ((".hidden",), 3, None),  # anything at all: a disk that is there
    ],
)
def test_a_library_is_unavailable_when_missing_or_empty_while_files_are_known(
    tmp_path: Path, entries: tuple[str, ...] | None, known: int, problem: str | None
) -> None:
    root = tmp_path / "library"
    if entries is not None:
        root.mkdir()
        for name in entries:
            (root / name).mkdir()
    found = unavailable(root, known)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


# -- 3a: the library's disk runs full ---------------------------------------------------------------------------------


async def test_a_full_library_disk_pauses_the_queue_without_costing_an_attempt(
    run: Restarts, port: int, fakesite: FakeSite, mounts: Mounts, session: aiohttp.ClientSession
) -> None:
    episode = fakesite.media.mp4.stat().st_size
    # Room for two episodes and half of a third: with two downloads at a time, the third and fourth fill the disk.
    mounts.tmpfs(run.library, 2 * episode + episode // 2)
    write_config(run, fakesite, port, "  max_concurrent: 2\n")
    process = await started(run)

    async def paused() -> bool:
        _, body = await get(session, "/api/queue/status")
        return bool(body["status"]["is_paused"]) and body["status"]["pause_reason"] == "low_disk_space"

    await until(process, paused, "the queue to pause itself for the full disk")
    found = await checks(session)
    assert found["free_space"][0] == "error", found
    assert "ran full" in found["free_space"][1], found
    _, health = await get(session, "/health")
    assert health["status"] == "degraded"
    assert any("ran full" in problem for problem in health["problems"]), health

    async def settled() -> bool:
        return all(status in ("pending", "completed") for status, *_ in items(run).values()) and len(items(run)) == 4

    await until(process, settled, "the downloads that hit the full disk to be pending again")
    # The disk stopped them, not the source: no attempt counted, the why on the item, their partial files kept. (An
    # episode whose turn came only after the pause never started: pending without an error.)
    waiting = {number: row for number, row in items(run).items() if row[0] == "pending"}
    assert {attempts for _, attempts, _, _ in waiting.values()} == {0}, waiting
    codes = Counter(code for _, _, code, _ in waiting.values())
    assert codes["storage_error"] >= 1, waiting
    assert set(codes) <= {"storage_error", None}, waiting
    _, temp = library_files(run.library)
    assert_library_holds_only_episodes(run.library, fakesite, tuple(n for n in EPISODES if n not in waiting))
    assert any(PARTIAL_RE.search(path.name) for path in temp), temp
    assert integrity(run.database) == "ok"
    # Still paused a while later: nothing starts into the full disk again (each start would fail at once).
    await asyncio.sleep(2)
    assert {number for number, row in items(run).items() if row[0] == "pending"} == set(waiting)
    assert (await get(session, "/api/queue/status"))[1]["status"]["is_paused"]

    mounts.resize(run.library, 128 * 1024 * 1024)  # space back: more than the 50 MB margin plus what is missing

    async def all_done() -> bool:
        return [row[0] for row in items(run).values()] == ["completed"] * 4

    await until(process, all_done, "the queue to resume by itself and complete every episode")
    found = await checks(session)
    assert found["free_space"][0] == "ok", found
    assert not (await get(session, "/api/queue/status"))[1]["status"]["is_paused"]
    await stop(process)

    assert_library_holds_only_episodes(run.library, fakesite, EPISODES)
    assert library_files(run.library)[1] == []
    assert integrity(run.database) == "ok"
    assert {attempts for _, attempts, _, _ in items(run).values()} == {0}
    history = query(run.database, "SELECT kind, number FROM history WHERE kind LIKE 'download_%'")
    assert Counter(history) == Counter(("download_completed", number) for number in EPISODES)
    assert set(states(run).values()) == {"downloaded"}


# -- 3b: the data dir's disk runs full --------------------------------------------------------------------------------


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its disk is full (to the last byte); return it."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = 1 << 20
        while size:
            try:
                os.write(descriptor, b"\0" * size)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                size //= 2  # what is left is smaller than this
    finally:
        os.close(descriptor)
    return filler


async def test_a_full_data_disk_is_unhealthy_and_loses_nothing_acknowledged(
    run: Restarts, port: int, fakesite: FakeSite, mounts: Mounts, session: aiohttp.ClientSession
) -> None:
    data = run.database.parent
    mounts.tmpfs(data, 8 * 1024 * 1024)
    write_config(run, fakesite, port, "  auto_start: false\n  auto_download: false\n")
    process = await started(run)
    await until(process, lambda: scans_over(run), "the start-up rescan")
    acknowledged: dict[str, int] = {}

    async def add(number: int) -> int:
        status, body = await post(
            session, "/api/queue/add", {"serie_id": SERIES, "episodes": [{"season": 1, "episode": number}]}
        )
        if status == 201:
            [item_id] = body["added_items"]
            acknowledged[item_id] = number
        else:
            assert status == 503, (status, body)
            assert body["error"]["code"] == "storage_error", body
        return status

    assert await add(1) == 201
    filler = fill(data)

    async with session.get("/health") as response:
        assert response.status == 503
        health = await response.json()
    assert health["status"] == "unhealthy"
    found = await checks(session)
    assert found["database"][0] == "error", found
    assert str(data) in found["database"][1], found
    assert "full" in found["database"][1], found
    # Writes go on being asked for; SQLite answers each with the disk full (or fits it into the WAL it has).
    answers = Counter([await add(number) for number in range(2, 42)])
    print(f"adds while the data disk was full: {dict(answers)}")
    assert answers[503] > 0, answers
    assert process.process.poll() is None
    assert (await get(session, "/api/queue/status"))[0] == 200  # reads still work

    filler.unlink()

    async def healthy() -> bool:
        async with session.get("/health") as response:
            return response.status == 200

    await until(process, healthy, "/health to be fine again")
    assert (await checks(session))["database"][0] == "ok"
    assert await add(100) == 201
    await stop(process)

    assert integrity(run.database) == "ok"
    stored = dict(query(run.database, "SELECT id, number FROM downloads"))
    assert {item_id: stored.get(item_id) for item_id in acknowledged} == acknowledged


# -- 4: the library's disk goes away ----------------------------------------------------------------------------------


async def test_a_rescan_of_an_unmounted_library_marks_nothing_missing(
    run: Restarts, port: int, fakesite: FakeSite, mounts: Mounts, session: aiohttp.ClientSession
) -> None:
    nas = run.folder / "nas"
    mounts.tmpfs(nas, 64 * 1024 * 1024)
    place_episodes(nas, fakesite, EPISODES)
    mounts.bind(nas, run.library)
    # Every rescan a full refresh: it reads the series' pages after the feed, a moment to unmount the disk in.
    write_config(run, fakesite, port, "  max_concurrent: 1\n", schedule="  full_refresh: 1s\n")
    process = await started(run)
    await until(process, lambda: scans_over(run), "the start-up rescan")
    assert states(run) == dict.fromkeys(EPISODES, "downloaded")

    async def rescan(expected: str) -> dict[str, str]:
        status, body = await post(session, "/api/anime/rescan", {})
        assert status == 202, body
        await until(process, lambda: scan_ended(run, body["scan_id"]), f"the rescan that should end {expected}")
        [(state, errors)] = query(run.database, "SELECT status, errors FROM scans WHERE id = ?", body["scan_id"])
        assert state == expected, (state, errors)
        return dict(json.loads(errors))

    # Unmounted before the rescan: refused, with the reason.
    mounts.unmount(run.library)
    errors = await rescan("failed")
    assert "is its disk mounted" in errors[""], errors
    found = await checks(session)
    assert found["library_mounted"][0] == "error", found
    assert "mounted" in found["library_mounted"][1], found
    assert os.listdir(run.library) == []

    assert states(run) == dict.fromkeys(EPISODES, "downloaded")

    # Unmounted in the middle of one (after the library was listed, while the site is read): the series whose
    # folder could not be read keeps its states.
    mounts.bind(nas, run.library)
    fakesite.knobs.latency = 0.8
    # Due for its full refresh (older than `full_refresh`), so this rescan reads the series' pages after the feed.
    [(refreshed,)] = query(run.database, "SELECT refreshed_at FROM series WHERE key = ?", SERIES)
    await asyncio.sleep(max(0.0, refreshed + 1.1 - time.time()))
    feeds = fakesite.log.count("site", "/neue-episoden")
    status, body = await post(session, "/api/anime/rescan", {})
    assert status == 202, body

    async def feed_read() -> bool:
        return fakesite.log.count("site", "/neue-episoden") > feeds

    await until(process, feed_read, "the rescan to read the feed")
    mounts.unmount(run.library)
    await until(process, lambda: scan_ended(run, body["scan_id"]), "the interrupted rescan to end")
    fakesite.knobs.latency = 0.0
    [(state, errors)] = query(run.database, "SELECT status, errors FROM scans WHERE id = ?", body["scan_id"])
    assert state == "partial", (state, errors)
    assert "cannot read" in json.loads(errors)[SERIES], errors
    assert os.listdir(run.library) == []
    assert states(run) == dict.fromkeys(EPISODES, "downloaded")
    assert items(run) == {}  # nothing was queued as missing

    # Back: the next rescan reads the library as it was.
    mounts.bind(nas, run.library)
    await rescan("complete")
    assert states(run) == dict.fromkeys(EPISODES, "downloaded")
    assert items(run) == {}
    found = await checks(session)
    assert found["library_mounted"][0] == "ok", found
    await stop(process)
    assert integrity(run.database) == "ok"


async def test_a_download_waits_for_an_unmounted_library_and_writes_nothing_into_its_mount_point(
    run: Restarts, port: int, fakesite: FakeSite, mounts: Mounts, session: aiohttp.ClientSession
) -> None:
    nas = run.folder / "nas"
    mounts.tmpfs(nas, 64 * 1024 * 1024)
    place_episodes(nas, fakesite, (1, 2))
    mounts.bind(nas, run.library)
    write_config(run, fakesite, port, "  max_concurrent: 1\n  auto_download: false\n")
    process = await started(run)
    await until(process, lambda: scans_over(run), "the start-up rescan")
    assert states(run) == {1: "downloaded", 2: "downloaded", 3: "missing", 4: "missing"}

    episode = fakesite.media.mp4.stat().st_size
    fakesite.knobs.bandwidth = episode // 4  # about 4 s per episode: the disk goes away in the middle of one
    status, body = await post(
        session, "/api/queue/add", {"serie_id": SERIES, "episodes": [{"season": SEASON, "episode": 3}]}
    )
    assert status == 201, body

    def transferring() -> bool:
        parts = [path for path in (nas / TEMP_DIR_NAME).glob("*.part") if path.stat().st_size > episode // 4]
        return bool(parts)

    await process.until(transferring, "episode 3 to be a quarter downloaded", WAIT)
    mounts.unmount(run.library)
    fakesite.knobs.bandwidth = None
    # Queued while the disk is away: it must not start either.
    status, body = await post(
        session, "/api/queue/add", {"serie_id": SERIES, "episodes": [{"season": SEASON, "episode": 4}]}
    )
    assert status == 201, body

    async def waiting() -> bool:
        assert os.listdir(run.library) == [], "something was written into the empty mount point"
        return items(run).get(3, ("",))[0] == "pending"

    await until(process, waiting, "the interrupted download to wait for the library")
    assert items(run)[3][1:3] == (0, "storage_error")  # not an attempt
    found = await checks(session)
    assert found["library_mounted"][0] == "error", found
    # A while later: nothing started, nothing written, nothing marked missing, no attempt spent.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert os.listdir(run.library) == []
        await asyncio.sleep(0.1)
    assert {number: row[:2] for number, row in items(run).items()} == {3: ("pending", 0), 4: ("pending", 0)}
    assert states(run) == {1: "downloaded", 2: "downloaded", 3: "queued", 4: "queued"}

    mounts.bind(nas, run.library)

    async def all_done() -> bool:
        return {number: row[0] for number, row in items(run).items()} == {3: "completed", 4: "completed"}

    await until(process, all_done, "the downloads to go on by themselves once the library is back")
    assert {row[1] for row in items(run).values()} == {0}
    found = await checks(session)
    assert found["library_mounted"][0] == "ok", found
    await stop(process)

    assert_library_holds_only_episodes(nas, fakesite, EPISODES)
    assert library_files(nas)[1] == []
    assert integrity(run.database) == "ok"
    assert set(states(run).values()) == {"downloaded"}
    resumed = items(run)[3][3]
    assert resumed is not None
    probe = ffprobe(run.library / resumed)
    assert float(probe["format"]["duration"]) == pytest.approx(fakesite.media.duration, abs=0.5)
