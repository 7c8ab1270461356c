"""Rescans through the real Application against the fake site: missing episodes, incremental refresh, failures."""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aniworld_daemon.app import Application
from aniworld_daemon.config import load_config
from aniworld_daemon.errors import NotFoundError, StorageError
from aniworld_daemon.events import EpisodesFound, Event, EventType, ScanFailed, ScanProgress
from aniworld_daemon.models import Episode, EpisodeState, Language, ScanReport, ScanStatus
from aniworld_daemon.rescan import Rescanner, ScanResult, SeriesScan
from tests.fakesite.server import FakeSite
from tests.helpers import Recorder, StartApp, free_port, minimal_config

MB = 1024 * 1024
ALL = "[de-dub, de-sub, en-sub, en-dub]"

StartFollowing = Callable[..., Awaitable[Application]]
Place = tuple[int, int]


def make_file(path: Path, size: int = 2 * MB) -> None:
    """A sparse file of `size` bytes (cheap however big)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)


def site_yaml(
    site: FakeSite, series: str, *, extra: str = "", languages: str = ALL, schedule: str = "run_on_start: false"
) -> str:
    """Config lines for the fake site: fast budget, short cooldown, no startup rescan (tests start it).

    The download queue is left out unless `extra` configures `downloads:`: these tests are about what a rescan
    finds, and the real queue would change episode states and make requests of its own.
    """
    if "downloads:" not in extra:
        extra += "downloads:\n  auto_download: false\n"
    return (
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 2\n"
        f"  cooldown: 1s\n  languages: {languages}\n"
        f"schedule:\n  {schedule}\n{extra}series:\n{series}"
    )


@pytest.fixture
def start_following(fakesite: FakeSite, start_app: StartApp) -> StartFollowing:
    """Start the real Application with the given `series:` lines (and more config) against the fake site."""

    async def start(series: str, **options: str) -> Application:
        return await start_app(site_yaml(fakesite, series, **options))

    return start


def catalog_places(site: FakeSite, key: str, seasons: Sequence[int] | None = None) -> dict[Place, tuple[Language, ...]]:
    """(season, number) -> languages of the catalog's wanted episodes (default: every regular season)."""
    series = site.catalog.series[key]
    return {
        (episode.season, episode.number): episode.languages
        for episode in series.episodes()
        if (episode.season > 0 if seasons is None else episode.season in seasons)
    }


def places(episodes: Sequence[Episode]) -> set[Place]:
    """The (season, number) of episodes."""
    return {(episode.season, episode.number) for episode in episodes}


def outcome(result: ScanResult, key: str) -> SeriesScan:
    """The result of one series."""
    return next(item for item in result.series if item.key == key)


def site_requests(site: FakeSite) -> int:
    """Requests the site itself (not the hosters) answered so far."""
    return site.log.count("site")


