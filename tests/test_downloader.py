"""The download queue engine through the real Application: real yt-dlp and ffprobe against the fake site."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aniworld_daemon.app import Application
from aniworld_daemon.downloads.engine import in_window, seconds_until_window
from aniworld_daemon.downloads.outcomes import backoff
from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME
from aniworld_daemon.errors import NotFoundError
from aniworld_daemon.events import (
    DownloadCancelled,
    DownloadComplete,
    DownloadFailed,
    DownloadProgress,
    DownloadStarted,
    EventType,
    QueuePaused,
    QueueResumed,
)
from aniworld_daemon.models import DownloadStatus, EpisodeState, HistoryKind, Priority
from aniworld_daemon.wire import queue_json
from tests.fakesite.server import FakeSite
from tests.helpers import Recorder, StartApp, cli, ffprobe, finished, minimal_config, until

KEY = "blade-of-dawn"  # season 1: de-dub on voe and vidoza, de-sub on voe, filemoon and doodstream
MP4_HOSTERS = "[doodstream, vidoza, filemoon, voe]"
HLS_HOSTERS = "[voe, doodstream]"


StartEngine = Callable[..., Awaitable[tuple[Application, Recorder]]]


def engine_yaml(
    site: FakeSite, *, hosters: str = MP4_HOSTERS, languages: str = "[de-sub]", free: str = "0", downloads: str = ""
) -> str:
    """Config lines: fast site budget, 1 s cooldown, no scheduled rescans, blade-of-dawn season 1 followed."""
    return (
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        f"  cooldown: 1s\n  languages: {languages}\n  hosters: {hosters}\n"
        f"schedule:\n  run_on_start: false\n"
        f"downloads:\n  retry_backoff: 1s\n  min_free_space: {free}\n{downloads}"
        f"series:\n  - key: {KEY}\n    seasons: [1]\n"
    )


@pytest.fixture
def start_engine(fakesite: FakeSite, start_app: StartApp) -> StartEngine:
    """Start the real Application on `engine_yaml(**options)` with a Recorder of every event (from before the start)."""

    async def start(**options: str) -> tuple[Application, Recorder]:
        events = Recorder()
        app = await start_app(engine_yaml(fakesite, **options), events)
        return app, events

    return start


async def making_progress(app: Application, events: Recorder) -> None:
    """Wait until a download has reported progress and has a partial file in the temp dir."""

    async def progressing() -> bool:
        return bool(events.of(DownloadProgress)) and bool(temp_files(app))

    await until(progressing, what="the download to make progress")


def temp_files(app: Application) -> list[str]:
    """What is left in the library's temp dir."""
    folder = app.config.library.path / TEMP_DIR_NAME
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def library_videos(app: Application) -> list[str]:
    """Video files in the library (outside the temp dir), relative."""
    root = app.config.library.path
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and TEMP_DIR_NAME not in path.parts and path.suffix in (".mp4", ".mkv", ".ts")
    )


def media_requests(site: FakeSite, hoster: str) -> int:
    """How many media requests (MP4, playlist, segments) a hoster served."""
    return len(site.log.media(hoster))


# --- one episode, start to end -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hosters", "used"), [(MP4_HOSTERS, "doodstream"), (HLS_HOSTERS, "voe")])
async def test_an_episode_lands_at_its_template_path_and_plays(
    start_engine: StartEngine, fakesite: FakeSite, hosters: str, used: str
) -> None:
    app, events = await start_engine(hosters=hosters)
    [item] = await app.downloader.add(KEY, [(1, 2)])
    [done] = await finished(app, item.id)

    assert done.status is DownloadStatus.COMPLETED, done.error_message
    expected = "Blade of Dawn (2015)/Season 01/Blade of Dawn - S01E02 - Der Söldner ohne Namen.mp4"
    assert done.file_path == expected
    assert done.hoster == used
    assert library_videos(app) == [expected]
    probe = ffprobe(app.config.library.path / expected)
    assert any(stream["codec_type"] == "video" for stream in probe["streams"])
    assert float(probe["format"]["duration"]) > 0.5 * fakesite.media.duration
    assert media_requests(fakesite, used) > 0
    assert temp_files(app) == []

    [episode] = [e for e in await app.db.list_episodes(KEY) if (e.season, e.number) == (1, 2)]
    assert episode.state is EpisodeState.DOWNLOADED
    assert episode.file_path == expected
    assert episode.file_size == (app.config.library.path / expected).stat().st_size
    [entry] = await app.db.list_history(kind=HistoryKind.DOWNLOAD_COMPLETED)
    assert entry.data["hoster"] == used
    await app.bus.drain()
    kinds = [event.type for event in events.events if event.type.value.startswith("download_")]
    assert kinds[0] is EventType.DOWNLOAD_STARTED
    assert kinds[-1] is EventType.DOWNLOAD_COMPLETE
    complete = events.of(DownloadComplete)[0].data
    assert complete.file_path == expected


