"""Backups: the database and the config file as one zip in `<data_dir>/backups/`, the newest `backup.keep` kept.

A backup is one zip per moment: `aniworld.db` (a consistent copy taken inside one read transaction with SQLite's
`VACUUM INTO`, safe beside a writing daemon in WAL mode), the config file under its own name, and `backup.json` (what
took it and when, the schema version). One file rather than a folder: it appears at once (written aside, then
renamed), it has one size, it is copied off the machine as it is, the database compresses several-fold, and each
member carries a CRC, so a restore notices a damaged copy. A restore (`restore()`) runs only while no daemon uses the
data dir: every process that opens the database holds a shared lock on `<data_dir>/daemon.lock` (flock: the kernel
drops it when the process dies, so a kill leaves no stale lock) and a restore needs it exclusively.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import json
import logging
import os
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from aniworld_daemon import __version__
from aniworld_daemon.errors import ConflictError, StorageError, ValidationError
from aniworld_daemon.store.database import Database
from aniworld_daemon.store.migrations import SCHEMA_VERSION

LOGGER = logging.getLogger(__name__)

BACKUP_DIR = "backups"
LOCK_FILE = "daemon.lock"
DB_MEMBER = "aniworld.db"
MANIFEST_MEMBER = "backup.json"
RESTORED_SUFFIX = ".restored"  # the backup's config is written beside the user's as `config.yaml.restored`
BACKUP_ANCHOR = "backup_anchor"  # the settings key: when scheduled backups started counting, while none exists yet
_NAME_RE = re.compile(r"^aniworld-(\d{8}-\d{6}-\d{6})-([a-z-]+)\.zip$")
_STAMP = "%Y%m%d-%H%M%S-%f"


class BackupReason(StrEnum):
    """What took a backup (the last part of its name)."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"  # `aniworld-daemon backup`, POST /api/system/backup
    MIGRATION = "migration"  # before a schema migration, of the old file
    RESTORE = "pre-restore"  # of the database a restore replaced


@dataclass(frozen=True, slots=True)
class Backup:
    """One backup file."""

    name: str
    size: int
    created_at: datetime
    reason: BackupReason


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore did."""

    source: Path
    created_at: datetime | None  # when the restored backup was taken (from its manifest)
    schema_version: int
    database: Path
    config: Path | None  # where the backup's config file was written; None when the backup holds none
    config_replaced: bool  # it replaced the config file in use (`--config`), else it lies beside it
    safety: Backup | None  # the backup of the replaced database; None when there was none


def parse_name(name: str) -> tuple[datetime, BackupReason] | None:
    """The time and reason in a backup's file name; None for a file that is not one of ours."""
    match = _NAME_RE.match(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC), BackupReason(match[2])
    except ValueError:
        return None


class DataDirLock:
    """`<data_dir>/daemon.lock`: shared by every process that opens the database, exclusive for a restore."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire_shared(self) -> None:
        """Hold the lock beside other daemons and CLI commands; StorageError while a restore runs."""
        if not self._take(fcntl.LOCK_SH):
            raise StorageError(
                f"a restore into {self._path.parent} is in progress; start again when it has finished",
                details={"lock": str(self._path)},
            )

    def acquire_exclusive(self) -> None:
        """Hold the lock alone; ConflictError while a daemon or another command uses the data dir."""
        if not self._take(fcntl.LOCK_EX):
            raise ConflictError(
                f"aniworld-daemon is running on {self._path.parent} (a process holds {self._path}); stop it first "
                "(systemctl stop aniworld-daemon, or stop the add-on), then restore",
                details={"lock": str(self._path)},
            )

    def _take(self, mode: int) -> bool:
        if self._fd is not None:
            raise RuntimeError("the data dir lock is held already")
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise StorageError(f"cannot open the lock file {self._path}: {err.strerror or err}") from err
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go of the lock (closing the file releases it); a no-op when not held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Backups:
    """Takes, lists and prunes the backups of the database and the config file."""

    def __init__(self, db: Database, data_dir: Path, config_file: Path, keep: int) -> None:
        self._db = db
        self._folder = data_dir / BACKUP_DIR
        self._config_file = config_file
        self._keep = keep

    @property
    def folder(self) -> Path:
        """Where the backups are."""
        return self._folder

    def reconfigure(self, data_dir: Path, config_file: Path, keep: int) -> None:
        """Use a reloaded configuration's data dir, config file and `backup.keep` from now on."""
        self._folder = data_dir / BACKUP_DIR
        self._config_file = config_file
        self._keep = keep

    async def list(self) -> list[Backup]:
        """The backups, newest first."""
        return await asyncio.to_thread(list_backups, self._folder)

    async def newest(self) -> Backup | None:
        """The newest backup, if there is one."""
        found = await self.list()
        return found[0] if found else None

    async def create(self, reason: BackupReason = BackupReason.MANUAL) -> Backup:
        """Take a backup now; the oldest beyond `keep` are deleted. Raises StorageError."""
        now = datetime.now(UTC)
        name = f"aniworld-{now:{_STAMP}}-{reason.value}.zip"
        await asyncio.to_thread(_make_folder, self._folder)
        copy = self._folder / f".{name}.db.partial"
        await asyncio.to_thread(copy.unlink, missing_ok=True)
        try:
            await self._db.backup(copy)
            made = await asyncio.to_thread(
                _archive, self._folder, name, copy, self._config_file, now=now, reason=reason
            )
        finally:
            await asyncio.to_thread(copy.unlink, missing_ok=True)
        await asyncio.to_thread(prune, self._folder, self._keep)
        LOGGER.info("Backed up the database and %s to %s", self._config_file.name, self._folder / name)
        return made


