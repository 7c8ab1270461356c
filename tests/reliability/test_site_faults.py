"""The site and its hosters misbehave; the daemon ends every case in its documented state, with no stuck worker.

Each case runs the real Application (real yt-dlp, ffprobe and import gate) against the fake site with one fault
switched on: 403 and captcha storms (politeness is measured from the fake site's own request log), 5xx bursts on
pages and on media, hosters that hang mid-stream or trickle, that send an HTML page or a file cut short, and redirects
to a dead host. README.md ("Downloads", "When things go wrong") documents the states asserted here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from aniworld_daemon.app import Application
from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME
from aniworld_daemon.events import DownloadFailed
from aniworld_daemon.models import Download, DownloadStatus, EpisodeState
from tests.fakesite.core import Knobs, RequestRecord
from tests.fakesite.server import FakeSite
from tests.helpers import Recorder, StartApp, ffprobe, finished, until

KEY = "blade-of-dawn"  # season 1: de-sub on voe, filemoon (HLS) and doodstream (MP4)
COOLDOWN = 1.0  # provider.cooldown in seconds: the first cooldown; it doubles per refusal in a row
STALL = 2  # downloads.stall_timeout in seconds


def site_yaml(site: FakeSite, hosters: str, *, max_concurrent: int = 1) -> str:
    """Config lines: a fast site budget, short cooldown, backoff and stall timeout; blade-of-dawn season 1 followed."""
    return (
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        f"  cooldown: {COOLDOWN:g}s\n  languages: [de-sub]\n  hosters: {hosters}\n"
        "schedule:\n  run_on_start: false\n"
        f"downloads:\n  retry_backoff: 1s\n  retries: 3\n  min_free_space: 0\n  stall_timeout: {STALL}s\n"
        f"  max_concurrent: {max_concurrent}\n"
        f"series:\n  - key: {KEY}\n    seasons: [1]\n"
    )


async def assert_settled(app: Application) -> None:
    """No stuck worker: the engine's active set is empty, no row is `downloading`, the temp dir holds nothing."""
    await until(lambda: _idle(app), within=10, what="the engine's active set to empty")
    rows = await app.db.list_downloads()
    assert [row.id for row in rows if row.status is DownloadStatus.DOWNLOADING] == []
    temp = app.config.library.path / TEMP_DIR_NAME
    assert (sorted(path.name for path in temp.iterdir()) if temp.is_dir() else []) == []


async def _idle(app: Application) -> bool:
    return not app.downloader.active()


def assert_in_library(app: Application, site: FakeSite, item: Download) -> None:
    """The item's file is in the library, plays, and lasts what the source lasts."""
    assert item.file_path is not None
    path = app.config.library.path / item.file_path
    probe = ffprobe(path)
    assert any(stream["codec_type"] == "video" for stream in probe["streams"])
    assert abs(float(probe["format"]["duration"]) - site.media.duration) < 1.0
    if path.suffix == ".mp4" and item.hoster == "doodstream":  # a direct file: byte for byte the source
        assert path.read_bytes() == site.media.mp4.read_bytes()


REFUSAL_STATUS = {"403": 403, "captcha": 200}  # a captcha page comes with status 200


def assert_one_probe_per_cooldown(records: list[RequestRecord], first_cooldown: float) -> int:
    """At most one request per cooldown period after the first refusal: returns the number of probes.

    The requests that started before the first refusal was answered are the burst that found the block. After it,
    the client may send one probe when its cooldown ends; when the probe is refused the next cooldown is twice as
    long. So every probe must start after the previous refusal was answered plus the cooldown then in force, which
    also rules out two probes sent together at the end of one cooldown.
    """
    first = min(record.finished for record in records)
    probes = [record for record in records if record.started >= first]
    previous_end, length = first, first_cooldown
    for number, probe in enumerate(probes, 1):
        assert probe.started >= previous_end + length, (
            f"probe {number} started {probe.started - previous_end:.2f} s after the previous refusal,"
            f" inside its {length:g} s cooldown"
        )
        previous_end, length = probe.finished, length * 2
    return len(probes)


# --- storms: the site or a hoster refuses every request for a while -------------------------------------------------