async def test_a_queued_episode_is_added_once(start_engine: StartEngine) -> None:
    app, _ = await start_engine(downloads="  auto_start: false\n")
    first = await app.downloader.add(KEY, [(1, 1), (1, 2), (1, 1)])
    again = await app.downloader.add(KEY, [(1, 2), (1, 3)])
    assert [(item.season, item.number) for item in first] == [(1, 1), (1, 2)]
    assert [(item.season, item.number) for item in again] == [(1, 3)]
    with pytest.raises(NotFoundError):
        await app.downloader.add("not-followed", [(1, 1)])
    states = {(e.season, e.number): e.state for e in await app.db.list_episodes(KEY)}
    assert states == {(1, 1): EpisodeState.QUEUED, (1, 2): EpisodeState.QUEUED, (1, 3): EpisodeState.QUEUED}


# --- errors: fallback, retries, failure, cooldown, language --------------------------------------------------------


async def test_a_broken_hoster_falls_back_to_the_next(start_engine: StartEngine, fakesite: FakeSite) -> None:
    fakesite.knobs.dead_hosters.add("doodstream")
    app, _ = await start_engine()
    [item] = await app.downloader.add(KEY, [(1, 1)])
    [done] = await finished(app, item.id)
    assert done.status is DownloadStatus.COMPLETED, done.error_message
    assert done.hoster == "filemoon"  # de-sub is on voe, filemoon, doodstream; voe is last in our preference
    assert done.attempts == 0
    assert media_requests(fakesite, "doodstream") == 0


async def test_server_errors_are_retried_with_backoff(start_engine: StartEngine, fakesite: FakeSite) -> None:
    fakesite.knobs.fail_media["doodstream"] = 10**6
    app, events = await start_engine(hosters="[doodstream]", downloads="  retries: 5\n")
    [item] = await app.downloader.add(KEY, [(1, 1)])

    async def failed_twice() -> bool:
        return len(events.of(DownloadFailed)) >= 2

    await until(failed_twice, what="two failed attempts")
    fakesite.knobs.fail_media["doodstream"] = 0
    [done] = await finished(app, item.id)

    assert done.status is DownloadStatus.COMPLETED, done.error_message
    assert done.attempts == 2
    first, second = events.of(DownloadFailed)[:2]
    assert first.data.will_retry
    assert second.data.will_retry
    starts = [event.timestamp for event in events.of(DownloadStarted)]
    assert len(starts) == 3
    # Backoff doubles: >= 1 s then >= 2 s (minus the 25 % jitter) between a failure and the next attempt.
    assert (starts[1] - first.timestamp).total_seconds() >= 0.75
    assert (starts[2] - second.timestamp).total_seconds() >= 1.5


