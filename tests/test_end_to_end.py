"""The whole daemon, end to end: `aniworld-daemon run` as a subprocess follows three series on the fake site.

It rescans at start, queues what is missing, downloads through an MP4 and an HLS hoster with real yt-dlp, verifies
with real ffprobe and files everything under the naming template; a later `scan` finds nothing missing. Every wait
polls with asyncio.sleep: the fake site is served by this test's own event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aniworld_daemon.config import load_config
from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME
from aniworld_daemon.models import Language
from aniworld_daemon.naming import NamingTemplate, SeriesNaming
from tests.fakesite.server import FakeSite
from tests.helpers import Daemon, ffprobe, minimal_config, query

PARTIAL_RE = re.compile(r"\.part\b|\.ytdl$|\.temp\b")  # yt-dlp's partial names: x.mp4.part, x.mp4.ytdl, x.temp.mp4

# key -> (wanted season, language, the hoster it leads to with provider.hosters [voe, vidoza, doodstream]).
FOLLOWED = {
    # A slash in the title; its German dub is on vidoza and streamtape (not wanted): MP4 from vidoza.
    "sword-shield-chronicle": (2, Language.DE_DUB, "vidoza"),
    # A title far beyond 255 bytes once rendered; German sub on voe and streamtape: HLS from voe.
    "reincarnated-as-a-village-blacksmith": (1, Language.DE_SUB, "voe"),
    # A Japanese title; English sub only on doodstream: MP4 from doodstream.
    "hoshi-no-uta": (1, Language.EN_SUB, "doodstream"),
}


def config_yaml(site: FakeSite, port: int) -> str:
    """Three series with per-series languages steering each to another hoster; rescan at start and hourly."""
    series = "".join(
        f"  - key: {key}\n    seasons: [{season}]\n    languages: [{language.value}]\n"
        for key, (season, language, _) in FOLLOWED.items()
    )
    return minimal_config(
        port,
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "  cooldown: 1s\n  languages: [de-dub]\n  hosters: [voe, vidoza, doodstream]\n"
        "schedule:\n  run_on_start: true\n  rescan: {every: 1h}\n"
        "downloads:\n  max_concurrent: 2\n  retry_backoff: 1s\n  min_free_space: 0\n"
        f"series:\n{series}",
    )


def statuses(database: Path) -> list[str]:
    """The status of every queue item (empty while the database is not there yet)."""
    try:
        return [str(status) for (status,) in query(database, "SELECT status FROM downloads")]
    except sqlite3.OperationalError:  # not created or not migrated yet
        return []


def expected_paths(site: FakeSite, naming: str) -> dict[tuple[str, int, int], str]:
    """(key, season, number) -> the naming template's path of every wanted episode, from the catalog's titles."""
    template = NamingTemplate(naming)
    paths = {}
    for key, (number, language, _) in FOLLOWED.items():
        series = site.series(key)
        season = series.season(number)
        assert season is not None
        naming_fields = SeriesNaming(title=series.title, year=series.start_year, key=key, imdb_id=series.imdb)
        for episode in season.episodes:
            title = episode.title_de or episode.title_en
            path = template.episode_path(naming_fields, number, episode.number, title, language.value, ".mp4")
            paths[key, number, episode.number] = path
    return paths


@pytest.fixture
def logged_daemon(daemon: Callable[..., Daemon]) -> Iterator[Callable[[Path], Daemon]]:
    """Start the daemon like `daemon` does; its log is printed at the end (pytest shows it when the test failed)."""
    started: list[Daemon] = []

    def start(config_file: Path) -> Daemon:
        started.append(daemon(config_file))
        return started[-1]

    yield start
    for process in started:
        print(f"----- daemon log -----\n{process.log}")


async def test_three_series_are_downloaded_filed_and_found_complete(
    tmp_path: Path,
    write_config: Callable[..., Path],
    port: int,
    fakesite: FakeSite,
    logged_daemon: Callable[[Path], Daemon],
) -> None:
    config_file = write_config(config_yaml(fakesite, port))
    config = load_config(config_file)
    database = config.data_dir / "aniworld.db"
    library = config.library.path
    expected = expected_paths(fakesite, config.library.naming)
    assert 8 <= len(expected) <= 12

    process = logged_daemon(config_file)

    def finished() -> bool:
        found = statuses(database)
        return len(found) == len(expected) and not {"pending", "downloading"} & set(found)

    await process.until(finished, "every wanted episode to be downloaded", 90)
    assert set(statuses(database)) == {"completed"}

    # Every episode at its template path and playable; no partial file outside the (empty) temp dir.
    files = [path.relative_to(library) for path in library.rglob("*") if path.is_file()]
    videos = sorted(str(path) for path in files if path.suffix in (".mp4", ".mkv", ".ts"))
    assert videos == sorted(expected.values())
    assert [str(path) for path in files if PARTIAL_RE.search(path.name)] == []
    for relative in expected.values():
        probe = ffprobe(library / relative)
        assert any(stream["codec_type"] == "video" for stream in probe["streams"]), relative
        assert float(probe["format"]["duration"]) > 3, relative
    leftovers = (
        [path.name for path in (library / TEMP_DIR_NAME).iterdir()] if (library / TEMP_DIR_NAME).is_dir() else []
    )
    assert leftovers == []

    # The database agrees: each episode downloaded at that path, each item completed through its series' hoster.
    episodes = {
        (key, season, number): (state, file_path)
        for key, season, number, state, file_path in query(
            database, "SELECT series_key, season, number, state, file_path FROM episodes"
        )
    }
    assert {place: episodes[place] for place in expected} == {
        place: ("downloaded", path) for place, path in expected.items()
    }
    items = query(database, "SELECT series_key, season, number, status, hoster, file_path FROM downloads")
    assert sorted(items) == sorted(
        (key, season, number, "completed", FOLLOWED[key][2], path) for (key, season, number), path in expected.items()
    )

    # Both kinds of media really went over the wire: MP4 from vidoza and doodstream, HLS (playlist + segments) from VOE.
    assert fakesite.log.media("vidoza")
    assert fakesite.log.media("doodstream")
    voe = [urlsplit(record.path).path for record in fakesite.log.media("voe")]
    assert any(path.endswith(".m3u8") for path in voe), voe
    assert any(path.endswith(".ts") for path in voe), voe

    process.signal(signal.SIGTERM)
    assert await process.exited(30) == 0, process.log

    # A second rescan, in the foreground: nothing is missing any more, and nothing is queued again.
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aniworld_daemon",
        "scan",
        "--json",
        "-c",
        str(config_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        out, err = await asyncio.wait_for(command.communicate(), 60)
    except TimeoutError:
        command.kill()
        await command.wait()
        pytest.fail("`aniworld-daemon scan` did not finish within 60 s")
    assert command.returncode == 0, err.decode()
    scan = json.loads(out)
    assert scan["report"]["status"] == "complete", scan
    outcomes = {series["key"]: series for series in scan["series"]}
    assert set(outcomes) == set(FOLLOWED)
    for key, outcome in outcomes.items():
        wanted = sum(1 for place in expected if place[0] == key)
        assert (outcome["missing"], outcome["awaiting_language"], outcome["error"]) == ([], [], None), outcome
        assert outcome["downloaded"] == wanted, outcome
    assert len(statuses(database)) == len(expected)
