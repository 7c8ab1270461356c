"""Crash safety: the daemon is killed (SIGKILL) at five moments of a download, restarted, and loses nothing.

The daemon runs as a real subprocess against the in-process fake site. Every wait polls with asyncio.sleep: the fake
site is served by this test's own event loop, so a blocking sleep would stall the download it waits for.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME
from aniworld_daemon.models import Language
from tests.fakesite.catalog import Link
from tests.fakesite.core import CHUNK, RequestRecord
from tests.fakesite.server import FakeSite
from tests.helpers import Daemon, Restarts, ffprobe, integrity, minimal_config, query

SERIES = "die-kleinen-baeren"  # season 1: three episodes, German dub on every hoster (doodstream among them)
HOSTER = "doodstream"  # MP4: a resume is one visible `Range: bytes=N-` request
BANDWIDTH = 450_000  # bytes/s per connection: one ~1.9 MB episode takes about 4 s, so the kill lands where aimed
RESOLVE_LATENCY = 0.3  # seconds per request in the "resolving" run: a window between the redirect and the media
PROBE_SLEEP = 3.0  # seconds the ffprobe wrapper holds the "verify" run before the real ffprobe runs
POLL = 0.02  # seconds between checks while aiming a kill
PARTIAL_RE = re.compile(r"\.part\b|\.ytdl$|\.temp\b")  # yt-dlp's partial names: x.mp4.part, x.mp4.ytdl, x.temp.mp4
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".ts", ".webm"})
MOMENTS = ("resolving", "early", "middle", "late", "verify")
FRACTIONS = {"early": 0.1, "middle": 0.5, "late": 0.9}  # share of the episode written to the .part at the kill

# Kept in a file of its own because the real ffprobe must still run after the marker: PATH finds this one first.
WRAPPER = """#!{python}
import os, sys, time
args = sys.argv[1:]
with open({calls!r}, "a") as calls:
    calls.write(args[-1] + "\\n")
if "-show_streams" in args and os.path.exists({armed!r}):
    with open({marker!r} + ".tmp", "w") as marker:
        marker.write(str(os.getpid()))
    os.replace({marker!r} + ".tmp", {marker!r})  # atomic: the test never reads a half-written pid
    time.sleep({sleep})
os.execv({real!r}, [{real!r}, *args])
"""


def config_yaml(site: FakeSite, port: int) -> str:
    """One series, three wanted episodes, one MP4 hoster, one download at a time; rescan (and queue) at start."""
    return minimal_config(
        port,
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        f"  cooldown: 1s\n  languages: [de-dub]\n  hosters: [{HOSTER}]\n"
        "schedule:\n  run_on_start: true\n  rescan: {every: 1h}\n"
        "downloads:\n  max_concurrent: 1\n  retry_backoff: 1s\n  min_free_space: 0\n"
        f"series:\n  - key: {SERIES}\n    seasons: [1]\n",
    )


@dataclass(kw_only=True)
class Setup(Restarts):
    """One test's files, the fake site and the daemons it started."""

    site: FakeSite


@pytest.fixture
def setup(
    tmp_path: Path,
    write_config: Callable[..., Path],
    port: int,
    fakesite: FakeSite,
    daemon: Callable[..., Daemon],
) -> Iterator[Setup]:
    """The config file and a daemon starter; the daemons' logs are printed at the end (pytest shows them on failure)."""
    state = Setup(tmp_path, write_config(config_yaml(fakesite, port)), daemon, site=fakesite)
    yield state
    for number, text in enumerate(state.all_logs(), 1):
        print(f"----- daemon {number} log -----\n{text}")


def downloads(database: Path) -> dict[str, tuple[int, int, str]]:
    """Queue item id -> (season, number, status); empty while the database does not exist yet."""
    if not database.exists():
        return {}
    try:
        rows = query(database, "SELECT id, season, number, status FROM downloads")
    except sqlite3.OperationalError:  # created but not migrated yet
        return {}
    return {item: (season, number, status) for item, season, number, status in rows}


def parts(setup: Setup) -> dict[str, int]:
    """The .part files in the temp dir: name -> size."""
    found = {}
    for path in setup.temp.glob("*.part") if setup.temp.is_dir() else ():
        try:
            found[path.name] = path.stat().st_size
        except FileNotFoundError:  # renamed between the listing and the stat
            continue
    return found


