"""Random kills: the daemon is SIGKILLed at seeded random moments while it downloads MP4 and HLS episodes and rescans.

After the last kill a daemon runs the queue to its end; then every episode must be in the library once, at its
template path, in the container its name says, with the source's duration (an MP4 byte for byte the source), and
nothing else may be left in the library, the temp dir or the logs. The seed is printed (and taken from
ANIWORLD_KILL_SEED when set); ANIWORLD_KILL_SIZE picks the size: `small` (the default, in `make test`: 7 episodes,
5 kills) or `full` (16 episodes, 15 kills); ANIWORLD_KILLS overrides the number of kills. See README, "Crash safety".
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakesite.core import RequestRecord
from tests.fakesite.server import FakeSite
from tests.helpers import Daemon, Restarts, ffprobe, integrity, minimal_config, query

# (series, seasons, language): the German dub of Blade of Dawn and Sword & Shield comes from Vidoza (MP4), the
# others from VOE (HLS). The queue takes series in key order, so MP4 and HLS episodes both download while kills land.
POOLS = {
    "small": (
        ("blade-of-dawn", (2,), "de-dub"),  # 4 MP4
        ("reincarnated-as-a-village-blacksmith", (1,), "de-dub"),  # 3 HLS
    ),
    "full": (
        ("blade-of-dawn", (1,), "de-dub"),  # 6 MP4
        ("moonlit-academy", (2,), "de-sub"),  # 4 HLS
        ("reincarnated-as-a-village-blacksmith", (1,), "de-dub"),  # 3 HLS
        ("sword-shield-chronicle", (2,), "de-dub"),  # 3 MP4
    ),
}
MP4_SERIES = frozenset({"blade-of-dawn", "sword-shield-chronicle"})
KILLS = {"small": 5, "full": 15}
BANDWIDTH = 400_000  # bytes/s per connection: an episode takes about 5 s, so most kills land in a transfer
CONCURRENT = 2  # downloads.max_concurrent
STARTUP = 1.5  # seconds from a launch until the daemon downloads again (Python, imports, start, the first requests)
PARTIAL_RE = re.compile(r"\.part(?:-Frag\d+)?(?:\.part)?$")
LIBRARY_EXTRAS = frozenset({"tvshow.nfo", "poster.jpg"})


def config_yaml(site: FakeSite, port: int, pool: tuple[tuple[str, tuple[int, ...], str], ...]) -> str:
    """Two downloads at a time, rescans at every start and every 5 s, a short retry backoff."""
    series = "".join(
        f"  - key: {key}\n    seasons: [{', '.join(map(str, seasons))}]\n    languages: [{language}]\n"
        for key, seasons, language in pool
    )
    return minimal_config(
        port,
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "  cooldown: 1s\n  languages: [de-dub]\n  hosters: [vidoza, voe]\n"
        "schedule:\n  run_on_start: true\n  rescan: {every: 5s}\n"
        f"downloads:\n  max_concurrent: {CONCURRENT}\n  retries: 5\n  retry_backoff: 1s\n  min_free_space: 0\n"
        f"series:\n{series}",
    )


@pytest.fixture
def run(tmp_path: Path, port: int, fakesite: FakeSite, daemon: Callable[..., Daemon], size: str) -> Iterator[Restarts]:
    """The config and a daemon starter; every daemon's log is printed at the end (pytest shows it on failure)."""
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(fakesite, port, POOLS[size]), encoding="utf-8")
    state = Restarts(tmp_path, config, daemon)
    yield state
    for number, text in enumerate(state.all_logs(), 1):
        print(f"----- daemon {number} log -----\n{text}")


@pytest.fixture
def size() -> str:
    """ANIWORLD_KILL_SIZE: small (default) or full."""
    value = os.environ.get("ANIWORLD_KILL_SIZE", "small")
    if value not in POOLS:
        pytest.fail(f"ANIWORLD_KILL_SIZE must be one of {', '.join(POOLS)}, not {value!r}")
    return value


def items(database: Path) -> list[tuple[str, int, int, str, str | None]]:
    """(series, season, episode, status, file path) of every queue item; [] before the database exists."""
    if not database.exists():
        return []
    try:
        return query(database, "SELECT series_key, season, number, status, file_path FROM downloads")
    except sqlite3.OperationalError:  # created, not migrated yet
        return []


