"""The health checks and their report: behind /health, /api/system/status and (later) the MQTT problem sensor."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from aniworld_daemon.events import EventBus, HealthChanged
from aniworld_daemon.library import unavailable
from aniworld_daemon.models import MB, HealthStatus
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.store.database import Database

WATCH_INTERVAL = 10.0  # seconds between two runs of the checks by watch()
# Below this much free space on the data dir's disk the database is taken as unable to store changes: a commit needs
# room for its WAL frames (4 KiB pages) and a checkpoint room to grow the database file.
DATA_DIR_MIN_FREE = 500_000


class CheckLevel(StrEnum):
    """How bad one check's finding is."""

    OK = "ok"
    WARNING = "warning"  # the daemon works, something needs a look (degraded)
    ERROR = "error"  # a part of the daemon cannot work until this is fixed (degraded; unhealthy for the database)


@dataclass(frozen=True, slots=True)
class Check:
    """One health check's finding."""

    name: str
    level: CheckLevel
    message: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The result of the health checks: the overall status, one line per problem, and every check."""

    status: HealthStatus
    problems: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()


class HealthChecks:
    """Runs the cheap checks: database, library (present, writable, mounted), free space, cooldowns, tools, queue."""

    def __init__(
        self,
        db: Database,
        http: HttpClient,
        library: Path,
        min_free_space: int,
        *,
        problem_sources: Sequence[Callable[[], Sequence[str | Check]]] = (),
        checks: Sequence[Callable[[], Check]] = (),
        free_space: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
    ) -> None:
        self._db = db
        self._http = http
        self._library = library
        self._min_free_space = min_free_space
        # A source's text is a finding of the `queue` check; a Check of its own takes the place of the built-in check
        # of that name (the download queue's `free_space` after the disk ran full: only the queue knows how much it
        # needs, and min_free_space may well be 0).
        self._problem_sources = tuple(problem_sources)
        self._checks = tuple(checks)  # components' own checks, e.g. the MQTT connection
        self._free_space = free_space

    async def watch(self, bus: EventBus, interval: float = WATCH_INTERVAL) -> None:
        """Run the checks every `interval` seconds and emit HealthChanged when the status or the problems change.

        Runs until cancelled (a background task of the application); the WebSocket's `system` room and MQTT follow it.
        """
        last: tuple[HealthStatus, tuple[str, ...]] | None = None
        while True:
            report = await self.report()
            current = (report.status, report.problems)
            if current != last:
                if last is not None:  # the first report is the starting point, not a change
                    bus.emit(HealthChanged(status=report.status, problems=report.problems))
                last = current
            await asyncio.sleep(interval)

    def add_check(self, check: Callable[[], Check]) -> None:
        """Run a component's own check too (the MQTT bridge, built after the checks)."""
        self._checks = (*self._checks, check)

    def reconfigure(self, library: Path, min_free_space: int) -> None:
        """Check the library and free space of a reloaded configuration from now on."""
        self._library = library
        self._min_free_space = min_free_space

    async def report(self) -> HealthReport:
        """Run every check; unhealthy when the database is gone or cannot write, degraded with any other finding."""
        if not await self._db.ping():
            check = Check("database", CheckLevel.ERROR, "the database does not answer")
            return HealthReport(HealthStatus.UNHEALTHY, (check.message,), (check,))
        database = await self._database_check()
        checks = [database]
        checks += await self._library_checks()
        checks.append(self._tools_check())
        cooldowns = self._http.cooldowns()
        checks.append(
            Check(
                "provider",
                CheckLevel.WARNING if cooldowns else CheckLevel.OK,
                "; ".join(
                    f"{cooldown.host} refused us; no requests to it until "
                    f"{cooldown.until.isoformat(timespec='seconds')}"
                    for cooldown in cooldowns
                )
                or "no host is cooling down",
            )
        )
        found = [problem for source in self._problem_sources for problem in source()]
        queue_problems = [problem for problem in found if isinstance(problem, str)]
        replaced = {problem.name: problem for problem in found if isinstance(problem, Check)}
        checks = [replaced.pop(check.name, check) for check in checks]
        checks.append(
            Check(
                "queue",
                CheckLevel.WARNING if queue_problems else CheckLevel.OK,
                "; ".join(queue_problems) or "the queue can run",
            )
        )
        checks += [*replaced.values(), *(check() for check in self._checks)]
        problems = tuple(check.message for check in checks if check.level is not CheckLevel.OK)
        if database.level is CheckLevel.ERROR:
            status = HealthStatus.UNHEALTHY
        else:
            status = HealthStatus.DEGRADED if problems else HealthStatus.HEALTHY
        return HealthReport(status, problems, tuple(checks))

    async def _database_check(self) -> Check:
        """The database answers; an error when its disk is full (it can read, but no change can be stored)."""
        data_dir = self._db.path.parent
        try:
            free = await asyncio.to_thread(self._free_space, data_dir)
        except OSError as err:
            return Check("database", CheckLevel.WARNING, f"cannot read the free space of {data_dir}: {err}")
        if free < DATA_DIR_MIN_FREE:
            return Check(
                "database",
                CheckLevel.ERROR,
                f"the disk of the data dir {data_dir} is full ({free // 1000} kB free): the database cannot store"
                " changes until space is freed",
            )
        return Check("database", CheckLevel.OK, f"{self._db.path} answers")

    async def _library_checks(self) -> list[Check]:
        library = self._library
        if not await asyncio.to_thread(os.access, library, os.W_OK | os.X_OK):
            return [Check("library", CheckLevel.ERROR, f"library {library} is missing or not writable")]
        checks = [Check("library", CheckLevel.OK, f"{library} is writable")]
        # Sonarr's check: an empty library root while the database knows files is an unmounted disk, not a library
        # whose files were all deleted; rescans would otherwise mark every episode missing.
        files = await self._db.count_episode_files()
        problem = await asyncio.to_thread(unavailable, library, files)
        if problem is not None:
            checks.append(Check("library_mounted", CheckLevel.ERROR, problem))
        else:
            checks.append(Check("library_mounted", CheckLevel.OK, f"{files} episode files known"))
        try:
            free = await asyncio.to_thread(self._free_space, library)
        except OSError as err:
            checks.append(Check("free_space", CheckLevel.WARNING, f"cannot read the free space: {err}"))
            return checks
        low = free < self._min_free_space
        checks.append(
            Check(
                "free_space",
                CheckLevel.WARNING if low else CheckLevel.OK,
                f"{free / MB:.0f} MB free on the library's disk"
                + (f", below downloads.min_free_space ({self._min_free_space / MB:.0f} MB)" if low else ""),
            )
        )
        return checks

    @staticmethod
    def _tools_check() -> Check:
        missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
        if missing:
            return Check("tools", CheckLevel.ERROR, f"{' and '.join(missing)} not found: install ffmpeg")
        return Check("tools", CheckLevel.OK, "ffmpeg and ffprobe found")