async def test_an_episode_fails_after_its_retries(start_engine: StartEngine, fakesite: FakeSite) -> None:
    fakesite.knobs.fail_media["doodstream"] = 10**6
    app, events = await start_engine(hosters="[doodstream]", downloads="  retries: 2\n")
    [item] = await app.downloader.add(KEY, [(1, 1)])
    [done] = await finished(app, item.id)

    async def failure_announced() -> bool:
        # The row turns `failed` before the history and the event are written: wait for the last of them.
        return any(not event.data.will_retry for event in events.of(DownloadFailed))

    await until(failure_announced, what="the final download_failed event")
    assert done.status is DownloadStatus.FAILED
    assert done.attempts == 2
    assert done.error_code == "download_error"
    assert "503" in (done.error_message or "")
    assert [event.data.will_retry for event in events.of(DownloadFailed)] == [True, False]
    [entry] = await app.db.list_history(kind=HistoryKind.DOWNLOAD_FAILED)
    assert entry.data["attempts"] == 2
    states = {(e.season, e.number): e.state for e in await app.db.list_episodes(KEY)}
    assert states[(1, 1)] is EpisodeState.MISSING
    assert library_videos(app) == []
    assert temp_files(app) == []

    fakesite.knobs.fail_media["doodstream"] = 0
    assert await app.downloader.retry() == 1
    [again] = await finished(app, item.id)
    assert again.status is DownloadStatus.COMPLETED
    assert await app.downloader.clear_completed() == 1
    assert await app.db.list_downloads() == []


async def test_a_failed_item_whose_episode_was_downloaded_meanwhile_is_not_retried(
    start_engine: StartEngine, fakesite: FakeSite
) -> None:
    fakesite.knobs.fail_media["doodstream"] = 10**6
    app, _ = await start_engine(hosters="[doodstream]", downloads="  retries: 1\n")
    [item] = await app.downloader.add(KEY, [(1, 1)])
    [failed] = await finished(app, item.id)
    assert failed.status is DownloadStatus.FAILED
    fakesite.knobs.fail_media["doodstream"] = 0
    [again] = await app.downloader.add(KEY, [(1, 1)])  # as a later rescan queues the missing episode again
    await finished(app, again.id)

    assert await app.downloader.retry() == 0  # nothing is left to retry: no second item completes the episode
    assert (await app.db.get_download(item.id)).status is DownloadStatus.FAILED  # type: ignore[union-attr]
    assert len(await app.db.list_history(kind=HistoryKind.DOWNLOAD_COMPLETED)) == 1


async def test_a_blocked_site_waits_for_its_cooldown_without_counting_an_attempt(
    start_engine: StartEngine, fakesite: FakeSite
) -> None:
    app, events = await start_engine(downloads="  retries: 1\n  max_concurrent: 1\n")
    fakesite.knobs.block("site", after=0)
    [item, other] = await app.downloader.add(KEY, [(1, 1), (1, 2)])

    async def waiting() -> bool:
        return bool(events.of(DownloadFailed))

    await until(waiting, what="the refusal")
    refused = await app.db.get_download(item.id)
    assert refused is not None
    assert refused.status is DownloadStatus.PENDING
    assert refused.attempts == 0
    assert refused.error_code == "provider_blocked"
    assert refused.next_attempt_at is not None
    assert refused.next_attempt_at > datetime.now(UTC)
    fakesite.knobs.unblock("site")
    [done, second] = await finished(app, item.id, other.id)
    assert second.status is DownloadStatus.COMPLETED
    # Nothing else was started during the cooldown only to bounce off it: one refusal, one event.
    assert len(events.of(DownloadFailed)) == 1
    # retries: 1 would have failed the item at its first counted attempt: the refusal was not one.
    assert done.status is DownloadStatus.COMPLETED
    assert done.attempts == 0
    refusal, *later = fakesite.log.select("site")
    assert refusal.status == 403
    assert 403 not in [record.status for record in later]
    assert later[0].started - refusal.started >= 0.9  # the 1 s cooldown: nothing reached the site before


async def test_no_wanted_language_puts_the_episode_back_to_awaiting(
    start_engine: StartEngine, fakesite: FakeSite
) -> None:
    app, events = await start_engine(languages="[en-dub]")
    [item] = await app.downloader.add(KEY, [(1, 1)])

    async def gone() -> bool:
        return await app.db.get_download(item.id) is None

    await until(gone, what="the item to leave the queue")
    states = {(e.season, e.number): e.state for e in await app.db.list_episodes(KEY)}
    assert states[(1, 1)] is EpisodeState.AWAITING_LANGUAGE
    await app.bus.drain()
    assert not events.of(DownloadFailed)
    assert library_videos(app) == []


