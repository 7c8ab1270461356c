"""Database: the one aiosqlite connection, schema migrations and all SQL of the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import aiosqlite

from aniworld_daemon.errors import ConflictError, NotFoundError, StorageError
from aniworld_daemon.models import (
    Download,
    DownloadStatus,
    Episode,
    EpisodeState,
    HistoryEntry,
    HistoryKind,
    Language,
    Priority,
    ScanReport,
    ScanStatus,
    SeasonFetch,
    Series,
    SeriesSource,
)
from aniworld_daemon.store.migrations import MIGRATIONS, SCHEMA_VERSION, Migration

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

LOGGER = logging.getLogger(__name__)

OTHERS_CHECK = 0.5  # seconds between two looks for other processes' commits (version())

BUSY_TIMEOUT_MS = 5000
# Generated columns (3.31) are the newest feature the schema relies on.
MIN_SQLITE_VERSION = (3, 31, 0)


_UPSERT_EPISODE = """
    INSERT INTO episodes (series_key, season, number, title_de, title_en, languages, state,
        file_path, file_size, updated_at)
    VALUES (:series_key, :season, :number, :title_de, :title_en, :languages, :state,
        :file_path, :file_size, :updated_at)
    ON CONFLICT (series_key, season, number) DO UPDATE SET title_de = excluded.title_de,
        title_en = excluded.title_en, languages = excluded.languages, state = excluded.state,
        file_path = excluded.file_path, file_size = excluded.file_size,
        updated_at = excluded.updated_at
