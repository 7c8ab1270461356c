"""The temp dir on the library's file system: the only code that creates, imports or deletes partial files.

Downloads are written into `<library>/.aniworld-tmp/<item id>.*` so that the import into the library is a rename on
one file system. Small files of the library (NFO, poster) are written through a temp file beside them and renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from aniworld_daemon.errors import StorageError

LOGGER = logging.getLogger(__name__)

TEMP_DIR_NAME = ".aniworld-tmp"


def partial_files(temp_dir: Path, stem: str) -> list[Path]:
    """Every file in temp_dir that belongs to `stem` (the finished file, .part, .ytdl, .part-FragN, .temp...)."""
    # <stem>[.temp|.f<format>].<ext>[.part[-Frag<N>]][.part][.ytdl]: each name yt-dlp uses, and nothing of a stem
    # that merely starts with ours ("x" must not claim "x.5.mp4").
    pattern = re.compile(
        re.escape(stem) + r"(?:\.temp|\.f[\w-]+)?\.[A-Za-z0-9]+(?:\.part(?:-Frag\d+)?)?(?:\.part)?(?:\.ytdl)?"
    )
    try:
        entries = list(temp_dir.iterdir())
    except FileNotFoundError:
        return []
    return sorted(path for path in entries if pattern.fullmatch(path.name) and path.is_file())


def remove_files(temp_dir: Path, stem: str) -> int:
    """Delete partial_files(temp_dir, stem); return how many."""
    removed = 0
    for path in partial_files(temp_dir, stem):
        try:
            path.unlink()
        except FileNotFoundError:
            continue  # removed meanwhile: nothing left to do
        removed += 1
    return removed


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory + fsync + os.replace; the temp file is removed on failure.

    Raises StorageError. The temp file is hidden (scans skip it) and created with mode 0666 minus the umask, like
    any new file, so media servers running as another user can read it.
    """
    temporary = path.with_name(f".{secrets.token_hex(6)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        with contextlib.suppress(OSError):  # the original error is the one to report
            temporary.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise StorageError(f"cannot write {path}: {err.strerror or err}") from err
        raise
    # Make the rename itself durable; some file systems (SMB, FUSE) refuse, which only costs durability.
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the entries of a folder durable; some file systems (SMB, FUSE) refuse, which only costs durability."""
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class TempFiles:
    """The download temp dir of one library: where partial files live, and the only code that deletes them."""

    def __init__(self, library: Path) -> None:
        self._library = library

    def reconfigure(self, library: Path) -> None:
        """Use the temp dir of a reloaded configuration's library from now on."""
        self._library = library

    @property
    def folder(self) -> Path:
        """`<library>/.aniworld-tmp`: on the library's file system, so the import is a rename."""
        return self._library / TEMP_DIR_NAME

    async def prepare(self) -> Path:
        """Create the temp dir when it is missing; return it."""
        folder = self.folder
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        return folder

    async def remove(self, item_ids: Iterable[str]) -> int:
        """Delete every partial file of these queue items; return how many files."""
        folder = self.folder
        ids = list(item_ids)
        return await asyncio.to_thread(lambda: sum(remove_files(folder, item_id) for item_id in ids))

    async def remove_orphans(self, live: set[str]) -> int:
        """Delete everything in the temp dir whose name does not start with a live item's id; return how many."""
        return await asyncio.to_thread(_remove_orphans, self.folder, live)

    def promote(self, source: Path, target: Path) -> bool:
        """Move a verified download to `target` in the library, durably; False when a file was there already.

        Blocking (run it in a thread). Never replaces a file that someone else put at `target`: that file wins and
        the download is dropped. Raises OSError.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as handle:
            os.fsync(handle.fileno())
        placed = _place(source, target)
        fsync_dir(target.parent)
        return placed


def _place(source: Path, target: Path) -> bool:
    """Rename `source` to `target` without ever replacing a file someone else put there."""
    try:
        # link() fails if the target exists: no window in which a user's file could be overwritten.
        os.link(source, target)
    except FileExistsError:
        LOGGER.warning("%s appeared while downloading; keeping it and dropping the download", target)
        source.unlink()
        return False
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # File systems without hard links (some SMB/FAT mounts): a plain rename, after checking.
        if target.exists():
            source.unlink()
            return False
        source.replace(target)
        return True
    source.unlink()
    return True


def _remove_orphans(folder: Path, live: set[str]) -> int:
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.name.split(".", 1)[0] in live:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed
