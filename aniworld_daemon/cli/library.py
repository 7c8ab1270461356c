"""The library's CLI commands (`add`, `remove`, `list`, `scan`, `scans`): through the daemon's parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from aniworld_daemon.app import Application
from aniworld_daemon.cli.output import cut
from aniworld_daemon.config import Config
from aniworld_daemon.events import Event, ScanProgress
from aniworld_daemon.models import Episode, EpisodeState, ScanReport, Series
from aniworld_daemon.rescan import ScanResult, SeriesScan


async def follow(config: Config, url_or_key: str, *, languages: Sequence[str], seasons: Sequence[int]) -> Series:
    """`add`: follow a series (languages and seasons may repeat; each counts once)."""
    arguments = {
        "series": url_or_key,
        "languages": list(dict.fromkeys(languages)) or None,
        "seasons": sorted(set(seasons)) or None,
    }
    async with Application(config).components() as app:
        series: Series = await app.commands.call("series.follow", arguments)
    return series


async def unfollow(config: Config, key: str) -> Series:
    """`remove`: stop following a series."""
    async with Application(config).components() as app:
        series: Series = await app.commands.call("series.unfollow", {"key": key})
    return series


async def scan(config: Config, keys: Sequence[str], *, dry_run: bool, progress: TextIO | None = None) -> ScanResult:
    """Run one rescan in the foreground; progress (series n/N, requests, current series) goes to `progress`.

    It reports what is missing and leaves the queueing to the daemon's own rescans.
    """
    async with Application(config).components() as app:

        def show(event: Event[ScanProgress]) -> None:
            data = event.data
            if progress is not None:
                done = f"series {data.series_done}/{data.series_total}"
                line = f"{done} · {data.requests} requests · {data.current or ''}"
                progress.write(f"\r\033[K{line[:100]}")
                progress.flush()

        unsubscribe = app.bus.subscribe(show, ScanProgress)
        try:
            arguments = {
                "keys": list(dict.fromkeys(keys)) or None,
                "dry_run": dry_run,
                "queue_missing": False,
                "trigger": "cli",
            }
            result: ScanResult = await app.commands.call("rescan", arguments)
            await app.bus.drain()
        finally:
            unsubscribe()
            if progress is not None:
                progress.write("\r\033[K")
                progress.flush()
        return result


async def series_rows(config: Config) -> list[tuple[Series, dict[EpisodeState, int]]]:
    """Every followed series with its episode counts per state."""
    async with Application(config).components() as app:
        rows = []
        for series in await app.series.list():
            counts = dict.fromkeys(EpisodeState, 0)
            for episode in await app.series.episodes(series.key):
                counts[episode.state] += 1
            rows.append((series, counts))
        return rows


# --- text ---------------------------------------------------------------------------------------------------------


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
            f"{cut(outcome.title, 40):<40} {len(outcome.missing):>7} {len(outcome.awaiting_language):>8}"
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
            f"{cut(series.key, 32):<32} {cut(series.title, 36):<36} {counts[EpisodeState.DOWNLOADED]:>7}"
            f" {counts[EpisodeState.MISSING]:>7}  {series.source.value}{paused}"
        )
    return "\n".join(lines)


# --- `scans` ---------------------------------------------------------------------------------------------------------


async def scan_reports(config: Config, limit: int) -> list[ScanReport]:
    """The latest stored scan reports, newest first (read-only: works next to a running daemon)."""
    async with Application(config).components() as app:
        return await app.db.list_scans(limit)


def reports_text(reports: Sequence[ScanReport]) -> str:
    """`scans`: one line per report, then its errors indented."""
    if not reports:
        return "No rescan has run yet."
    lines = []
    for report in reports:
        took = (
            f", {(report.finished_at - report.started_at).total_seconds():.1f} s"
            if report.finished_at is not None
            else ""
        )
        missing = sum(report.missing.values())
        lines.append(
            f"{report.started_at.astimezone():%Y-%m-%d %H:%M:%S}  {report.trigger:<8} {report.status.value:<11} "
            f"{report.series_checked} series · {report.requests} requests · {report.new_episodes} new · "
            f"{missing} missing{took}"
        )
        lines += [f"    {key or 'scan'}: {message}" for key, message in sorted(report.errors.items())]
    return "\n".join(lines)