async def test_first_rescan_finds_every_missing_episode(start_following: StartFollowing, fakesite: FakeSite) -> None:
    library_files = {
        # blade-of-dawn as the template names it: two episodes of season 1 and the first movie on disk
        "Blade of Dawn (2015)/Season 01/Blade of Dawn - S01E01 - Das Licht im Schutt.mp4": 2 * MB,
        "Blade of Dawn (2015)/Season 01/Blade of Dawn - S01E02 - Der Söldner ohne Namen.mkv": 2 * MB,
        "Blade of Dawn (2015)/Season 00/Blade of Dawn - S00E01 - The First Light.mkv": 2 * MB,
        # not episodes: a partial download and a tiny file
        "Blade of Dawn (2015)/Season 01/Blade of Dawn - S01E03 - Feuer.mp4.part": 2 * MB,
        "Blade of Dawn (2015)/Season 02/Blade of Dawn - S02E01.mp4": 1000,
    }
    app = await start_following(
        "  - key: blade-of-dawn\n    seasons: [0, 1, 2]\n"
        "  - key: moonlit-academy\n    languages: [de-dub]\n"
        "  - the-ogres-bride\n"
    )
    for relative, size in library_files.items():
        make_file(app.config.library.path / relative, size)

    result = await app.rescanner.rescan("manual")

    assert result.report.status is ScanStatus.COMPLETE, result.report.errors
    blade = outcome(result, "blade-of-dawn")
    expected = set(catalog_places(fakesite, "blade-of-dawn", [0, 1, 2])) - {(1, 1), (1, 2), (0, 1)}
    assert places(blade.missing) == expected
    assert blade.downloaded == 3
    assert blade.folder == "Blade of Dawn (2015)"

    moonlit = catalog_places(fakesite, "moonlit-academy")
    dubbed = {place for place, languages in moonlit.items() if Language.DE_DUB in languages}
    assert dubbed
    assert dubbed != set(moonlit)
    academy = outcome(result, "moonlit-academy")
    assert places(academy.missing) == dubbed
    assert places(academy.awaiting_language) == set(moonlit) - dubbed

    ogre = outcome(result, "the-ogres-bride")
    assert places(ogre.missing) == set(catalog_places(fakesite, "the-ogres-bride"))
    assert result.report.missing == {key: len(outcome(result, key).missing) for key in result.report.missing}
    assert result.report.requests == site_requests(fakesite) > 0

    # The database knows the same: states per episode, files for the ones on disk.
    stored = {(e.season, e.number): e for e in await app.db.list_episodes("blade-of-dawn")}
    assert stored[(1, 1)].state is EpisodeState.DOWNLOADED
    assert stored[(1, 1)].file_path == next(iter(k for k in library_files if "S01E01" in k))
    assert stored[(1, 3)].state is EpisodeState.MISSING
    series = await app.series.get("blade-of-dawn")
    assert series.title == "Blade of Dawn"
    assert series.year == 2015
    assert series.refreshed_at is not None


async def test_second_rescan_without_changes_is_cheap(start_following: StartFollowing, fakesite: FakeSite) -> None:
    keys = ["blade-of-dawn", "the-ogres-bride", "endless-voyage", "sword-shield-chronicle", "die-kleinen-baeren"]
    app = await start_following("".join(f"  - {key}\n" for key in keys))
    first = await app.rescanner.rescan("manual")
    assert first.report.status is ScanStatus.COMPLETE, first.report.errors
    before = site_requests(fakesite)

    second = await app.rescanner.rescan("manual")

    made = site_requests(fakesite) - before
    running = sum(1 for key in keys if fakesite.catalog.series[key].running)
    assert 0 < running < len(keys)
    assert made == second.report.requests == 1 + running  # the bound of the issue, met exactly
    assert second.report.status is ScanStatus.COMPLETE
    assert second.report.new_episodes == 0
    assert {o.key: places(o.missing) for o in second.series} == {o.key: places(o.missing) for o in first.series}
    # Only the feed and pages of running series were read.
    paths = [record.path for record in fakesite.log.select("site")[before:]]
    assert paths[0] == "/neue-episoden"
    assert all(any(key in path for key in keys if fakesite.catalog.series[key].running) for path in paths[1:])


async def test_released_episodes_are_found_by_the_next_rescan(
    start_following: StartFollowing, fakesite: FakeSite
) -> None:
    app = await start_following("  - the-ogres-bride\n  - blade-of-dawn\n")
    events: list[Event[EpisodesFound]] = []
    app.bus.subscribe(events.append, EpisodesFound)
    await app.rescanner.rescan("manual")
    assert fakesite.catalog.series["the-ogres-bride"].running
    assert not fakesite.catalog.series["blade-of-dawn"].running
    running_new = fakesite.release("the-ogres-bride")
    finished_new = fakesite.release("blade-of-dawn")  # a finished show: only the feed can tell
    new_season = fakesite.release("blade-of-dawn", season=3)  # a sequel season of a finished show
    assert new_season == (3, 1)

    second = await app.rescanner.rescan("manual")
    await app.bus.drain()

    assert running_new in places(outcome(second, "the-ogres-bride").missing)
    assert {finished_new, new_season} <= places(outcome(second, "blade-of-dawn").missing)
    assert second.report.new_episodes == 3
    found = {event.data.series_key: set(event.data.episodes) for event in events}
    assert found == {"the-ogres-bride": {running_new}, "blade-of-dawn": {finished_new, new_season}}