# --- control: cancel, pause, stop, priorities, concurrency, free space, window -----------------------------------


async def test_cancel_mid_download_leaves_nothing_behind(start_engine: StartEngine, fakesite: FakeSite) -> None:
    fakesite.knobs.bandwidth = 200_000
    app, events = await start_engine()
    [item] = await app.downloader.add(KEY, [(1, 1)])

    await making_progress(app, events)
    assert await app.downloader.cancel([item.id]) == 1
    cancelled = await app.db.get_download(item.id)
    assert cancelled is not None
    assert cancelled.status is DownloadStatus.CANCELLED
    assert temp_files(app) == []
    assert library_videos(app) == []
    await app.bus.drain()
    assert len(events.of(DownloadCancelled)) == 1
    states = {(e.season, e.number): e.state for e in await app.db.list_episodes(KEY)}
    assert states[(1, 1)] is EpisodeState.MISSING


async def test_removing_an_active_item_cancels_it(start_engine: StartEngine, fakesite: FakeSite) -> None:
    fakesite.knobs.bandwidth = 200_000
    app, events = await start_engine()
    [item] = await app.downloader.add(KEY, [(1, 1)])

    await making_progress(app, events)
    await app.downloader.remove_one(item.id)
    assert await app.db.get_download(item.id) is None
    assert temp_files(app) == []
    with pytest.raises(NotFoundError):
        await app.downloader.remove_one(item.id)


async def test_pause_and_resume(start_engine: StartEngine, fakesite: FakeSite) -> None:
    app, events = await start_engine()
    await app.downloader.pause()
    [item] = await app.downloader.add(KEY, [(1, 1)])
    await asyncio.sleep(1.0)
    assert fakesite.log.count("site", "/anime/stream/blade-of-dawn/staffel-1/episode-1") == 0
    assert (await app.downloader.status()).is_paused
    await app.downloader.resume()
    [done] = await finished(app, item.id)
    assert done.status is DownloadStatus.COMPLETED
    await app.bus.drain()
    kinds = [event.type for event in events.events if event.type.value.startswith("queue_")]
    assert EventType.QUEUE_PAUSED in kinds
    assert EventType.QUEUE_RESUMED in kinds


async def test_stop_puts_active_downloads_back_and_start_resumes_them(
    start_engine: StartEngine, fakesite: FakeSite
) -> None:
    fakesite.knobs.bandwidth = 300_000
    app, events = await start_engine()
    [item] = await app.downloader.add(KEY, [(1, 1)])

    await making_progress(app, events)
    snapshot = await app.downloader.status()
    shown = json.loads(json.dumps(queue_json(snapshot, {KEY: await app.series.get(KEY)})))
    [active] = shown["status"]["active_downloads"]
    assert (active["id"], active["serie_name"], active["hoster"], active["language"]) == (
        item.id,
        "Blade of Dawn",
        "doodstream",
        "de-sub",
    )
    assert 0 < active["progress"]["percent"] < 100
    assert shown["statistics"]["active_count"] == 1
    await app.downloader.stop_queue()
    stopped = await app.db.get_download(item.id)
    assert stopped is not None
    assert stopped.status is DownloadStatus.PENDING
    assert stopped.attempts == 0
    assert any(name.endswith(".part") for name in temp_files(app))  # kept for the resume
    fakesite.log.clear()
    fakesite.knobs.bandwidth = None
    await app.downloader.start_queue()
    [done] = await finished(app, item.id)
    assert done.status is DownloadStatus.COMPLETED
    ranges = [r.headers.get("Range", "") for r in fakesite.log.media("doodstream")]
    assert any(value.startswith("bytes=") and not value.startswith("bytes=0-") for value in ranges), ranges


