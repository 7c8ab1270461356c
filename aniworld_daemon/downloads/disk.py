"""The library's disk as the download queue sees it: mounted (not an empty mount point) and with room to write.

One owner for "may downloads write to the library now": the free space against `downloads.min_free_space`, what a
download that found the disk full asks for before the queue goes on, and whether the library is mounted at all.
The queue pauses itself (QueuePaused, low disk space) and resumes (QueueResumed) from here.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
from collections.abc import Callable, Hashable
from pathlib import Path

from aniworld_daemon.config import Config
from aniworld_daemon.events import EventBus, QueuePaused, QueueResumed
from aniworld_daemon.health import Check, CheckLevel
from aniworld_daemon.library import unavailable
from aniworld_daemon.models import MB, PauseReason
from aniworld_daemon.store.database import Database

LOGGER = logging.getLogger(__name__)

# After a download found the disk full: free space wanted on top of what was free then and what the download still
# needs (all of it, when its size is unknown), before the queue goes on. Room for the import, a remux and the NFO
# and poster writes, so the queue does not resume straight into the next full disk.
DISK_FULL_MARGIN = 50 * MB
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path: Path) -> int:
    """Free space on the file system holding `path`, for an unprivileged user."""
    return shutil.disk_usage(path).free


class LibraryDisk:
    """Whether downloads may write to the library now; pauses and resumes the queue for space."""

    def __init__(
        self, db: Database, bus: EventBus, config: Config, free_space: Callable[[Path], int] = free_bytes
    ) -> None:
        self._db = db
        self._bus = bus
        self._config = config
        self._free_space = free_space
        self._space_problem: str | None = None
        self._space_needed = 0  # bytes to be free again after a download found the disk full (0: min_free_space)
        self._library_problem: str | None = None  # why no download starts: the library is not mounted

    def reconfigure(self, config: Config) -> None:
        """Follow a reloaded configuration (library path, min_free_space)."""
        if config.library.path != self._config.library.path:
            self._space_needed = 0  # what a full disk asked for was the old library's
        self._config = config

    @property
    def space_problem(self) -> str | None:
        """Why downloads are paused for space, or None."""
        return self._space_problem

    def problems(self) -> list[str | Check]:
        """Health problems (low disk space, as the `free_space` check), for /health and MQTT."""
        if not self._space_problem:
            return []
        # A full disk stops the downloads (an error); below min_free_space is the user's own early warning.
        level = CheckLevel.ERROR if self._space_needed else CheckLevel.WARNING
        return [Check("free_space", level, self._space_problem), "downloads are paused for lack of disk space"]

    def revision(self) -> Hashable:
        """Changes whenever what this reports changes."""
        return (self._space_problem, self._library_problem)

    async def ready(self) -> bool:
        """True when a download may start: the library is mounted and has the space it needs."""
        return await self._library_ok() and await self._space_ok()

    async def unavailable(self) -> str | None:
        """Why the library cannot be worked on right now (library.unavailable: not mounted), or None."""
        library = self._config.library.path
        return await asyncio.to_thread(unavailable, library, await self._db.count_episode_files())

    async def postpone(self, err: BaseException, remaining: int) -> str | None:
        """Why a failed download is the disk's fault and should wait (not an attempt), or None when it is not.

        The library's disk ran full (the queue pauses until space is freed; `remaining`: bytes the download still
        needs, 0 when unknown), or the library is not mounted (nothing starts until it is back).
        """
        if is_disk_full(err):
            return await self._paused_for_full_disk(remaining)
        problem = await self.unavailable()
        if problem is not None:
            if self._library_problem is None:
                LOGGER.warning("%s; no download starts until it is back", problem)
            self._library_problem = problem
        return problem

    async def _library_ok(self) -> bool:
        problem = await self.unavailable()
        if problem is None:
            if self._library_problem is not None:
                LOGGER.info("The library is back; downloads go on")
                self._library_problem = None
            return True
        if self._library_problem is None:
            LOGGER.warning("%s; no download starts until it is back", problem)
        self._library_problem = problem
        return False

    async def _space_ok(self) -> bool:
        """Check free space; pause (and report) below what is needed, resume when space is back.

        Needed is `min_free_space`, or after a download found the disk full, what _paused_for_full_disk asked for.
        """
        library = self._config.library.path
        minimum = max(self._config.downloads.min_free_space, self._space_needed)
        try:
            free = await asyncio.to_thread(self._free_space, library)
        except OSError as err:
            free, problem = 0, f"cannot read the free space of {library}: {err.strerror or err}"
        else:
            problem = _space_text(free, library, minimum, full=minimum > self._config.downloads.min_free_space)
        if free >= minimum:
            if self._space_problem is not None:
                LOGGER.info("Free space is back (%s); resuming downloads", size_text(free))
                self._space_problem = None
                self._space_needed = 0
                self._bus.emit(QueueResumed())
            return True
        self._pause(problem)
        return False

    async def _paused_for_full_disk(self, remaining: int) -> str:
        """Pause until enough is free again; return why.

        Enough: what was free after the failure plus DISK_FULL_MARGIN, plus what the download still needs (each
        further download that fails adds its own), and at least `min_free_space`. Measured after the failure, so
        what the other downloads still write meanwhile does not count as freed.
        """
        library = self._config.library.path
        try:
            free = await asyncio.to_thread(self._free_space, library)
        except OSError:
            free = 0
        self._space_needed = max(self._space_needed, free + DISK_FULL_MARGIN) + remaining
        minimum = max(self._config.downloads.min_free_space, self._space_needed)
        problem = _space_text(free, library, minimum, full=True)
        self._pause(problem)
        return problem

    def _pause(self, problem: str) -> None:
        if self._space_problem is None:
            LOGGER.warning("%s", problem)
            self._bus.emit(QueuePaused(reason=PauseReason.LOW_DISK_SPACE))
        self._space_problem = problem


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` comes from a full disk (ENOSPC, or a quota): in itself, its causes, or their text.

    yt-dlp often keeps only the text of the OSError ("unable to write data: [Errno 28] ..."), and ffmpeg's remux
    reports it in its output; its exceptions carry the original in `exc_info`.
    """
    texts = tuple(os.strerror(code) for code in _DISK_FULL_ERRNOS)
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return True
        if any(text in str(current) for text in texts):
            return True
        exc_info = getattr(current, "exc_info", None)
        inner = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
        pending += [inner if isinstance(inner, BaseException) else None, current.__cause__, current.__context__]
    return False


def _space_text(free: int, library: Path, minimum: int, *, full: bool) -> str:
    """Why downloads are paused for space: below min_free_space, or the disk ran full (`full`)."""
    if full:
        return (
            f"the library's disk ran full ({size_text(free)} free on {library}); downloads are paused until"
            f" {size_text(minimum)} are free"
        )
    return (
        f"only {size_text(free)} free on {library}, below downloads.min_free_space ({size_text(minimum)});"
        " downloads are paused until space is freed"
    )


def size_text(value: int) -> str:
    """A byte count for a message: 1.5 GB, 300.0 MB, 512 bytes."""
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if value >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value} bytes"
