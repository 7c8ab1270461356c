"""The queue as users see it: the snapshot of every item with the live downloads, and its statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aniworld_daemon.downloads import ytdlp
from aniworld_daemon.models import MB, Download, DownloadStatus, PauseReason


@dataclass(frozen=True, slots=True)
class ActiveDownload:
    """A download in progress: its item (with the language and hoster in use) and its latest progress."""

    item: Download
    progress: ytdlp.Progress | None


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """Figures over the whole queue (sizes in MB of 10^6 bytes, speeds in MB/s, times in seconds)."""

    total_items: int
    pending_count: int
    active_count: int
    completed_count: int
    failed_count: int
    cancelled_count: int
    total_downloaded_mb: float
    average_speed_mbps: float
    estimated_time_remaining: float | None


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """The queue as the API, MQTT and the CLI show it."""

    is_running: bool | None  # None: unknown (read from the database by another process)
    is_paused: bool
    pause_reason: PauseReason | None
    active: tuple[ActiveDownload, ...]
    pending: tuple[Download, ...]
    completed: tuple[Download, ...]
    failed: tuple[Download, ...]
    cancelled: tuple[Download, ...]
    statistics: QueueStatistics


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """What the statistics need of the stored queue, without its rows: counts, and the completed items' sizes."""

    counts: Mapping[DownloadStatus, int]
    completed_bytes: int  # sum of bytes_downloaded of the completed items
    completed_sized: int  # how many completed items have a size (for the average episode size)


def figures_of(items: Sequence[Download]) -> QueueFigures:
    """QueueFigures computed from every stored item."""
    counts = dict.fromkeys(DownloadStatus, 0)
    for item in items:
        counts[item.status] += 1
    sizes = [
        item.bytes_downloaded for item in items if item.status is DownloadStatus.COMPLETED and item.bytes_downloaded
    ]
    return QueueFigures(counts, sum(sizes), len(sizes))


def build_snapshot(
    items: Sequence[Download],
    active: Sequence[ActiveDownload],
    *,
    running: bool | None,
    paused: bool,
    reason: PauseReason | None,
    figures: QueueFigures | None = None,
) -> QueueSnapshot:
    """The snapshot of a queue: the stored items (all, or the first of each status), the live downloads, the state.

    `figures`: the whole queue's counts and sizes when `items` holds only the first items of each status (a capped
    view of a big queue); computed from `items` when not given.
    """
    figures = figures or figures_of(items)
    by_status: dict[DownloadStatus, list[Download]] = {status: [] for status in DownloadStatus}
    for item in items:
        by_status[item.status].append(item)
    known = {entry.item.id for entry in active}
    # Items another process (a foreground `download`) is working on are active too, without live progress.
    everything_active = list(active) + [
        ActiveDownload(item, None) for item in by_status[DownloadStatus.DOWNLOADING] if item.id not in known
    ]
    active_count = max(figures.counts[DownloadStatus.DOWNLOADING], len(everything_active))
    pending = figures.counts[DownloadStatus.PENDING]
    speeds = [entry.progress.speed_bps for entry in everything_active if entry.progress and entry.progress.speed_bps]
    done = figures.completed_bytes + sum(_done_bytes(entry) for entry in everything_active)
    average = figures.completed_bytes / figures.completed_sized if figures.completed_sized else None
    statistics = QueueStatistics(
        total_items=sum(figures.counts.values()),
        pending_count=pending,
        active_count=active_count,
        completed_count=figures.counts[DownloadStatus.COMPLETED],
        failed_count=figures.counts[DownloadStatus.FAILED],
        cancelled_count=figures.counts[DownloadStatus.CANCELLED],
        total_downloaded_mb=round(done / MB, 2),
        average_speed_mbps=round(sum(speeds) / len(speeds) / MB, 3) if speeds else 0.0,
        estimated_time_remaining=_eta(everything_active, pending, average, sum(speeds)),
    )
    return QueueSnapshot(
        is_running=running,
        is_paused=paused,
        pause_reason=reason,
        active=tuple(everything_active),
        pending=tuple(by_status[DownloadStatus.PENDING]),
        completed=tuple(by_status[DownloadStatus.COMPLETED]),
        failed=tuple(by_status[DownloadStatus.FAILED]),
        cancelled=tuple(by_status[DownloadStatus.CANCELLED]),
        statistics=statistics,
    )


def _done_bytes(entry: ActiveDownload) -> int:
    return entry.progress.downloaded_bytes if entry.progress else entry.item.bytes_downloaded


def _eta(active: Sequence[ActiveDownload], pending: int, average: float | None, speed: float) -> float | None:
    """Seconds until the queue is empty at the current total speed (None when nothing runs or sizes are unknown)."""
    if speed <= 0:
        return None
    remaining = 0.0
    for entry in active:
        progress = entry.progress
        if progress is None or progress.total_bytes is None:
            return None
        remaining += max(progress.total_bytes - progress.downloaded_bytes, 0)
    if pending:
        if average is None:
            return None
        remaining += pending * average
    return round(remaining / speed, 1)