def plays(path: Path) -> bool:
    """Whether a file has a video stream and lasts more than 3 s."""
    probe = ffprobe(path)
    video = any(stream["codec_type"] == "video" for stream in probe["streams"])
    return video and float(probe["format"]["duration"]) > 3


def library_files(setup: Setup) -> list[Path]:
    """Every file in the library outside the temp dir."""
    return sorted(
        path
        for path in setup.library.rglob("*")
        if path.is_file() and TEMP_DIR_NAME not in path.relative_to(setup.library).parts
    )


def assert_library_clean(setup: Setup) -> list[Path]:
    """No partial file outside the temp dir, and every video there plays; return the videos."""
    files = library_files(setup)
    partial = [str(path) for path in files if PARTIAL_RE.search(path.name)]
    assert partial == [], partial
    videos = [path for path in files if path.suffix in VIDEO_SUFFIXES]
    broken = [str(path) for path in videos if not plays(path)]
    assert broken == [], broken
    return videos


def range_start(record: RequestRecord) -> int:
    """The first byte a media request asked for (0 without a Range header)."""
    match = re.fullmatch(r"bytes=(\d+)-\d*", record.headers.get("Range", ""))
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class ProbeWrapper:
    """An `ffprobe` first on the daemon's PATH that can hold the daemon in its verify step.

    It logs every call; while `armed` exists, a probe call writes its pid to `marker` and sleeps PROBE_SLEEP seconds
    before the real ffprobe runs.
    """

    bin_dir: Path
    armed: Path
    marker: Path
    calls: Path

    @classmethod
    def install(cls, folder: Path) -> ProbeWrapper:
        """Write the wrapper into folder/bin, armed."""
        real = shutil.which("ffprobe")
        if real is None:
            pytest.fail("ffprobe is not installed: run `make test` (it installs ffmpeg) or `apt-get install ffmpeg`")
        wrapper = cls(folder / "bin", folder / "armed", folder / "probing", folder / "probe-calls")
        wrapper.bin_dir.mkdir()
        script = wrapper.bin_dir / "ffprobe"
        script.write_text(
            WRAPPER.format(
                python=sys.executable,
                calls=str(wrapper.calls),
                armed=str(wrapper.armed),
                marker=str(wrapper.marker),
                sleep=PROBE_SLEEP,
                real=real,
            ),
            encoding="utf-8",
        )
        script.chmod(0o755)
        wrapper.armed.touch()
        return wrapper

    @property
    def env(self) -> dict[str, str]:
        """The daemon's environment additions: PATH with the wrapper first."""
        return {"PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def count(self) -> int:
        """How many times ffprobe was called so far."""
        return len(self.calls.read_text(encoding="utf-8").splitlines()) if self.calls.exists() else 0

    def disarm(self) -> None:
        """Let later calls run at full speed; end the wrapper the killed daemon left sleeping (ours, by its pid)."""
        self.armed.unlink()
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(self.marker.read_text(encoding="utf-8")), signal.SIGKILL)


@dataclass(frozen=True)
class Kill:
    """What a kill interrupted."""

    number: int  # the episode that was active
    part_size: int  # bytes in its .part file after the kill (0: none)
    at: float  # time.monotonic() once the daemon was gone: later requests are the restarted daemon's


async def kill_at(
    moment: str, setup: Setup, process: Daemon, links: dict[int, Link], probe: ProbeWrapper | None
) -> Kill:
    """Wait (polling every POLL s) for `moment` of the first download, SIGKILL the daemon there, say what it hit."""
    site = setup.site
    size = site.media.mp4.stat().st_size
    redirects = {link.path: number for number, link in links.items()}
    ids = downloads(setup.database)

    def redirected() -> list[int]:
        return [redirects[record.path] for record in site.log.select("site") if record.path in redirects]

    def written() -> bool:
        return any(value >= FRACTIONS[moment] * size for value in parts(setup).values())

    conditions: dict[str, Callable[[], bool]] = {"resolving": lambda: bool(redirected())}
    if probe is not None:
        conditions["verify"] = probe.marker.exists
    await process.until(conditions.get(moment, written), f"the {moment} moment", 30, POLL)
    process.signal(signal.SIGKILL)
    assert await process.exited(10) == -signal.SIGKILL
    at = time.monotonic()
    if moment == "resolving":
        [number] = redirected()
        assert parts(setup) == {}, "the kill came after the first media byte"
        return Kill(number, 0, at)
    if moment == "verify":
        # The download is complete and not yet imported: only the finished file is in the temp dir, beside what its
        # source promised (the length the gate checks it against after the restart).
        finished, promise = sorted(setup.temp.iterdir(), key=lambda path: path.name.endswith(".source.json"))
        assert promise.name.endswith(".source.json"), promise.name
        item, _, extension = finished.name.partition(".")
        assert extension == "mp4", finished.name
        return Kill(ids[item][1], 0, at)
    [(name, part_size)] = parts(setup).items()
    assert 0 < part_size < size, "the kill came after the download"
    return Kill(ids[name.partition(".")[0]][1], part_size, at)


