"""The queue's CLI commands: `download` (in the foreground, with progress) and `queue` (the stored queue)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from aniworld_daemon.app import DB_FILE
from aniworld_daemon.cli.library import open_components
from aniworld_daemon.config import Config
from aniworld_daemon.downloads.engine import PAUSED_SETTING, Downloader
from aniworld_daemon.downloads.snapshot import MB, QueueSnapshot, build_snapshot
from aniworld_daemon.errors import NotFoundError
from aniworld_daemon.events import (
    DownloadComplete,
    DownloadFailed,
    DownloadProgress,
    DownloadStarted,
    Event,
)
from aniworld_daemon.library import library_path, scan_folder
from aniworld_daemon.models import Download, DownloadStatus, Priority, Series
from aniworld_daemon.naming import NamingTemplate
from aniworld_daemon.provider.aniworld import normalize_key
from aniworld_daemon.series import naming_of
from aniworld_daemon.store.database import Database

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
    """Download a series' missing episodes (or one season, or one episode) now, in the foreground."""
    key = normalize_key(url_or_key)
    async with open_components(config) as parts:
        db, http, provider, bus, manager = parts.db, parts.http, parts.provider, parts.bus, parts.series
        series = await db.get_series(key)
        followed = series is None
        if series is None:
            series = await manager.follow(key, monitored=False)
        info = await provider.series(key)
        if not series.folder:
            series = await manager.refresh_metadata(series, info)
        if season is not None:
            seasons: Sequence[int] = [season]
        else:
            seasons = series.seasons if series.seasons is not None else info.seasons
        places: list[Place] = []
        for number in seasons:
            page = await provider.season(key, number)
            places += [(item.season, item.number) for item in page.episodes if episode in (None, item.number)]
        if not places:
            what = f"S{season or 0:02d}E{episode:02d}" if episode is not None else "no episodes"
            raise NotFoundError(f"{series.title} has {what} on the site", details={"key": key})
        on_disk = await asyncio.to_thread(_on_disk, config, series)
        wanted = [place for place in places if place not in on_disk]
        engine = Downloader(db, provider, http, bus, manager, config, only=())
        added = await engine.add(key, wanted, Priority.HIGH)
        queued = {(item.season, item.number) for item in added}
        printer = _Printer(progress, added)
        unsubscribe = bus.subscribe(printer)
        await engine.start()
        try:
            await engine.wait_idle()
        finally:
            # Interrupted (Ctrl-C): the items go back to pending, partial files kept; the daemon resumes them.
            await engine.stop()
            await bus.drain()
            unsubscribe()
            printer.close()
        finals = [await db.get_download(item.id) for item in added]
        return DownloadRun(
            series=series,
            followed=followed,
            on_disk=tuple(place for place in places if place in on_disk),
            already_queued=tuple(place for place in wanted if place not in queued),
            items=tuple(item for item in finals if item is not None),
        )


def _on_disk(config: Config, series: Series) -> set[Place]:
    root = config.library.path
    if not series.folder or not library_path(root, series.folder).is_dir():
        return set()
    scan = scan_folder(root, series.folder, NamingTemplate(config.library.naming), naming_of(series))
    return {(file.season, file.number) for file in scan.files}


class _Printer:
    """Progress of a foreground download on a terminal: one live line for the active episodes, one line per result."""

    def __init__(self, out: TextIO | None, items: Sequence[Download]) -> None:
        self._out = out
        self._labels = {item.id: f"S{item.season:02d}E{item.number:02d}" for item in items}
        self._live: dict[str, str] = {}

    def __call__(self, event: Event) -> None:
        """Update the live line, or print a finished episode."""
        data = event.data
        if self._out is None or getattr(data, "item_id", None) not in self._labels:
            return
        label = self._labels[data.item_id]  # type: ignore[attr-defined]
        if isinstance(data, DownloadStarted):
            self._live[data.item_id] = f"{label} {data.hoster} …"
        elif isinstance(data, DownloadProgress):
            self._live[data.item_id] = f"{label} {_bar(data.percent)} {_rate(data.speed_bps)}"
        elif isinstance(data, DownloadComplete):
            self._live.pop(data.item_id, None)
            self._line(f"{label} done -> {data.file_path} ({data.size_bytes / MB:.1f} MB)")
        elif isinstance(data, DownloadFailed):
            self._live.pop(data.item_id, None)
            retry = f", next try at {data.next_attempt_at:%H:%M:%S}" if data.will_retry and data.next_attempt_at else ""
            self._line(f"{label} failed: {data.error_message}{retry}")
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
        lines += [f"  {_place((item.season, item.number))}  {item.file_path}" for item in completed]
    for item in failed:
        state = "still queued" if item.status is DownloadStatus.PENDING else item.status.value
        lines.append(f"  {_place((item.season, item.number))}  {state}: {item.error_message or 'interrupted'}")
    if run.on_disk:
        lines.append("Already in the library: " + ", ".join(_place(place) for place in run.on_disk))
    if run.already_queued:
        lines.append("Already in the daemon's queue: " + ", ".join(_place(place) for place in run.already_queued))
    if not run.items and not lines:
        lines.append("Nothing to download.")
    return "\n".join(lines)


def run_json(run: DownloadRun) -> dict[str, Any]:
    """`download --json`."""
    return {
        "key": run.series.key,
        "title": run.series.title,
        "followed": run.followed,
        "on_disk": [{"season": season, "episode": number} for season, number in run.on_disk],
        "already_queued": [{"season": season, "episode": number} for season, number in run.already_queued],
        "items": [
            {
                "id": item.id,
                "season": item.season,
                "episode": item.number,
                "status": item.status.value,
                "file_path": item.file_path,
                "hoster": item.hoster,
                "language": item.language.value if item.language else None,
                "error": {"code": item.error_code, "message": item.error_message} if item.error_code else None,
            }
            for item in run.items
        ],
    }


def _place(place: Place) -> str:
    return f"S{place[0]:02d}E{place[1]:02d}"


async def snapshot(config: Config) -> tuple[QueueSnapshot, dict[str, Series]]:
    """The stored queue of the configured data dir (read-only: works next to a running daemon)."""
    db = Database(config.data_dir / DB_FILE)
    await db.open()
    try:
        items = await db.list_downloads()
        paused = bool(await db.get_setting(PAUSED_SETTING, False))
        series = {entry.key: entry for entry in await db.list_series()}
    finally:
        await db.close()
    return build_snapshot(items, (), running=None, paused=paused, reason="user" if paused else None), series
