"""Backups: the schedule (with a test clock), retention, the backup before a migration, restore, consistency."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import zipfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from aniworld_daemon.app import DB_FILE, Application
from aniworld_daemon.config import IntervalSchedule, ScheduleConfig
from aniworld_daemon.models import DownloadStatus
from aniworld_daemon.scheduler import Scheduler, first_backup_due
from aniworld_daemon.store.backups import BACKUP_DIR, DB_MEMBER, MANIFEST_MEMBER, BackupReason, list_backups
from aniworld_daemon.store.migrations import SCHEMA_VERSION
from tests.fakesite.server import FakeSite
from tests.helpers import Daemon, StartApp, cli, downgrade_to_schema_1, integrity, minimal_config, query, until

SERIES = "die-kleinen-baeren"  # season 1: three episodes, German dub on every hoster
OTHER = "blade-of-dawn"
QUIET = "schedule:\n  run_on_start: false\n"  # no rescan of its own: the tests decide what is queued
T0 = datetime(2025, 1, 6, 3, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def backup_database(archive: Path, into: Path) -> Path:
    """The database inside a backup zip, extracted into the folder `into`."""
    with zipfile.ZipFile(archive) as opened:
        return Path(opened.extract(DB_MEMBER, into))


def manifest(archive: Path) -> dict[str, object]:
    """The backup's backup.json."""
    with zipfile.ZipFile(archive) as opened:
        return dict(json.loads(opened.read(MANIFEST_MEMBER)))


# --- the schedule --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "now", "due"),
    [
        pytest.param(T0, T0 + timedelta(days=1), T0 + WEEK, id="a day after the newest: in six days"),
        pytest.param(T0, T0 + WEEK - timedelta(seconds=1), T0 + WEEK, id="a second before it is due"),
        pytest.param(T0, T0 + WEEK, T0 + WEEK, id="due this moment"),
        pytest.param(T0, T0 + timedelta(days=30), T0 + timedelta(days=30), id="overdue: at once"),
    ],
)
def test_the_first_backup_is_due_an_interval_after_the_newest(anchor: datetime, now: datetime, due: datetime) -> None:
    assert first_backup_due(anchor, WEEK, now) == due


