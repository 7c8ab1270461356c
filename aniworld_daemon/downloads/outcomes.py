"""What happens to a queue item after an attempt: the database rows, the history, the events and its temp files."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aniworld_daemon.config import Config
from aniworld_daemon.downloads import ytdlp
from aniworld_daemon.downloads.job import Imported, temp_dir
from aniworld_daemon.errors import Blocked, NoWantedLanguage
from aniworld_daemon.events import (
    DownloadCancelled,
    DownloadComplete,
    DownloadFailed,
    EventBus,
    QueueAction,
    QueueStatus,
)
from aniworld_daemon.models import Download, DownloadStatus, EpisodeState, HistoryKind
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.store.database import Database

LOGGER = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=12)
COOLDOWN_MARGIN = timedelta(milliseconds=100)


def backoff(base: timedelta, attempts: int) -> timedelta:
    """The wait before attempt `attempts + 1`: base doubled per failed attempt, capped, with +-25% jitter."""
    doubled: timedelta = base * 2 ** max(attempts - 1, 0)
    # Jitter: items that failed together (a hoster outage) do not all come back in the same second.
    return min(doubled, MAX_BACKOFF) * random.uniform(0.75, 1.25)


class Outcomes:
    """Records the outcome of attempts; the queue engine decides which outcome it was."""

    def __init__(self, db: Database, bus: EventBus, http: HttpClient, config: Config) -> None:
        self._db = db
        self._bus = bus
        self._http = http
        self.config = config  # replaced on reload

    def _temp_dir(self) -> Path:
        return temp_dir(self.config.library.path)

    async def cancelled(self, item: Download) -> None:
        """The user cancelled the item: `cancelled`, its episode `missing` again, its partial files gone."""
        await self._db.update_download(item.id, status=DownloadStatus.CANCELLED, finished_at=datetime.now(UTC))
        await self._db.set_episode_state(item.series_key, item.season, item.number, EpisodeState.MISSING)
        await asyncio.to_thread(ytdlp.remove_files, self._temp_dir(), item.id)
        LOGGER.info("%s cancelled", label(item))
        self._bus.emit(cancelled_event(item))

    async def completed(self, item: Download, imported: Imported) -> None:
        """The episode is in the library: item `completed`, episode `downloaded`, history, `download_complete`."""
        now = datetime.now(UTC)
        await self._db.update_download(
            item.id,
            status=DownloadStatus.COMPLETED,
            finished_at=now,
            file_path=imported.file_path,
            bytes_downloaded=imported.size,
            bytes_total=imported.size,
            language=imported.language,
            hoster=imported.hoster,
            error_code=None,
            error_message=None,
            next_attempt_at=None,
        )
        await self._db.set_episode_state(
            item.series_key,
            item.season,
            item.number,
            EpisodeState.DOWNLOADED,
            file_path=imported.file_path,
            file_size=imported.size,
        )
        await self._db.add_history(
            HistoryKind.DOWNLOAD_COMPLETED,
            f"Downloaded {label(item)}" if imported.downloaded else f"{label(item)} was already in the library",
            series_key=item.series_key,
            season=item.season,
            number=item.number,
            data={
                "file_path": imported.file_path,
                "size": imported.size,
                "language": imported.language.value if imported.language else None,
                "hoster": imported.hoster,
                "seconds": round((now - item.started_at).total_seconds(), 1) if item.started_at else None,
            },
        )
        await asyncio.to_thread(ytdlp.remove_files, self._temp_dir(), item.id)
        self._bus.emit(
            DownloadComplete(
                item_id=item.id,
                series_key=item.series_key,
                season=item.season,
                episode=item.number,
                file_path=imported.file_path,
                size_bytes=imported.size,
            )
        )

    async def awaiting_language(self, item: Download, err: NoWantedLanguage) -> None:
        """No wanted language on the episode page: the item leaves the queue, the episode waits."""
        # Not a failure: the episode waits for a wanted language and later rescans queue it again.
        LOGGER.info("%s", err.message)
        await self._db.delete_downloads([item.id])
        await self._db.set_episode_state(item.series_key, item.season, item.number, EpisodeState.AWAITING_LANGUAGE)
        await asyncio.to_thread(ytdlp.remove_files, self._temp_dir(), item.id)
        self._bus.emit(QueueStatus(action=QueueAction.ITEMS_REMOVED, item_ids=(item.id,)))

    async def wait_for_cooldown(self, item: Download, err: Blocked) -> None:
        """The site refused us: `pending` until its cooldown ends; not an attempt."""
        host = err.details.get("host")
        ends = [cooldown.until for cooldown in self._http.cooldowns() if cooldown.host == host]
        # The client's own record is exact; the error's text is rounded to the second (and could be earlier).
        until = max(ends, default=None) or _parse_time(err.details.get("until")) or datetime.now(UTC)
        until += COOLDOWN_MARGIN  # the client times its cooldown on the monotonic clock: do not arrive early
        LOGGER.warning("%s waits for the site's cooldown until %s", label(item), until.isoformat(timespec="seconds"))
        await self._db.update_download(
            item.id,
            status=DownloadStatus.PENDING,
            next_attempt_at=until,
            error_code=err.code,
            error_message=err.message,
        )
        self._bus.emit(failed_event(item, err.code, err.message, will_retry=True, next_attempt_at=until))

    async def failed_attempt(self, item: Download, code: str, message: str) -> None:
        """An attempt failed: `pending` after the backoff, or `failed` after `retries` attempts."""
        attempts = item.attempts + 1
        downloads = self.config.downloads
        if attempts < downloads.retries:
            next_at = datetime.now(UTC) + backoff(downloads.retry_backoff, attempts)
            LOGGER.warning(
                "%s failed (attempt %d of %d), retrying at %s: %s",
                label(item),
                attempts,
                downloads.retries,
                next_at.astimezone().isoformat(timespec="seconds"),
                message,
            )
            await self._db.update_download(
                item.id,
                status=DownloadStatus.PENDING,
                attempts=attempts,
                next_attempt_at=next_at,
                error_code=code,
                error_message=message,
            )
            self._bus.emit(failed_event(item, code, message, will_retry=True, next_attempt_at=next_at))
            return
        LOGGER.error("%s failed after %d attempts: %s", label(item), attempts, message)
        await self._db.update_download(
            item.id,
            status=DownloadStatus.FAILED,
            attempts=attempts,
            next_attempt_at=None,
            finished_at=datetime.now(UTC),
            error_code=code,
            error_message=message,
        )
        await self._db.set_episode_state(item.series_key, item.season, item.number, EpisodeState.MISSING)
        await asyncio.to_thread(ytdlp.remove_files, self._temp_dir(), item.id)
        await self._db.add_history(
            HistoryKind.DOWNLOAD_FAILED,
            f"Failed to download {label(item)}: {message}",
            series_key=item.series_key,
            season=item.season,
            number=item.number,
            data={"code": code, "attempts": attempts},
        )
        self._bus.emit(failed_event(item, code, message, will_retry=False, next_attempt_at=None))


def label(item: Download) -> str:
    """`series S01E02`, for logs and messages."""
    return f"{item.series_key} S{item.season:02d}E{item.number:02d}"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cancelled_event(item: Download) -> DownloadCancelled:
    """The `download_cancelled` event of an item."""
    return DownloadCancelled(item_id=item.id, series_key=item.series_key, season=item.season, episode=item.number)


def failed_event(
    item: Download, code: str, message: str, *, will_retry: bool, next_attempt_at: datetime | None
) -> DownloadFailed:
    """The `download_failed` event of an item."""
    return DownloadFailed(
        item_id=item.id,
        series_key=item.series_key,
        season=item.season,
        episode=item.number,
        error_code=code,
        error_message=message,
        will_retry=will_retry,
        next_attempt_at=next_attempt_at,
    )