"""

# update_download() builds its SET clause from these names only (fixed at import from the dataclass, never
# from input); the identity of a queue item is not updatable.
_DOWNLOAD_UPDATABLE = frozenset(field.name for field in fields(Download)) - {
    "id",
    "series_key",
    "season",
    "number",
    "created_at",
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _to_epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        # A naive datetime would be read as local time by timestamp(): refuse it rather than shift it.
        raise ValueError(f"naive datetime {value!r}: the store only accepts timezone-aware datetimes")
    return value.timestamp()


def _from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _bind(value: Any) -> Any:
    """Encode one dataclass field for SQLite: epoch seconds, enum values, JSON for tuples and dicts."""
    if isinstance(value, datetime):
        return _to_epoch(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return _json([_bind(item) for item in value])
    if isinstance(value, dict):
        return _json(value)
    return value


def _params(record: Series | Episode | Download | ScanReport) -> dict[str, Any]:
    return {field.name: _bind(getattr(record, field.name)) for field in fields(record)}


def _id_filter(only: Iterable[str] | None) -> tuple[str | None, str | None]:
    """Bound parameters for `(? IS NULL OR id IN (SELECT value FROM json_each(?)))`."""
    if only is None:
        return None, None
    ids = _json(sorted(only))
    return ids, ids


def _languages(value: str) -> tuple[Language, ...]:
    return tuple(Language(item) for item in json.loads(value))


def _json_tuple(value: str | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(json.loads(value))


def _optional(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else decode(value)


# Per table, how a column is turned back into its dataclass field; columns not named are used as they are.
_Decoders: TypeAlias = dict[str, Callable[[Any], Any]]
_SERIES_DECODERS: _Decoders = {
    "languages": _languages,
    "seasons": _json_tuple,
    "genres": _json_tuple,
    "alternative_titles": _json_tuple,
    "monitored": bool,
    "folder_matched": bool,
    "refreshed_at": _from_epoch,
    "source": SeriesSource,
    "added_at": _from_epoch,
    "updated_at": _from_epoch,
}
_EPISODE_DECODERS: _Decoders = {"languages": _languages, "state": EpisodeState, "updated_at": _from_epoch}
_DOWNLOAD_DECODERS: _Decoders = {
    "priority": Priority,
    "status": DownloadStatus,
    "language": _optional(Language),
    "created_at": _from_epoch,
    "next_attempt_at": _from_epoch,
    "started_at": _from_epoch,
    "finished_at": _from_epoch,
}
_SEASON_DECODERS: _Decoders = {"fetched_at": _from_epoch}
_HISTORY_DECODERS: _Decoders = {"kind": HistoryKind, "created_at": _from_epoch, "data": json.loads}
_SCAN_DECODERS: _Decoders = {
    "status": ScanStatus,
    "started_at": _from_epoch,
    "finished_at": _from_epoch,
    "missing": json.loads,
    "errors": json.loads,
}

_R = TypeVar("_R", bound="DataclassInstance")


def _decode(cls: type[_R], decoders: _Decoders, row: sqlite3.Row) -> _R:
    return cls(**{field.name: decoders.get(field.name, _same)(row[field.name]) for field in fields(cls)})


def _same(value: Any) -> Any:
    return value


BeforeMigration: TypeAlias = Callable[[int, int], Awaitable[None]]
"""Called with the current and the target schema version before the first pending migration of a used database."""


class Database:
    """The daemon's SQLite database behind exactly one aiosqlite connection."""

    def __init__(self, path: Path, *, before_migration: BeforeMigration | None = None) -> None:
        self._path = path
        self._before_migration = before_migration
        self._conn: aiosqlite.Connection | None = None
        self._others = -1  # the last PRAGMA data_version read (see version())
        self._others_checked = -OTHERS_CHECK
        # One connection means one transaction at a time: the lock keeps coroutines from interleaving inside
        # another's transaction.
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # ---- life cycle -------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, configure the connection (WAL, foreign keys) and apply pending migrations."""
        if self._conn is not None:
            return
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise StorageError(
                f"SQLite {sqlite3.sqlite_version} is too old; aniworld-daemon needs "
                f"{'.'.join(map(str, MIN_SQLITE_VERSION))} or newer"
            )
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"cannot create the database directory {self._path.parent}: {err}") from err
        try:
            # isolation_level=None: sqlite3 opens no implicit transactions; single statements commit on their
            # own and multi-statement writes use explicit BEGIN IMMEDIATE.
            conn = await aiosqlite.connect(self._path, isolation_level=None)
        except sqlite3.Error as err:
            raise StorageError(f"cannot open the database {self._path}: {err}") from err
        conn.row_factory = sqlite3.Row
        self._conn = conn
        try:
            async with self._locked("configuring the connection") as db:
                rows = list(await db.execute_fetchall("PRAGMA journal_mode=WAL"))
                if rows[0][0] != "wal":
                    LOGGER.warning("Database %s does not support WAL (journal mode %s)", self._path, rows[0][0])
                await db.execute("PRAGMA foreign_keys=ON")
                # FULL: in WAL mode every commit fsyncs the WAL, so what the API acknowledged (an item added, a
                # reorder) survives a power cut, not only a kill. NORMAL would lose the last commits, and a rescan
                # cannot bring back a user's priority, position or pause. It costs one fsync per commit (bench/api).
                await db.execute("PRAGMA synchronous=FULL")
                await db.execute_fetchall(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS:d}")
            await self.migrate()
        except BaseException:
            # Close on every failure: an unclosed aiosqlite worker thread would keep the process alive.
            self._conn = None
            await conn.close()
            raise
        LOGGER.debug("Database %s open (schema version %d)", self._path, SCHEMA_VERSION)

    async def close(self) -> None:
        """Checkpoint the WAL into the main file and close the connection; a no-op when closed."""
        conn = self._conn
        if conn is None:
            return
        async with self._lock:
            self._conn = None
            try:
                await conn.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as err:
                LOGGER.warning("WAL checkpoint of %s failed: %s", self._path, err)
            try:
                await conn.close()
            except sqlite3.Error as err:
                raise StorageError(f"closing the database {self._path} failed: {err}") from err
        LOGGER.debug("Database %s closed", self._path)

    async def backup(self, target: Path) -> None:
        """Copy the whole database into `target` (a new file), consistent while the daemon writes; StorageError.

        VACUUM INTO makes one self-contained file (no WAL beside it), compacted.
        """
        async with self._locked(f"backing up into {target}") as conn:
            await conn.execute("VACUUM INTO ?", (str(target),))

    async def ping(self) -> bool:
        """Return True when the database answers a trivial query (used by /health)."""
        try:
            rows = await self._fetchall("pinging the database", "SELECT 1", ())
        except StorageError:
            return False
        return len(rows) == 1

    async def migrate(self, migrations: Sequence[Migration] = MIGRATIONS) -> int:
        """Apply pending migrations, each in its own transaction; return how many were applied."""
        target = len(migrations)
        current = await self._user_version()
        if current > target:
            raise StorageError(
                f"database schema version {current} is newer than this aniworld-daemon supports ({target}); "
                "upgrade aniworld-daemon",
                details={"schema_version": current, "supported": target},
            )
        if 0 < current < target and self._before_migration is not None:
            # A backup of the old file first (a fresh, empty database has nothing to keep); when it fails, the
            # database is not migrated and the start fails: better than a migration that cannot be undone.
            await self._before_migration(current, target)
        applied = 0
        for version in range(current + 1, target + 1):
            async with self._transaction(f"migrating the database to schema version {version}") as db:
                # Re-read inside the write lock: another process may have migrated meanwhile.
                rows = list(await db.execute_fetchall("PRAGMA user_version"))
                if rows[0][0] >= version:
                    continue
                step = migrations[version - 1]
                if isinstance(step, tuple):
                    for statement in step:
                        await db.execute(statement)
                else:
                    await step(db)
                # PRAGMA takes no bound parameters; version is an int from range().
                await db.execute(f"PRAGMA user_version={version:d}")
            applied += 1
        if applied:
            LOGGER.info("Database %s migrated from schema version %d to %d", self._path, current, target)
        return applied

    async def _user_version(self) -> int:
        rows = await self._fetchall("reading the schema version", "PRAGMA user_version", ())
        return int(rows[0][0])

    # ---- plumbing ---------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _locked(self, operation: str) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise StorageError(f"{operation}: the database is not open")
            try:
                yield conn
            except sqlite3.Error as err:
                raise StorageError(f"{operation} failed: {err}", details={"operation": operation}) from err

    @contextlib.asynccontextmanager
    async def _transaction(self, operation: str) -> AsyncIterator[aiosqlite.Connection]:
        async with self._locked(operation) as conn:
            # IMMEDIATE takes the write lock up front, so a transaction never fails half-way on SQLITE_BUSY.
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                try:
                    await conn.rollback()
                except sqlite3.Error as err:
                    LOGGER.warning("Rollback after a failed %s failed: %s", operation, err)
                raise

    async def _fetchall(self, operation: str, sql: str, params: Any) -> list[sqlite3.Row]:
        async with self._locked(operation) as conn:
            return list(await conn.execute_fetchall(sql, params))

    async def _fetchone(self, operation: str, sql: str, params: Any) -> sqlite3.Row | None:
        rows = await self._fetchall(operation, sql, params)
        return rows[0] if rows else None

    async def _execute(self, operation: str, sql: str, params: Any) -> int:
        """Run one write statement (it commits by itself) and return the number of changed rows."""
        async with self._locked(operation) as conn, conn.execute(sql, params) as cursor:
            return cursor.rowcount

    # ---- series -----------------------------------------------------------------------------------------

    async def upsert_series(self, series: Series) -> Series:
        """Insert or update a series (keeping its first `added_at`) and return the stored record."""
        now = _utcnow()
        params = _params(replace(series, added_at=series.added_at or now, updated_at=series.updated_at or now))
        async with self._locked(f"saving series {series.key}") as conn:
            await conn.execute(
                """
                INSERT INTO series (key, site, title, folder, languages, seasons, monitored, source,
                    year_start, year_end, description, cover_url, imdb_id, genres, fsk, alternative_titles,
                    folder_matched, refreshed_at, added_at, updated_at)
                VALUES (:key, :site, :title, :folder, :languages, :seasons, :monitored, :source,
                    :year_start, :year_end, :description, :cover_url, :imdb_id, :genres, :fsk, :alternative_titles,
                    :folder_matched, :refreshed_at, :added_at, :updated_at)
                ON CONFLICT (key) DO UPDATE SET site = excluded.site, title = excluded.title,
                    folder = excluded.folder, languages = excluded.languages, seasons = excluded.seasons,
                    monitored = excluded.monitored, source = excluded.source,
                    year_start = excluded.year_start, year_end = excluded.year_end,
                    description = excluded.description,
                    cover_url = excluded.cover_url, imdb_id = excluded.imdb_id, genres = excluded.genres,
                    fsk = excluded.fsk, alternative_titles = excluded.alternative_titles,
                    folder_matched = excluded.folder_matched, refreshed_at = excluded.refreshed_at,
                    updated_at = excluded.updated_at
                """,
                params,
            )
            rows = list(await conn.execute_fetchall("SELECT * FROM series WHERE key = ?", (series.key,)))
        return _decode(Series, _SERIES_DECODERS, rows[0])

    async def get_series(self, key: str) -> Series | None:
        """Return the series with this key, or None."""
        row = await self._fetchone(f"reading series {key}", "SELECT * FROM series WHERE key = ?", (key,))
        return None if row is None else _decode(Series, _SERIES_DECODERS, row)

    async def list_series(self) -> list[Series]:
        """Return every series, ordered by key."""
        rows = await self._fetchall("listing series", "SELECT * FROM series ORDER BY key", ())
        return [_decode(Series, _SERIES_DECODERS, row) for row in rows]

    async def delete_series(self, key: str) -> bool:
        """Delete a series with its episodes and queue items (history stays); return whether it existed."""
        return await self._execute(f"deleting series {key}", "DELETE FROM series WHERE key = ?", (key,)) > 0

    # ---- episodes ---------------------------------------------------------------------------------------

    async def upsert_episodes(self, episodes: Iterable[Episode]) -> None:
        """Insert or replace the given episodes (their series must exist) in one transaction."""
        now = _utcnow()
        params = [_params(replace(episode, updated_at=episode.updated_at or now)) for episode in episodes]
        if not params:
            return
        async with self._transaction(f"saving {len(params)} episodes") as conn:
            await conn.executemany(_UPSERT_EPISODE, params)

    async def list_episodes(self, series_key: str) -> list[Episode]:
        """Return the episodes of a series, ordered by season and number."""
        rows = await self._fetchall(
            f"listing episodes of {series_key}",
            "SELECT * FROM episodes WHERE series_key = ? ORDER BY season, number",
            (series_key,),
        )
        return [_decode(Episode, _EPISODE_DECODERS, row) for row in rows]

    async def set_episode_state(
        self,
        series_key: str,
        season: int,
        number: int,
        state: EpisodeState,
        *,
        file_path: str | None = None,
        file_size: int | None = None,
    ) -> Episode:
        """Set an episode's state and file (None clears them), creating the episode row if needed."""
        operation = f"setting the state of {series_key} S{season:02d}E{number:02d}"
        async with self._locked(operation) as conn:
            return await _set_episode_state(conn, (series_key, season, number), state, file_path, file_size)

    # ---- seasons ---------------------------------------------------------------------------------------

    async def list_season_fetches(self, series_key: str | None = None) -> list[SeasonFetch]:
        """When each season page was last read (of one series, or of all), ordered by series and season."""
        rows = await self._fetchall(
            "listing season fetches",
            "SELECT * FROM seasons WHERE (:key IS NULL OR series_key = :key) ORDER BY series_key, season",
            {"key": series_key},
        )
        return [_decode(SeasonFetch, _SEASON_DECODERS, row) for row in rows]

    async def save_season(self, series: str, season: int, episodes: Iterable[Episode], fetched_at: datetime) -> None:
        """Store one read season page in one transaction: its episodes and when it was read."""
        now = _utcnow()
        params = [_params(replace(episode, updated_at=episode.updated_at or now)) for episode in episodes]
        async with self._transaction(f"saving season {season} of {series}") as conn:
            await conn.executemany(_UPSERT_EPISODE, params)
            await conn.execute(
                "INSERT INTO seasons (series_key, season, fetched_at, episodes) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (series_key, season) DO UPDATE SET fetched_at = excluded.fetched_at,"
                " episodes = excluded.episodes",
                (series, season, _to_epoch(fetched_at), len(params)),
            )

    # ---- downloads --------------------------------------------------------------------------------------

    async def add_downloads(self, items: Iterable[Download]) -> list[Download]:
        """Queue items at the end of the pending queue, skipping live duplicates; return the inserted ones.

        The items' `position` is ignored: they get max(pending position)+1, +2, ... in the given order.
        """
        items = list(items)
        inserted: list[Download] = []
        if not items:
            return inserted
        async with self._transaction(f"queueing {len(items)} downloads") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT COALESCE(MAX(position), -1) + 1 FROM downloads WHERE status IN ('pending', 'downloading')"
                )
            )
            position = int(rows[0][0])
            for item in items:
                params = _params(item)
                params["position"] = position
                async with conn.execute(
                    """
                    INSERT INTO downloads (id, series_key, season, number, priority, position, status,
                        created_at, language, hoster, attempts, next_attempt_at, error_code, error_message,
                        bytes_downloaded, bytes_total, started_at, finished_at, file_path)
                    VALUES (:id, :series_key, :season, :number, :priority, :position, :status,
                        :created_at, :language, :hoster, :attempts, :next_attempt_at, :error_code,
                        :error_message, :bytes_downloaded, :bytes_total, :started_at, :finished_at,
                        :file_path)
                    ON CONFLICT (series_key, season, number) WHERE status IN ('pending', 'downloading')
                    DO NOTHING
                    """,
                    params,
                ) as cursor:
                    if cursor.rowcount == 0:
                        continue
                rows = list(await conn.execute_fetchall("SELECT * FROM downloads WHERE id = ?", (item.id,)))
                inserted.append(_decode(Download, _DOWNLOAD_DECODERS, rows[0]))
                position += 1
        return inserted

    async def get_download(self, download_id: str) -> Download | None:
        """Return the queue item with this id, or None."""
        row = await self._fetchone(
            f"reading download {download_id}", "SELECT * FROM downloads WHERE id = ?", (download_id,)
        )
        return None if row is None else _decode(Download, _DOWNLOAD_DECODERS, row)

    async def list_downloads(
        self, statuses: Iterable[DownloadStatus] | None = None, *, limit: int = -1, offset: int = 0
    ) -> list[Download]:
        """Return queue items (all, or those with the given statuses) in queue order; `limit` -1 = no limit."""
        if statuses is None:
            rows = await self._fetchall(
                "listing downloads",
                "SELECT * FROM downloads ORDER BY priority_rank, position, created_at, id LIMIT ? OFFSET ?",
                (limit, offset),
            )
        else:
            wanted = [DownloadStatus(status).value for status in statuses]
            # One status (every page of the API): `status = ?` lets the downloads_status index give the order, where
            # the IN form sorts every page in a temporary B-tree.
            rows = await self._fetchall(
                "listing downloads",
                "SELECT * FROM downloads WHERE status = ?"
                " ORDER BY priority_rank, position, created_at, id LIMIT ? OFFSET ?"
                if len(wanted) == 1
                else "SELECT * FROM downloads WHERE status IN (SELECT value FROM json_each(?))"
                " ORDER BY priority_rank, position, created_at, id LIMIT ? OFFSET ?",
                (wanted[0] if len(wanted) == 1 else _json(wanted), limit, offset),
            )
        return [_decode(Download, _DOWNLOAD_DECODERS, row) for row in rows]

    async def count_episode_files(self) -> int:
        """How many episodes have a file in the library, as the last scans saw it."""
        row = await self._fetchone("counting files", "SELECT COUNT(*) FROM episodes WHERE file_path IS NOT NULL", ())
        return int(row[0]) if row is not None else 0

    async def completed_bytes(self) -> tuple[int, int]:
        """(sum, count) of the downloaded bytes of the completed items that have a size: the queue's statistics."""
        row = await self._fetchone(
            "summing downloads",
            "SELECT COALESCE(SUM(bytes_downloaded), 0), COUNT(*) FROM downloads"
            " WHERE status = ? AND bytes_downloaded > 0",
            (DownloadStatus.COMPLETED.value,),
        )
        return (int(row[0]), int(row[1])) if row is not None else (0, 0)

    async def version(self) -> tuple[int, int]:
        """Changes whenever the database may have: rows this connection wrote, and commits of other processes.

        Cheap (no table is read), for caches: `total_changes` counts our own writes, `PRAGMA data_version` moves when
        another connection (a foreground `download`, the CLI) commits.
        """
        own = self._conn.total_changes if self._conn is not None else -1
        # Other processes write seldom (a foreground download's progress): asking SQLite once per OTHERS_CHECK
        # seconds keeps a busy API off the database thread, and their commits show within that time.
        now = time.monotonic()
        if now - self._others_checked >= OTHERS_CHECK:
            self._others_checked = now  # before the await: concurrent callers meanwhile take the last value
            row = await self._fetchone("reading the data version", "PRAGMA data_version", ())
            self._others = int(row[0]) if row is not None else -1
        return own, self._others

    async def next_pending(self, now: datetime, only: Iterable[str] | None = None) -> Download | None:
        """Return the first pending item (queue order) whose `next_attempt_at` is unset or due by `now`.

        `only`: consider just these ids (a foreground `download` works on its own items).
        """
        row = await self._fetchone(
            "picking the next download",
            "SELECT * FROM downloads WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            " AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))"
            " ORDER BY priority_rank, position, created_at, id LIMIT 1",
            (_to_epoch(now), *_id_filter(only)),
        )
        return None if row is None else _decode(Download, _DOWNLOAD_DECODERS, row)

    async def next_pending_due(self, only: Iterable[str] | None = None) -> datetime | None:
        """Return the earliest `next_attempt_at` among pending items that wait for one (None: nothing waits)."""
        row = await self._fetchone(
            "reading the next retry time",
            "SELECT MIN(next_attempt_at) FROM downloads WHERE status = 'pending' AND next_attempt_at IS NOT NULL"
            " AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))",
            _id_filter(only),
        )
        return None if row is None else _from_epoch(row[0])

    async def claim_download(self, download_id: str, now: datetime) -> Download | None:
        """Mark a pending item `downloading` (stamping `started_at`) and return it; None if it is no longer pending.

        The status check and the change are one statement, so two processes on one database never both claim it.
        """
        async with self._locked(f"claiming download {download_id}") as conn:
            async with conn.execute(
                "UPDATE downloads SET status = 'downloading', started_at = ? WHERE id = ? AND status = 'pending'",
                (_to_epoch(now), download_id),
            ) as cursor:
                if cursor.rowcount == 0:
                    return None
            rows = list(await conn.execute_fetchall("SELECT * FROM downloads WHERE id = ?", (download_id,)))
        return _decode(Download, _DOWNLOAD_DECODERS, rows[0])

    async def update_download(self, download_id: str, **changes: Any) -> Download:
        """Change columns of a queue item and return it.

        Unknown or read-only column names raise ValueError before the database is touched (a programming
        error, not user input); a missing id raises NotFoundError; making an item live (pending/downloading)
        while the same episode is already live raises ConflictError.
        """
        unknown = sorted(set(changes) - _DOWNLOAD_UPDATABLE)
        if unknown:
            raise ValueError(f"update_download: unknown or read-only columns {', '.join(unknown)}")
        operation = f"updating download {download_id}"
        async with self._locked(operation) as conn:
            return await _update_download(conn, operation, download_id, changes)

    async def complete_download(
        self,
        item: Download,
        changes: dict[str, Any],
        *,
        file_path: str,
        file_size: int,
        history: str,
        data: dict[str, Any],
    ) -> Download:
        """Record an import in one transaction: the item's `changes`, the episode `downloaded`, one history line.

        One transaction, because a kill between separate statements would leave a completed item without its
        history line (or an episode still `queued` beside a completed item).
        """
        unknown = sorted(set(changes) - _DOWNLOAD_UPDATABLE)
        if unknown:
            raise ValueError(f"complete_download: unknown or read-only columns {', '.join(unknown)}")
        operation = f"recording the download of {item.label}"
        place = (item.series_key, item.season, item.number)
        async with self._transaction(operation) as conn:
            stored = await _update_download(conn, operation, item.id, changes)
            await _set_episode_state(conn, place, EpisodeState.DOWNLOADED, file_path, file_size)
            await _add_history(conn, HistoryKind.DOWNLOAD_COMPLETED, history, place, data)
        return stored

    async def delete_downloads(self, ids: Iterable[str]) -> int:
        """Delete queue items by id; return how many existed."""
        params = [(download_id,) for download_id in ids]
        if not params:
            return 0
        async with (
            self._transaction(f"deleting {len(params)} downloads") as conn,
            conn.executemany("DELETE FROM downloads WHERE id = ?", params) as cursor,
        ):
            return cursor.rowcount

    async def reorder_download(self, download_id: str, new_position: int) -> None:
        """Move a pending item to index `new_position` (clamped) of the pending queue; renumber the live items."""
        async with self._transaction(f"reordering download {download_id}") as conn:
            rows = await conn.execute_fetchall(
                "SELECT id, status FROM downloads WHERE status IN ('pending', 'downloading')"
                " ORDER BY priority_rank, position, created_at, id"
            )
            running = [row[0] for row in rows if row[1] == DownloadStatus.DOWNLOADING.value]
            order = [row[0] for row in rows if row[1] == DownloadStatus.PENDING.value]
            if download_id not in order:
                raise NotFoundError(f"download {download_id} is not a pending item", details={"id": download_id})
            order.remove(download_id)
            order.insert(max(0, min(new_position, len(order))), download_id)
            # Running items are numbered too (first): one stopped goes back to pending with a position of its own.
            await conn.executemany(
                "UPDATE downloads SET position = ? WHERE id = ?",
                [(position, item_id) for position, item_id in enumerate(running + order)],
            )

    async def next_position(self) -> int:
        """The position after every live (pending or downloading) item: the end of the queue."""
        row = await self._fetchone(
            "reading the end of the queue",
            "SELECT COALESCE(MAX(position), -1) + 1 FROM downloads WHERE status IN ('pending', 'downloading')",
            (),
        )
        return int(row[0]) if row is not None else 0

    async def reset_interrupted_downloads(self) -> int:
        """Put items left `downloading` by a crash back to `pending`; return how many."""
        return await self._execute(
            "resetting interrupted downloads",
            "UPDATE downloads SET status = 'pending' WHERE status = 'downloading'",
            (),
        )

    async def count_episodes_by_state(self) -> dict[EpisodeState, int]:
        """The number of episodes of followed series per state (every state present, zero included)."""
        rows = await self._fetchall("counting episodes", "SELECT state, COUNT(*) FROM episodes GROUP BY state", ())
        counts = dict.fromkeys(EpisodeState, 0)
        for state, count in rows:
            counts[EpisodeState(state)] = count
        return counts

    async def count_downloads_by_status(self) -> dict[DownloadStatus, int]:
        """Return the number of queue items per status (every status present, zero included)."""
        rows = await self._fetchall("counting downloads", "SELECT status, COUNT(*) FROM downloads GROUP BY status", ())
        counts = dict.fromkeys(DownloadStatus, 0)
        for status, count in rows:
            counts[DownloadStatus(status)] = count
        return counts

    # ---- history ----------------------------------------------------------------------------------------

    async def add_history(
        self,
        kind: HistoryKind,
        message: str,
        *,
        series_key: str | None = None,
        season: int | None = None,
        number: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> HistoryEntry:
        """Append a history row stamped now and return it."""
        async with self._locked(f"writing history ({kind.value})") as conn:
            return await _add_history(conn, kind, message, (series_key, season, number), data)

    async def list_history(
        self, limit: int = 50, offset: int = 0, kind: HistoryKind | None = None
    ) -> list[HistoryEntry]:
        """Return history rows newest first, optionally of one kind."""
        rows = await self._fetchall(
            "listing history",
            "SELECT * FROM history WHERE (:kind IS NULL OR kind = :kind) ORDER BY id DESC LIMIT :limit OFFSET :offset",
            {"kind": None if kind is None else kind.value, "limit": limit, "offset": offset},
        )
        return [_decode(HistoryEntry, _HISTORY_DECODERS, row) for row in rows]

    async def count_history(self, kind: HistoryKind | None = None) -> int:
        """Return the number of history rows, optionally of one kind."""
        rows = await self._fetchall(
            "counting history",
            "SELECT COUNT(*) FROM history WHERE (:kind IS NULL OR kind = :kind)",
            {"kind": None if kind is None else kind.value},
        )
        return int(rows[0][0])

    # ---- scans ------------------------------------------------------------------------------------------

    async def save_scan(self, report: ScanReport) -> None:
        """Insert or replace a scan report."""
        await self._execute(
            f"saving scan {report.id}",
            """
            INSERT OR REPLACE INTO scans (id, trigger, status, started_at, finished_at, series_checked,
                requests, new_episodes, missing, errors)
            VALUES (:id, :trigger, :status, :started_at, :finished_at, :series_checked, :requests,
                :new_episodes, :missing, :errors)
            """,
            _params(report),
        )

    async def interrupt_running_scans(self, now: datetime) -> int:
        """Mark the reports still `running` (their daemon was killed) `interrupted`, finished `now`; how many."""
        return await self._execute(
            "marking interrupted scans",
            "UPDATE scans SET status = ?, finished_at = ? WHERE status = ?",
            (ScanStatus.INTERRUPTED.value, _to_epoch(now), ScanStatus.RUNNING.value),
        )

    async def get_scan(self, scan_id: str) -> ScanReport | None:
        """Return the scan report with this id, or None."""
        row = await self._fetchone(f"reading scan {scan_id}", "SELECT * FROM scans WHERE id = ?", (scan_id,))
        return None if row is None else _decode(ScanReport, _SCAN_DECODERS, row)

    async def list_scans(self, limit: int = 20, offset: int = 0) -> list[ScanReport]:
        """Return the latest scan reports, newest first."""
        rows = await self._fetchall(
            "listing scans",
            "SELECT * FROM scans ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_decode(ScanReport, _SCAN_DECODERS, row) for row in rows]

    async def count_scans(self) -> int:
        """Return the number of stored scan reports."""
        row = await self._fetchone("counting scans", "SELECT COUNT(*) FROM scans", ())
        return int(row[0]) if row is not None else 0

    # ---- login sessions -----------------------------------------------------------------------------------

    async def add_session(self, token_hash: str, created_at: datetime, expires_at: datetime, client: str) -> None:
        """Store a login session by the hash of its token."""
        await self._execute(
            "storing a session",
            "INSERT INTO sessions (token_hash, created_at, expires_at, client) VALUES (?, ?, ?, ?)",
            (token_hash, _to_epoch(created_at), _to_epoch(expires_at), client),
        )

    async def session_expiry(self, token_hash: str, now: datetime) -> datetime | None:
        """When the session with this token hash expires, or None when there is no such live session."""
        row = await self._fetchone(
            "reading a session",
            "SELECT expires_at FROM sessions WHERE token_hash = ? AND expires_at > ?",
            (token_hash, _to_epoch(now)),
        )
        return _from_epoch(row[0]) if row is not None else None

    async def delete_session(self, token_hash: str) -> bool:
        """Revoke a session; whether it existed."""
        return await self._execute("revoking a session", "DELETE FROM sessions WHERE token_hash = ?", (token_hash,)) > 0

    async def delete_expired_sessions(self, now: datetime) -> int:
        """Forget the sessions that expired; how many."""
        return await self._execute(
            "forgetting expired sessions", "DELETE FROM sessions WHERE expires_at <= ?", (_to_epoch(now),)
        )

    # ---- settings ---------------------------------------------------------------------------------------

    async def get_setting(self, key: str, default: Any = None) -> Any:
        """Return the JSON-decoded value of a setting, or `default` when it is unset."""
        row = await self._fetchone(f"reading setting {key}", "SELECT value FROM settings WHERE key = ?", (key,))
        return default if row is None else json.loads(row[0])

    async def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under `key`."""
        await self._execute(
            f"saving setting {key}",
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, _json(value)),
        )

    async def delete_setting(self, key: str) -> bool:
        """Forget the value under `key`; whether there was one."""
        return await self._execute(f"deleting setting {key}", "DELETE FROM settings WHERE key = ?", (key,)) > 0


# ---- statements shared by single writes and transactions -------------------------------------------------


async def _update_download(
    conn: aiosqlite.Connection, operation: str, download_id: str, changes: dict[str, Any]
) -> Download:
    params = {name: _bind(value) for name, value in changes.items()}
    params["id"] = download_id
    if changes:
        # Column names come only from the _DOWNLOAD_UPDATABLE whitelist checked by the callers, values are bound.
        assignments = ", ".join(f"{name} = :{name}" for name in sorted(changes))
        try:
            await conn.execute(f"UPDATE downloads SET {assignments} WHERE id = :id", params)  # noqa: S608
        except sqlite3.IntegrityError as err:
            if "UNIQUE" not in str(err):
                raise
            raise ConflictError(f"{operation}: the episode is already queued", details={"id": download_id}) from err
    rows = list(await conn.execute_fetchall("SELECT * FROM downloads WHERE id = ?", (download_id,)))
    if not rows:
        raise NotFoundError(f"download {download_id} not found", details={"id": download_id})
    return _decode(Download, _DOWNLOAD_DECODERS, rows[0])


async def _set_episode_state(
    conn: aiosqlite.Connection,
    key: tuple[str, int, int],
    state: EpisodeState,
    file_path: str | None,
    file_size: int | None,
) -> Episode:
    await conn.execute(
        """
        INSERT INTO episodes (series_key, season, number, state, file_path, file_size, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (series_key, season, number) DO UPDATE SET state = excluded.state,
            file_path = excluded.file_path, file_size = excluded.file_size,
            updated_at = excluded.updated_at
        """,
        (*key, state.value, file_path, file_size, _to_epoch(_utcnow())),
    )
    rows = list(
        await conn.execute_fetchall("SELECT * FROM episodes WHERE series_key = ? AND season = ? AND number = ?", key)
    )
    return _decode(Episode, _EPISODE_DECODERS, rows[0])


async def _add_history(
    conn: aiosqlite.Connection,
    kind: HistoryKind,
    message: str,
    place: tuple[str | None, int | None, int | None],
    data: dict[str, Any] | None,
) -> HistoryEntry:
    params = (kind.value, _to_epoch(_utcnow()), message, *place, _json(data or {}))
    async with conn.execute(
        "INSERT INTO history (kind, created_at, message, series_key, season, number, data)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        params,
    ) as cursor:
        entry_id = cursor.lastrowid
    rows = list(await conn.execute_fetchall("SELECT * FROM history WHERE id = ?", (entry_id,)))
    return _decode(HistoryEntry, _HISTORY_DECODERS, rows[0])
