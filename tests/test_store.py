"""Tests of store.Database against real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from aniworld_daemon.errors import ConflictError, NotFoundError, StorageError
from aniworld_daemon.models import (
    Download,
    DownloadStatus,
    Episode,
    EpisodeState,
    HistoryKind,
    Language,
    Priority,
    ScanReport,
    ScanStatus,
    Series,
    SeriesSource,
)
from aniworld_daemon.store.database import Database
from aniworld_daemon.store.migrations import MIGRATIONS, SCHEMA_VERSION
from tests.helpers import downgrade_to_schema_1

# Microseconds and a non-UTC offset on purpose: both must survive the epoch-seconds round trip.
T0 = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "data" / "aniworld.db")
    await database.open()
    yield database
    if await database.ping():
        # Every test leaves a consistent file behind.
        assert await pragma(database, "integrity_check") == "ok"
        assert await pragma_rows(database, "foreign_key_check") == []
    await database.close()


async def pragma_rows(db: Database, name: str) -> list[tuple[Any, ...]]:
    # Connection-level PRAGMAs (foreign_keys, synchronous) can only be read on the daemon's own connection.
    assert db._conn is not None
    return [tuple(row) for row in await db._conn.execute_fetchall(f"PRAGMA {name}")]


async def pragma(db: Database, name: str) -> Any:
    return (await pragma_rows(db, name))[0][0]


def series(key: str = "frieren", **overrides: Any) -> Series:
    values: dict[str, Any] = {"key": key, "title": key.title(), "folder": key}
    return Series(**(values | overrides))


def download(
    item_id: str,
    number: int = 1,
    *,
    series_key: str = "frieren",
    priority: Priority = Priority.NORMAL,
    created_at: datetime = T0,
    status: DownloadStatus = DownloadStatus.PENDING,
    **overrides: Any,
) -> Download:
    return Download(
        id=item_id,
        series_key=series_key,
        season=1,
        number=number,
        priority=priority,
        position=0,
        status=status,
        created_at=created_at,
        **overrides,
    )


async def ids(db: Database, statuses: list[DownloadStatus] | None = None) -> list[str]:
    return [item.id for item in await db.list_downloads(statuses)]


# ---- connection and migrations -------------------------------------------------------------------------


async def test_open_configures_connection(db: Database) -> None:
    assert db.path.parent.is_dir()
    assert await pragma(db, "journal_mode") == "wal"
    assert await pragma(db, "foreign_keys") == 1
    assert await pragma(db, "synchronous") == 2  # FULL: an acknowledged commit survives a power cut
    assert await pragma(db, "busy_timeout") == 5000
    assert await pragma(db, "user_version") == SCHEMA_VERSION == len(MIGRATIONS)
    assert await db.ping()


async def test_a_version_1_database_migrates_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "aniworld.db"
    old = Database(path)
    await old.open()
    await old.close()
    downgrade_to_schema_1(path)

    db = Database(path)
    await db.open()
    try:
        assert await pragma(db, "user_version") == SCHEMA_VERSION == 3
        stored = await db.get_series("frieren")
        assert stored is not None
        assert (stored.folder, stored.folder_matched, stored.refreshed_at, stored.alternative_titles) == (
            "Frieren (2023)",
            False,
            None,
            (),
        )
        assert await db.list_season_fetches("frieren") == []
    finally:
        await db.close()


async def test_migrations_run_twice_are_a_noop(tmp_path: Path) -> None:
    path = tmp_path / "aniworld.db"
    first = Database(path)
    await first.open()
    stored = await first.upsert_series(series())
    await first.close()

    second = Database(path)
    await second.open()
    try:
        schema = await pragma_rows(second, "schema_version")
        assert await pragma(second, "user_version") == SCHEMA_VERSION
        assert await second.list_series() == [stored]
        assert await second.migrate() == 0
        assert await pragma_rows(second, "schema_version") == schema  # bumped by any DDL
        assert await pragma(second, "user_version") == SCHEMA_VERSION
        await second.open()  # already open: nothing happens
        assert await second.list_series() == [stored]
    finally:
        await second.close()


async def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "aniworld.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    database = Database(path)
    message = (
        f"database schema version {SCHEMA_VERSION + 3} is newer than this aniworld-daemon supports "
        f"\\({SCHEMA_VERSION}\\); upgrade aniworld-daemon"
    )
    with pytest.raises(StorageError, match=message):
        await database.open()
    assert not await database.ping()  # the connection was closed again


async def test_failed_migration_rolls_back(db: Database) -> None:
    broken = (*MIGRATIONS, ("CREATE TABLE extra (x INTEGER)", "INSERT INTO no_such_table VALUES (1)"))
    with pytest.raises(StorageError, match=f"migrating the database to schema version {SCHEMA_VERSION + 1}"):
        await db.migrate(broken)
    assert await pragma(db, "user_version") == SCHEMA_VERSION
    assert await pragma_rows(db, "table_info(extra)") == []


async def test_function_migration_is_applied_once(db: Database) -> None:
    async def add_table(conn: aiosqlite.Connection) -> None:
        await conn.execute("CREATE TABLE extra (x INTEGER)")

    migrations = (*MIGRATIONS, add_table)
    assert await db.migrate(migrations) == 1
    assert await db.migrate(migrations) == 0
    assert await pragma(db, "user_version") == SCHEMA_VERSION + 1


async def test_closed_database_raises_storage_error(tmp_path: Path) -> None:
    database = Database(tmp_path / "aniworld.db")
    with pytest.raises(StorageError, match="not open"):
        await database.list_series()
    await database.close()  # closing a closed database is harmless


async def test_sqlite_errors_are_wrapped(db: Database) -> None:
    # Foreign keys are enforced: an episode of an unknown series is refused.
    with pytest.raises(StorageError, match="saving 1 episodes failed: FOREIGN KEY") as info:
        await db.upsert_episodes([Episode(series_key="nope", season=1, number=1)])
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)


async def test_naive_datetime_is_refused(db: Database) -> None:
    await db.upsert_series(series())
    with pytest.raises(ValueError, match="naive datetime"):
        await db.add_downloads([download("a", created_at=datetime(2024, 5, 1))])
    assert await db.list_downloads() == []


# ---- round trips --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seasons", [None, (0, 2), ()])
async def test_series_round_trip(db: Database, seasons: tuple[int, ...] | None) -> None:
    full = Series(
        key="sousou-no-frieren",
        title="Frieren: Nach dem Ende der Reise (葬送のフリーレン) ü",
        folder="Frieren (2023)",
        site="aniworld.to",
        languages=(Language.DE_DUB, Language.EN_SUB),
        seasons=seasons,
        monitored=False,
        source=SeriesSource.CONFIG,
        year_start=2023,
        year_end=2024,
        description='Elfen, Magie und "Zeit".',
        cover_url="https://aniworld.to/public/img/cover/frieren.png",
        imdb_id="tt22248376",
        genres=("Abenteuer", "Fantasy"),
        fsk=12,
        added_at=T0,
        updated_at=T0 + timedelta(days=1),
    )
    stored = await db.upsert_series(full)
    assert stored == full
    assert stored.added_at is not None
    assert stored.added_at.tzinfo is UTC
    assert await db.get_series(full.key) == full
    assert await db.list_series() == [full]
    assert await db.get_series("other") is None


async def test_series_upsert_keeps_added_at_and_stamps_defaults(db: Database) -> None:
    first = await db.upsert_series(series(added_at=T0))
    second = await db.upsert_series(series(title="Renamed"))
    assert second.title == "Renamed"
    assert second.added_at == first.added_at == T0
    assert second.updated_at is not None
    assert second.updated_at > T0


async def test_episode_round_trip(db: Database) -> None:
    await db.upsert_series(series())
    full = Episode(
        series_key="frieren",
        season=1,
        number=3,
        title_de="Tötungsmagie",
        title_en="Killing Magic",
        languages=(Language.DE_SUB, Language.DE_DUB),
        state=EpisodeState.DOWNLOADED,
        file_path="Frieren/Season 01/Frieren - S01E03.mkv",
        file_size=734_003_200,
        updated_at=T0,
    )
    movie = Episode(series_key="frieren", season=0, number=1, updated_at=T0)
    await db.upsert_episodes([full, movie])
    assert await db.list_episodes("frieren") == [movie, full]
    changed = Episode(series_key="frieren", season=1, number=3, title_de="Neu", updated_at=T0)
    await db.upsert_episodes([changed])
    assert await db.list_episodes("frieren") == [movie, changed]


async def test_set_episode_state(db: Database) -> None:
    await db.upsert_series(series())
    await db.upsert_episodes([Episode(series_key="frieren", season=1, number=1, title_de="Ende", updated_at=T0)])
    done = await db.set_episode_state("frieren", 1, 1, EpisodeState.DOWNLOADED, file_path="a.mkv", file_size=5)
    assert (done.title_de, done.state, done.file_path, done.file_size) == ("Ende", "downloaded", "a.mkv", 5)
    created = await db.set_episode_state("frieren", 2, 7, EpisodeState.QUEUED)
    assert (created.state, created.file_path) == (EpisodeState.QUEUED, None)
    assert await db.list_episodes("frieren") == [done, created]


async def test_download_round_trip(db: Database) -> None:
    await db.upsert_series(series())
    full = Download(
        id="4f9e1b2c",
        series_key="frieren",
        season=1,
        number=2,
        priority=Priority.HIGH,
        position=0,
        status=DownloadStatus.FAILED,
        created_at=T0,
        language=Language.DE_DUB,
        hoster="voe",
        attempts=3,
        next_attempt_at=T0 + timedelta(minutes=8),
        error_code="hoster_error",
        error_message="all hosters failed",
        bytes_downloaded=1024,
        bytes_total=4096,
        started_at=T0 + timedelta(seconds=1),
        finished_at=T0 + timedelta(seconds=90),
        file_path="Frieren/Season 01/Frieren - S01E02.mkv",
    )
    assert await db.add_downloads([full]) == [full]
    assert await db.get_download(full.id) == full
    assert await db.list_downloads() == [full]
    assert await db.get_download("missing") is None


async def test_history_round_trip(db: Database) -> None:
    data = {"file": "Frieren - S01E01.mkv", "bytes": 12, "hosters": ["voe", "vidoza"], "nested": {"ü": None}}
    entry = await db.add_history(
        HistoryKind.DOWNLOAD_COMPLETED,
        "Frieren S01E01 downloaded",
        series_key="frieren",
        season=1,
        number=1,
        data=data,
    )
    assert entry.data == data
    assert entry.created_at.tzinfo is UTC
    assert await db.list_history() == [entry]
    bare = await db.add_history(HistoryKind.SCAN, "Rescan finished")
    assert (bare.series_key, bare.season, bare.number, bare.data) == (None, None, None, {})
    assert await db.list_history() == [bare, entry]


async def test_scan_round_trip_and_replace(db: Database) -> None:
    running = ScanReport(id="scan-1", trigger="schedule", status=ScanStatus.RUNNING, started_at=T0)
    await db.save_scan(running)
    assert await db.get_scan("scan-1") == running
    done = ScanReport(
        id="scan-1",
        trigger="schedule",
        status=ScanStatus.PARTIAL,
        started_at=T0,
        finished_at=T0 + timedelta(minutes=2),
        series_checked=4,
        requests=17,
        new_episodes=2,
        missing={"frieren": 2, "one-piece": 0},
        errors={"dandadan": "provider_blocked: cooldown until 03:15"},
    )
    await db.save_scan(done)
    later = ScanReport(id="scan-2", trigger="manual", status=ScanStatus.COMPLETE, started_at=T0 + timedelta(1))
    await db.save_scan(later)
    assert await db.get_scan("scan-1") == done
    assert await db.list_scans() == [later, done]
    assert await db.list_scans(limit=1) == [later]
    assert await db.get_scan("nope") is None


@pytest.mark.parametrize(
    "value",
    [{"paused": True, "title": "Frieren 葬送"}, [1, "two", None], 42, 2.5, "text", True, None],
)
async def test_settings_round_trip(db: Database, value: Any) -> None:
    assert await db.get_setting("key", default="unset") == "unset"
    await db.set_setting("key", value)
    assert await db.get_setting("key", default="unset") == value
    await db.set_setting("key", "replaced")
    assert await db.get_setting("key") == "replaced"


# ---- the queue ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "blocks"),
    [
        (DownloadStatus.PENDING, True),
        (DownloadStatus.DOWNLOADING, True),
        (DownloadStatus.COMPLETED, False),
        (DownloadStatus.FAILED, False),
        (DownloadStatus.CANCELLED, False),
    ],
)
async def test_add_downloads_dedupes_live_items(db: Database, status: DownloadStatus, blocks: bool) -> None:
    await db.upsert_series(series())
    assert len(await db.add_downloads([download("first", status=status)])) == 1
    added = await db.add_downloads([download("second"), download("third")])
    assert [item.id for item in added] == ([] if blocks else ["second"])


async def test_add_downloads_dedupes_within_a_batch_and_after_completion(db: Database) -> None:
    await db.upsert_series(series())
    added = await db.add_downloads([download("a"), download("b"), download("c", number=2)])
    assert [(item.id, item.position) for item in added] == [("a", 0), ("c", 1)]
    await db.update_download("a", status=DownloadStatus.COMPLETED)
    again = await db.add_downloads([download("d")])
    assert [(item.id, item.position) for item in again] == [("d", 2)]


async def test_add_downloads_with_existing_id_is_a_storage_error(db: Database) -> None:
    await db.upsert_series(series())
    await db.add_downloads([download("a")])
    with pytest.raises(StorageError, match=r"UNIQUE constraint failed: downloads\.id"):
        await db.add_downloads([download("b", number=2), download("a", number=3)])
    assert await ids(db) == ["a"]  # the whole batch was rolled back


async def test_queue_order_is_priority_then_position(db: Database) -> None:
    await db.upsert_series(series())
    await db.add_downloads([download("n1", 1), download("l1", 2, priority=Priority.LOW)])
    await db.add_downloads([download("h1", 3, priority=Priority.HIGH), download("n2", 4)])
    await db.add_downloads([download("h2", 5, priority=Priority.HIGH)])
    assert await ids(db) == ["h1", "h2", "n1", "n2", "l1"]
    await db.update_download("l1", priority=Priority.HIGH)
    assert await ids(db) == ["l1", "h1", "h2", "n1", "n2"]


async def test_queue_order_uses_created_at_on_ties(db: Database) -> None:
    await db.upsert_series(series())
    await db.add_downloads([download("late", 1, created_at=T0 + timedelta(seconds=1))])
    await db.add_downloads([download("early", 2, created_at=T0)])
    await db.update_download("late", position=5)
    await db.update_download("early", position=5)
    assert await ids(db) == ["early", "late"]


async def test_list_downloads_filters_by_status(db: Database) -> None:
    await db.upsert_series(series())
    await db.add_downloads([download("p", 1), download("d", 2), download("f", 3), download("c", 4)])
    await db.update_download("d", status=DownloadStatus.DOWNLOADING)
    await db.update_download("f", status=DownloadStatus.FAILED)
    await db.update_download("c", status=DownloadStatus.COMPLETED)
    assert await ids(db, [DownloadStatus.PENDING, DownloadStatus.DOWNLOADING]) == ["p", "d"]
    assert await ids(db, [DownloadStatus.FAILED]) == ["f"]
    assert await ids(db, []) == []
    assert await db.count_downloads_by_status() == {
        DownloadStatus.PENDING: 1,
        DownloadStatus.DOWNLOADING: 1,
        DownloadStatus.COMPLETED: 1,
        DownloadStatus.FAILED: 1,
        DownloadStatus.CANCELLED: 0,
    }


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (T0, "normal"),  # the high item is waiting for its retry
        (T0 + timedelta(minutes=5), "high"),  # due exactly now
        (T0 + timedelta(hours=1), "high"),
    ],
)
async def test_next_pending_respects_next_attempt_at(db: Database, now: datetime, expected: str) -> None:
    await db.upsert_series(series())
    retry_at = T0 + timedelta(minutes=5)
    await db.add_downloads(
        [
            download("high", 1, priority=Priority.HIGH, next_attempt_at=retry_at),
            download("normal", 2),
            download("busy", 3, priority=Priority.HIGH, status=DownloadStatus.DOWNLOADING),
        ]
    )
    item = await db.next_pending(now)
    assert item is not None
    assert item.id == expected


async def test_next_pending_is_none_when_nothing_is_due(db: Database) -> None:
    await db.upsert_series(series())
    assert await db.next_pending(T0) is None
    await db.add_downloads([download("later", next_attempt_at=T0 + timedelta(seconds=1))])
    assert await db.next_pending(T0) is None


@pytest.mark.parametrize(
    ("item", "new_position", "expected"),
    [
        ("d", 0, ["d", "a", "b", "c"]),
        ("a", 2, ["b", "c", "a", "d"]),
        ("b", 1, ["a", "b", "c", "d"]),
        ("a", 99, ["b", "c", "d", "a"]),  # clamped to the end
        ("c", -5, ["c", "a", "b", "d"]),  # clamped to the start
    ],
)
async def test_reorder_download(db: Database, item: str, new_position: int, expected: list[str]) -> None:
    await db.upsert_series(series())
    await db.add_downloads([download(name, number) for number, name in enumerate("abcde", start=1)])
    await db.update_download("e", status=DownloadStatus.COMPLETED, position=1)
    await db.reorder_download(item, new_position)
    pending = await db.list_downloads([DownloadStatus.PENDING])
    assert [download.id for download in pending] == expected
    assert [download.position for download in pending] == [0, 1, 2, 3]
    completed = await db.get_download("e")
    assert completed is not None
    assert completed.position == 1  # only pending items are renumbered


@pytest.mark.parametrize(
    "status", [None, DownloadStatus.DOWNLOADING, DownloadStatus.COMPLETED, DownloadStatus.CANCELLED]
)
async def test_reorder_non_pending_raises(db: Database, status: DownloadStatus | None) -> None:
    await db.upsert_series(series())
    await db.add_downloads([download("a", 1), download("b", 2)])
    if status is not None:  # None: the id does not exist at all
        await db.add_downloads([download("x", 3, status=status)])
    with pytest.raises(NotFoundError, match="download x is not a pending item"):
        await db.reorder_download("x", 0)
    assert [download.position for download in await db.list_downloads([DownloadStatus.PENDING])] == [0, 1]


async def test_reset_interrupted_downloads(db: Database) -> None:
    await db.upsert_series(series())
    await db.add_downloads([download("a", 1), download("b", 2), download("c", 3), download("d", 4)])
    for item_id, status in [("a", "downloading"), ("b", "downloading"), ("c", "failed")]:
        await db.update_download(item_id, status=DownloadStatus(status))
    assert await db.reset_interrupted_downloads() == 2
    statuses = {item.id: item.status for item in await db.list_downloads()}
    assert statuses == {"a": "pending", "b": "pending", "c": "failed", "d": "pending"}
    assert await db.reset_interrupted_downloads() == 0


async def test_update_download(db: Database) -> None:
    await db.upsert_series(series())
    await db.add_downloads([download("a")])
    updated = await db.update_download(
        "a",
        status=DownloadStatus.DOWNLOADING,
        priority=Priority.LOW,
        language=Language.EN_SUB,
        started_at=T0,
        bytes_downloaded=10,
        error_message=None,
    )
    assert (updated.status, updated.priority, updated.language) == ("downloading", "low", "en-sub")
    assert (updated.started_at, updated.bytes_downloaded) == (T0, 10)
    assert await db.get_download("a") == updated
    assert await db.update_download("a") == updated  # nothing to change
    with pytest.raises(NotFoundError, match="download nope not found"):
        await db.update_download("nope", attempts=1)


@pytest.mark.parametrize(
    "changes",
    [
        {"bogus": 1},
        {"status": DownloadStatus.COMPLETED, "bogus": 1},
        {"id": "other"},
        {"series_key": "other"},
        {"created_at": T0},
        {"priority_rank": 0},
        {"status = 'completed' --": 1},
    ],
)
async def test_update_download_rejects_unknown_columns(db: Database, changes: dict[str, Any]) -> None:
    # ValueError, not ValidationError: a column name is never user input, so a bad one is a programming error.
    await db.upsert_series(series())
    [before] = await db.add_downloads([download("a")])
    with pytest.raises(ValueError, match="unknown or read-only columns"):
        await db.update_download("a", **changes)
    assert await db.get_download("a") == before


async def test_update_download_to_live_duplicate_conflicts(db: Database) -> None:
    await db.upsert_series(series())
    await db.add_downloads([download("old")])
    await db.update_download("old", status=DownloadStatus.FAILED)
    await db.add_downloads([download("new")])
    with pytest.raises(ConflictError, match="already queued"):
        await db.update_download("old", status=DownloadStatus.PENDING)
    old = await db.get_download("old")
    assert old is not None
    assert old.status == DownloadStatus.FAILED


async def test_delete_downloads(db: Database) -> None:
    await db.upsert_series(series())
    await db.add_downloads([download("a", 1), download("b", 2), download("c", 3)])
    assert await db.delete_downloads(["a", "c", "nope"]) == 2
    assert await db.delete_downloads([]) == 0
    assert await ids(db) == ["b"]


async def test_delete_series_cascades_but_keeps_history(db: Database) -> None:
    await db.upsert_series(series())
    await db.upsert_series(series("other"))
    await db.upsert_episodes([Episode(series_key="frieren", season=1, number=n) for n in (1, 2)])
    await db.add_downloads([download("a", 1), download("b", 2, series_key="other")])
    await db.add_history(HistoryKind.SERIES_ADDED, "Frieren added", series_key="frieren")
    assert await db.delete_series("frieren") is True
    assert await db.get_series("frieren") is None
    assert await db.list_episodes("frieren") == []
    assert await ids(db) == ["b"]
    [entry] = await db.list_history()
    assert entry.series_key == "frieren"
    assert await db.delete_series("frieren") is False


async def test_concurrent_writers_do_not_interleave(db: Database) -> None:
    await db.upsert_series(series())
    await asyncio.gather(
        *(db.add_downloads([download(f"item-{n}", n)]) for n in range(20)),
        *(db.add_history(HistoryKind.SCAN, f"scan {n}") for n in range(20)),
        *(db.set_setting(f"setting-{n}", n) for n in range(20)),
    )
    # Each batch read max(position) inside its own transaction, so no two items share a position.
    assert sorted(item.position for item in await db.list_downloads()) == list(range(20))
    assert await db.count_history() == 20
    assert await db.get_setting("setting-19") == 19


# ---- history ------------------------------------------------------------------------------------------


async def test_list_history_paging_and_kind_filter(db: Database) -> None:
    kinds = [HistoryKind.SCAN, HistoryKind.DOWNLOAD_COMPLETED, HistoryKind.SCAN, HistoryKind.DOWNLOAD_FAILED]
    entries = [await db.add_history(kinds[n % 4], f"entry {n}") for n in range(7)]
    newest_first = [entry.id for entry in reversed(entries)]
    assert [entry.id for entry in await db.list_history(limit=3)] == newest_first[:3]
    assert [entry.id for entry in await db.list_history(limit=3, offset=3)] == newest_first[3:6]
    assert [entry.id for entry in await db.list_history(limit=3, offset=6)] == newest_first[6:]
    assert await db.list_history(offset=7) == []
    scans = await db.list_history(kind=HistoryKind.SCAN)
    assert [entry.message for entry in scans] == ["entry 6", "entry 4", "entry 2", "entry 0"]
    assert await db.count_history() == 7
    assert await db.count_history(HistoryKind.SCAN) == 4
    assert await db.count_history(HistoryKind.SERIES_REMOVED) == 0


async def test_ping_after_close_is_false(db: Database) -> None:
    assert await db.ping() is True
    await db.close()
    assert await db.ping() is False