async def test_a_refusal_mid_scan_ends_the_scan_partial(start_following: StartFollowing, fakesite: FakeSite) -> None:
    keys = ["blade-of-dawn", "the-ogres-bride", "sword-shield-chronicle", "hoshi-no-uta", "die-kleinen-baeren"]
    app = await start_following("".join(f"  - {key}\n" for key in keys))
    fakesite.knobs.block("site", after=3)

    result = await app.rescanner.rescan("manual")

    assert result.report.status is ScanStatus.PARTIAL
    assert result.report.errors
    assert set(result.report.errors) <= set(keys)
    assert all("refused" in message for message in result.report.errors.values())
    assert app.http.cooldowns()
    assert app.http.cooldowns()[0].host.startswith("127.0.0.1")
    health = await app.health.report()
    assert health.status.value == "degraded"
    # The refusal was not hammered: after it, nothing more reached the site.
    refused = [record for record in fakesite.log.select("site") if record.status == 403]
    assert len(refused) <= 2  # one per connection at most
    stored = await app.db.get_scan(result.report.id)
    assert stored is not None
    assert stored.status is ScanStatus.PARTIAL


async def test_a_broken_series_page_fails_only_that_series(start_following: StartFollowing, fakesite: FakeSite) -> None:
    app = await start_following("  - broken-mirror\n  - the-ogres-bride\n")

    result = await app.rescanner.rescan("manual")

    assert set(result.report.errors) == {"broken-mirror"}
    assert "series title" in result.report.errors["broken-mirror"]
    assert result.report.status is ScanStatus.PARTIAL
    assert places(outcome(result, "the-ogres-bride").missing) == set(catalog_places(fakesite, "the-ogres-bride"))
    assert outcome(result, "the-ogres-bride").error is None


async def test_an_existing_library_folder_is_found_once_and_remembered(
    start_following: StartFollowing, fakesite: FakeSite
) -> None:
    app = await start_following("  - blade-of-dawn\n  - the-ogres-bride\n")
    root = app.config.library.path
    make_file(root / "Blade of Dawn" / "Staffel 1" / "Blade of Dawn S01E003.mkv")
    make_file(root / "Blade of Dawn" / "Season 2" / "blade.of.dawn.s2e4.mp4")
    make_file(root / "Someone Else's Show (2001)" / "Season 01" / "Show - S01E01.mkv")

    first = await app.rescanner.rescan("manual")

    blade = outcome(first, "blade-of-dawn")
    assert blade.folder == "Blade of Dawn"
    assert blade.downloaded == 2
    assert {(1, 3), (2, 4)}.isdisjoint(places(blade.missing))
    assert outcome(first, "the-ogres-bride").folder != "Someone Else's Show (2001)"
    stored = await app.series.get("blade-of-dawn")
    assert stored.folder == "Blade of Dawn"
    assert stored.folder_matched
    # A folder named like the template appears later: the recorded match stays.
    make_file(root / "Blade of Dawn (2015)" / "Season 01" / "Blade of Dawn - S01E01 - x.mkv")
    second = await app.rescanner.rescan("manual")
    assert outcome(second, "blade-of-dawn").folder == "Blade of Dawn"
    assert outcome(second, "blade-of-dawn").downloaded == 2


