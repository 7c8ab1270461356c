"""Every JSON shape the daemon serves or prints: one function per shape, plain data in, plain JSON out, no I/O.

Sizes are MB of 10^6 bytes and speeds MB/s everywhere (DESIGN section 12). The CLI's `--json` output, the REST API,
the WebSocket and MQTT all take their shapes from here, so a shape changes in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from datetime import time as dt_time
from enum import Enum
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from aniworld_daemon.models import (
    MB,
    Download,
    DownloadStatus,
    Episode,
    EpisodeState,
    HistoryEntry,
    ScanReport,
    Series,
)
from aniworld_daemon.provider.hosters import hoster_key

if TYPE_CHECKING:
    from aniworld_daemon.config import Config
    from aniworld_daemon.downloads.snapshot import ActiveDownload, QueueSnapshot
    from aniworld_daemon.downloads.ytdlp import Progress
    from aniworld_daemon.errors import AniworldError
    from aniworld_daemon.events import Event, EventData
    from aniworld_daemon.health import HealthReport
    from aniworld_daemon.provider.records import (
        EpisodePage,
        EpisodeSummary,
        Resolution,
        SearchResult,
        SeasonPage,
        SeriesInfo,
    )
    from aniworld_daemon.rescan import ScanResult
    from aniworld_daemon.scheduler import ScheduleState
    from aniworld_daemon.store.backups import Backup, Restored


def jsonable(value: Any) -> Any:
    """Dataclass-dict values made JSON-safe.

    Enums by value, datetimes and clock times in ISO 8601, durations in seconds, paths as text, tuples and sets as
    lists.
    """
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(item) for item in value), key=str)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | dt_time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return str(value)
    return value


# --- events (WebSocket, MQTT) -------------------------------------------------------------------------------------


def event_json(event: Event[EventData]) -> dict[str, Any]:
    """An event on the wire: `{type, seq, timestamp, data}`."""
    return {
        "type": event.type.value,
        "seq": event.seq,
        "timestamp": event.timestamp.isoformat(),
        "data": jsonable(dataclasses.asdict(event.data)),
    }


# --- HTTP: errors and health --------------------------------------------------------------------------------------


def error_json(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The API's error body: `{"error": {code, message, details}}`."""
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def health_json(report: HealthReport, version: str) -> dict[str, Any]:
    """`GET /health`: the overall status and version, and the problems when there are any."""
    body: dict[str, Any] = {"status": report.status.value, "version": version}
    if report.problems:
        body["problems"] = list(report.problems)
    return body


# --- the site: `search`, `info`, `episode` --------------------------------------------------------------------------


def search_json(query: str, results: Sequence[SearchResult]) -> dict[str, Any]:
    """`search --json`."""
    return {
        "query": query,
        "results": [
            {
                "key": result.key,
                "title": result.title,
                "url": result.url,
                "description": result.description,
                "cover_url": result.cover_url,
                "start_year": result.start_year,
                "end_year": result.end_year,
            }
            for result in results
        ],
    }


def info_json(series: SeriesInfo, seasons: Sequence[SeasonPage]) -> dict[str, Any]:
    """`info --json`."""
    return {
        "key": series.key,
        "url": series.url,
        "title": series.title,
        "alternative_titles": list(series.alternative_titles),
        "start_year": series.start_year,
        "end_year": series.end_year,
        "description": series.description,
        "cover_url": series.cover_url,
        "genres": list(series.genres),
        "fsk": series.fsk,
        "imdb_id": series.imdb_id,
        "seasons": [
            {"season": page.season, "url": page.url, "episodes": [_summary_json(item) for item in page.episodes]}
            for page in seasons
        ],
    }


def _summary_json(item: EpisodeSummary) -> dict[str, Any]:
    return {
        "season": item.season,
        "number": item.number,
        "url": item.url,
        "title_de": item.title_de,
        "title_en": item.title_en,
        "languages": [language.value for language in item.languages],
        "hosters": [hoster_key(name) for name in item.hosters],
    }