async def test_priority_and_reorder_decide_the_order(start_engine: StartEngine) -> None:
    app, events = await start_engine(downloads="  auto_start: false\n  max_concurrent: 1\n")
    low = (await app.downloader.add(KEY, [(1, 1)], Priority.LOW))[0]
    normal = await app.downloader.add(KEY, [(1, 2), (1, 3), (1, 4)])
    high = (await app.downloader.add(KEY, [(1, 5)], Priority.HIGH))[0]
    await app.downloader.reorder(normal[2].id, 0)  # S01E04 first among the normal ones
    with pytest.raises(NotFoundError):
        await app.downloader.reorder("no-such-item", 0)
    await app.downloader.start_queue()
    ids = [high.id, normal[2].id, normal[0].id, normal[1].id, low.id]
    await finished(app, *ids)
    await app.bus.drain()
    order = [event.data.item_id for event in events.of(DownloadComplete)]
    assert order == ids


async def test_at_most_max_concurrent_media_streams(start_engine: StartEngine, fakesite: FakeSite) -> None:
    fakesite.knobs.bandwidth = 1_500_000
    app, _ = await start_engine(downloads="  max_concurrent: 2\n")
    items = await app.downloader.add(KEY, [(1, number) for number in range(1, 6)])
    done = await finished(app, *(item.id for item in items), within=60)
    assert {item.status for item in done} == {DownloadStatus.COMPLETED}
    assert fakesite.log.max_concurrency(None, media_only=True) == 2
    # The series was never rescanned: its page is read once for its title and folder, not once per item.
    series_page = [r for r in fakesite.log.select("site") if r.path == f"/anime/stream/{KEY}"]
    assert len(series_page) == 1


async def test_low_free_space_pauses_the_queue_until_space_is_back(start_engine: StartEngine) -> None:
    app, events = await start_engine(free="1000T")
    [item] = await app.downloader.add(KEY, [(1, 1)])

    async def paused() -> bool:
        return bool(app.downloader.problems())

    await until(paused, what="the low-space pause")
    health = await app.health.report()
    assert health.status.value == "degraded"
    assert any("min_free_space" in problem for problem in health.problems)
    assert (await app.downloader.status()).pause_reason == "low_disk_space"
    await asyncio.sleep(0.5)
    current = await app.db.get_download(item.id)
    assert current is not None
    assert current.status is DownloadStatus.PENDING

    downloads = replace(app.config.downloads, min_free_space=1)
    app.downloader.reconfigure(replace(app.config, downloads=downloads))
    [done] = await finished(app, item.id)
    assert done.status is DownloadStatus.COMPLETED
    assert app.downloader.problems() == []
    await app.bus.drain()
    reasons = [event.data.reason for event in events.of(QueuePaused)]
    assert reasons == ["low_disk_space"]
    assert events.of(QueueResumed)


async def test_no_download_starts_outside_the_window(start_engine: StartEngine, fakesite: FakeSite) -> None:
    now = datetime.now().astimezone()
    closed = f"{(now + timedelta(hours=2)):%H:%M}-{(now + timedelta(hours=3)):%H:%M}"
    app, _ = await start_engine(downloads=f"  window: '{closed}'\n")
    [item] = await app.downloader.add(KEY, [(1, 1)])
    await asyncio.sleep(1.0)
    waiting = await app.db.get_download(item.id)
    assert waiting is not None
    assert waiting.status is DownloadStatus.PENDING
    assert fakesite.log.count("site", "/anime/stream/blade-of-dawn/staffel-1/episode-1") == 0

    open_now = (
        datetime.combine(now.date(), (now - timedelta(minutes=5)).time()).time(),
        (now + timedelta(hours=1)).time(),
    )
    downloads = replace(app.config.downloads, window=open_now)
    app.downloader.reconfigure(replace(app.config, downloads=downloads))
    [done] = await finished(app, item.id)
    assert done.status is DownloadStatus.COMPLETED


# --- pure helpers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "clock", "inside"),
    [
        (("01:00", "07:00"), "00:59", False),
        (("01:00", "07:00"), "01:00", True),
        (("01:00", "07:00"), "06:59", True),
        (("01:00", "07:00"), "07:00", False),
        (("22:00", "02:00"), "23:30", True),
        (("22:00", "02:00"), "01:59", True),
        (("22:00", "02:00"), "02:00", False),
        (("22:00", "02:00"), "12:00", False),
    ],
)
def test_window(window: tuple[str, str], clock: str, inside: bool) -> None:
    parsed = tuple(datetime.strptime(value, "%H:%M").time() for value in window)
    now = datetime.combine(datetime(2026, 11, 21).date(), datetime.strptime(clock, "%H:%M").time()).astimezone()
    assert in_window((parsed[0], parsed[1]), now) is inside
    wait = seconds_until_window((parsed[0], parsed[1]), now)
    assert (wait == 0) is inside
    assert 0 <= wait < 86400


@pytest.mark.parametrize(("attempts", "low", "high"), [(1, 45, 75), (2, 90, 150), (3, 180, 300), (20, 32400, 54000)])
def test_backoff_doubles_with_jitter_and_a_cap(attempts: int, low: float, high: float) -> None:
    for _ in range(20):
        assert low <= backoff(timedelta(minutes=1), attempts).total_seconds() <= high


# --- the CLI: `download` and `queue` (real subprocesses against the fake site) ---------------------------------------


async def test_cli_download_and_queue(fakesite: FakeSite, write_config: Callable[..., Path], port: int) -> None:
    """`download` fetches one episode in the foreground; a second run skips it; `queue --json` shows the items."""
    config = write_config(minimal_config(port, engine_yaml(fakesite).split("series:")[0]))
    status, out, err = await cli(
        "download", fakesite.series_url(KEY), "--season", "1", "--episode", "3", "-c", str(config)
    )
    assert status == 0, err
    assert "Now following Blade of Dawn (blade-of-dawn), not monitored" in out
    expected = "Blade of Dawn (2015)/Season 01/Blade of Dawn - S01E03 - Feuer über Hohenfels.mp4"
    assert expected in out
    assert (config.parent / "library" / expected).is_file()

    status, out, err = await cli("download", KEY, "--episode", "3", "--json", "-c", str(config))
    assert status == 0, err
    run = json.loads(out)
    assert run["followed"] is False
    assert run["on_disk"] == [{"season": 1, "episode": 3}]
    assert run["items"] == []

    status, out, err = await cli("queue", "--json", "-c", str(config))
    assert status == 0, err
    queue = json.loads(out)
    [item] = queue["status"]["completed_downloads"]
    assert (item["serie_id"], item["season"], item["episode"]) == (KEY, 1, 3)
    assert item["file_path"] == expected
    assert item["hoster"] == "doodstream"
    assert queue["status"]["is_running"] is None  # another process cannot know whether the daemon's queue runs
    assert queue["statistics"]["completed_count"] == 1
    status, out, err = await cli("queue", "-c", str(config))
    assert status == 0, err
    assert "Completed (1):" in out
    assert expected in out


async def test_cli_download_reports_a_failure_with_exit_status_1(
    fakesite: FakeSite, write_config: Callable[..., Path], port: int
) -> None:
    fakesite.knobs.dead_hosters.update({"doodstream", "vidoza", "filemoon", "voe"})
    yaml = engine_yaml(fakesite, downloads="  retries: 1\n").split("series:")[0]
    config = write_config(minimal_config(port, yaml))
    status, out, err = await cli("download", KEY, "--season", "1", "--episode", "1", "-c", str(config))
    assert status == 1
    assert "S01E01  failed: every hoster failed" in out, out + err
    status, out, err = await cli("download", "not a key", "-c", str(config))
    assert status == 1
    assert err.startswith("error: ")


# --- start and stop ------------------------------------------------------------------------------------------------


