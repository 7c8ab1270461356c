"""The health checks and their report: behind /health, and later /api/system/status and the MQTT problem sensor."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aniworld_daemon.models import HealthStatus
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.store.database import Database


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The result of the health checks: the overall status and one line per problem."""

    status: HealthStatus
    problems: tuple[str, ...] = ()


class HealthChecks:
    """Runs the cheap checks: the database answers, the library is writable, no host cools down, component problems."""

    def __init__(
        self,
        db: Database,
        http: HttpClient,
        library: Path,
        problem_sources: Sequence[Callable[[], list[str]]] = (),
    ) -> None:
        self._db = db
        self._http = http
        self._library = library
        self._problem_sources = tuple(problem_sources)  # e.g. the download queue's low disk space

    def reconfigure(self, library: Path) -> None:
        """Check the library of a reloaded configuration from now on."""
        self._library = library

    async def report(self) -> HealthReport:
        """Run every check; unhealthy when the database is gone, degraded with any other problem."""
        if not await self._db.ping():
            return HealthReport(HealthStatus.UNHEALTHY, ("database unavailable",))
        problems = []
        if not await asyncio.to_thread(os.access, self._library, os.W_OK | os.X_OK):
            problems.append(f"library {self._library} is missing or not writable")
        problems += [
            f"{cooldown.host} refused us; no requests to it until {cooldown.until.isoformat(timespec='seconds')}"
            for cooldown in self._http.cooldowns()
        ]
        for source in self._problem_sources:
            problems += source()
        return HealthReport(HealthStatus.DEGRADED if problems else HealthStatus.HEALTHY, tuple(problems))