def transfers(run: Restarts) -> tuple[str, ...]:
    """The kinds ("mp4", "hls") of the downloads with partial files in the temp dir right now, one per item."""
    try:
        names = [path.name for path in run.temp.iterdir()]
    except FileNotFoundError:
        return ()
    items = {name.split(".", 1)[0] for name in names if PARTIAL_RE.search(name)}
    # yt-dlp keeps a .ytdl state file for a fragmented (HLS) download only
    hls = {name.split(".", 1)[0] for name in names if name.endswith(".ytdl") or "-Frag" in name}
    return tuple(sorted("hls" if item in hls else "mp4" for item in items))


def range_start(record: RequestRecord) -> int:
    """The first byte a request asked for (0 without a Range header)."""
    match = re.fullmatch(r"bytes=(\d+)-\d*", record.headers.get("Range", ""))
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class Figures:
    """What the kills cost, from the fake site's request log."""

    mp4_resumed: int  # MP4 requests that continued a partial file by Range
    mp4_restarted: int  # MP4 requests from byte 0 for a file requested before
    segments_again: int  # HLS segments fetched more than once
    served: int  # media bytes the hosters wrote (MP4 and segments)
    kept: int  # bytes of the sources in the library (an MP4's size, an HLS episode's segments)


def figures(site: FakeSite, mp4_episodes: int, hls_episodes: int) -> Figures:
    """Count resumes, restarts, repeated segments and bytes from every media request."""
    by_path: dict[str, list[RequestRecord]] = {}
    for record in site.log.media():
        if record.status in (200, 206):
            by_path.setdefault(record.path.partition("?")[0], []).append(record)
    resumed = restarted = again = 0
    served = 0
    for path, records in by_path.items():
        if path.endswith(".m3u8"):
            continue
        served += sum(record.body_bytes for record in records)
        if path.endswith(".mp4"):
            later = records[1:]
            resumed += sum(1 for record in later if range_start(record) > 0)
            restarted += sum(1 for record in later if range_start(record) == 0)
        else:
            again += len(records) - 1
    segments = sum(path.stat().st_size for path in site.media.hls_dir.glob("seg*.ts"))
    kept = mp4_episodes * site.media.mp4.stat().st_size + hls_episodes * segments
    return Figures(resumed, restarted, again, served, kept)


