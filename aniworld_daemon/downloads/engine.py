"""The download queue engine: persistent items, workers, priorities, retries with backoff, pause/resume, import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aniworld_daemon.config import Config
from aniworld_daemon.downloads import ytdlp
from aniworld_daemon.downloads.disk import LibraryDisk, free_bytes
from aniworld_daemon.downloads.job import EpisodeJob, JobControl
from aniworld_daemon.downloads.outcomes import Outcomes
from aniworld_daemon.downloads.snapshot import ActiveDownload, QueueFigures, QueueSnapshot, build_snapshot
from aniworld_daemon.downloads.tempfiles import TempFiles
from aniworld_daemon.errors import (
    AniworldError,
    Blocked,
    NotFoundError,
    NoWantedLanguage,
    StorageError,
    ValidationError,
)
from aniworld_daemon.events import (
    DownloadProgress,
    DownloadStarted,
    Event,
    EventBus,
    QueueAction,
    QueuePaused,
    QueueResumed,
    QueueStarted,
    QueueStopped,
    SeriesRemoved,
)
from aniworld_daemon.health import Check
from aniworld_daemon.models import Download, DownloadStatus, Episode, Language, PauseReason, Priority, Series
from aniworld_daemon.naming import NamingTemplate
from aniworld_daemon.provider.aniworld import AniworldProvider
from aniworld_daemon.provider.hosters import HosterRegistry
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.series import SeriesManager
from aniworld_daemon.store.database import Database

LOGGER = logging.getLogger(__name__)

PERSIST_INTERVAL = 5.0  # seconds between writes of an active download's byte count
# Seconds between checks of the free space (one statvfs) and of the library's mount (one listing of its root, one
# count) while downloads wait for them: cheap enough to notice a freed disk or a remounted NAS soon.
SPACE_CHECK_INTERVAL = 10.0
_PAUSED_SETTING = "queue_paused"  # a user's pause survives restarts


class CancelReason(StrEnum):
    """Why an active download is being stopped; decides what happens to its item and partial files."""

    STOP = "stop"  # queue stopped: back to pending, partial file kept for resume
    SHUTDOWN = "shutdown"  # daemon stopping: the same
    CANCEL = "cancel"  # the user cancelled it: item `cancelled`, partial file removed
    REMOVE = "remove"  # the user removed it: item deleted, partial file removed


def in_window(window: tuple[dt_time, dt_time] | None, now: datetime) -> bool:
    """True when `now` (local time) is inside the daily [start, end) window; a window may wrap midnight."""
    if window is None:
        return True
    start, end = window
    clock = now.time().replace(tzinfo=None)
    return start <= clock < end if start < end else clock >= start or clock < end


def seconds_until_window(window: tuple[dt_time, dt_time], now: datetime) -> float:
    """Seconds from `now` (local, aware) until the window next opens (0 inside it)."""
    if in_window(window, now):
        return 0.0
    opening = now.replace(hour=window[0].hour, minute=window[0].minute, second=0, microsecond=0)
    if opening <= now:
        opening += timedelta(days=1)
    return (opening - now).total_seconds()


class _Active:
    """Mutable bookkeeping of one running download (owned by the loop)."""

    def __init__(self, item: Download) -> None:
        self.item = item
        self.cancel = ytdlp.CancelToken()
        self.reason: CancelReason | None = None
        self.task: asyncio.Task[None] | None = None
        self.progress: ytdlp.Progress | None = None
        self.persisted_at = time.monotonic()
        self.transferred = False  # the job returned: a progress report still queued from yt-dlp's thread is stale


class Downloader:
    """Owns the download queue: the operations behind the CLI, REST and MQTT, and the workers that run it."""

    def __init__(  # noqa: PLR0917 - every positional argument is a component it depends on
        self,
        db: Database,
        provider: AniworldProvider,
        http: HttpClient,
        bus: EventBus,
        series: SeriesManager,
        config: Config,
        temp: TempFiles,
        *,
        free_space: Callable[[Path], int] = free_bytes,
        space_check_interval: float = SPACE_CHECK_INTERVAL,
    ) -> None:
        self._db = db
        self._provider = provider
        self._http = http
        self._bus = bus
        self._series = series
        self._config = config
        self._temp = temp
        self._only: set[str] | None = None  # a foreground run works on these items (and those it adds) only
        self._disk = LibraryDisk(db, bus, config, free_space)
        self._space_check_interval = space_check_interval
        self._job = self._build_job(config)
        self._outcomes = Outcomes(db, bus, http, temp, config.downloads)
        self._active: dict[str, _Active] = {}
        self._running = False
        self._paused = False
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] = lambda: None
        self._metadata_locks: dict[str, asyncio.Lock] = {}

    def _build_job(self, config: Config) -> EpisodeJob:
        downloads = config.downloads
        return EpisodeJob(
            self._provider,
            self._http,
            HosterRegistry(config.provider.hosters),
            config.library.path,
            NamingTemplate(config.library.naming),
            # yt-dlp retries a failing request itself, immediately; few, because the queue's backoff is the patient
            # retry. For HLS the two multiply (each fragment try retries its request): 4 x 4 requests at most.
            ytdlp.YtdlpOptions(
                retries=3,
                fragment_retries=3,
                rate_limit=downloads.rate_limit,
                stall_timeout=downloads.stall_timeout.total_seconds(),
            ),
            self._temp,
        )

    # -- life cycle -----------------------------------------------------------------------------------------------

    async def restore(self) -> None:
        """Read the queue's stored state (a user's pause); enough for `status()` without processing the queue."""
        self._paused = bool(await self._db.get_setting(_PAUSED_SETTING, False))

    async def start(self, only: Iterable[str] | None = None) -> None:
        """Restore the queue after a crash or stop, then process it if `auto_start` says so.

        `only`: a foreground run (the CLI's `download`) that works on these items and those it adds, and on nothing
        else: the daemon may run on the same queue, and its items, temp files and pause are not this run's business.
        """
        if only is None:
            await self._outcomes.recover()
            await self.restore()
            self._running = self._config.downloads.auto_start
        else:
            self._only = set(only)
            self._paused = False
            self._running = True
        self._unsubscribe = self._bus.subscribe(self._on_series_removed, SeriesRemoved)
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="download-dispatcher")
        LOGGER.info(
            "Download queue %s%s",
            "running" if self._running else "stopped (auto_start is off)",
            ", paused" if self._paused else "",
        )

    async def stop(self) -> None:
        """Shutdown: cancel active downloads back to `pending` (their partial files kept for resume)."""
        self._unsubscribe()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        await self._cancel_active(list(self._active), CancelReason.SHUTDOWN)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded configuration (limits, window, hosters, naming) to downloads started from now on."""
        self._disk.reconfigure(config)
        self._config = config
        self._temp.reconfigure(config.library.path)
        self._job = self._build_job(config)
        self._outcomes.reconfigure(config.downloads)
        self._wake.set()

    # -- queue operations -----------------------------------------------------------------------------------------

    async def add(
        self, series_key: str, episodes: Sequence[tuple[int, int]], priority: Priority = Priority.NORMAL
    ) -> list[Download]:
        """Queue episodes of a followed series (already queued ones are skipped); return the new items."""
        if await self._db.get_series(series_key) is None:
            raise NotFoundError(f"series {series_key} is not followed", details={"serie_id": series_key})
        for season, number in episodes:
            if season < 0 or number < 0:
                raise ValidationError(
                    f"season and episode must not be negative (got {season}, {number})", details={"field": "episodes"}
                )
        return await self._add([(series_key, season, number) for season, number in episodes], priority)

    async def enqueue_missing(self, episodes: Sequence[Episode]) -> int:
        """Queue a rescan's missing episodes (auto_download), in the order given; return how many were new."""
        added = await self._add([(episode.series_key, episode.season, episode.number) for episode in episodes])
        return len(added)

    async def _add(
        self, places: Sequence[tuple[str, int, int]], priority: Priority = Priority.NORMAL
    ) -> list[Download]:
        added = await self._outcomes.added(places, priority)
        if self._only is not None:
            self._only.update(item.id for item in added)
        if added:
            self._wake.set()
        return added

    async def remove(self, ids: Sequence[str]) -> int:
        """Remove items (an active one is cancelled first, its partial file deleted); return how many existed."""
        items = await self._existing(ids)
        await self._cancel_active([item.id for item in items], CancelReason.REMOVE)
        return await self._outcomes.removed(items)

    async def _existing(self, ids: Sequence[str]) -> list[Download]:
        """The items with these ids that exist (each once, in the given order)."""
        items = []
        for item_id in dict.fromkeys(ids):
            item = await self._db.get_download(item_id)
            if item is not None:
                items.append(item)
        return items

    async def remove_one(self, item_id: str) -> None:
        """Remove one item; NotFoundError if there is none with this id."""
        if not await self.remove([item_id]):
            raise NotFoundError(f"queue item {item_id} not found", details={"id": item_id})

    async def cancel(self, ids: Sequence[str]) -> int:
        """Cancel pending or active items: they stay listed as `cancelled`, their partial files are deleted."""
        items = await self._existing(ids)
        live = [item for item in items if item.status in (DownloadStatus.PENDING, DownloadStatus.DOWNLOADING)]
        await self._cancel_active([item.id for item in live], CancelReason.CANCEL)
        count = 0
        for item in live:
            current = await self._db.get_download(item.id)
            if current is not None and current.status is DownloadStatus.PENDING:
                await self._outcomes.cancelled(current)
                count += 1
            elif current is not None and current.status is DownloadStatus.CANCELLED:
                count += 1
        return count

    async def reorder(self, item_id: str, new_position: int) -> None:
        """Move a pending item to `new_position` (0 = next) among the pending items; NotFoundError otherwise."""
        if new_position < 0:
            raise ValidationError("new_position must be 0 or more", details={"field": "new_position"})
        await self._outcomes.reordered(item_id, new_position)

    async def retry(self, ids: Sequence[str] | None = None) -> int:
        """Queue failed (or cancelled) items again from attempt one; no ids = every failed item."""
        if ids is None:
            items = await self._db.list_downloads((DownloadStatus.FAILED,))
        else:
            retryable = (DownloadStatus.FAILED, DownloadStatus.CANCELLED)
            items = [item for item in await self._existing(ids) if item.status in retryable]
        retried = await self._outcomes.retried(items)
        if retried:
            self._wake.set()
        return len(retried)

    async def retry_one(self, item_id: str) -> None:
        """Retry one failed or cancelled item; NotFoundError when there is no such item to retry."""
        if not await self.retry([item_id]):
            raise NotFoundError(f"no failed queue item {item_id}", details={"id": item_id})

    async def clear_completed(self) -> int:
        """Delete every completed item; return how many."""
        return await self._outcomes.cleared(DownloadStatus.COMPLETED, QueueAction.COMPLETED_CLEARED)

    async def clear_failed(self) -> int:
        """Delete every failed item; return how many."""
        return await self._outcomes.cleared(DownloadStatus.FAILED, QueueAction.FAILED_CLEARED)

    async def start_queue(self) -> None:
        """Process the queue (idempotent)."""
        if not self._running:
            self._running = True
            self._bus.emit(QueueStarted())
            self._wake.set()

    async def stop_queue(self) -> None:
        """Stop processing; active downloads go back to `pending`, keeping their partial files (idempotent)."""
        if self._running:
            self._running = False
            await self._cancel_active(list(self._active), CancelReason.STOP)
            self._bus.emit(QueueStopped())

    async def pause(self) -> None:
        """Start no new downloads; active ones finish (idempotent; survives restarts)."""
        if not self._paused:
            self._paused = True
            await self._db.set_setting(_PAUSED_SETTING, True)
            self._bus.emit(QueuePaused(reason=PauseReason.USER))

    async def resume(self) -> None:
        """Undo `pause` (idempotent)."""
        if self._paused:
            self._paused = False
            await self._db.set_setting(_PAUSED_SETTING, False)
            self._bus.emit(QueueResumed())
            self._wake.set()

    # -- state ----------------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the queue is started (it may still be paused)."""
        return self._running

    @property
    def paused(self) -> bool:
        """True while no new downloads start because of a user's pause or low disk space."""
        return self._paused or self._disk.space_problem is not None

    def problems(self) -> list[str | Check]:
        """Health problems of the queue (low disk space, as the `free_space` check), for /health and MQTT."""
        return self._disk.problems()

    async def get(self, item_id: str) -> Download | None:
        """One queue item as stored, or None."""
        return await self._db.get_download(item_id)

    def active(self) -> list[ActiveDownload]:
        """The downloads in progress, in start order."""
        return [ActiveDownload(entry.item, entry.progress) for entry in self._active.values()]

    async def status(self, limit: int | None = None) -> QueueSnapshot:
        """The queue with exact statistics; `is_running` is None when this process does not run the queue.

        `limit`: list at most this many items of each status (the first in queue order), for a big queue.
        """
        if self._disk.space_problem:
            reason: PauseReason | None = PauseReason.LOW_DISK_SPACE
        else:
            reason = PauseReason.USER if self._paused else None
        running = self._running if self._dispatcher is not None else None
        if limit is None:
            items = await self._db.list_downloads()
            figures = None
        else:
            items = []
            for status in DownloadStatus:
                items += await self._db.list_downloads((status,), limit=limit)
            total, sized = await self._db.completed_bytes()
            figures = QueueFigures(await self._db.count_downloads_by_status(), total, sized)
        return build_snapshot(items, self.active(), running=running, paused=self.paused, reason=reason, figures=figures)

    async def revision(self) -> Hashable:
        """Changes whenever `status()` could answer differently: a stored row, the state, a live progress report."""
        return (
            await self._db.version(),
            self._running,
            self._paused,
            self._disk.revision(),
            tuple((entry.item.id, entry.progress) for entry in self._active.values()),
        )

    async def wait_idle(self) -> None:
        """Wait until no download is active and none is pending and due (used by the foreground `download`)."""
        while True:
            if (
                not self._active
                and await self._db.next_pending(datetime.now(UTC) + timedelta(days=3650), self._only) is None
            ):
                return
            await asyncio.sleep(0.2)

    # -- the dispatcher -------------------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Start due items while there is room; sleep until something changes or the next item is due."""
        while True:
            self._wake.clear()
            try:
                delay = await self._start_due()
            except AniworldError as err:
                LOGGER.error("The download queue could not be read: %s", err.message)
                delay = self._space_check_interval
            if delay is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.05))

    def _may_start(self) -> bool:
        """Neither stopped nor paused by the user (read again after each await: a command may land in between)."""
        return self._running and not self._paused

    async def _start_due(self) -> float | None:
        """Start what may start now; return seconds until the next check (None: until woken)."""
        if not self._may_start():
            return None
        downloads = self._config.downloads
        if not await self._disk.ready():
            return self._space_check_interval
        now = datetime.now(UTC)
        if downloads.window is not None and not in_window(downloads.window, now.astimezone()):
            wait = seconds_until_window(downloads.window, now.astimezone())
            LOGGER.debug("Outside the download window; next start in %.0f s", wait)
            return wait
        site = urlsplit(self._config.provider.base_url).netloc.lower()
        cooldown_end = self._http.cooldown_end(site)
        if cooldown_end is not None:
            # Every item starts with the episode page: starting them now would only bounce each off the cooldown.
            return (cooldown_end - now).total_seconds()
        while len(self._active) < downloads.max_concurrent:
            item = await self._db.next_pending(now, self._only)
            if item is None:
                due = await self._db.next_pending_due(self._only)
                return None if due is None else (due - datetime.now(UTC)).total_seconds()
            if not self._may_start():
                return None  # stopped or paused while this pass awaited: what it found stays pending
            claimed = await self._outcomes.started(item, now)
            if claimed is None:
                continue
            if not self._may_start():
                # Stopped or paused while the claim was written: the item goes back, no worker starts after a stop.
                await self._outcomes.interrupted(claimed, claimed.bytes_downloaded, "stop")
                return None
            self._launch(claimed)
        return None

    def _launch(self, item: Download) -> None:
        entry = _Active(item)
        self._active[item.id] = entry
        entry.task = asyncio.get_running_loop().create_task(self._work(entry), name=f"download-{item.id}")

    async def _cancel_active(self, ids: Sequence[str], reason: CancelReason) -> None:
        entries = [self._active[item_id] for item_id in ids if item_id in self._active]
        for entry in entries:
            entry.reason = reason
            entry.cancel.cancel()
            if entry.task is not None:
                entry.task.cancel()
        for entry in entries:
            if entry.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await entry.task

    # -- one item -------------------------------------------------------------------------------------------------

    async def _work(self, entry: _Active) -> None:
        item = entry.item
        try:
            await self._attempt(entry)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The outcome could not be recorded (the item was deleted with its series, the database went away):
            # the item stays as the database has it, and the engine carries on with the others.
            LOGGER.exception("Recording the outcome of %s failed", item.label)
        finally:
            self._active.pop(item.id, None)
            self._wake.set()

    async def _attempt(self, entry: _Active) -> None:
        item = entry.item
        try:
            series = await self._db.get_series(item.series_key)
            if series is None:
                return  # unfollowed meanwhile: the item went with the series (ON DELETE CASCADE)
            if not series.folder:
                series = await self._with_metadata(series)
            languages = series.languages or self._config.provider.languages
            control = JobControl(
                cancel=entry.cancel,
                on_progress=lambda progress: self._on_progress(entry, progress),
                on_hoster=lambda language, hoster: self._on_hoster(entry, language, hoster),
                library_problem=self._disk.unavailable,
            )
            imported = await self._job.run(item, series, languages, control)
            entry.transferred = True
        except asyncio.CancelledError:
            await asyncio.shield(self._after_cancel(entry))
            raise
        except NoWantedLanguage as err:
            await self._outcomes.awaiting_language(item, err)
        except Blocked as err:
            await self._outcomes.wait_for_cooldown(item, err)
        except AniworldError as err:
            if entry.reason is not None:
                await asyncio.shield(self._after_cancel(entry))
            elif not await self._postponed(entry, err):
                await self._outcomes.failed_attempt(item, err.code, err.message)
        except Exception as err:  # a bug must not wedge the queue: count it as a failed attempt
            if not await self._postponed(entry, err):
                LOGGER.exception("Downloading %s failed unexpectedly", item.label)
                await self._outcomes.failed_attempt(item, "internal_error", f"unexpected error: {err!r}")
        else:
            await self._outcomes.completed(item, imported)

    async def _postponed(self, entry: _Active, err: Exception) -> bool:
        """A failure that is the disk's, not the download's: the item waits, not an attempt; True when it was.

        The library's disk ran full (the queue pauses until space is freed), or the library is not mounted (nothing
        starts until it is back). Either way the partial files stay, and the download continues from them later.
        """
        item, progress = entry.item, entry.progress
        total = progress.total_bytes if progress is not None else item.bytes_total
        bytes_done = progress.downloaded_bytes if progress is not None else item.bytes_downloaded
        why = await self._disk.postpone(err, max(total - bytes_done, 0) if total else 0)
        if why is None:
            return False
        message = err.message if isinstance(err, AniworldError) else str(err)
        await self._outcomes.postponed(item, StorageError.code, f"{message}; {why}", bytes_done)
        return True

    async def _with_metadata(self, series: Series) -> Series:
        """A series never rescanned (just added to the config) gets its title and folder from its page, once."""
        # One lock per series: the items of a new series start together, and one page read is enough for all.
        async with self._metadata_locks.setdefault(series.key, asyncio.Lock()):
            current = await self._db.get_series(series.key) or series
            if current.folder:
                return current
            return await self._series.refresh_metadata(current, await self._provider.series(series.key))

    async def _on_series_removed(self, event: Event[SeriesRemoved]) -> None:
        # The series' queue items went with it (ON DELETE CASCADE); what still runs for it must stop too.
        key = event.data.key
        ids = [entry.item.id for entry in self._active.values() if entry.item.series_key == key]
        if ids:
            LOGGER.info("Stopping %d download(s) of %s: the series is no longer followed", len(ids), key)
            await self._cancel_active(ids, CancelReason.REMOVE)

    def _on_hoster(self, entry: _Active, language: Language, hoster: str) -> None:
        # The live item is the one in memory; its row learns the language and hoster a moment later.
        entry.item = item = replace(entry.item, language=language, hoster=hoster)
        self._spawn(self._db.update_download(item.id, language=language, hoster=hoster))
        self._bus.emit(
            DownloadStarted(
                item_id=item.id,
                series_key=item.series_key,
                season=item.season,
                episode=item.number,
                language=language,
                hoster=hoster,
            )
        )

    def _on_progress(self, entry: _Active, progress: ytdlp.Progress) -> None:
        if entry.transferred:
            return  # arrived from yt-dlp's thread after the job was done: it must not follow download_complete
        entry.progress = progress
        self._bus.emit(
            DownloadProgress(
                item_id=entry.item.id,
                downloaded_bytes=progress.downloaded_bytes,
                total_bytes=progress.total_bytes,
                speed_bps=progress.speed_bps,
                eta_seconds=progress.eta_seconds,
                percent=progress.percent,
            )
        )
        if time.monotonic() - entry.persisted_at >= PERSIST_INTERVAL:
            entry.persisted_at = time.monotonic()
            self._spawn(
                self._db.update_download(
                    entry.item.id, bytes_downloaded=progress.downloaded_bytes, bytes_total=progress.total_bytes
                )
            )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            LOGGER.warning("Saving download progress failed: %s", error)

    async def _after_cancel(self, entry: _Active) -> None:
        item = entry.item
        reason = entry.reason or CancelReason.SHUTDOWN
        if reason in (CancelReason.STOP, CancelReason.SHUTDOWN):
            bytes_done = entry.progress.downloaded_bytes if entry.progress else item.bytes_downloaded
            await self._outcomes.interrupted(item, bytes_done, reason.value)
        elif reason is CancelReason.CANCEL:
            await self._outcomes.cancelled(item)
        else:
            await self._outcomes.dropped(item)  # removed: its row goes (or went with its series)