def list_backups(folder: Path) -> builtins.list[Backup]:
    """The backups in `folder`, newest first (files of other names are left out)."""
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StorageError(f"cannot list the backups in {folder}: {err.strerror or err}") from err
    backups = []
    for path in entries:
        parsed = parse_name(path.name)
        if parsed is None:
            continue
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # pruned meanwhile
            continue
        backups.append(Backup(path.name, size, *parsed))
    return sorted(backups, key=lambda backup: (backup.created_at, backup.name), reverse=True)


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` backups."""
    for old in list_backups(folder)[keep:]:
        (folder / old.name).unlink(missing_ok=True)
        LOGGER.info("Deleted the old backup %s (backup.keep is %d)", old.name, keep)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create {folder}: {err.strerror or err}") from err


def _schema_version(database: Path) -> int:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])
    finally:
        connection.close()


def _archive(folder: Path, name: str, copy: Path, config_file: Path, *, now: datetime, reason: BackupReason) -> Backup:
    """Zip the database copy and the config file into `folder/name`: written aside, synced, then renamed."""
    manifest: dict[str, Any] = {
        "format": 1,
        "created_at": now.isoformat(),
        "reason": reason.value,
        "aniworld_daemon": __version__,
        "schema_version": _schema_version(copy),
        "config_file": None,
        "config_path": str(config_file),
    }
    try:
        config = config_file.read_bytes()
    except OSError as err:
        # The database is what cannot be made again; a backup without the config beats none.
        LOGGER.warning("The backup leaves out the config file %s: %s", config_file, err.strerror or err)
        config = None
    partial = folder / f".{name}.partial"
    try:
        # Created 0600: the config may hold passwords and the API key.
        with (
            _private(partial) as raw,
            zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive,
        ):
            archive.write(copy, DB_MEMBER)
            if config is not None and config_file.name not in (DB_MEMBER, MANIFEST_MEMBER):
                archive.writestr(config_file.name, config)
                manifest["config_file"] = config_file.name
            archive.writestr(MANIFEST_MEMBER, json.dumps(manifest, indent=2) + "\n")
        os.replace(partial, folder / name)
        _sync_folder(folder)
        return Backup(name, (folder / name).stat().st_size, now, reason)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise StorageError(f"cannot write the backup {folder / name}: {err.strerror or err}") from err


@contextlib.contextmanager
def _private(path: Path) -> Iterator[Any]:
    """A new file of mode 0600, synced to disk before it is closed."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb") as file:
        yield file
        file.flush()
        os.fsync(file.fileno())


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- restore ---------------------------------------------------------------------------------------------------


def find_backup(given: str, data_dir: Path) -> Path:
    """The backup a user named: a path, or the name of a file in `<data_dir>/backups`; ValidationError otherwise."""
    path = Path(given).expanduser()
    if path.is_file():
        return path
    inside = data_dir / BACKUP_DIR / given
    if "/" not in given and inside.is_file():
        return inside
    raise ValidationError(
        f"no backup {given!r}: give a file, or a name listed by `aniworld-daemon backup --list`",
        details={"backup": given, "folder": str(data_dir / BACKUP_DIR)},
    )


def restore(archive: Path, data_dir: Path, database: Path, config_file: Path, *, replace_config: bool) -> Restored:
    """Put a backup's database in place of `database`; only while nothing else uses the data dir (ConflictError).

    The database in use is backed up first (reason `pre-restore`, with the config file in use). The backup's config
    file goes beside `config_file` as `<name>.restored`, or over it with `replace_config` (`--with-config`).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = DataDirLock(data_dir)
    lock.acquire_exclusive()
    try:
        return _restore(archive, data_dir, database, config_file, replace_config=replace_config)
    finally:
        lock.release()


def _restore(archive: Path, data_dir: Path, database: Path, config_file: Path, *, replace_config: bool) -> Restored:
    incoming = database.with_name(f".{database.name}.restoring")
    incoming.unlink(missing_ok=True)
    try:
        manifest, config = _unpack(archive, incoming)
        schema = _schema_version(incoming)
        if schema > SCHEMA_VERSION:
            raise ValidationError(
                f"{archive.name} holds schema version {schema}, newer than this aniworld-daemon supports "
                f"({SCHEMA_VERSION}); restore it with the version that took it ({manifest.get('aniworld_daemon')})",
                details={"schema_version": schema, "supported": SCHEMA_VERSION},
            )
        safety = _safety_backup(data_dir, database, config_file)
        # A WAL left beside the old file belongs to it: applied to the restored file, it would corrupt it.
        for leftover in (Path(f"{database}-wal"), Path(f"{database}-shm")):
            leftover.unlink(missing_ok=True)
        os.replace(incoming, database)
        _sync_folder(database.parent)
    finally:
        incoming.unlink(missing_ok=True)
    written = None
    if config is not None:
        written = config_file if replace_config else config_file.with_name(config_file.name + RESTORED_SUFFIX)
        with _private(written.with_name(f".{written.name}.partial")) as file:
            file.write(config)
        os.replace(written.with_name(f".{written.name}.partial"), written)
    created = manifest.get("created_at")
    LOGGER.info("Restored %s into %s", archive, database)
    return Restored(
        source=archive,
        created_at=datetime.fromisoformat(created) if isinstance(created, str) else None,
        schema_version=schema,
        database=database,
        config=written,
        config_replaced=written is not None and replace_config,
        safety=safety,
    )


def _unpack(archive: Path, target: Path) -> tuple[dict[str, Any], bytes | None]:
    """Check the zip and write its database to `target`; returns the manifest and the config file's bytes."""
    try:
        with zipfile.ZipFile(archive) as opened:
            damaged = opened.testzip()
            if damaged is not None:
                raise ValidationError(f"{archive.name} is damaged: {damaged} fails its CRC check")
            names = set(opened.namelist())
            if DB_MEMBER not in names or MANIFEST_MEMBER not in names:
                raise ValidationError(f"{archive.name} is not an aniworld-daemon backup (no {DB_MEMBER} in it)")
            manifest = json.loads(opened.read(MANIFEST_MEMBER))
            config_name = manifest.get("config_file")
            config = opened.read(config_name) if isinstance(config_name, str) and config_name in names else None
            with opened.open(DB_MEMBER) as source, _private(target) as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)
    except (zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise ValidationError(f"{archive.name} is not an aniworld-daemon backup: {err}") from err
    except OSError as err:
        raise StorageError(f"cannot read the backup {archive}: {err.strerror or err}") from err
    connection = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    try:
        verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as err:
        verdict = str(err)
    finally:
        connection.close()
    if verdict != "ok":
        raise ValidationError(f"the database in {archive.name} fails SQLite's integrity check: {verdict}")
    return manifest, config


def _safety_backup(data_dir: Path, database: Path, config_file: Path) -> Backup | None:
    """Back up the database a restore is about to replace (nothing to do when there is none)."""
    if not database.is_file():
        return None
    folder = data_dir / BACKUP_DIR
    _make_folder(folder)
    now = datetime.now(UTC)
    name = f"aniworld-{now:{_STAMP}}-{BackupReason.RESTORE.value}.zip"
    copy = folder / f".{name}.db.partial"
    copy.unlink(missing_ok=True)
    try:
        connection = sqlite3.connect(database)
        try:
            connection.execute("VACUUM INTO ?", (str(copy),))
        finally:
            connection.close()
        return _archive(folder, name, copy, config_file, now=now, reason=BackupReason.RESTORE)
    except sqlite3.Error as err:
        # A damaged database is when a restore is needed most: it is kept as it is, under another name.
        aside = database.with_name(f"{database.name}.replaced-{now:{_STAMP}}")
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{database}{suffix}", f"{aside}{suffix}")
        LOGGER.warning("Could not back up %s before restoring (%s); it was moved to %s", database, err, aside)
        return None
    finally:
        copy.unlink(missing_ok=True)