async def test_metadata_is_written_once_into_existing_folders(
    start_following: StartFollowing, fakesite: FakeSite
) -> None:
    app = await start_following("  - blade-of-dawn\n  - the-ogres-bride\n")
    folder = app.config.library.path / "Blade of Dawn (2015)"
    make_file(folder / "Season 01" / "Blade of Dawn - S01E01 - a.mkv")

    await app.rescanner.rescan("manual")

    nfo = ET.parse(folder / "tvshow.nfo").getroot()
    assert nfo.findtext("title") == "Blade of Dawn"
    assert nfo.findtext("year") == "2015"
    assert (folder / "poster.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG from the site's cover path
    assert not (app.config.library.path / "The Ogre's Bride (2021)").exists()  # no empty folders are made
    covers = fakesite.log.count("site", "/public/img/cover/")
    assert covers == 1
    await app.rescanner.rescan("manual")
    assert fakesite.log.count("site", "/public/img/cover/") == covers


async def test_a_missing_cover_is_asked_for_again_only_at_the_full_refresh(
    start_following: StartFollowing, fakesite: FakeSite
) -> None:
    app = await start_following("  - blade-of-dawn\n")
    folder = app.config.library.path / "Blade of Dawn (2015)"
    make_file(folder / "Season 01" / "Blade of Dawn - S01E01 - a.mkv")
    cover = fakesite.catalog.series["blade-of-dawn"].cover_path
    fakesite.knobs.fail_paths[cover] = 404

    first = await app.rescanner.rescan("manual")
    second = await app.rescanner.rescan("manual")

    assert [first.report.status, second.report.status] == [ScanStatus.COMPLETE, ScanStatus.COMPLETE]
    assert fakesite.log.count("site", cover) == 1  # the 404 of the first scan, not asked again by the second
    assert (folder / "tvshow.nfo").exists()  # the NFO does not depend on the cover
    assert not (folder / "poster.jpg").exists()
    # The full refresh (the last one older than `full_refresh`) asks again; the site serves the cover by now.
    del fakesite.knobs.fail_paths[cover]
    series = await app.series.get("blade-of-dawn")
    await app.db.upsert_series(replace(series, refreshed_at=datetime.now(UTC) - timedelta(days=8)))
    await app.rescanner.rescan("manual")
    assert fakesite.log.count("site", cover) == 2
    assert (folder / "poster.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    # Once it worked, the failure is forgotten: a poster the user deletes comes back at the next (incremental) scan.
    (folder / "poster.jpg").unlink()
    await app.rescanner.rescan("manual")
    assert fakesite.log.count("site", cover) == 3
    assert (folder / "poster.jpg").exists()


async def test_a_second_request_joins_the_running_rescan(start_following: StartFollowing, fakesite: FakeSite) -> None:
    app = await start_following("  - blade-of-dawn\n  - the-ogres-bride\n")
    fakesite.knobs.latency = 0.05

    first, second = await asyncio.gather(app.rescanner.rescan("manual"), app.rescanner.rescan("api"))

    assert first.report.id == second.report.id
    assert len(await app.db.list_scans()) == 1


async def test_scan_events_and_report_are_stored(start_following: StartFollowing, fakesite: FakeSite) -> None:
    app = await start_following("  - blade-of-dawn\n  - the-ogres-bride\n")
    events = Recorder()
    app.bus.subscribe(events)

    result = await app.rescanner.rescan("manual")
    await app.bus.drain()

    types = [event.type for event in events.events if event.type.value.startswith("scan_")]
    assert types[0] is EventType.SCAN_STARTED
    assert types[-1] is EventType.SCAN_COMPLETE
    progress = [event.data for event in events.of(ScanProgress)]
    assert [data.series_done for data in progress] == [1, 2]
    stored = await app.db.get_scan(result.report.id)
    assert stored == result.report
    assert (await app.db.list_history(kind=None))[0].message.startswith("Rescan complete")


async def test_unknown_keys_are_refused(start_following: StartFollowing) -> None:
    app = await start_following("  - blade-of-dawn\n")
    with pytest.raises(NotFoundError, match="not followed: nope"):
        await app.rescanner.rescan("manual", ["nope"])


class RecordingQueue:
    """The download queue as the rescan sees it (a test double of `MissingEpisodeQueue`)."""

    def __init__(self) -> None:
        self.calls: list[list[Episode]] = []

    async def enqueue_missing(self, episodes: Sequence[Episode]) -> int:
        """Record the hand-over."""
        self.calls.append(list(episodes))
        return len(episodes)


async def test_auto_download_hands_missing_episodes_to_the_queue(
    start_following: StartFollowing, fakesite: FakeSite
) -> None:
    app = await start_following(
        "  - the-ogres-bride\n  - blade-of-dawn\n", extra="downloads:\n  auto_download: true\n  auto_start: false\n"
    )
    queue = RecordingQueue()
    rescanner = Rescanner(app.db, app.provider, app.bus, app.series, app.config, queue=queue, temp=app.temp)

    dry = await rescanner.rescan("manual", dry_run=True)
    assert queue.calls == []
    assert dry.queued == 0
    result = await rescanner.rescan("manual")

    assert len(queue.calls) == 1
    handed = [(episode.series_key, episode.season, episode.number) for episode in queue.calls[0]]
    assert handed == sorted(handed)
    assert {(s, n) for key, s, n in handed if key == "the-ogres-bride"} == places(
        outcome(result, "the-ogres-bride").missing
    )
    assert result.queued == len(handed)


async def test_auto_download_off_hands_nothing(start_following: StartFollowing) -> None:
    app = await start_following("  - the-ogres-bride\n", extra="downloads:\n  auto_download: false\n")
    queue = RecordingQueue()
    rescanner = Rescanner(app.db, app.provider, app.bus, app.series, app.config, queue=queue, temp=app.temp)
    result = await rescanner.rescan("manual")
    assert result.series[0].missing
    assert queue.calls == []


async def test_full_refresh_rereads_finished_seasons(start_following: StartFollowing, fakesite: FakeSite) -> None:
    app = await start_following("  - blade-of-dawn\n")
    await app.rescanner.rescan("manual")
    before = site_requests(fakesite)
    await app.rescanner.rescan("manual")
    assert site_requests(fakesite) - before == 1  # a finished show: the feed only
    # The last full refresh is now older than `full_refresh` (7 days by default).
    series = await app.series.get("blade-of-dawn")
    await app.db.upsert_series(replace(series, refreshed_at=datetime.now(UTC) - timedelta(days=8)))
    before = site_requests(fakesite)
    await app.rescanner.rescan("manual")
    # the feed, the series page (it shows season 1), season 2; the movies are not wanted
    assert site_requests(fakesite) - before == 3


async def wait_for_scans(app: Application, trigger: str, count: int) -> list[ScanReport]:
    """The finished scans of `trigger`, once there are `count` of them (waits at most 8 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 8
    scans: list[ScanReport] = []
    while loop.time() < deadline:
        scans = [scan for scan in await app.db.list_scans() if scan.trigger == trigger and scan.finished_at]
        if len(scans) >= count:
            break
        await asyncio.sleep(0.05)
    return scans


async def test_an_every_second_schedule_runs_real_rescans(start_following: StartFollowing, fakesite: FakeSite) -> None:
    app = await start_following("  - blade-of-dawn\n", schedule="rescan: {every: 1s}\n  run_on_start: false")
    assert app.scheduler.state().next_run is not None

    scans = await wait_for_scans(app, "schedule", 2)

    assert len(scans) >= 2
    assert all(scan.status is ScanStatus.COMPLETE for scan in scans)
    last_run = app.scheduler.state().last_run
    assert last_run is not None
    assert last_run >= min(scan.started_at for scan in scans)


async def test_run_on_start_rescans_at_start(start_following: StartFollowing, fakesite: FakeSite) -> None:
    app = await start_following("  - blade-of-dawn\n", schedule="run_on_start: true")
    scans = await wait_for_scans(app, "startup", 1)
    assert [scan.status for scan in scans] == [ScanStatus.COMPLETE]
    assert (await app.series.get("blade-of-dawn")).title == "Blade of Dawn"


async def test_an_unreadable_folder_keeps_its_episodes(
    start_following: StartFollowing, fakesite: FakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await start_following("  - blade-of-dawn\n  - the-ogres-bride\n")
    make_file(app.config.library.path / "Blade of Dawn (2015)" / "Season 01" / "Blade of Dawn - S01E01 - a.mkv")
    first = await app.rescanner.rescan("manual")
    assert outcome(first, "blade-of-dawn").downloaded == 1
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        # A permission error cannot be made for root with chmod: the one stand-in in this file.
        if Path(path).name == "Blade of Dawn (2015)":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    queue = RecordingQueue()
    config = replace(app.config, downloads=replace(app.config.downloads, auto_download=True))
    second = await Rescanner(app.db, app.provider, app.bus, app.series, config, queue=queue, temp=app.temp).rescan(
        "manual"
    )

    blade = outcome(second, "blade-of-dawn")
    assert blade.error is not None
    assert "Permission denied" in blade.error
    assert blade.missing == ()
    assert blade.downloaded == 1
    assert second.report.status is ScanStatus.PARTIAL
    assert {episode.series_key for episode in queue.calls[0]} == {"the-ogres-bride"}
    stored = {(e.season, e.number): e.state for e in await app.db.list_episodes("blade-of-dawn")}
    assert stored[(1, 1)] is EpisodeState.DOWNLOADED


async def test_a_missing_library_fails_the_scan(start_following: StartFollowing, fakesite: FakeSite) -> None:
    app = await start_following("  - blade-of-dawn\n")
    events: list[Event[ScanFailed]] = []
    app.bus.subscribe(events.append, ScanFailed)
    app.config.library.path.rmdir()

    with pytest.raises(StorageError, match="does not exist; is its disk mounted"):
        await app.rescanner.rescan("manual")
    await app.bus.drain()

    (report,) = await app.db.list_scans()
    assert report.status is ScanStatus.FAILED
    assert [event.data.error_code for event in events] == ["storage_error"]
    assert site_requests(fakesite) == 0


async def test_a_site_that_does_not_answer_is_asked_once_per_scan(
    write_config: Callable[..., Path], port: int, fakesite: FakeSite
) -> None:
    text = site_yaml(fakesite, "  - blade-of-dawn\n  - the-ogres-bride\n  - moonlit-academy\n")
    closed = f"http://127.0.0.1:{free_port()}"
    app = Application(load_config(write_config(minimal_config(port, text.replace(fakesite.base_url, closed)))))
    await app.start()
    try:
        result = await app.rescanner.rescan("manual")
    finally:
        await app.stop()

    assert result.report.status is ScanStatus.PARTIAL
    assert result.report.requests == 4  # the feed, with its retries; then no series page is tried
    assert set(result.report.errors) == {"blade-of-dawn", "the-ogres-bride", "moonlit-academy"}
    assert all(error.startswith("not checked: the site does not answer") for error in result.report.errors.values())


async def test_a_database_failure_mid_scan_fails_the_scan(start_following: StartFollowing, fakesite: FakeSite) -> None:
    keys = ["blade-of-dawn", "the-ogres-bride", "sword-shield-chronicle", "hoshi-no-uta", "moonlit-academy"]
    app = await start_following("".join(f"  - {key}\n" for key in keys))
    fakesite.knobs.latency = 0.05
    progress: list[Event[ScanProgress]] = []
    app.bus.subscribe(progress.append, ScanProgress)
    scan = asyncio.ensure_future(app.rescanner.rescan("manual"))
    for _ in range(200):
        if progress:
            break
        await asyncio.sleep(0.02)
    assert progress, "no series finished within 4 s"

    await app.db.close()  # the database goes away mid-scan (a full or vanished disk)

    with pytest.raises(StorageError, match="the database is not open"):
        await scan
    await asyncio.sleep(0.2)  # requests already in flight are logged when the site answers them
    seen = site_requests(fakesite)
    await asyncio.sleep(0.4)
    assert site_requests(fakesite) == seen  # no worker of the failed scan is still reading the site
    assert not app.rescanner.running