@pytest.mark.parametrize("moment", MOMENTS)
async def test_a_killed_daemon_resumes_without_losing_anything(setup: Setup, moment: str) -> None:
    site = setup.site
    season = site.series(SERIES).season(1)
    assert season is not None
    links = {episode.number: episode.link(Language.DE_DUB, HOSTER) for episode in season.episodes}
    size = site.media.mp4.stat().st_size
    probe = ProbeWrapper.install(setup.folder) if moment == "verify" else None
    if probe is not None:
        setup.env.update(probe.env)
    else:
        site.knobs.bandwidth = BANDWIDTH
    if moment == "resolving":
        site.knobs.latency = RESOLVE_LATENCY

    first = setup.launch()
    await first.until(lambda: len(downloads(setup.database)) == len(links), "the rescan to queue the episodes", 30)
    before = downloads(setup.database)
    kill = await kill_at(moment, setup, first, links, probe)
    if probe is not None:
        probe.disarm()
    probes_at_kill = probe.count() if probe is not None else 0
    site.knobs.bandwidth = None  # the rest may go at full speed: only the interrupted download matters
    site.knobs.latency = 0.0

    # The crash left a consistent database and nothing half-written in the library.
    assert integrity(setup.database) == "ok"
    assert_library_clean(setup)

    second = setup.launch()

    def scans_done() -> bool:
        [(count,)] = query(setup.database, "SELECT COUNT(*) FROM scans WHERE finished_at IS NOT NULL")
        return int(count) == 2

    def all_completed() -> bool:
        return {status for _, _, status in downloads(setup.database).values()} == {"completed"}

    # The restarted daemon rescans at start too: once that scan is done, it had its chance to queue twice.
    await second.until(scans_done, "the restarted daemon's rescan", 30)
    await second.until(all_completed, "every item to complete after the restart", 60)
    second.signal(signal.SIGTERM)
    assert await second.exited(30) == 0
    after = downloads(setup.database)

    assert set(after) == set(before), "queue items were lost or added"
    assert sorted(after.values()) == [(1, number, "completed") for number in sorted(links)]
    assert integrity(setup.database) == "ok"
    assert len(assert_library_clean(setup)) == len(links)
    assert list(setup.temp.iterdir()) == []
    states = query(setup.database, "SELECT number, state FROM episodes WHERE series_key = ? AND season = 1", SERIES)
    assert sorted(states) == [(number, "downloaded") for number in sorted(links)]

    requests = [record for record in site.log.media(HOSTER) if links[kill.number].video_id in record.path]
    earlier = [record for record in requests if record.started < kill.at]
    later = [record for record in requests if record.started >= kill.at]
    print(
        f"{moment}: episode {kill.number}, .part {kill.part_size} of {size} bytes ({kill.part_size / size:.0%}) "
        f"at the kill; media requests (status, Range) before {[(r.status, r.headers.get('Range')) for r in earlier]}"
        f", after {[(r.status, r.headers.get('Range')) for r in later]}"
    )
    if moment == "resolving":
        assert earlier == []
        assert later
    elif moment == "verify":
        assert probe is not None
        assert probe.count() > probes_at_kill  # verified again after the restart, before the import
        assert later == []  # the finished download was kept, not fetched again
    else:
        starts = [range_start(record) for record in later]
        assert kill.part_size in starts  # continued exactly where the .part file ended
        assert all(start > 0 for start in starts), starts  # and never from byte 0 again
        # Bytes served, bounded from above: before the kill the site sent at most BANDWIDTH bytes per second plus one
        # chunk per request; each later request at most the rest of the file from its Range start.
        served = sum(min(size - range_start(r), round(BANDWIDTH * (r.finished - r.started)) + CHUNK) for r in earlier)
        served += sum(size - start for start in starts)
        assert served < 1.5 * size, (served, size)
