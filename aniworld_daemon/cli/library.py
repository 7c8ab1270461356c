"""The library's CLI commands (`add`, `remove`, `list`, `scan`): the daemon's own components, without its servers."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from aniworld_daemon.app import DB_FILE
from aniworld_daemon.config import Config
from aniworld_daemon.errors import StorageError
from aniworld_daemon.events import Event, EventBus, EventType, ScanProgress
from aniworld_daemon.models import Episode, EpisodeState, ScanReport, Series
from aniworld_daemon.naming import NamingTemplate
from aniworld_daemon.provider.aniworld import AniworldProvider
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.rescan import Rescanner, ScanResult, SeriesScan
from aniworld_daemon.series import SeriesManager
from aniworld_daemon.store.database import Database


@dataclass(frozen=True, slots=True)
class Components:
    """What the library commands work with: the daemon's store, provider, series manager and rescanner."""

    db: Database
    bus: EventBus
    http: HttpClient
    provider: AniworldProvider
    series: SeriesManager
    rescanner: Rescanner


@asynccontextmanager
async def open_components(config: Config) -> AsyncIterator[Components]:
    """The store, HTTP client and managers of the configured data dir, with the YAML `series:` list applied.

    Like the daemon's start, this creates the data dir and the library folder when they do not exist yet.
    """
    try:
        await asyncio.to_thread(config.library.path.mkdir, parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create the library {config.library.path}: {err.strerror or err}") from err
    db = Database(config.data_dir / DB_FILE)
    await db.open()
    try:
        async with HttpClient(config.provider) as http:
            bus = EventBus()
            provider = AniworldProvider(http, config.provider.base_url)
            series = SeriesManager(db, provider, bus, NamingTemplate(config.library.naming))
            await series.sync_config(config.series)
            yield Components(db, bus, http, provider, series, Rescanner(db, provider, bus, series, config))
            await bus.drain()
    finally:
        await db.close()


async def scan(config: Config, keys: Sequence[str], *, dry_run: bool, progress: TextIO | None = None) -> ScanResult:
    """Run one rescan in the foreground; progress (series n/N, requests, current series) goes to `progress`."""
    async with open_components(config) as parts:

        def show(event: Event) -> None:
            data = event.data
            if progress is not None and isinstance(data, ScanProgress):
                done = f"series {data.series_done}/{data.series_total}"
                line = f"{done} · {data.requests} requests · {data.current or ''}"
                progress.write(f"\r\033[K{line[:100]}")
                progress.flush()

        unsubscribe = parts.bus.subscribe(show, (EventType.SCAN_PROGRESS,))
        try:
            result = await parts.rescanner.rescan("cli", keys or None, dry_run=dry_run)
            await parts.bus.drain()
        finally:
            unsubscribe()
            if progress is not None:
                progress.write("\r\033[K")
                progress.flush()
        return result


async def series_rows(config: Config) -> list[tuple[Series, dict[EpisodeState, int]]]:
    """Every followed series with its episode counts per state."""
    async with open_components(config) as parts:
        rows = []
        for series in await parts.series.list():
            counts = dict.fromkeys(EpisodeState, 0)
            for episode in await parts.db.list_episodes(series.key):
                counts[episode.state] += 1
            rows.append((series, counts))
        return rows


# --- JSON ---------------------------------------------------------------------------------------------------------


def report_json(report: ScanReport) -> dict[str, Any]:
    """A scan report as JSON."""
    return {
        "id": report.id,
        "trigger": report.trigger,
        "status": report.status.value,
        "started_at": report.started_at.isoformat(),
        "finished_at": report.finished_at.isoformat() if report.finished_at else None,
        "series_checked": report.series_checked,
        "requests": report.requests,
        "new_episodes": report.new_episodes,
        "missing": report.missing,
        "errors": report.errors,
    }


def _episode_json(episode: Episode) -> dict[str, Any]:
    return {"season": episode.season, "episode": episode.number, "title": episode_title(episode)}


def scan_json(result: ScanResult) -> dict[str, Any]:
    """`scan --json`: the report and, per series, what is missing, awaiting a language and downloaded."""
    return {
        "report": report_json(result.report),
        "series": [
            {
                "key": outcome.key,
                "title": outcome.title,
                "folder": outcome.folder,
                "missing": [_episode_json(episode) for episode in outcome.missing],
                "awaiting_language": [_episode_json(episode) for episode in outcome.awaiting_language],
                "downloaded": outcome.downloaded,
                "error": outcome.error,
            }
            for outcome in result.series
        ],
    }


def series_json(rows: Sequence[tuple[Series, dict[EpisodeState, int]]]) -> list[dict[str, Any]]:
    """`list --json`: the followed series with their settings and episode counts."""
    return [
        {
            "key": series.key,
            "title": series.title,
            "folder": series.folder,
            "source": series.source.value,
            "monitored": series.monitored,
            "languages": [language.value for language in series.languages],
            "seasons": list(series.seasons) if series.seasons is not None else None,
            "year_start": series.year_start,
            "year_end": series.year_end,
            "episodes": {state.value: count for state, count in counts.items()},
        }
        for series, counts in rows
    ]


# --- text ---------------------------------------------------------------------------------------------------------


def episode_title(episode: Episode) -> str:
    """The title shown for an episode: German, else English."""
    return episode.title_de or episode.title_en


def _places(episodes: Sequence[Episode]) -> str:
    """Episode numbers as compact ranges per season: 'S01E01-E03, S01E07, S02E01'."""
    parts: list[str] = []
    run: list[Episode] = []
    for episode in [*episodes, None]:
        if run and (episode is None or episode.season != run[-1].season or episode.number != run[-1].number + 1):
            first, last = run[0], run[-1]
            width = max(2, len(str(last.number)))
            text = f"S{first.season:02d}E{first.number:0{width}d}"
            parts.append(text if first is last else f"{text}-E{last.number:0{width}d}")
            run = []
        if episode is not None:
            run.append(episode)
    return ", ".join(parts)


def scan_text(result: ScanResult, *, dry_run: bool = False) -> str:
    """`scan`: one row per series (missing, awaiting a language, downloaded), the missing episodes, the report."""
    report = result.report
    lines = [f"{'SERIES':<40} {'MISSING':>7} {'AWAITING':>8} {'ON DISK':>7}"]
    for outcome in result.series:
        lines.append(
            f"{_cut(outcome.title, 40):<40} {len(outcome.missing):>7} {len(outcome.awaiting_language):>8}"
            f" {outcome.downloaded:>7}"
        )
        lines += _details(outcome)
    lines.append("")
    total = sum(len(outcome.missing) for outcome in result.series)
    lines.append(
        f"Rescan {report.status.value}: {report.series_checked}/{len(result.series)} series checked, "
        f"{report.requests} requests, {report.new_episodes} new, {total} missing"
        + (" (dry run: nothing queued or written)" if dry_run else "")
    )
    return "\n".join(lines)


def _details(outcome: SeriesScan) -> list[str]:
    lines = []
    if outcome.error:
        lines.append(f"    error: {outcome.error}")
    if outcome.missing:
        lines.append(f"    missing: {_places(outcome.missing)}")
    if outcome.awaiting_language:
        lines.append(f"    awaiting a wanted language: {_places(outcome.awaiting_language)}")
    return lines


def series_text(rows: Sequence[tuple[Series, dict[EpisodeState, int]]]) -> str:
    """`list`: one row per followed series."""
    if not rows:
        return "No series followed yet. Add one with: aniworld-daemon add URL_OR_KEY"
    lines = [f"{'KEY':<32} {'TITLE':<36} {'ON DISK':>7} {'MISSING':>7}  SOURCE"]
    for series, counts in rows:
        paused = "" if series.monitored else " (not monitored)"
        lines.append(
            f"{_cut(series.key, 32):<32} {_cut(series.title, 36):<36} {counts[EpisodeState.DOWNLOADED]:>7}"
            f" {counts[EpisodeState.MISSING]:>7}  {series.source.value}{paused}"
        )
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def default_progress() -> TextIO | None:
    """Stderr when it is a terminal (progress lines would litter a log or a pipe)."""
    return sys.stderr if sys.stderr.isatty() else None