class Clock:
    """A test clock: the scheduler's idea of now, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        """Now."""
        return self.now


@pytest.fixture
async def backup_scheduler() -> AsyncIterator[Callable[..., tuple[Scheduler, list[str]]]]:
    """Schedulers with a weekly backup job that records its runs; every one is stopped at the end."""
    made: list[Scheduler] = []

    def make(clock: Clock) -> tuple[Scheduler, list[str]]:
        runs: list[str] = []

        async def backup() -> None:
            runs.append("backup")

        async def rescan(_: str) -> None:
            return None

        config = ScheduleConfig(IntervalSchedule(timedelta(hours=1)), run_on_start=False, full_refresh=WEEK)
        scheduler = Scheduler(config, rescan, tz=UTC, backup_every=WEEK, backup_job=backup, clock=clock)
        made.append(scheduler)
        return scheduler, runs

    yield make
    for scheduler in made:
        await scheduler.stop()


async def test_an_overdue_backup_runs_at_start_and_the_next_is_an_interval_later(
    backup_scheduler: Callable[..., tuple[Scheduler, list[str]]],
) -> None:
    now = datetime.now(UTC)
    # The newest backup is eight days old by the test clock: the weekly one is overdue.
    scheduler, runs = backup_scheduler(Clock(now))
    await scheduler.start(backup_anchor=now - timedelta(days=8))

    async def ran() -> bool:
        return runs == ["backup"]

    await until(ran, within=5, what="the overdue backup")
    following = scheduler.next_backup()
    assert following is not None
    assert now + WEEK - timedelta(seconds=5) <= following <= datetime.now(UTC) + WEEK


async def test_a_restart_does_not_postpone_the_backup(
    backup_scheduler: Callable[..., tuple[Scheduler, list[str]]],
) -> None:
    now = datetime.now(UTC)
    scheduler, runs = backup_scheduler(Clock(now))
    await scheduler.start(backup_anchor=now - timedelta(days=6))
    # Due one day from now (a week after the newest backup), not a week after this start.
    assert scheduler.next_backup() == now + timedelta(days=1)
    assert runs == []
    scheduler.reconfigure_backups(None, None)
    assert scheduler.next_backup() is None


async def test_scheduled_backups_hold_database_and_config_and_keep_the_newest(
    start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aniworld_daemon.store.backups"):
        app = await start_app(QUIET + "backup:\n  every: 1s\n  keep: 2\n")
        folder = app.config.data_dir / BACKUP_DIR

        async def three_taken() -> bool:
            return sum("Backed up the database" in message for message in caplog.messages) >= 3

        await until(three_taken, within=20, what="three scheduled backups")
        await app.stop()
    kept = list_backups(folder)
    assert len(kept) == 2, kept
    assert [backup.reason for backup in kept] == [BackupReason.SCHEDULED] * 2
    assert kept[0].created_at > kept[1].created_at
    assert sorted(path.name for path in folder.iterdir()) == sorted(backup.name for backup in kept)  # no partials
    for backup in kept:
        archive = folder / backup.name
        assert archive.stat().st_size == backup.size
        assert archive.stat().st_mode & 0o077 == 0
        with zipfile.ZipFile(archive) as opened:
            assert opened.read("config.yaml") == app.config.source.read_bytes()
        assert manifest(archive)["schema_version"] == SCHEMA_VERSION
        assert integrity(backup_database(archive, app.config.data_dir / "check" / backup.name)) == "ok"


async def test_a_migration_is_preceded_by_a_backup_of_the_old_file(start_app: StartApp) -> None:
    app = await start_app(QUIET)
    await app.stop()
    folder = app.config.data_dir / BACKUP_DIR
    assert list_backups(folder) == []  # a fresh database had nothing to keep
    database = app.config.data_dir / DB_FILE
    downgrade_to_schema_1(database, "api")

    migrated = await start_app(QUIET)
    [taken] = list_backups(folder)
    assert taken.reason is BackupReason.MIGRATION
    old = backup_database(folder / taken.name, migrated.config.data_dir / "check")
    assert query(old, "PRAGMA user_version") == [(1,)]
    assert query(old, "SELECT key FROM series") == [("frieren",)]
    assert query(database, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


# --- restore -------------------------------------------------------------------------------------------------------


async def state(app: Application) -> tuple[list[str], list[tuple[str, int, int, str]]]:
    """The followed series and the queue, as a restore must bring them back."""
    series = sorted(found.key for found in await app.series.list())
    queue = sorted(
        (item.series_key, item.season, item.number, item.status.value) for item in await app.db.list_downloads()
    )
    return series, queue


async def test_restore_brings_back_the_series_and_the_queue_and_offers_the_config(
    fakesite: FakeSite, start_app: StartApp
) -> None:
    extra = QUIET + f"provider:\n  base_url: {fakesite.base_url}\n  requests_per_second: 500\ndownloads:\n"
    extra += "  auto_start: false\n"
    app = await start_app(extra)
    await app.commands.call("series.follow", {"series": SERIES})
    await app.commands.call("queue.add", {"series": SERIES, "episodes": [{"season": 1, "episode": n} for n in (1, 2)]})
    before = await state(app)
    made = await app.commands.call("backup.create", {})
    config_file = app.config.source
    original_config = config_file.read_bytes()

    # After the backup: another series followed, the first dropped (its queue items with it).
    await app.commands.call("series.follow", {"series": OTHER})
    await app.commands.call("series.unfollow", {"key": SERIES})
    assert await state(app) != before
    await app.stop()
    config_file.write_bytes(original_config + b"# edited after the backup\n")

    status, out, err = await cli("restore", "-c", str(config_file), made.name)
    assert status == 0, err
    assert made.name in out
    assert "--with-config" in out
    # The user's config is left as it is; the backup's lies beside it.
    assert config_file.read_bytes().endswith(b"# edited after the backup\n")
    assert config_file.with_name("config.yaml.restored").read_bytes() == original_config
    [safety] = [
        backup for backup in list_backups(app.config.data_dir / BACKUP_DIR) if backup.reason.value == "pre-restore"
    ]
    assert safety.name in out

    restored = await start_app(extra)
    assert await state(restored) == before
    await restored.stop()

    status, out, err = await cli("restore", "-c", str(config_file), "--with-config", "--json", made.name)
    assert status == 0, err
    assert json.loads(out)["config_replaced"] is True
    assert config_file.read_bytes() == original_config


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"not a zip at all", "is not an aniworld-daemon backup", id="not a zip"),
        pytest.param(None, "no aniworld.db in it", id="a zip of something else"),
    ],
)
async def test_restore_refuses_what_is_not_a_backup(
    write_config: Callable[..., Path], port: int, tmp_path: Path, content: bytes | None, message: str
) -> None:
    config_file = write_config(minimal_config(port))
    archive = tmp_path / "other.zip"
    if content is None:
        with zipfile.ZipFile(archive, "w") as opened:
            opened.writestr("notes.txt", "hello")
    else:
        archive.write_bytes(content)
    status, _, err = await cli("restore", "-c", str(config_file), str(archive))
    assert status == 1
    assert message in err
    assert not (tmp_path / "data" / DB_FILE).exists()


async def test_restore_refuses_while_the_daemon_runs(
    write_config: Callable[..., Path], port: int, daemon: Callable[..., Daemon]
) -> None:
    config_file = write_config(minimal_config(port, QUIET))
    running = daemon(config_file)
    await running.until(lambda: "Ready" in running.log, "the daemon to be ready", 20)
    # `backup` beside the running daemon: straight from the data dir.
    status, out, err = await cli("backup", "-c", str(config_file), "--json")
    assert status == 0, err
    name = json.loads(out)["name"]

    status, _, err = await cli("restore", "-c", str(config_file), name)
    assert status == 1
    data_dir = config_file.parent / "data"
    assert f"aniworld-daemon is running on {data_dir}" in err
    assert "stop it first" in err
    assert not config_file.with_name("config.yaml.restored").exists()

    running.signal(signal.SIGTERM)
    assert await running.exited(15) == 0
    status, _, err = await cli("restore", "-c", str(config_file), name)
    assert status == 0, err


async def test_backups_taken_while_downloads_run_are_consistent(
    write_config: Callable[..., Path], port: int, daemon: Callable[..., Daemon], fakesite: FakeSite
) -> None:
    fakesite.knobs.bandwidth = 150_000  # seconds per episode: every backup lands in the middle of a transfer
    config_file = write_config(
        minimal_config(
            port,
            f"provider:\n  base_url: {fakesite.base_url}\n  requests_per_second: 500\n  languages: [de-dub]\n"
            "downloads:\n  max_concurrent: 2\n  min_free_space: 0\nbackup:\n  keep: 10\n"
            f"series:\n  - key: {SERIES}\n    seasons: [1]\n",
        )
    )
    running = daemon(config_file)
    database = config_file.parent / "data" / DB_FILE
    downloading = DownloadStatus.DOWNLOADING.value

    def transferring() -> bool:
        return bool(query(database, "SELECT 1 FROM downloads WHERE status = ?", downloading))

    await running.until(lambda: "Ready" in running.log, "the daemon to be ready", 20)  # the schema is in place
    await running.until(transferring, "a download to start", 30)
    key = (config_file.parent / "data" / "api_key").read_text().strip()
    folder = config_file.parent / "data" / BACKUP_DIR
    taken = []
    async with aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": key}, timeout=aiohttp.ClientTimeout(total=15)
    ) as session:
        for _ in range(3):
            async with session.post("/api/system/backup") as response:
                assert response.status == 201, await response.text()
                taken.append((await response.json())["name"])
            status, out, err = await cli("backup", "-c", str(config_file), "--json")  # another process, same moment
            assert status == 0, err
            taken.append(json.loads(out)["name"])
            await asyncio.sleep(0.2)
    assert transferring(), "the downloads ended before the backups: slow the fake site down further"
    for name in taken:
        copy = backup_database(folder / name, config_file.parent / "check" / name)
        assert integrity(copy) == "ok", name
        assert query(copy, "SELECT count(*) FROM downloads") == [(3,)], name
        assert query(copy, "PRAGMA foreign_key_check") == [], name
