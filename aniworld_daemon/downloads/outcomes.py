"""Every transition of a queue item in one place: the database rows, the episode states, history, events, temp files.

The engine decides what happened (added, started, done, failed, interrupted, cancelled, removed, retried, cleared);
this module records it, so that no item changes state anywhere else.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aniworld_daemon.config import DownloadsConfig
from aniworld_daemon.downloads.job import Imported
from aniworld_daemon.downloads.tempfiles import TempFiles
from aniworld_daemon.errors import Blocked, ConflictError, NoWantedLanguage
from aniworld_daemon.events import (
    DownloadCancelled,
    DownloadComplete,
    DownloadFailed,
    EventBus,
    QueueAction,
    QueueStatus,
)
from aniworld_daemon.models import Download, DownloadStatus, EpisodeState, HistoryKind, Priority
from aniworld_daemon.provider.http import COOLDOWN_MARGIN, HttpClient
from aniworld_daemon.store.database import Database

LOGGER = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=12)
_LIVE = (DownloadStatus.PENDING, DownloadStatus.DOWNLOADING)


def backoff(base: timedelta, attempts: int) -> timedelta:
    """The wait before attempt `attempts + 1`: base doubled per failed attempt, capped, with +-25% jitter."""
    doubled: timedelta = base * 2 ** max(attempts - 1, 0)
    # Jitter: items that failed together (a hoster outage) do not all come back in the same second.
    return min(doubled, MAX_BACKOFF) * random.uniform(0.75, 1.25)


class Outcomes:
    """Records what happens to queue items; the queue engine decides which outcome it was."""

    def __init__(self, db: Database, bus: EventBus, http: HttpClient, temp: TempFiles, config: DownloadsConfig) -> None:
        self._db = db
        self._bus = bus
        self._http = http
        self._temp = temp
        self._config = config

    def reconfigure(self, config: DownloadsConfig) -> None:
        """Use the retry settings of a reloaded configuration from now on."""
        self._config = config

    # -- the queue's own changes ---------------------------------------------------------------------------------

    async def recover(self) -> None:
        """After a crash or stop: items left `downloading` are `pending` again; temp files of no pending item go.

        So do the temp files of NFO and poster writes that a kill left in the temp dir or in series folders.
        """
        reset = await self._db.reset_interrupted_downloads()
        if reset:
            LOGGER.info("Resuming %d download(s) interrupted by the last stop", reset)
        live = {item.id for item in await self._db.list_downloads((DownloadStatus.PENDING,))}
        removed = await self._temp.remove_orphans(live)
        if removed:
            LOGGER.info("Removed %d temporary file(s) that belong to no queued download", removed)
        swept = await self._temp.sweep_library()
        if swept:
            LOGGER.info("Removed %d temporary file(s) a stop left in series folders", swept)

    async def added(self, places: Sequence[tuple[str, int, int]], priority: Priority) -> list[Download]:
        """Queue (series, season, episode) places, skipping those queued already; return the new items."""
        now = datetime.now(UTC)
        items = [
            Download(
                id=uuid.uuid4().hex,
                series_key=key,
                season=season,
                number=number,
                priority=priority,
                position=0,
                status=DownloadStatus.PENDING,
                created_at=now,
            )
            for key, season, number in dict.fromkeys(places)
        ]
        added = await self._db.add_downloads(items)
        for item in added:
            await self._db.set_episode_state(item.series_key, item.season, item.number, EpisodeState.QUEUED)
        if added:
            LOGGER.info("Queued %d download(s)", len(added))
            self._bus.emit(QueueStatus(action=QueueAction.ITEMS_ADDED, item_ids=tuple(item.id for item in added)))
        return added

    async def started(self, item: Download, now: datetime) -> Download | None:
        """Claim a pending item for a worker (`downloading`); None when another process claimed it first."""
        return await self._db.claim_download(item.id, now)

    async def reordered(self, item_id: str, new_position: int) -> None:
        """Move a pending item to `new_position` among the pending items; NotFoundError otherwise."""
        await self._db.reorder_download(item_id, new_position)
        self._bus.emit(QueueStatus(action=QueueAction.QUEUE_REORDERED, item_ids=(item_id,)))

    async def removed(self, items: Sequence[Download]) -> int:
        """Delete items (none of them running any more): rows, their episodes `missing`, their partial files."""
        removed = await self._db.delete_downloads(item.id for item in items)
        for item in items:
            if item.status in _LIVE:
                await self._db.set_episode_state(item.series_key, item.season, item.number, EpisodeState.MISSING)
        await self._temp.remove(item.id for item in items)
        if removed:
            self._bus.emit(QueueStatus(action=QueueAction.ITEMS_REMOVED, item_ids=tuple(item.id for item in items)))
        return removed

    async def retried(self, items: Sequence[Download]) -> list[str]:
        """Failed or cancelled items `pending` again from attempt one; return the ids that were."""
        retried: list[str] = []
        downloaded = {
            (episode.series_key, episode.season, episode.number)
            for key in {item.series_key for item in items}
            for episode in await self._db.list_episodes(key)
            if episode.state is EpisodeState.DOWNLOADED
        }
        for item in items:
            if (item.series_key, item.season, item.number) in downloaded:
                # Another item (queued again by a rescan) got the episode meanwhile: nothing is left to retry.
                LOGGER.info("Not retrying %s: %s is downloaded already", item.id, item.label)
                continue
            try:
                await self._db.update_download(
                    item.id,
                    status=DownloadStatus.PENDING,
                    position=await self._db.next_position(),  # its old one may be another live item's by now
                    attempts=0,
                    next_attempt_at=None,
                    error_code=None,
                    error_message=None,
                    finished_at=None,
                )
            except ConflictError:
                LOGGER.info("Not retrying %s: the episode is queued again already", item.id)
                continue
            await self._db.set_episode_state(item.series_key, item.season, item.number, EpisodeState.QUEUED)
            retried.append(item.id)
        if retried:
            self._bus.emit(QueueStatus(action=QueueAction.ITEMS_RETRIED, item_ids=tuple(retried)))
        return retried

    async def cleared(self, status: DownloadStatus, action: QueueAction) -> int:
        """Delete every item in a finished state (completed or failed); return how many."""
        ids = [item.id for item in await self._db.list_downloads((status,))]
        count = await self._db.delete_downloads(ids)
        if count:
            self._bus.emit(QueueStatus(action=action, item_ids=tuple(ids)))
        return count

    # -- what an attempt ended with ------------------------------------------------------------------------------

    async def interrupted(self, item: Download, bytes_done: int, why: str) -> None:
        """A queue stop or shutdown stopped the download: `pending` again, partial files kept for the resume."""
        await self._db.update_download(item.id, status=DownloadStatus.PENDING, bytes_downloaded=bytes_done)
        LOGGER.info("%s interrupted (%s); it resumes later", item.label, why)

    async def cancelled(self, item: Download) -> None:
        """The user cancelled the item: `cancelled`, its episode `missing` again, its partial files gone."""
        await self._db.update_download(item.id, status=DownloadStatus.CANCELLED, finished_at=datetime.now(UTC))
        await self._db.set_episode_state(item.series_key, item.season, item.number, EpisodeState.MISSING)
        await self._temp.remove([item.id])
        LOGGER.info("%s cancelled", item.label)
        self._bus.emit(_cancelled_event(item))

    async def dropped(self, item: Download) -> None:
        """A running download whose item was removed (by the user, or with its series): its partial files go."""
        await self._temp.remove([item.id])
        self._bus.emit(_cancelled_event(item))

    async def completed(self, item: Download, imported: Imported) -> None:
        """The episode is in the library: item `completed`, episode `downloaded`, history, `download_complete`."""
        now = datetime.now(UTC)
        await self._db.complete_download(
            item,
            {
                "status": DownloadStatus.COMPLETED,
                "finished_at": now,
                "file_path": imported.file_path,
                "bytes_downloaded": imported.size,
                "bytes_total": imported.size,
                "language": imported.language,
                "hoster": imported.hoster,
                "error_code": None,
                "error_message": None,
                "next_attempt_at": None,
            },
            file_path=imported.file_path,
            file_size=imported.size,
            history=f"Downloaded {item.label}" if imported.downloaded else f"{item.label} was already in the library",
            data={
                "file_path": imported.file_path,
                "size": imported.size,
                "language": imported.language.value if imported.language else None,
                "hoster": imported.hoster,
                "seconds": round((now - item.started_at).total_seconds(), 1) if item.started_at else None,
            },
        )
        await self._temp.remove([item.id])
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
        await self._temp.remove([item.id])
        self._bus.emit(QueueStatus(action=QueueAction.ITEMS_REMOVED, item_ids=(item.id,)))

    async def wait_for_cooldown(self, item: Download, err: Blocked) -> None:
        """The site refused us: `pending` until its cooldown ends; not an attempt."""
        host = err.details.get("host")
        # The client's own record is exact; the error's text is rounded to the second (and could be earlier).
        until = (self._http.cooldown_end(host) if isinstance(host, str) else None) or (
            (_parse_time(err.details.get("until")) or datetime.now(UTC)) + COOLDOWN_MARGIN
        )
        LOGGER.warning("%s waits for the site's cooldown until %s", item.label, until.isoformat(timespec="seconds"))
        await self._db.update_download(
            item.id,
            status=DownloadStatus.PENDING,
            next_attempt_at=until,
            error_code=err.code,
            error_message=err.message,
        )
        self._bus.emit(_failed_event(item, err.code, err.message, will_retry=True, next_attempt_at=until))

    async def postponed(self, item: Download, code: str, message: str, bytes_done: int) -> None:
        """The disk failed the download (full, or the library not mounted): `pending`, not an attempt.

        Its partial files stay for the resume; the queue engine starts it again once the disk is fine.
        """
        LOGGER.warning("%s waits for the library's disk: %s", item.label, message)
        await self._db.update_download(
            item.id,
            status=DownloadStatus.PENDING,
            next_attempt_at=None,
            bytes_downloaded=bytes_done,
            error_code=code,
            error_message=message,
        )
        self._bus.emit(_failed_event(item, code, message, will_retry=True, next_attempt_at=None))

    async def failed_attempt(self, item: Download, code: str, message: str) -> None:
        """An attempt failed: `pending` after the backoff, or `failed` after `retries` attempts."""
        attempts = item.attempts + 1
        if attempts < self._config.retries:
            next_at = datetime.now(UTC) + backoff(self._config.retry_backoff, attempts)
            LOGGER.warning(
                "%s failed (attempt %d of %d), retrying at %s: %s",
                item.label,
                attempts,
                self._config.retries,
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
            self._bus.emit(_failed_event(item, code, message, will_retry=True, next_attempt_at=next_at))
            return
        LOGGER.error("%s failed after %d attempts: %s", item.label, attempts, message)
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
        await self._temp.remove([item.id])
        await self._db.add_history(
            HistoryKind.DOWNLOAD_FAILED,
            f"Failed to download {item.label}: {message}",
            series_key=item.series_key,
            season=item.season,
            number=item.number,
            data={"code": code, "attempts": attempts},
        )
        self._bus.emit(_failed_event(item, code, message, will_retry=False, next_attempt_at=None))


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _cancelled_event(item: Download) -> DownloadCancelled:
    return DownloadCancelled(item_id=item.id, series_key=item.series_key, season=item.season, episode=item.number)


def _failed_event(
    item: Download, code: str, message: str, *, will_retry: bool, next_attempt_at: datetime | None
) -> DownloadFailed:
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