def kill_window(site: FakeSite, run: Restarts, episodes: int, kills_left: int) -> tuple[float, float]:
    """Seconds after a launch in which the next kill lands, uniformly.

    On average a start-up plus the transfer time the queue still needs divided among the kills left, so the kills
    spread over the whole queue (start-ups, rescans, transfers, remuxes and imports all get hit) instead of all
    landing in its first episodes.
    """
    done = sum(1 for *_, status, _ in items(run.database) if status == "completed")
    try:
        partial = sum(path.stat().st_size for path in run.temp.iterdir() if PARTIAL_RE.search(path.name))
    except FileNotFoundError:
        partial = 0
    remaining = max(0, (episodes - done) * site.media.mp4.stat().st_size - partial)
    mean = STARTUP + remaining / (CONCURRENT * BANDWIDTH) / kills_left
    return (0.2, 2 * mean - 0.2)


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: when after the launch, and the partial files it interrupted."""

    after: float
    transfers: tuple[str, ...]  # the kind of each download it interrupted


async def test_random_kills_lose_nothing_and_leave_nothing_broken(run: Restarts, fakesite: FakeSite, size: str) -> None:
    seed = int(os.environ.get("ANIWORLD_KILL_SEED") or random.SystemRandom().randrange(10**6))
    count = int(os.environ.get("ANIWORLD_KILLS") or KILLS[size])
    print(f"random kills: seed {seed}, size {size}, {count} kills (ANIWORLD_KILL_SEED={seed} repeats the moments)")
    rng = random.Random(seed)
    pool = POOLS[size]
    wanted = {
        (key, season, episode.number)
        for key, seasons, _ in pool
        for season in seasons
        for episode in fakesite.series(key).season(season).episodes  # type: ignore[union-attr]
    }
    mp4_episodes = sum(1 for key, _, _ in wanted if key in MP4_SERIES)
    fakesite.knobs.bandwidth = BANDWIDTH

    kills: list[Kill] = []
    for number in range(count):
        window = kill_window(fakesite, run, len(wanted), count - number)
        process = run.launch()
        after = rng.uniform(*window)
        deadline = time.monotonic() + after
        while time.monotonic() < deadline:
            if process.process.poll() is not None:
                pytest.fail(f"the daemon exited ({process.process.returncode}) by itself:\n{process.log}")
            await asyncio.sleep(0.01)
        interrupted = transfers(run)
        process.signal(signal.SIGKILL)
        assert await process.exited(10) == -signal.SIGKILL
        kills.append(Kill(after, interrupted))
        if run.database.exists():
            assert integrity(run.database) == "ok", f"after kill {len(kills)} (seed {seed})"

    fakesite.knobs.bandwidth = None
    final = run.launch()

    def all_done() -> bool:
        rows = items(run.database)
        return len(rows) >= len(wanted) and all(status == "completed" for *_, status, _ in rows)

    # Ready first: the last killed daemon may have finished the queue, and a SIGTERM during the start-up's imports
    # would end this one before it has its handler.
    await final.until(lambda: "Ready" in final.log, "the last daemon to be ready", 30)
    await final.until(all_done, f"every episode to complete after {count} kills (seed {seed})", 180)
    final.signal(signal.SIGTERM)
    assert await final.exited(30) == 0

    # Every episode completed exactly once, nothing else was queued.
    rows = items(run.database)
    assert Counter((key, season, number) for key, season, number, _, _ in rows) == Counter(wanted), seed
    # In the library: one file per episode at its template path, as the source promised; beside them only NFOs and
    # posters; the temp dir empty.
    folders = dict(query(run.database, "SELECT key, folder FROM series"))
    source = fakesite.media.mp4.read_bytes()
    expected: set[Path] = set()
    for key, season, number, _, file_path in rows:
        assert file_path is not None
        # the episode title may be left out of a name that is too long (naming.MIN_CUT_TITLE_CHARS)
        pattern = rf"{re.escape(folders[key])}/Season {season:02d}/.+ - S{season:02d}E{number:02d}(?: - .+)?\.mp4"
        assert re.fullmatch(pattern, file_path), file_path
        video = run.library / file_path
        expected.add(video)
        probe = ffprobe(video)
        assert "mp4" in probe["format"]["format_name"].split(","), (file_path, probe["format"]["format_name"], seed)
        assert float(probe["format"]["duration"]) == pytest.approx(fakesite.media.duration, abs=0.5), (file_path, seed)
        if key in MP4_SERIES:
            assert video.read_bytes() == source, (file_path, seed)
    others = [
        str(path.relative_to(run.library))
        for path in run.library.rglob("*")
        if path.is_file() and path not in expected and path.name not in LIBRARY_EXTRAS
    ]
    assert others == [], (others, seed)
    assert integrity(run.database) == "ok"
    tracebacks = [number for number, text in enumerate(run.all_logs(), 1) if "Traceback" in text]
    assert tracebacks == [], f"tracebacks in the logs of daemons {tracebacks} (seed {seed})"

    numbers = figures(fakesite, mp4_episodes, len(wanted) - mp4_episodes)
    in_transfer = sum(1 for kill in kills if kill.transfers)
    kinds = Counter(kind for kill in kills for kind in kill.transfers)
    print(
        f"random kills (seed {seed}): {len(kills)} kills, {in_transfer} during a transfer "
        f"(interrupting {kinds['mp4']} MP4 and {kinds['hls']} HLS downloads); "
        f"{len(wanted)} episodes ({mp4_episodes} MP4, {len(wanted) - mp4_episodes} HLS); "
        f"MP4 requests resumed by Range {numbers.mp4_resumed}, restarted from 0 {numbers.mp4_restarted}; "
        f"HLS segments fetched again {numbers.segments_again}; "
        f"bytes served per byte kept {numbers.served / numbers.kept:.3f} ({numbers.served} / {numbers.kept})"
    )
