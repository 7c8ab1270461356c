"""The temp dir on the library's file system: the only code that creates, imports or deletes partial files.

Downloads are written into `<library>/.aniworld-tmp/<item id>.*` so that the import into the library is a rename on
one file system. Small files of the library (NFO, poster) are written there too and renamed into place, so a kill
never leaves a hidden file in a series folder. Beside an item's partial files lies `<item id>.source.json`, what its
source promised (see verify.SourcePromise), so the import gate can check a file that a killed daemon finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from aniworld_daemon.downloads.verify import SourcePromise
from aniworld_daemon.errors import StorageError
from aniworld_daemon.provider.hosters.base import MediaKind

LOGGER = logging.getLogger(__name__)

TEMP_DIR_NAME = ".aniworld-tmp"
PROMISE_SUFFIX = ".source.json"
# write_file_atomic's temp names; the same in the temp dir and, where it cannot be used, beside the target.
_ATOMIC_TEMP_RE = re.compile(r"\.[0-9a-f]{12}\.tmp")
# yt-dlp's state of an HLS download (which fragment comes next) and the fragment files it appends to the .part.
_YTDL_SUFFIX = ".ytdl"
_FRAGMENT_RE = re.compile(r"\.part-Frag\d+(?:\.part)?$")
# What follows an item's stem in the names yt-dlp uses, <stem>[.temp|.f<format>].<ext>[.part[-Frag<N>]][.part][.ytdl],
# or its promise; nothing of a stem that merely starts with ours ("x" must not claim "x.5.mp4"). One pattern for
# every stem: a pattern per item id would fill Python's regex cache (512 entries) over a long run.
_PARTIAL_SUFFIX_RE = re.compile(
    r"(?:(?:\.temp|\.f[\w-]+)?\.[A-Za-z0-9]+(?:\.part(?:-Frag\d+)?)?(?:\.part)?(?:\.ytdl)?|"
    + re.escape(PROMISE_SUFFIX)
    + ")"
)


def partial_files(temp_dir: Path, stem: str) -> list[Path]:
    """Every file in temp_dir that belongs to `stem` (the finished file, .part, .ytdl, .part-FragN, .temp...)."""
    try:
        entries = list(temp_dir.iterdir())
    except FileNotFoundError:
        return []
    return sorted(
        path
        for path in entries
        if path.name.startswith(stem) and _PARTIAL_SUFFIX_RE.fullmatch(path.name, len(stem)) and path.is_file()
    )


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


def write_file_atomic(path: Path, data: bytes, temp_dir: Path | None = None) -> None:
    """Write via a temp file + fsync + os.replace; the temp file is removed on failure. Raises StorageError.

    The temp file goes into `temp_dir` (which must be on path's file system; created when missing), else beside
    `path`; either way it is hidden (scans skip it) and swept at start when a kill left it. It is created with mode
    0666 minus the umask, like any new file, so media servers running as another user can read the result.
    """
    name = f".{secrets.token_hex(6)}.tmp"
    temporary = path.with_name(name)
    if temp_dir is not None:
        try:
            temp_dir.mkdir(parents=True, exist_ok=True)
            if os.stat(temp_dir).st_dev == os.stat(path.parent).st_dev:
                temporary = temp_dir / name
        except OSError as err:
            raise StorageError(f"cannot write {path}: {err.strerror or err}") from err
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

    def save_promise(self, item_id: str, promise: SourcePromise) -> None:
        """Store what an item's source promised beside its partial files (blocking: yt-dlp's thread calls it)."""
        data = json.dumps(promise.to_json(), separators=(",", ":")).encode()
        write_file_atomic(self.folder / f"{item_id}{PROMISE_SUFFIX}", data, self.folder)

    def load_promise(self, item_id: str) -> SourcePromise | None:
        """What an earlier attempt of the item stored about its source; None when nothing (readable) is stored."""
        try:
            return SourcePromise.from_json(json.loads((self.folder / f"{item_id}{PROMISE_SUFFIX}").read_bytes()))
        except (OSError, ValueError):
            return None

    async def vet(self, item_id: str, kind: MediaKind, hoster: str) -> bool:
        """Before an attempt: drop the item's partial state that cannot be trusted; True when some is kept.

        Kept state is resumed by yt-dlp or, for a finished file, taken as it is; either way the import gate checks
        the result, and the caller starts from zero when a resumed attempt fails.
        """
        return await asyncio.to_thread(self._vet, item_id, kind, hoster)

    def _vet(self, item_id: str, kind: MediaKind, hoster: str) -> bool:
        folder = self.folder
        promise = self.load_promise(item_id)
        files = [path for path in partial_files(folder, item_id) if not path.name.endswith(PROMISE_SUFFIX)]
        if not files:
            return False
        problem = _untrusted(files, kind, promise, hoster)
        if problem is not None:
            LOGGER.info("Starting %s from zero: %s", item_id, problem)
            remove_files(folder, item_id)
            return False
        for path in files:
            if _FRAGMENT_RE.search(path.name):
                # A fragment's own file may be complete but not yet appended, and its resume would then ask for a
                # range past its end (416): fetching that one fragment again is cheap and always right.
                path.unlink(missing_ok=True)
        if kind is MediaKind.MP4 and promise is not None and promise.size is not None:
            for path in files:
                if path.name.endswith(".part") and path.stat().st_size == promise.size:
                    # Complete, killed before yt-dlp renamed it: a resume would ask for a range past the end.
                    LOGGER.info("%s is complete; taking it without downloading again", path.name)
                    path.replace(path.with_name(path.name.removesuffix(".part")))
        return bool(partial_files(folder, item_id))

    async def sweep_library(self) -> int:
        """Delete the temp files a kill left in series folders (written beside NFOs by older versions); how many."""
        return await asyncio.to_thread(_sweep_library, self._library)

    async def remove_orphans(self, live: set[str]) -> int:
        """Delete everything in the temp dir whose name does not start with a live item's id; return how many."""
        return await asyncio.to_thread(_remove_orphans, self.folder, live)

    def promote(self, source: Path, target: Path) -> bool:
        """Move a verified download to `target` in the library, durably; False when a file was there already.

        Blocking (run it in a thread). Never replaces a file that someone else put at `target`: that file wins and
        the download is dropped. The item's other temp files (its promise, stray fragments) go too. Raises OSError.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as handle:
            os.fsync(handle.fileno())
        placed = _place(source, target)
        # The file's name, then each folder's name up to the library root: the season and series folders may be new
        # (made just now, or by an NFO write), and a synced name in a folder whose own name is not synced is lost.
        folder = target.parent
        fsync_dir(folder)
        while folder != self._library and self._library in folder.parents:
            folder = folder.parent
            fsync_dir(folder)
        remove_files(source.parent, source.name.split(".", 1)[0])
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


def _untrusted(files: list[Path], kind: MediaKind, promise: SourcePromise | None, hoster: str) -> str | None:
    """Why an item's partial files cannot be resumed, or None when they can."""
    if promise is not None and promise.hoster != hoster:
        return f"its partial files are {promise.hoster}'s, another encode than {hoster}'s"
    for path in files:
        if path.name.endswith(_YTDL_SUFFIX) and not _readable_state(path):
            # yt-dlp would restart the fragments but append them to the .part: the content twice.
            return f"{path.name} is empty or unreadable"
    if kind is MediaKind.HLS and not any(path.name.endswith(_YTDL_SUFFIX) for path in files):
        stream_parts = [path for path in files if path.name.endswith(".part") and not _FRAGMENT_RE.search(path.name)]
        if stream_parts:
            # Without its state file yt-dlp starts at the first fragment and appends to what is there.
            return f"{stream_parts[0].name} has no .ytdl state beside it"
    if kind is MediaKind.MP4:
        for path in files:
            size = path.stat().st_size
            if path.name.endswith(".part") and promise is not None and promise.size is not None and size > promise.size:
                return f"{path.name} has {size} bytes, more than the {promise.size} of the source"
            if _is_finished(path) and (promise is None or promise.size is None):
                return f"{path.name} is finished, but its source's length is unknown, so it cannot be checked"
    return None


def _readable_state(path: Path) -> bool:
    """Whether a .ytdl file holds yt-dlp's state: JSON naming the next fragment."""
    try:
        index = json.loads(path.read_bytes())["downloader"]["current_fragment"]["index"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(index, int) and index >= 0


def _is_finished(path: Path) -> bool:
    """A file yt-dlp finished (`<id>.mp4`), not one of its partial or state files."""
    return not re.search(r"\.part(?:-Frag\d+)?(?:\.part)?$|\.ytdl$|\.temp\.", path.name)


def _sweep_library(library: Path) -> int:
    removed = 0
    try:
        folders = [entry for entry in os.scandir(library) if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return 0  # a missing library is reported by the health check and the rescans
    for folder in folders:
        if folder.name == TEMP_DIR_NAME:
            continue
        with contextlib.suppress(OSError), os.scandir(folder.path) as entries:
            for entry in entries:
                if _ATOMIC_TEMP_RE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
    return removed


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