async def test_shutdown_stores_active_downloads_as_pending(start_engine: StartEngine, fakesite: FakeSite) -> None:
    fakesite.knobs.bandwidth = 300_000
    app, events = await start_engine()
    [item] = await app.downloader.add(KEY, [(1, 1)])

    await making_progress(app, events)
    await app.stop()
    reopened = Application(app.config)
    await reopened.db.open()
    try:
        kept = await reopened.db.get_download(item.id)
    finally:
        await reopened.db.close()
    assert kept is not None
    assert kept.status is DownloadStatus.PENDING
    assert kept.attempts == 0
    assert kept.bytes_downloaded > 0
    # the partial file, and what its source promised (its full length: the gate checks the resumed file against it)
    assert temp_files(app) == [f"{item.id}.mp4.part", f"{item.id}.source.json"]


async def test_start_resets_interrupted_items_and_removes_orphan_temp_files(
    start_engine: StartEngine, fakesite: FakeSite
) -> None:
    app, _ = await start_engine(downloads="  auto_start: false\n")
    [item] = await app.downloader.add(KEY, [(1, 1)])
    await app.db.update_download(item.id, status=DownloadStatus.DOWNLOADING)
    folder = app.config.library.path / TEMP_DIR_NAME
    folder.mkdir()
    (folder / f"{item.id}.mp4.part").write_bytes(fakesite.media.mp4.read_bytes()[:1000])  # what a crash left
    (folder / "0123456789abcdef.mp4.part").write_bytes(b"left by an item that is gone")
    await app.stop()

    restarted = Application(app.config)
    await restarted.start()
    try:
        again = await restarted.db.get_download(item.id)
        assert again is not None
        assert again.status is DownloadStatus.PENDING
        assert temp_files(restarted) == [f"{item.id}.mp4.part"]
        await restarted.downloader.start_queue()
        [done] = await finished(restarted, item.id)
        assert done.status is DownloadStatus.COMPLETED
        assert done.hoster == "doodstream"
        ranges = [r.headers.get("Range", "") for r in fakesite.log.media("doodstream")]
        assert ranges == ["bytes=1000-"]
        assert temp_files(restarted) == []
    finally:
        await restarted.stop()


async def test_unfollowing_a_series_stops_its_downloads(start_engine: StartEngine, fakesite: FakeSite) -> None:
    fakesite.knobs.bandwidth = 200_000
    app, events = await start_engine(downloads="  max_concurrent: 1\n")
    [item, waiting] = await app.downloader.add(KEY, [(1, 1), (1, 2)])

    await making_progress(app, events)
    await app.series.unfollow(KEY)

    async def stopped() -> bool:
        return not app.downloader.active() and not temp_files(app)

    await until(stopped, what="the download to stop")
    assert await app.db.get_download(item.id) is None
    assert await app.db.get_download(waiting.id) is None
    assert library_videos(app) == []
    await app.bus.drain()
    assert [event.data.item_id for event in events.of(DownloadCancelled)] == [item.id]


async def test_a_hoster_whose_pages_fail_falls_back_to_the_next(start_engine: StartEngine, fakesite: FakeSite) -> None:
    """A hoster answering 503 to everything (after the client's own retries) is skipped, not the whole attempt."""
    fakesite.knobs.fail_5xx["doodstream"] = 10**6
    app, _ = await start_engine()
    [item] = await app.downloader.add(KEY, [(1, 1)])
    [done] = await finished(app, item.id, within=60)
    assert done.status is DownloadStatus.COMPLETED, done.error_message
    assert done.hoster == "filemoon"
    assert done.attempts == 0
    assert fakesite.log.count("doodstream") > 0


async def test_a_dead_redirect_link_falls_back_to_the_next(start_engine: StartEngine, fakesite: FakeSite) -> None:
    """A `/redirect/<id>` the site answers 404 is one dead link: the episode's next link is tried at once."""
    app, _ = await start_engine()
    page = await app.provider.episode(KEY, 1, 1)
    [dead] = [link for link in page.hosters if link.name == "Doodstream"]
    fakesite.knobs.fail_paths[urlsplit(dead.redirect_url).path] = 404
    [item] = await app.downloader.add(KEY, [(1, 1)])
    [done] = await finished(app, item.id)
    assert done.status is DownloadStatus.COMPLETED, done.error_message
    assert done.hoster == "filemoon"
    assert done.attempts == 0
