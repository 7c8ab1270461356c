"""Following series: the Python API on the real Application, the YAML list across reloads, and the CLI."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from aniworld_daemon.app import Application
from aniworld_daemon.cli import library as library_commands
from aniworld_daemon.config import load_config
from aniworld_daemon.errors import ConflictError, NotFound, NotFoundError, ValidationError
from aniworld_daemon.events import EventType, SeriesAdded, SeriesUpdated
from aniworld_daemon.models import HistoryKind, Language, Series, SeriesSource
from aniworld_daemon.series import SeriesUpdate
from tests.fakesite.server import FakeSite
from tests.helpers import Recorder, cli, minimal_config


def config_text(site: FakeSite, port: int, series: str = "") -> str:
    """A config against the fake site with the given `series:` lines, no startup rescan."""
    return minimal_config(
        port,
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n"
        f"schedule:\n  run_on_start: false\nseries:\n{series}",
    )


@pytest.fixture
async def site_app(write_config: Callable[..., Path], port: int, fakesite: FakeSite) -> AsyncIterator[Application]:
    """The real Application against the fake site, following blade-of-dawn from its config."""
    app = Application(load_config(write_config(config_text(fakesite, port, "  - blade-of-dawn\n"))))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def test_follow_reads_the_metadata_and_picks_the_folder(site_app: Application, fakesite: FakeSite) -> None:
    events = Recorder()
    site_app.bus.subscribe(events)
    before = fakesite.log.count("site")

    series = await site_app.series.follow(
        fakesite.series_url("the-ogres-bride"), languages=(Language.DE_SUB,), seasons=(1,)
    )
    await site_app.bus.drain()

    assert fakesite.log.count("site") - before == 1
    assert (series.key, series.title, series.folder) == (
        "the-ogres-bride",
        "The Ogre's Bride",
        "The Ogre's Bride (2026)",
    )
    assert series.source is SeriesSource.API
    assert series.languages == (Language.DE_SUB,)
    assert series.seasons == (1,)
    assert await site_app.series.get("the-ogres-bride") == series
    assert [event.type for event in events.events] == [EventType.SERIES_ADDED]
    assert [event.data.key for event in events.of(SeriesAdded)] == ["the-ogres-bride"]
    history = await site_app.db.list_history(kind=HistoryKind.SERIES_ADDED)
    assert history[0].series_key == "the-ogres-bride"


async def test_follow_refuses_duplicates_unknown_series_and_bad_keys(site_app: Application, fakesite: FakeSite) -> None:
    await site_app.series.follow("the-ogres-bride")
    with pytest.raises(ConflictError, match="already followed"):
        await site_app.series.follow(fakesite.series_url("the-ogres-bride"))
    with pytest.raises(NotFound):
        await site_app.series.follow("no-such-series")
    before = fakesite.log.count("site")
    with pytest.raises(ValidationError):
        await site_app.series.follow("../../etc/passwd")
    assert fakesite.log.count("site") == before


async def test_two_series_never_share_a_folder(site_app: Application) -> None:
    first = await site_app.series.follow("the-ogres-bride")
    # A remake with the same title and year would render the same folder name.
    twin = Series(key="the-ogres-bride-2026", title=first.title, folder="", year_start=first.year_start)
    assert (await site_app.series.with_folder(twin)).folder == "The Ogre's Bride (2026) [the-ogres-bride-2026]"


async def test_update_and_unfollow(site_app: Application) -> None:
    events = Recorder()
    site_app.bus.subscribe(events)
    await site_app.series.follow("the-ogres-bride")

    updated = await site_app.series.update("the-ogres-bride", SeriesUpdate(monitored=False, seasons=(2, 1, 2)))
    assert not updated.monitored
    assert updated.seasons == (1, 2)
    assert (await site_app.series.update("the-ogres-bride", SeriesUpdate(seasons="all"))).seasons is None
    with pytest.raises(ValidationError, match="seasons"):
        await site_app.series.update("the-ogres-bride", SeriesUpdate(seasons=(-1,)))
    with pytest.raises(ValidationError, match="languages"):
        await site_app.series.update("the-ogres-bride", SeriesUpdate(languages=(Language.DE_SUB, Language.DE_SUB)))
    removed = await site_app.series.unfollow("the-ogres-bride")
    await site_app.bus.drain()

    assert removed.key == "the-ogres-bride"
    with pytest.raises(NotFoundError):
        await site_app.series.unfollow("the-ogres-bride")
    changes = [event.data.changed for event in events.of(SeriesUpdated)]
    assert changes == [("monitored", "seasons"), ("seasons",)]
    assert events.events[-1].type is EventType.SERIES_REMOVED


async def test_the_yaml_list_is_kept_in_the_db_across_reloads(
    site_app: Application, fakesite: FakeSite, port: int
) -> None:
    stored = await site_app.series.get("blade-of-dawn")
    assert stored.source is SeriesSource.CONFIG
    assert stored.title == "blade-of-dawn"
    await site_app.series.follow("the-ogres-bride")  # added at runtime: not the config's to remove

    site_app.config.source.write_text(
        config_text(fakesite, port, "  - key: moonlit-academy\n    languages: [de-dub]\n    monitored: false\n"),
        encoding="utf-8",
    )
    assert await site_app.reload() == []

    keys = {series.key: series for series in await site_app.series.list()}
    assert set(keys) == {"moonlit-academy", "the-ogres-bride"}
    assert keys["moonlit-academy"].languages == (Language.DE_DUB,)
    assert not keys["moonlit-academy"].monitored


async def test_a_restart_keeps_runtime_series(write_config: Callable[..., Path], port: int, fakesite: FakeSite) -> None:
    config = load_config(write_config(config_text(fakesite, port)))
    first = Application(config)
    await first.start()
    try:
        added = await first.series.follow("the-ogres-bride")
    finally:
        await first.stop()
    second = Application(config)
    await second.start()
    try:
        assert replace(await second.series.get("the-ogres-bride"), updated_at=None) == replace(added, updated_at=None)
    finally:
        await second.stop()


async def test_cli_add_list_scan_remove(fakesite: FakeSite, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(fakesite, 8099, "  - blade-of-dawn\n"), encoding="utf-8")
    library = tmp_path / "library" / "The Ogre's Bride (2026)" / "Season 01"
    library.mkdir(parents=True)
    with (library / "The Ogre's Bride - S01E01 - x.mkv").open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)

    status, out, err = await cli("add", "the-ogres-bride", "--language", "de-sub", "-c", str(config))
    assert status == 0, err
    assert "Following The Ogre's Bride (the-ogres-bride)" in out

    status, out, err = await cli("list", "--json", "-c", str(config))
    assert status == 0, err
    listed = {item["key"]: item for item in json.loads(out)}
    assert set(listed) == {"blade-of-dawn", "the-ogres-bride"}
    assert listed["the-ogres-bride"]["languages"] == ["de-sub"]
    assert listed["blade-of-dawn"]["source"] == "config"

    status, out, err = await cli("scan", "--json", "--dry-run", "the-ogres-bride", "-c", str(config))
    assert status == 0, err
    scanned = json.loads(out)
    assert scanned["report"]["status"] == "complete"
    assert scanned["report"]["trigger"] == "cli"
    (ogre,) = scanned["series"]
    episodes = [e for e in fakesite.catalog["the-ogres-bride"].episodes() if e.season > 0]
    assert ogre["downloaded"] == 1
    assert [(item["season"], item["episode"]) for item in ogre["missing"]] == [
        (e.season, e.number) for e in episodes if (e.season, e.number) != (1, 1)
    ]
    assert ogre["missing"][0]["title"] == episodes[1].title_de
    assert set(ogre) == {"key", "title", "folder", "missing", "awaiting_language", "downloaded", "error"}
    assert not (library.parent / "tvshow.nfo").exists()  # a dry run writes nothing into the library

    status, out, err = await cli("scan", "-c", str(config))
    assert status == 0, err
    assert "The Ogre's Bride" in out
    assert "missing: S01E02" in out
    assert "Rescan complete" in out
    assert (library.parent / "tvshow.nfo").exists()

    status, out, err = await cli("remove", "the-ogres-bride", "-c", str(config))
    assert status == 0, err
    assert "listed under series:" not in out
    status, out, err = await cli("remove", "blade-of-dawn", "-c", str(config))
    assert status == 0, err
    assert f"It is listed under series: in {config}; remove it there too" in out
    status, out, err = await cli("remove", "the-ogres-bride", "-c", str(config))
    assert (status, out) == (1, "")
    assert err.strip() == "error: series the-ogres-bride is not followed"
    status, out, err = await cli("scan", "nope", "-c", str(config))
    assert (status, err.strip()) == (1, "error: not followed: nope")


async def test_scan_shows_progress_per_series(fakesite: FakeSite, write_config: Callable[..., Path], port: int) -> None:
    config = load_config(write_config(config_text(fakesite, port, "  - blade-of-dawn\n  - the-ogres-bride\n")))
    progress = io.StringIO()

    result = await library_commands.scan(config, [], dry_run=True, progress=progress)

    lines = [line for line in progress.getvalue().replace("\033[K", "").split("\r") if line]
    assert [line.split(" · ")[0] for line in lines] == ["series 1/2", "series 2/2"]
    assert lines[-1].split(" · ")[1] == f"{result.report.requests} requests"
    assert {line.split(" · ")[2] for line in lines} == {"Blade of Dawn", "The Ogre's Bride"}
    text = library_commands.scan_text(result, dry_run=True)
    assert "dry run: nothing queued or written" in text
    assert "missing: S01E01-E06, S02E01-E04" in text  # ranges per season