def episode_json(page: EpisodePage, resolutions: Sequence[Resolution] = ()) -> dict[str, Any]:
    """`episode --json` (with `--resolve`: every hoster also has `embed_url` and `media` or `error`)."""
    resolved = {item.link: item for item in resolutions}
    hosters = []
    for link in page.hosters:
        entry: dict[str, Any] = {
            "language": link.language.value,
            "hoster": hoster_key(link.name),
            "name": link.name,
            "link_id": link.link_id,
            "redirect_url": link.redirect_url,
        }
        item = resolved.get(link)
        if item is not None:
            entry["embed_url"] = item.embed_url
            if item.media is not None:
                entry["media"] = {
                    "url": item.media.url,
                    "kind": item.media.kind.value,
                    "headers": dict(item.media.headers),
                }
            if item.error is not None:
                entry["error"] = {"code": item.error.code, "message": item.error.message}
        hosters.append(entry)
    return {
        "key": page.key,
        "season": page.season,
        "number": page.number,
        "url": page.url,
        "title_de": page.title_de,
        "title_en": page.title_en,
        "languages": [language.value for language in page.languages],
        "hosters": hosters,
    }


# --- the library: `list`, `scan`, scan reports ----------------------------------------------------------------------


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
    return {"season": episode.season, "episode": episode.number, "title": episode.display_title}


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


# --- the queue: GET /api/queue/status (DESIGN section 10), `queue --json`, `download --json` ------------------------


def _time(value: datetime | None) -> str | None:
    """A time in ISO 8601, or None."""
    return value.isoformat() if value else None


def item_json(item: Download, series: Mapping[str, Series], progress: Progress | None = None) -> dict[str, Any]:
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


def _progress_json(item: Download, progress: Progress | None) -> dict[str, Any] | None:
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
            "pause_reason": snapshot.pause_reason.value if snapshot.pause_reason else None,
            "active_downloads": [item_json(entry.item, series, entry.progress) for entry in snapshot.active],
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


def run_json(
    series: Series,
    followed: bool,
    on_disk: Sequence[tuple[int, int]],
    already_queued: Sequence[tuple[int, int]],
    items: Sequence[Download],
) -> dict[str, Any]:
    """`download --json`: what a foreground download did."""
    return {
        "key": series.key,
        "title": series.title,
        "followed": followed,
        "on_disk": [{"season": season, "episode": number} for season, number in on_disk],
        "already_queued": [{"season": season, "episode": number} for season, number in already_queued],
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
            for item in items
        ],
    }


# --- the REST API: series (`/api/anime`), history, the health checks, sessions -------------------------------------


def anime_json(series: Series, episodes: Sequence[Episode], link: str) -> dict[str, Any]:
    """One followed series for `GET /api/anime`: its settings, counts, and the episodes not in the library.

    `missing_episodes` lists them per season, whether queued already or not.
    """
    missing: dict[str, list[int]] = {}
    counts = dict.fromkeys((state.value for state in EpisodeState), 0)
    for episode in episodes:
        counts[episode.state.value] += 1
        # Missing from the library, whether queued yet or not (waiting for a language is counted apart).
        if episode.state in (EpisodeState.MISSING, EpisodeState.QUEUED):
            missing.setdefault(str(episode.season), []).append(episode.number)
    return {
        "key": series.key,
        "name": series.title,
        "site": series.site,
        "folder": series.folder,
        "link": link,
        "monitored": series.monitored,
        "source": series.source.value,
        "languages": [language.value for language in series.languages],
        "seasons": list(series.seasons) if series.seasons is not None else None,
        "year_start": series.year_start,
        "year_end": series.year_end,
        "missing_episodes": {season: sorted(numbers) for season, numbers in sorted(missing.items())},
        "episodes": counts,
    }