@pytest.mark.parametrize("mode", ["403", "captcha"])
async def test_a_site_storm_gets_one_probe_per_cooldown_and_the_queue_completes(
    fakesite: FakeSite, start_app: StartApp, mode: str
) -> None:
    events = Recorder()
    app = await start_app(site_yaml(fakesite, "[doodstream, filemoon]", max_concurrent=2), events)
    # One episode first, so the series' page is known: then both workers start with their episode pages at once,
    # and the client, not the engine's per-series lock, has to keep them from probing together.
    [warm_up] = await app.downloader.add(KEY, [(1, 3)])
    await finished(app, warm_up.id)
    fakesite.knobs.block("site", after=0, mode=mode)
    fakesite.log.clear()
    items = await app.downloader.add(KEY, [(1, 1), (1, 2)])

    async def probed_twice() -> bool:
        site = fakesite.log.select("site")
        return len(site) >= 2 and sum(1 for r in site if r.started >= min(x.finished for x in site)) >= 2

    await until(probed_twice, within=20, what="two probes after the first refusal")
    fakesite.knobs.unblock("site")
    lifted = time.monotonic()
    done = await finished(app, *(item.id for item in items))
    storm = [record for record in fakesite.log.select("site") if record.started < lifted]
    assert {record.status for record in storm} == {REFUSAL_STATUS[mode]}

    probes = assert_one_probe_per_cooldown(storm, COOLDOWN)
    assert probes >= 2
    # A refusal is a wait, not an attempt: both episodes complete without a counted failure.
    assert [(item.status, item.attempts) for item in done] == [(DownloadStatus.COMPLETED, 0)] * 2
    for item in done:
        assert_in_library(app, fakesite, item)
    assert {event.data.error_code for event in events.of(DownloadFailed)} == {"provider_blocked"}
    await assert_settled(app)


@pytest.mark.parametrize("mode", ["403", "captcha"])
async def test_a_hoster_storm_is_skipped_and_probed_once_per_cooldown(
    fakesite: FakeSite, start_app: StartApp, mode: str
) -> None:
    app = await start_app(site_yaml(fakesite, "[doodstream, filemoon]"))
    fakesite.knobs.block("doodstream", after=0, mode=mode)
    items = await app.downloader.add(KEY, [(1, 1), (1, 2), (1, 3)])
    done = await finished(app, *(item.id for item in items), within=60)

    # The refusing hoster costs no attempt: the next one of the same attempt delivers every episode.
    assert [(item.status, item.hoster, item.attempts) for item in done] == [
        (DownloadStatus.COMPLETED, "filemoon", 0)
    ] * 3
    for item in done:
        assert_in_library(app, fakesite, item)
    storm = fakesite.log.select("doodstream")
    assert storm
    assert {record.status for record in storm} == {REFUSAL_STATUS[mode]}
    assert_one_probe_per_cooldown(storm, COOLDOWN)
    assert fakesite.log.media("doodstream") == []
    await assert_settled(app)


# --- 5xx bursts ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """A burst of 503s and what it costs: the attempts the item needs before it completes."""

    name: str
    switch: Callable[[Knobs], None]
    attempts: int


BURSTS = [
    # The polite client retries a page 4 times: 6 failures take the first attempt, the second gets through.
    Burst("site pages", lambda knobs: knobs.fail_5xx.__setitem__("site", 6), 1),
    # yt-dlp tries a media URL 4 times (retries: 3): 5 failures take the first attempt, the second gets through.
    Burst("hoster media", lambda knobs: knobs.fail_media.__setitem__("doodstream", 5), 1),
    # A short burst is absorbed by the retries inside one attempt.
    Burst("short site burst", lambda knobs: knobs.fail_5xx.__setitem__("site", 2), 0),
]


@pytest.mark.parametrize("burst", BURSTS, ids=[burst.name for burst in BURSTS])
async def test_a_5xx_burst_is_retried_with_backoff_and_completes(
    fakesite: FakeSite, start_app: StartApp, burst: Burst
) -> None:
    events = Recorder()
    app = await start_app(site_yaml(fakesite, "[doodstream, filemoon]"), events)
    burst.switch(fakesite.knobs)
    [item] = await app.downloader.add(KEY, [(1, 1)])
    [done] = await finished(app, item.id, within=60)

    assert (done.status, done.hoster, done.attempts) == (DownloadStatus.COMPLETED, "doodstream", burst.attempts)
    assert [event.data.will_retry for event in events.of(DownloadFailed)] == [True] * burst.attempts
    assert_in_library(app, fakesite, done)
    await assert_settled(app)


# --- a hoster misbehaves: the next hoster of the same attempt delivers ------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A hoster fault: how it is switched on, the hoster order, who fails and who delivers instead."""

    name: str
    switch: Callable[[Knobs], None]
    hosters: str = "[doodstream, filemoon]"
    failing: str = "doodstream"
    delivering: str = "filemoon"
    media_reached: bool = True  # whether the failing hoster's media endpoint was asked at all


def _stall(knobs: Knobs) -> None:
    knobs.stall_media["doodstream"] = 300_000


def _trickle(knobs: Knobs) -> None:
    knobs.stall_media["doodstream"] = 300_000
    knobs.trickle_every = 0.5  # 2 bytes a second: every read still returns something, no socket timeout fires


def _stall_hls(knobs: Knobs) -> None:
    knobs.stall_media["filemoon"] = 150_000  # inside the first segment


