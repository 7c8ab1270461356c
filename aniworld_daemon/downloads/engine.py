"""The download queue engine: persistent items, workers, priorities, retries with backoff, pause/resume, import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aniworld_daemon.config import Config
from aniworld_daemon.downloads import ytdlp
from aniworld_daemon.downloads.job import EpisodeJob, JobControl, temp_dir
from aniworld_daemon.downloads.outcomes import COOLDOWN_MARGIN, Outcomes, cancelled_event, label
from aniworld_daemon.downloads.snapshot import ActiveDownload, QueueSnapshot, build_snapshot
from aniworld_daemon.errors import (
    AniworldError,
    Blocked,
    ConflictError,
    NotFoundError,
    NoWantedLanguage,
    ValidationError,
)
from aniworld_daemon.events import (
    DownloadProgress,
    DownloadStarted,
    Event,
    EventBus,
    EventType,
    QueueAction,
    QueuePaused,
    QueueResumed,
    QueueStarted,
    QueueStatus,
    QueueStopped,
)
from aniworld_daemon.models import Download, DownloadStatus, Episode, EpisodeState, Language, Priority, Series
from aniworld_daemon.naming import NamingTemplate
from aniworld_daemon.provider.aniworld import AniworldProvider
from aniworld_daemon.provider.hosters import HosterRegistry
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.series import SeriesManager
from aniworld_daemon.store.database import Database

LOGGER = logging.getLogger(__name__)

PERSIST_INTERVAL = 5.0  # seconds between writes of an active download's byte count
SPACE_CHECK_INTERVAL = 30.0  # seconds between free-space checks while the queue is paused for space
PAUSED_SETTING = "queue_paused"  # a user's pause survives restarts


class CancelReason(StrEnum):
    """Why an active download is being stopped; decides what happens to its item and partial files."""

    STOP = "stop"  # queue stopped: back to pending, partial file kept for resume
    SHUTDOWN = "shutdown"  # daemon stopping: the same
    CANCEL = "cancel"  # the user cancelled it: item `cancelled`, partial file removed
    REMOVE = "remove"  # the user removed it: item deleted, partial file removed


def free_bytes(path: Path) -> int:
    """Free space on the file system holding `path`, for an unprivileged user."""
    return shutil.disk_usage(path).free


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
        self.language: Language | None = item.language
        self.hoster: str | None = item.hoster
        self.progress: ytdlp.Progress | None = None
        self.persisted_at = time.monotonic()


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
        *,
        only: Iterable[str] | None = None,  # work on these items (and those it adds) only: a foreground run
        free_space: Callable[[Path], int] = free_bytes,
        space_check_interval: float = SPACE_CHECK_INTERVAL,
    ) -> None:
        self._db = db
        self._provider = provider
        self._http = http
        self._bus = bus
        self._series = series
        self._config = config
        self._only: set[str] | None = set(only) if only is not None else None
        self._free_space = free_space
        self._space_check_interval = space_check_interval
        self._job = self._build_job(config)
        self._outcomes = Outcomes(db, bus, http, config)
        self._active: dict[str, _Active] = {}
        self._running = False
        self._paused = False
        self._space_problem: str | None = None
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
            ytdlp.YtdlpOptions(retries=3, fragment_retries=3, rate_limit=downloads.rate_limit),
        )

    # -- life cycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the queue after a crash or stop, then process it if `auto_start` says so."""
        if self._only is None:
            reset = await self._db.reset_interrupted_downloads()
            if reset:
                LOGGER.info("Resuming %d download(s) interrupted by the last stop", reset)
            await self._remove_orphan_files()
            self._paused = bool(await self._db.get_setting(PAUSED_SETTING, False))
            self._running = self._config.downloads.auto_start
        else:
            # A foreground `download` works on its own items only, while the daemon may run on the same queue:
            # the daemon's items, temp files and pause are not its business.
            self._running = True
        self._unsubscribe = self._bus.subscribe(self._on_series_removed, (EventType.SERIES_REMOVED,))
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
        self._config = config
        self._job = self._build_job(config)
        self._outcomes.config = config
        self._wake.set()

    async def _remove_orphan_files(self) -> None:
        folder = temp_dir(self._config.library.path)
        live = {item.id for item in await self._db.list_downloads((DownloadStatus.PENDING,))}
        removed = await asyncio.to_thread(_remove_orphans, folder, live)
        if removed:
            LOGGER.info("Removed %d temporary file(s) that belong to no queued download", removed)

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
        if self._only is not None:
            self._only.update(item.id for item in added)
        for item in added:
            await self._db.set_episode_state(item.series_key, item.season, item.number, EpisodeState.QUEUED)
        if added:
            LOGGER.info("Queued %d download(s)", len(added))
            self._bus.emit(QueueStatus(action=QueueAction.ITEMS_ADDED, item_ids=tuple(item.id for item in added)))
            self._wake.set()
        return added

    async def remove(self, ids: Sequence[str]) -> int:
        """Remove items (an active one is cancelled first, its partial file deleted); return how many existed."""
        items = await self._existing(ids)
        await self._cancel_active([item.id for item in items], CancelReason.REMOVE)
        removed = await self._db.delete_downloads(item.id for item in items)
        for item in items:
            if item.status in (DownloadStatus.PENDING, DownloadStatus.DOWNLOADING):
                await self._db.set_episode_state(item.series_key, item.season, item.number, EpisodeState.MISSING)
        await asyncio.to_thread(_remove_files, temp_dir(self._config.library.path), [item.id for item in items])
        if removed:
            self._bus.emit(QueueStatus(action=QueueAction.ITEMS_REMOVED, item_ids=tuple(item.id for item in items)))
        return removed

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
        await self._db.reorder_download(item_id, new_position)
        self._bus.emit(QueueStatus(action=QueueAction.QUEUE_REORDERED, item_ids=(item_id,)))

    async def retry(self, ids: Sequence[str] | None = None) -> int:
        """Queue failed (or cancelled) items again from attempt one; no ids = every failed item."""
        if ids is None:
            items = await self._db.list_downloads((DownloadStatus.FAILED,))
        else:
            retryable = (DownloadStatus.FAILED, DownloadStatus.CANCELLED)
            items = [item for item in await self._existing(ids) if item.status in retryable]
        retried: list[str] = []
        for item in items:
            try:
                await self._db.update_download(
                    item.id,
                    status=DownloadStatus.PENDING,
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
            self._wake.set()
        return len(retried)

    async def retry_one(self, item_id: str) -> None:
        """Retry one failed or cancelled item; NotFoundError when there is no such item to retry."""
        if not await self.retry([item_id]):
            raise NotFoundError(f"no failed queue item {item_id}", details={"id": item_id})

    async def clear_completed(self) -> int:
        """Delete every completed item; return how many."""
        return await self._clear(DownloadStatus.COMPLETED, QueueAction.COMPLETED_CLEARED)

    async def clear_failed(self) -> int:
        """Delete every failed item; return how many."""
        return await self._clear(DownloadStatus.FAILED, QueueAction.FAILED_CLEARED)

    async def _clear(self, status: DownloadStatus, action: QueueAction) -> int:
        ids = [item.id for item in await self._db.list_downloads((status,))]
        count = await self._db.delete_downloads(ids)
        if count:
            self._bus.emit(QueueStatus(action=action, item_ids=tuple(ids)))
        return count

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
            await self._db.set_setting(PAUSED_SETTING, True)
            self._bus.emit(QueuePaused(reason="user"))

    async def resume(self) -> None:
        """Undo `pause` (idempotent)."""
        if self._paused:
            self._paused = False
            await self._db.set_setting(PAUSED_SETTING, False)
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
        return self._paused or self._space_problem is not None

    def problems(self) -> list[str]:
        """Health problems of the queue (low disk space), for /health and MQTT."""
        return [self._space_problem] if self._space_problem else []

    def active(self) -> list[ActiveDownload]:
        """The downloads in progress, in start order."""
        return [
            ActiveDownload(entry.item, entry.language, entry.hoster, entry.progress) for entry in self._active.values()
        ]

    async def status(self) -> QueueSnapshot:
        """The whole queue with statistics."""
        if self._space_problem:
            reason: str | None = "low_disk_space"
        else:
            reason = "user" if self._paused else None
        return build_snapshot(
            await self._db.list_downloads(), self.active(), running=self._running, paused=self.paused, reason=reason
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

    async def _start_due(self) -> float | None:
        """Start what may start now; return seconds until the next check (None: until woken)."""
        if not self._running or self._paused:
            return None
        downloads = self._config.downloads
        if not await self._space_ok():
            return self._space_check_interval
        now = datetime.now(UTC)
        if downloads.window is not None and not in_window(downloads.window, now.astimezone()):
            wait = seconds_until_window(downloads.window, now.astimezone())
            LOGGER.debug("Outside the download window; next start in %.0f s", wait)
            return wait
        site = urlsplit(self._config.provider.base_url).netloc.lower()
        for cooldown in self._http.cooldowns():
            if cooldown.host == site:
                # Every item starts with the episode page: starting them now would only bounce each off the cooldown.
                return (cooldown.until - now).total_seconds() + COOLDOWN_MARGIN.total_seconds()
        while len(self._active) < downloads.max_concurrent:
            item = await self._db.next_pending(now, self._only)
            if item is None:
                due = await self._db.next_pending_due(self._only)
                return None if due is None else (due - datetime.now(UTC)).total_seconds()
            claimed = await self._db.claim_download(item.id, now)
            if claimed is not None:
                self._launch(claimed)
        return None

    async def _space_ok(self) -> bool:
        """Check free space; pause (and report) below `min_free_space`, resume when space is back."""
        library = self._config.library.path
        minimum = self._config.downloads.min_free_space
        try:
            free = await asyncio.to_thread(self._free_space, library)
        except OSError as err:
            free, problem = 0, f"cannot read the free space of {library}: {err.strerror or err}"
        else:
            problem = (
                f"only {_size(free)} free on {library}, below downloads.min_free_space ({_size(minimum)});"
                " downloads are paused until space is freed"
            )
        if free >= minimum:
            if self._space_problem is not None:
                LOGGER.info("Free space is back (%s); resuming downloads", _size(free))
                self._space_problem = None
                self._bus.emit(QueueResumed())
            return True
        if self._space_problem is None:
            LOGGER.warning("%s", problem)
            self._bus.emit(QueuePaused(reason="low_disk_space"))
        self._space_problem = problem
        return False

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
            LOGGER.exception("Recording the outcome of %s failed", label(item))
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
            )
            imported = await self._job.run(item, series, languages, control)
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
            else:
                await self._outcomes.failed_attempt(item, err.code, err.message)
        except Exception as err:  # a bug must not wedge the queue: count it as a failed attempt
            LOGGER.exception("Downloading %s failed unexpectedly", label(item))
            await self._outcomes.failed_attempt(item, "internal_error", f"unexpected error: {err!r}")
        else:
            await self._outcomes.completed(item, imported)

    async def _with_metadata(self, series: Series) -> Series:
        """A series never rescanned (just added to the config) gets its title and folder from its page, once."""
        # One lock per series: the items of a new series start together, and one page read is enough for all.
        async with self._metadata_locks.setdefault(series.key, asyncio.Lock()):
            current = await self._db.get_series(series.key) or series
            if current.folder:
                return current
            return await self._series.refresh_metadata(current, await self._provider.series(series.key))

    async def _on_series_removed(self, event: Event) -> None:
        # The series' queue items went with it (ON DELETE CASCADE); what still runs for it must stop too.
        key = getattr(event.data, "key", None)
        ids = [entry.item.id for entry in self._active.values() if entry.item.series_key == key]
        if ids:
            LOGGER.info("Stopping %d download(s) of %s: the series is no longer followed", len(ids), key)
            await self._cancel_active(ids, CancelReason.REMOVE)

    def _on_hoster(self, entry: _Active, language: Language, hoster: str) -> None:
        entry.language, entry.hoster = language, hoster
        item = entry.item
        self._spawn(self._db.update_download(item.id, language=language, hoster=hoster))
        self._bus.emit(
            DownloadStarted(
                item_id=item.id,
                series_key=item.series_key,
                season=item.season,
                episode=item.number,
                language=language.value,
                hoster=hoster,
            )
        )

    def _on_progress(self, entry: _Active, progress: ytdlp.Progress) -> None:
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
            await self._db.update_download(item.id, status=DownloadStatus.PENDING, bytes_downloaded=bytes_done)
            LOGGER.info("%s interrupted (%s); it resumes later", label(item), reason.value)
            return
        if reason is CancelReason.CANCEL:
            await self._outcomes.cancelled(item)  # it removes the partial files itself
            return
        # Removed: its row goes (or went with its series), and its partial files with it.
        await asyncio.to_thread(ytdlp.remove_files, temp_dir(self._config.library.path), item.id)
        self._bus.emit(cancelled_event(item))


# -- helpers ----------------------------------------------------------------------------------------------------


def _size(value: int) -> str:
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if value >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value} bytes"


def _remove_orphans(folder: Path, live: set[str]) -> int:
    """Delete everything in the temp dir whose name does not start with a live item's id."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.name.split(".", 1)[0] in live:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def _remove_files(folder: Path, ids: Iterable[str]) -> None:
    for item_id in ids:
        ytdlp.remove_files(folder, item_id)