def anime_detail_json(series: Series, episodes: Sequence[Episode], link: str) -> dict[str, Any]:
    """`GET /api/anime/{key}`: the series' metadata and every episode with its state."""
    return {
        **anime_json(series, episodes, link),
        "description": series.description,
        "genres": list(series.genres),
        "imdb_id": series.imdb_id,
        "fsk": series.fsk,
        "cover_url": series.cover_url,
        "alternative_titles": list(series.alternative_titles),
        "episode_list": [
            {
                "season": episode.season,
                "episode": episode.number,
                "title_de": episode.title_de,
                "title_en": episode.title_en,
                "languages": [language.value for language in episode.languages],
                "state": episode.state.value,
                "file_path": episode.file_path,
                "file_size": episode.file_size,
            }
            for episode in episodes
        ],
    }


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    """One history row."""
    return {
        "id": entry.id,
        "kind": entry.kind.value,
        "created_at": entry.created_at.isoformat(),
        "message": entry.message,
        "series_key": entry.series_key,
        "season": entry.season,
        "episode": entry.number,
        "data": jsonable(entry.data),
    }


def system_status_json(
    report: HealthReport, version: str, uptime: float, last_scan: ScanReport | None, schedule: ScheduleState
) -> dict[str, Any]:
    """`GET /api/system/status`: version, uptime, every health check with its level, the last and next scan."""
    return {
        "version": version,
        "uptime_seconds": round(uptime, 1),
        "status": report.status.value,
        "checks": [
            {"name": check.name, "level": check.level.value, "message": check.message} for check in report.checks
        ],
        "scans": {
            "last": report_json(last_scan) if last_scan is not None else None,
            "next_run": _time(schedule.next_run),
            "schedule": schedule.description,
            "running": schedule.running,
        },
    }


def schedule_json(state: ScheduleState, source: str, value: Any) -> dict[str, Any]:
    """`GET /api/scheduler/config`: the rescan schedule in force, where it comes from, the next and last run."""
    return {
        "rescan": value,
        "description": state.description,
        "source": source,
        "next_run": _time(state.next_run),
        "last_run": _time(state.last_run),
        "running": state.running,
    }


REDACTED = "**********"
# Config fields that always hold secrets, whatever their source.
SECRET_FIELDS = (("api", "key"), ("api", "password"), ("mqtt", "password"))


def config_json(config: Config) -> dict[str, Any]:
    """`GET /api/config`: the configuration in force, with every secret (and every `!secret` value) redacted."""
    data = jsonable(dataclasses.asdict(config))
    data.pop("secret_paths", None)
    hidden = {*SECRET_FIELDS, *config.secret_paths}
    for path in hidden:
        _redact(data, path)
    return dict(data)


def _redact(data: Any, path: tuple[str | int, ...]) -> None:
    """Replace the value at `path` (when set) with REDACTED."""
    *parents, last = path
    for part in parents:
        data = _child(data, part)
        if data is None:
            return
    if _child(data, last) is not None:
        data[last] = REDACTED


def _child(data: Any, part: str | int) -> Any:
    """data[part] of a mapping or list, or None when there is none."""
    if isinstance(data, dict):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return data[part]
    return None


def backup_json(backup: Backup) -> dict[str, Any]:
    """One backup (a zip of the database and the config file); `reason`: scheduled, manual, migration, pre-restore."""
    return {
        "name": backup.name,
        "size": backup.size,
        "created_at": backup.created_at.isoformat(),
        "reason": backup.reason.value,
    }


def restored_json(done: Restored) -> dict[str, Any]:
    """What `restore --json` prints: the backup put back, where the old database and the config went."""
    return {
        "restored": str(done.source),
        "created_at": done.created_at.isoformat() if done.created_at else None,
        "schema_version": done.schema_version,
        "database": str(done.database),
        "config": str(done.config) if done.config else None,
        "config_replaced": done.config_replaced,
        "safety_backup": done.safety.name if done.safety else None,
    }


