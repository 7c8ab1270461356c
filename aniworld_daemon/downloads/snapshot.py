"""The queue as users see it: snapshot records, statistics, and the JSON and text shapes of the API and CLI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aniworld_daemon.downloads import ytdlp
from aniworld_daemon.models import Download, DownloadStatus, Language, Series

MB = 1_000_000


@dataclass(frozen=True, slots=True)
class ActiveDownload:
    """A download in progress: its item, the language and hoster in use, and its latest progress."""

    item: Download
    language: Language | None
    hoster: str | None
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
    pause_reason: str | None  # "user" or "low_disk_space"
    active: tuple[ActiveDownload, ...]
    pending: tuple[Download, ...]
    completed: tuple[Download, ...]
    failed: tuple[Download, ...]
    cancelled: tuple[Download, ...]
    statistics: QueueStatistics


def build_snapshot(
    items: Sequence[Download],
    active: Sequence[ActiveDownload],
    *,
    running: bool | None,
    paused: bool,
    reason: str | None,
) -> QueueSnapshot:
    """The snapshot of a queue: every stored item, the engine's live downloads, and the queue's state."""
    by_status: dict[DownloadStatus, list[Download]] = {status: [] for status in DownloadStatus}
    for item in items:
        by_status[item.status].append(item)
    known = {entry.item.id for entry in active}
    # Items another process (a foreground `download`) is working on are active too, without live progress.
    everything_active = list(active) + [
        ActiveDownload(item, item.language, item.hoster, None)
        for item in by_status[DownloadStatus.DOWNLOADING]
        if item.id not in known
    ]
    completed = by_status[DownloadStatus.COMPLETED]
    speeds = [entry.progress.speed_bps for entry in everything_active if entry.progress and entry.progress.speed_bps]
    done = sum(item.bytes_downloaded for item in completed) + sum(_done_bytes(entry) for entry in everything_active)
    statistics = QueueStatistics(
        total_items=len(items),
        pending_count=len(by_status[DownloadStatus.PENDING]),
        active_count=len(everything_active),
        completed_count=len(completed),
        failed_count=len(by_status[DownloadStatus.FAILED]),
        cancelled_count=len(by_status[DownloadStatus.CANCELLED]),
        total_downloaded_mb=round(done / MB, 2),
        average_speed_mbps=round(sum(speeds) / len(speeds) / MB, 3) if speeds else 0.0,
        estimated_time_remaining=_eta(
            everything_active, len(by_status[DownloadStatus.PENDING]), completed, sum(speeds)
        ),
    )
    return QueueSnapshot(
        is_running=running,
        is_paused=paused,
        pause_reason=reason,
        active=tuple(everything_active),
        pending=tuple(by_status[DownloadStatus.PENDING]),
        completed=tuple(completed),
        failed=tuple(by_status[DownloadStatus.FAILED]),
        cancelled=tuple(by_status[DownloadStatus.CANCELLED]),
        statistics=statistics,
    )


def _done_bytes(entry: ActiveDownload) -> int:
    return entry.progress.downloaded_bytes if entry.progress else entry.item.bytes_downloaded


def _eta(active: Sequence[ActiveDownload], pending: int, completed: Sequence[Download], speed: float) -> float | None:
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
        sizes = [item.bytes_downloaded for item in completed if item.bytes_downloaded]
        if not sizes:
            return None
        remaining += pending * sum(sizes) / len(sizes)
    return round(remaining / speed, 1)


# --- JSON: the shape of GET /api/queue/status (DESIGN section 10), also `queue --json` ---------------------------


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def item_json(item: Download, series: Mapping[str, Series], progress: ytdlp.Progress | None = None) -> dict[str, Any]:
    """One queue item; `series` gives its title and folder (a series gone from the map shows its key)."""
    known = series.get(item.series_key)
    return {
        "id": item.id,
        "serie_id": item.series_key,
        "serie_name": known.title if known else item.series_key,
        "serie_folder": known.folder if known else None,
        "season": item.season,
        "episode": item.number,
        "status": item.status.value,
        "priority": item.priority.value,
        "position": item.position,
        "language": item.language.value if item.language else None,
        "hoster": item.hoster,
        "attempts": item.attempts,
        "next_attempt_at": _time(item.next_attempt_at),
        "error": {"code": item.error_code, "message": item.error_message} if item.error_code else None,
        "progress": _progress_json(item, progress),
        "added_at": _time(item.created_at),
        "started_at": _time(item.started_at),
        "completed_at": _time(item.finished_at),
        "file_path": item.file_path,
    }


def _progress_json(item: Download, progress: ytdlp.Progress | None) -> dict[str, Any] | None:
    if progress is None:
        if item.status is not DownloadStatus.DOWNLOADING and not item.bytes_downloaded:
            return None
        total = item.bytes_total
        done = item.bytes_downloaded
        percent = round(100 * done / total, 1) if total else None
        return {
            "percent": percent,
            "downloaded_mb": round(done / MB, 2),
            "total_mb": _mb(total),
            "speed_mbps": None,
            "eta_seconds": None,
        }
    return {
        "percent": round(progress.percent, 1) if progress.percent is not None else None,
        "downloaded_mb": round(progress.downloaded_bytes / MB, 2),
        "total_mb": _mb(progress.total_bytes),
        "speed_mbps": round(progress.speed_bps / MB, 3) if progress.speed_bps is not None else None,
        "eta_seconds": round(progress.eta_seconds) if progress.eta_seconds is not None else None,
    }


def _mb(value: int | None) -> float | None:
    return round(value / MB, 2) if value is not None else None


def queue_json(snapshot: QueueSnapshot, series: Mapping[str, Series]) -> dict[str, Any]:
    """The queue: `{status: {...lists}, statistics: {...}}`."""
    stats = snapshot.statistics
    return {
        "status": {
            "is_running": snapshot.is_running,
            "is_paused": snapshot.is_paused,
            "pause_reason": snapshot.pause_reason,
            "active_downloads": [
                item_json(entry.item, series, entry.progress) | _live(entry) for entry in snapshot.active
            ],
            "pending_queue": [item_json(item, series) for item in snapshot.pending],
            "completed_downloads": [item_json(item, series) for item in snapshot.completed],
            "failed_downloads": [item_json(item, series) for item in snapshot.failed],
            "cancelled_downloads": [item_json(item, series) for item in snapshot.cancelled],
        },
        "statistics": {
            "total_items": stats.total_items,
            "pending_count": stats.pending_count,
            "active_count": stats.active_count,
            "completed_count": stats.completed_count,
            "failed_count": stats.failed_count,
            "cancelled_count": stats.cancelled_count,
            "total_downloaded_mb": stats.total_downloaded_mb,
            "average_speed_mbps": stats.average_speed_mbps,
            "estimated_time_remaining": stats.estimated_time_remaining,
        },
    }


def _live(entry: ActiveDownload) -> dict[str, Any]:
    # The language and hoster in use right now: the stored item learns them a moment later.
    return {"language": entry.language.value if entry.language else None, "hoster": entry.hoster}


# --- text: `queue` --------------------------------------------------------------------------------------------------


def queue_text(snapshot: QueueSnapshot, series: Mapping[str, Series]) -> str:
    """`queue`: active, pending, failed and finished items, one line each, then the figures."""
    lines: list[str] = []
    sections: list[tuple[str, Sequence[tuple[Download, ytdlp.Progress | None]]]] = [
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


def _line(item: Download, series: Mapping[str, Series], progress: ytdlp.Progress | None) -> str:
    known = series.get(item.series_key)
    name = known.title if known else item.series_key
    text = f"{item.id[:8]}  {name} S{item.season:02d}E{item.number:02d}  [{item.priority.value}]"
    if progress is not None and progress.percent is not None:
        text += f"  {progress.percent:.0f}%"
    if item.status is DownloadStatus.PENDING and item.next_attempt_at is not None:
        text += f"  next try {item.next_attempt_at.astimezone().strftime('%Y-%m-%d %H:%M:%S')}"
    if item.error_message and item.status is not DownloadStatus.COMPLETED:
        text += f"  ({item.attempts} attempt(s); {item.error_message})"
    if item.file_path:
        text += f"  -> {item.file_path}"
    return text
