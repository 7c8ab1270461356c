"""The queue's CLI commands: `download` (in the foreground, with progress) and `queue` (the stored queue)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from aniworld_daemon import wire
from aniworld_daemon.app import Application
from aniworld_daemon.cli.output import place
from aniworld_daemon.config import Config
from aniworld_daemon.downloads.snapshot import QueueSnapshot
from aniworld_daemon.downloads.ytdlp import Progress
from aniworld_daemon.errors import NotFoundError
from aniworld_daemon.events import (
    DownloadComplete,
    DownloadFailed,
    DownloadProgress,
    DownloadStarted,
    Event,
    EventData,
)
from aniworld_daemon.library import library_path, scan_folder
from aniworld_daemon.models import MB, Download, DownloadStatus, Priority, Series
from aniworld_daemon.naming import NamingTemplate
from aniworld_daemon.provider.aniworld import normalize_key
from aniworld_daemon.series import naming_of

Place = tuple[int, int]  # (season, episode)


@dataclass(frozen=True, slots=True)
class DownloadRun:
    """What a foreground `download` did."""

    series: Series
    followed: bool  # the command started following the series (not monitored: no automatic downloads)
    on_disk: tuple[Place, ...]  # asked for, but already in the library
    already_queued: tuple[Place, ...]  # asked for, but already in the daemon's queue: the daemon downloads them
    items: tuple[Download, ...]  # what this run downloaded, in their final state

    @property
    def ok(self) -> bool:
        """True when every item of this run completed."""
        return all(item.status is DownloadStatus.COMPLETED for item in self.items)


async def download(
    config: Config,
    url_or_key: str,
    *,
    season: int | None = None,
    episode: int | None = None,
    progress: TextIO | None = None,
) -> DownloadRun:
    """Download a series' missing episodes (or one season, or one episode) now, in the foreground.

    A series not followed yet is followed, not monitored; the episodes are queued with high priority, and the queue
    engine works on these items only, so a daemon running on the same queue keeps its own.
    """
    key = normalize_key(url_or_key, config.provider.base_url)
    async with Application(config).components() as app:
        series = await app.series.find(key)
        followed = series is None
        if series is None:
            series = await app.commands.call("series.follow", {"series": key, "monitored": False})
        info = await app.provider.series(key)
        if not series.folder:
            series = await app.series.refresh_metadata(series, info)
        if season is not None:
            seasons: Sequence[int] = [season]
        else:
            seasons = series.seasons if series.seasons is not None else info.seasons
        places: list[Place] = []
        for number in seasons:
            page = await app.provider.season(key, number)
            places += [(item.season, item.number) for item in page.episodes if episode in (None, item.number)]
        if not places:
            what = f"S{season or 0:02d}E{episode:02d}" if episode is not None else "no episodes"
            raise NotFoundError(f"{series.title} has {what} on the site", details={"key": key})
        on_disk = await asyncio.to_thread(_on_disk, config.library.path, app.series.template, series)
        wanted = [entry for entry in places if entry not in on_disk]
        episodes = [{"season": number, "episode": item} for number, item in wanted]
        added: list[Download] = await app.commands.call(
            "queue.add", {"series": key, "episodes": episodes, "priority": Priority.HIGH.value}
        )
        queued = {(item.season, item.number) for item in added}
        printer = _Printer(progress, added)
        unsubscribe = app.bus.subscribe(printer)
        await app.downloader.start(only=[item.id for item in added])
        try:
            await app.downloader.wait_idle()
        finally:
            # Interrupted (Ctrl-C): the items go back to pending, partial files kept; the daemon resumes them.
            await app.downloader.stop()
            await app.bus.drain()
            unsubscribe()
            printer.close()
        finals = [await app.downloader.get(item.id) for item in added]
        return DownloadRun(
            series=series,
            followed=followed,
            on_disk=tuple(entry for entry in places if entry in on_disk),
            already_queued=tuple(entry for entry in wanted if entry not in queued),
            items=tuple(item for item in finals if item is not None),
        )


def _on_disk(root: Path, template: NamingTemplate, series: Series) -> set[Place]:
    if not series.folder or not library_path(root, series.folder).is_dir():
        return set()
    scan = scan_folder(root, series.folder, template, naming_of(series))
    return {(file.season, file.number) for file in scan.files}


class _Printer:
    """Progress of a foreground download on a terminal: one live line for the active episodes, one line per result."""

    def __init__(self, out: TextIO | None, items: Sequence[Download]) -> None:
        self._out = out
        self._labels = {item.id: place(item.season, item.number) for item in items}
        self._live: dict[str, str] = {}

    def __call__(self, event: Event[EventData]) -> None:
        """Update the live line, or print a finished episode."""
        data = event.data
        if self._out is None:
            return
        if isinstance(data, DownloadStarted) and data.item_id in self._labels:
            self._live[data.item_id] = f"{self._labels[data.item_id]} {data.hoster} …"
        elif isinstance(data, DownloadProgress) and data.item_id in self._labels:
            self._live[data.item_id] = f"{self._labels[data.item_id]} {_bar(data.percent)} {_rate(data.speed_bps)}"
        elif isinstance(data, DownloadComplete) and data.item_id in self._labels:
            self._live.pop(data.item_id, None)
            label = self._labels[data.item_id]
            self._line(f"{label} done -> {data.file_path} ({data.size_bytes / MB:.1f} MB)")
        elif isinstance(data, DownloadFailed) and data.item_id in self._labels:
            self._live.pop(data.item_id, None)
            retry = f", next try at {data.next_attempt_at:%H:%M:%S}" if data.will_retry and data.next_attempt_at else ""
            self._line(f"{self._labels[data.item_id]} failed: {data.error_message}{retry}")
        else:
            return
        self._redraw()

    def _line(self, text: str) -> None:
        if self._out is not None:
            self._out.write(f"\r\033[K{text}\n")

    def _redraw(self) -> None:
        if self._out is not None:
            self._out.write("\r\033[K" + " | ".join(self._live.values())[:150])
            self._out.flush()

    def close(self) -> None:
        """Clear the live line."""
        if self._out is not None:
            self._out.write("\r\033[K")
            self._out.flush()


def _bar(percent: float | None, width: int = 20) -> str:
    if percent is None:
        return "[" + "?" * width + "]"
    filled = round(width * min(max(percent, 0.0), 100.0) / 100)
    return f"[{'#' * filled}{'-' * (width - filled)}] {percent:5.1f}%"


def _rate(speed: float | None) -> str:
    return f"{speed / MB:.2f} MB/s" if speed else ""


def run_text(run: DownloadRun, config: Config) -> str:
    """`download`: what was downloaded, where, and what was skipped or failed."""
    lines: list[str] = []
    if run.followed:
        lines.append(f"Now following {run.series.title} ({run.series.key}), not monitored: no automatic downloads")
    folder = config.library.path / run.series.folder
    completed = [item for item in run.items if item.status is DownloadStatus.COMPLETED]
    failed = [item for item in run.items if item.status is not DownloadStatus.COMPLETED]
    if completed:
        lines.append(f"Downloaded {len(completed)} episode(s) into {folder}:")
        lines += [f"  {place(item.season, item.number)}  {item.file_path}" for item in completed]
    for item in failed:
        state = "still queued" if item.status is DownloadStatus.PENDING else item.status.value
        lines.append(f"  {place(item.season, item.number)}  {state}: {item.error_message or 'interrupted'}")
    if run.on_disk:
        lines.append("Already in the library: " + ", ".join(place(*entry) for entry in run.on_disk))
    if run.already_queued:
        lines.append("Already in the daemon's queue: " + ", ".join(place(*entry) for entry in run.already_queued))
    if not run.items and not lines:
        lines.append("Nothing to download.")
    return "\n".join(lines)


async def snapshot(config: Config) -> tuple[QueueSnapshot, dict[str, Series]]:
    """The stored queue of the configured data dir (read-only: works next to a running daemon)."""
    async with Application(config).components() as app:
        return await app.downloader.status(), {entry.key: entry for entry in await app.series.list()}


def run_json(run: DownloadRun) -> dict[str, Any]:
    """`download --json`."""
    return wire.run_json(run.series, run.followed, run.on_disk, run.already_queued, run.items)


# --- `queue` --------------------------------------------------------------------------------------------------


def queue_text(snapshot: QueueSnapshot, series: Mapping[str, Series]) -> str:
    """`queue`: active, pending, failed and finished items, one line each, then the figures."""
    lines: list[str] = []
    sections: list[tuple[str, Sequence[tuple[Download, Progress | None]]]] = [
        ("Downloading", [(entry.item, entry.progress) for entry in snapshot.active]),
        ("Pending", [(item, None) for item in snapshot.pending]),
        ("Failed", [(item, None) for item in snapshot.failed]),
        ("Cancelled", [(item, None) for item in snapshot.cancelled]),
        ("Completed", [(item, None) for item in snapshot.completed]),
    ]
    for title, rows in sections:
        if not rows:
            continue
        lines.append(f"{title} ({len(rows)}):")
        lines += [f"  {_line(item, series, progress)}" for item, progress in rows]
    if not lines:
        lines.append("The queue is empty.")
    stats = snapshot.statistics
    state = {True: "running", False: "stopped", None: "state unknown (see the daemon)"}[snapshot.is_running]
    if snapshot.is_paused:
        state += f", paused ({snapshot.pause_reason})" if snapshot.pause_reason else ", paused"
    lines.append("")
    lines.append(
        f"Queue {state}: {stats.pending_count} pending, {stats.active_count} active, {stats.completed_count} completed,"
        f" {stats.failed_count} failed; {stats.total_downloaded_mb:.1f} MB downloaded"
    )
    return "\n".join(lines)


def _line(item: Download, series: Mapping[str, Series], progress: Progress | None) -> str:
    known = series.get(item.series_key)
    name = known.title if known else item.series_key
    text = f"{item.id[:8]}  {name} {place(item.season, item.number)}  [{item.priority.value}]"
    if progress is not None and progress.percent is not None:
        text += f"  {progress.percent:.0f}%"
    if item.status is DownloadStatus.PENDING and item.next_attempt_at is not None:
        text += f"  next try {item.next_attempt_at.astimezone().strftime('%Y-%m-%d %H:%M:%S')}"
    if item.error_message and item.status is not DownloadStatus.COMPLETED:
        text += f"  ({item.attempts} attempt(s); {item.error_message})"
    if item.file_path:
        text += f"  -> {item.file_path}"
    return text