def status_json(address: str, system: Mapping[str, Any], queue: Mapping[str, Any]) -> dict[str, Any]:
    """`status --json`: the address asked, and the bodies of GET /api/system/status and /api/queue/status?limit=0."""
    return {"address": address, "system": dict(system), "queue": dict(queue)}


# --- MQTT: `state` and `progress` (DESIGN section 12) --------------------------------------------------------------


def _current_json(entry: ActiveDownload, series: Mapping[str, Series]) -> dict[str, Any]:
    item, progress = entry.item, entry.progress
    known = series.get(item.series_key)
    title = known.title if known else item.series_key
    return {
        "id": item.id,
        "series": item.series_key,
        "title": title,
        "season": item.season,
        "episode": item.number,
        "label": f"{title} S{item.season:02d}E{item.number:02d}",
        "percent": round(progress.percent, 1) if progress is not None and progress.percent is not None else None,
        "speed_mbps": round(progress.speed_bps / MB, 3) if progress is not None and progress.speed_bps else None,
        "eta_seconds": round(progress.eta_seconds) if progress is not None and progress.eta_seconds else None,
    }


def mqtt_state_json(
    *,
    counts: Mapping[DownloadStatus, int],
    active: Sequence[ActiveDownload],
    running: bool,
    paused: bool,
    series: Mapping[str, Series],
    missing: int,
    awaiting_language: int,
    auto_download: bool,
    last_scan: ScanReport | None,
    next_scan: datetime | None,
    health: HealthReport,
    version: str,
) -> dict[str, Any]:
    """`<base>/state`: the queue's figures, the current download, the library, the scans, health and version."""
    stored_active = counts.get(DownloadStatus.DOWNLOADING, 0)
    # A download the engine has just started may still be `pending` in its row for a moment: count it once.
    starting = max(0, len(active) - stored_active)
    return {
        "queue": {
            "pending": max(0, counts.get(DownloadStatus.PENDING, 0) - starting),
            "active": max(len(active), stored_active),
            "completed": counts.get(DownloadStatus.COMPLETED, 0),
            "failed": counts.get(DownloadStatus.FAILED, 0),
            "running": running,
            "paused": paused,
        },
        "current": _current_json(active[0], series) if active else None,
        "library": {"series": len(series), "missing": missing, "awaiting_language": awaiting_language},
        "auto_download": auto_download,
        "last_scan": _time(last_scan.finished_at or last_scan.started_at) if last_scan is not None else None,
        "next_scan": _time(next_scan),
        "health": {"status": health.status.value, "problems": list(health.problems)},
        "version": version,
    }


def mqtt_progress_json(active: Sequence[ActiveDownload], series: Mapping[str, Series]) -> dict[str, Any]:
    """`<base>/progress`: every active download's progress."""
    return {"active": [_current_json(entry, series) for entry in active]}


# --- WebSocket and MQTT envelopes -----------------------------------------------------------------------------------


def ws_message(kind: str, data: Mapping[str, Any], seq: int | None = None) -> dict[str, Any]:
    """A WebSocket message that is not an event: `{type, data}`, with `seq` for snapshots (the newest event's)."""
    return {"type": kind, **({"seq": seq} if seq is not None else {}), "data": dict(data)}


def ws_error(code: str, message: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """A WebSocket `error` message answering a bad client message."""
    return ws_message("error", {"code": code, "message": message, "details": jsonable(dict(details))})


def scan_status_json(running: bool, latest: ScanReport | None) -> dict[str, Any]:
    """The `scan_progress` room's snapshot: whether a rescan runs, and the newest report."""
    return {"running": running, "report": report_json(latest) if latest is not None else None}


def mqtt_response_json(data: Any, error: AniworldError | None, transaction: Any) -> dict[str, Any]:
    """`<base>/response/<command>`: `{status, data, error, transaction}`."""
    return {
        "status": "error" if error is not None else "ok",
        "data": None if error is not None else jsonable(data),
        "error": error_json(error.code, error.message, error.details)["error"] if error is not None else None,
        "transaction": transaction,
    }
