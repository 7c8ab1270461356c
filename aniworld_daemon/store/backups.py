"""Backups of the database: a consistent copy in `<data_dir>/backups/`, the newest few kept."""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aniworld_daemon.errors import StorageError
from aniworld_daemon.store.database import Database

LOGGER = logging.getLogger(__name__)

BACKUP_DIR = "backups"
KEEP = 10  # the newest backups kept; older ones are deleted when a new one is taken
_PREFIX, _SUFFIX = "aniworld-", ".db"


@dataclass(frozen=True, slots=True)
class Backup:
    """One backup file."""

    name: str
    size: int
    created_at: datetime


class Backups:
    """Takes and lists the database's backups."""

    def __init__(self, db: Database, data_dir: Path) -> None:
        self._db = db
        self._folder = data_dir / BACKUP_DIR

    def reconfigure(self, data_dir: Path) -> None:
        """Keep the backups of a reloaded configuration's data dir from now on."""
        self._folder = data_dir / BACKUP_DIR

    async def list(self) -> list[Backup]:
        """The backups, newest first."""
        return await asyncio.to_thread(self._list)

    def _list(self) -> builtins.list[Backup]:
        try:
            entries = [
                path for path in self._folder.iterdir() if path.name.startswith(_PREFIX) and path.suffix == _SUFFIX
            ]
        except FileNotFoundError:
            return []
        backups = []
        for path in entries:
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            backups.append(Backup(path.name, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
        return sorted(backups, key=lambda backup: backup.name, reverse=True)

    async def create(self) -> Backup:
        """Take a backup now; the oldest beyond KEEP are deleted. Raises StorageError."""
        now = datetime.now(UTC)
        name = f"{_PREFIX}{now:%Y%m%d-%H%M%S-%f}{_SUFFIX}"
        try:
            await asyncio.to_thread(self._folder.mkdir, mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"cannot create {self._folder}: {err.strerror or err}") from err
        partial = self._folder / f".{name}.partial"
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        try:
            await self._db.backup(partial)
            await asyncio.to_thread(os.replace, partial, self._folder / name)
        except BaseException:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            raise
        for old in (await self.list())[KEEP:]:
            await asyncio.to_thread((self._folder / old.name).unlink, missing_ok=True)
        LOGGER.info("Backed up the database to %s", self._folder / name)
        size = (await asyncio.to_thread((self._folder / name).stat)).st_size
        return Backup(name, size, now)