FAULTS = [
    Fault("hangs mid-stream", _stall),
    Fault("trickles mid-stream", _trickle),
    Fault("HLS hangs mid-segment", _stall_hls, "[filemoon, doodstream]", "filemoon", "doodstream"),
    Fault("sends an HTML page for its MP4", lambda knobs: knobs.html_media.add("doodstream")),
    Fault(
        "sends an HTML page for its playlist",
        lambda knobs: knobs.html_media.add("filemoon"),
        "[filemoon, doodstream]",
        "filemoon",
        "doodstream",
    ),
    # Content-Length and body agree, so only the file's own index shows that half of it is missing.
    Fault("has a file cut short", lambda knobs: knobs.short_media.__setitem__("doodstream", 1_000_000)),
    Fault("redirect leads to a dead host", lambda knobs: knobs.dead_redirects.add("doodstream"), media_reached=False),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
async def test_a_misbehaving_hoster_falls_back_to_the_next(
    fakesite: FakeSite, start_app: StartApp, fault: Fault
) -> None:
    events = Recorder()
    app = await start_app(site_yaml(fakesite, fault.hosters), events)
    fault.switch(fakesite.knobs)
    [item] = await app.downloader.add(KEY, [(1, 1)])
    [done] = await finished(app, item.id, within=60)

    # The fault is the hoster's: the same attempt goes on with the next hoster, no attempt is counted.
    assert (done.status, done.hoster, done.attempts) == (DownloadStatus.COMPLETED, fault.delivering, 0)
    assert not events.of(DownloadFailed)
    assert_in_library(app, fakesite, done)
    [episode] = [e for e in await app.db.list_episodes(KEY) if (e.season, e.number) == (1, 1)]
    assert (episode.state, episode.file_path) == (EpisodeState.DOWNLOADED, done.file_path)
    assert bool(fakesite.log.media(fault.failing)) is fault.media_reached
    await assert_settled(app)


async def test_a_dropped_connection_is_resumed_to_the_whole_file(fakesite: FakeSite, start_app: StartApp) -> None:
    app = await start_app(site_yaml(fakesite, "[doodstream, filemoon]"))
    # Every connection closes after 700 kB of the 1.9 MB file: yt-dlp resumes with Range requests.
    fakesite.knobs.cut_media["doodstream"] = 700_000
    [item] = await app.downloader.add(KEY, [(1, 1)])
    [done] = await finished(app, item.id, within=60)

    assert (done.status, done.hoster, done.attempts) == (DownloadStatus.COMPLETED, "doodstream", 0)
    assert_in_library(app, fakesite, done)  # byte for byte: nothing doubled, nothing missing at the seams
    statuses = [record.status for record in fakesite.log.media("doodstream")]
    assert statuses[0] == 200
    assert set(statuses[1:]) == {206}
    assert len(statuses) >= 3
    await assert_settled(app)


async def test_every_hoster_stalling_fails_the_attempt_and_retries_later(
    fakesite: FakeSite, start_app: StartApp
) -> None:
    events = Recorder()
    app = await start_app(site_yaml(fakesite, "[doodstream, filemoon]"), events)
    fakesite.knobs.stall_media.update({"doodstream": 300_000, "filemoon": 150_000})
    [item] = await app.downloader.add(KEY, [(1, 1)])

    async def failed_once() -> bool:
        return bool(events.of(DownloadFailed))

    await until(failed_once, within=30, what="the first failed attempt")
    first = events.of(DownloadFailed)[0].data
    assert first.will_retry
    assert "stalled" in first.error_message
    for hoster in ("doodstream", "filemoon"):
        assert f"{hoster}: the transfer stalled (no data for {STALL} s" in first.error_message
    fakesite.knobs.stall_media.clear()
    [done] = await finished(app, item.id, within=60)
    assert (done.status, done.hoster, done.attempts) == (DownloadStatus.COMPLETED, "doodstream", 1)
    assert_in_library(app, fakesite, done)
    await assert_settled(app)


async def test_a_slow_hoster_is_not_a_stalled_one(fakesite: FakeSite, start_app: StartApp) -> None:
    events = Recorder()
    app = await start_app(site_yaml(fakesite, "[doodstream, filemoon]"), events)
    # 400 kB/s: the 1.9 MB file takes about 5 s, more than twice the stall timeout, arriving all the while.
    fakesite.knobs.bandwidth = 400_000
    [item] = await app.downloader.add(KEY, [(1, 1)])
    [done] = await finished(app, item.id, within=60)

    assert (done.status, done.hoster, done.attempts) == (DownloadStatus.COMPLETED, "doodstream", 0)
    assert not events.of(DownloadFailed)
    assert_in_library(app, fakesite, done)
    assert fakesite.log.media("filemoon") == []
    await assert_settled(app)
