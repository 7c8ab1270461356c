"""The health checks and their report: behind /health, /api/system/status and (later) the MQTT problem sensor."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME
from aniworld_daemon.events import EventBus, HealthChanged
from aniworld_daemon.models import MB, HealthStatus
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.store.database import Database

WATCH_INTERVAL = 10.0  # seconds between two runs of the checks by watch()


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
        problem_sources: Sequence[Callable[[], list[str]]] = (),
        checks: Sequence[Callable[[], Check]] = (),
        free_space: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
    ) -> None:
        self._db = db
        self._http = http
        self._library = library
        self._min_free_space = min_free_space
        self._problem_sources = tuple(problem_sources)  # e.g. the download queue's low disk space
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
        """Run every check; unhealthy when the database is gone, degraded with any other finding but ok."""
        if not await self._db.ping():
            check = Check("database", CheckLevel.ERROR, "the database does not answer")
            return HealthReport(HealthStatus.UNHEALTHY, (check.message,), (check,))
        checks = [Check("database", CheckLevel.OK, f"{self._db.path} answers")]
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
        queue_problems = [problem for source in self._problem_sources for problem in source()]
        checks.append(
            Check(
                "queue",
                CheckLevel.WARNING if queue_problems else CheckLevel.OK,
                "; ".join(queue_problems) or "the queue can run",
            )
        )
        checks += [check() for check in self._checks]
        problems = tuple(check.message for check in checks if check.level is not CheckLevel.OK)
        return HealthReport(HealthStatus.DEGRADED if problems else HealthStatus.HEALTHY, problems, tuple(checks))

    async def _library_checks(self) -> list[Check]:
        library = self._library
        if not await asyncio.to_thread(os.access, library, os.W_OK | os.X_OK):
            return [Check("library", CheckLevel.ERROR, f"library {library} is missing or not writable")]
        checks = [Check("library", CheckLevel.OK, f"{library} is writable")]
        # Sonarr's check: an empty library root while the database knows files is an unmounted disk, not a library
        # whose files were all deleted; rescans would otherwise mark every episode missing.
        files = await self._db.count_episode_files()
        if files and not await asyncio.to_thread(_has_entries, library):
            checks.append(
                Check(
                    "library_mounted",
                    CheckLevel.ERROR,
                    f"library {library} is empty, but {files} episode files were there: is its disk mounted?",
                )
            )
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


def _has_entries(library: Path) -> bool:
    """Whether the library root holds anything but our temp dir."""
    try:
        with os.scandir(library) as entries:
            return any(entry.name != TEMP_DIR_NAME for entry in entries)
    except OSError:
        return False
