"""The composition root: builds every component, starts them in order, stops them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import voluptuous as vol

from aniworld_daemon import __version__
from aniworld_daemon.commands import AUTO_DOWNLOAD, SCHEDULE_OVERRIDE, build_command_table
from aniworld_daemon.config import Config, ProviderConfig, load_config, rescan_schedule
from aniworld_daemon.downloads.engine import Downloader
from aniworld_daemon.downloads.tempfiles import TempFiles
from aniworld_daemon.errors import AniworldError, ConfigError, StorageError
from aniworld_daemon.events import EventBus, ServerShutdown
from aniworld_daemon.health import HealthChecks
from aniworld_daemon.log import apply_log_level
from aniworld_daemon.metrics import Metrics
from aniworld_daemon.mqtt.bridge import MqttBridge, configuration_url
from aniworld_daemon.naming import NamingTemplate
from aniworld_daemon.provider.aniworld import AniworldProvider
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.rescan import Rescanner, ScanResult
from aniworld_daemon.scheduler import Scheduler
from aniworld_daemon.series import SeriesManager
from aniworld_daemon.store.backups import BACKUP_ANCHOR, Backup, BackupReason, Backups, DataDirLock
from aniworld_daemon.store.database import Database
from aniworld_daemon.systemd import SystemdNotifier
from aniworld_daemon.web.api import Api
from aniworld_daemon.web.auth import Auth
from aniworld_daemon.web.server import WebServer

LOGGER = logging.getLogger(__name__)

DB_FILE = "aniworld.db"
STOP_TIMEOUT = 30.0  # the whole stop, all components together
# Changing these needs a restart; everything else is applied by a reload (SIGHUP).
RESTART_FIELDS = ("data_dir", "api", "mqtt")


class Application:
    """Owns every component and background task of one daemon instance."""

    def __init__(self, config: Config, *, notifier: SystemdNotifier | None = None, verbose: bool = False) -> None:
        self.config = config
        self._verbose = verbose  # -v wins over logging.level, also across reloads
        self.bus = EventBus()
        # Every process on this data dir holds the lock shared; a restore needs it alone.
        self.lock = DataDirLock(config.data_dir)
        self.db = Database(config.data_dir / DB_FILE, before_migration=self._backup_before_migration)
        self.http = HttpClient(config.provider)
        self.provider = AniworldProvider(self.http, config.provider.base_url)
        self.series = SeriesManager(self.db, self.provider, self.bus, NamingTemplate(config.library.naming))
        self.temp = TempFiles(config.library.path)
        self.downloader = Downloader(self.db, self.provider, self.http, self.bus, self.series, config, self.temp)
        # auto_download: each rescan hands its missing episodes to the download queue.
        self.rescanner = Rescanner(
            self.db, self.provider, self.bus, self.series, config, queue=self.downloader, temp=self.temp
        )
        self.scheduler = Scheduler(
            config.schedule,
            self._scheduled_rescan,
            backup_every=config.backup.every,
            backup_job=self._scheduled_backup,
        )
        self.backups = Backups(self.db, config.data_dir, config.source, config.backup.keep)
        self.commands = build_command_table(
            self.downloader,
            self.series,
            self.rescanner,
            self.provider,
            scheduler=self.scheduler,
            backups=self.backups,
            settings=self.db,
        )
        self.health = HealthChecks(
            self.db,
            self.http,
            config.library.path,
            config.downloads.min_free_space,
            problem_sources=[self.downloader.problems],
        )
        self.notifier = notifier or SystemdNotifier()
        self.mqtt: MqttBridge | None = None
        if config.mqtt.enabled:
            self.mqtt = MqttBridge(
                config.mqtt,
                bus=self.bus,
                db=self.db,
                commands=self.commands,
                downloader=self.downloader,
                series=self.series,
                rescanner=self.rescanner,
                scheduler=self.scheduler,
                health=self.health,
                version=__version__,
                configuration_url=configuration_url(config.api.host, config.api.port),
            )
            self.health.add_check(self.mqtt.check)
        self.auth = Auth(config.api, config.data_dir, self.db)
        self.metrics = Metrics(self.bus, self.http)
        api = Api(
            commands=self.commands,
            bus=self.bus,
            downloader=self.downloader,
            series=self.series,
            db=self.db,
            rescanner=self.rescanner,
            scheduler=self.scheduler,
            health=self.health,
            auth=self.auth,
            metrics=self.metrics,
            version=__version__,
            started=time.monotonic(),
            config=lambda: self.config,
            reload=self.reload,
        )
        self.web = WebServer(config.api, version=__version__, health=self.health.report, api=api)
        self._stop_stack: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_requested = asyncio.Event()
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every component in order; on failure, stop what had started and re-raise."""
        LOGGER.info("Starting aniworld-daemon %s with %s", __version__, self.config.source)
        try:
            await self._prepare_directories()
            await self._start_step("store", self._open_store, self._close_store)
            await self._start_step("http", self.http.start, self.http.close)
            await self._start_step("series", self._sync_series, _nothing)
            # A report left `running` by a kill becomes `interrupted` before any new rescan can start.
            await self._start_step("rescans", self.rescanner.recover, self.rescanner.stop)
            # Before the scheduler: a start-up rescan queues into a restored queue.
            await self._start_step("downloader", self.downloader.start, self.downloader.stop)
            await self._start_step("scheduler", self._start_scheduler, self.scheduler.stop)
            if self.mqtt is not None:
                await self._start_step("mqtt", self.mqtt.start, self.mqtt.stop)
            await self._start_step("auth", self.auth.start, _nothing)
            # The web server is bound last: once it answers, everything behind it is ready.
            await self._start_step("web", self.web.start, self.web.stop)
        except BaseException:
            await self._stop_components(deadline=time.monotonic() + STOP_TIMEOUT)
            raise

    async def _sync_series(self) -> None:
        await self.series.sync_config(self.config.series)

    async def _start_scheduler(self) -> None:
        # The last run survives restarts: it is the start of the newest stored scan report.
        latest = await self.db.list_scans(limit=1)
        auto_download = await self.db.get_setting(AUTO_DOWNLOAD)
        if isinstance(auto_download, bool):
            self.rescanner.set_auto_download(auto_download)
        override = await self.db.get_setting(SCHEDULE_OVERRIDE)
        if override is not None:
            try:
                self.scheduler.set_override(rescan_schedule(override))
            except vol.Invalid as err:  # stored by an older version with other rules: the config's schedule runs
                LOGGER.warning("Ignoring the stored schedule override %r: %s", override, err)
        await self.scheduler.start(
            last_run=latest[0].started_at if latest else None, backup_anchor=await self._backup_anchor()
        )

    async def _backup_anchor(self) -> datetime:
        """What the backup schedule counts from: the newest backup, else the first start that had none (stored)."""
        newest = await self.backups.newest()
        if newest is not None:
            return newest.created_at
        stored = await self.db.get_setting(BACKUP_ANCHOR)
        if isinstance(stored, str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(stored)
        now = datetime.now(UTC)
        # Stored, so a daemon restarted more often than backup.every still takes its first backup in time.
        await self.db.set_setting(BACKUP_ANCHOR, now.isoformat())
        return now

    async def _scheduled_backup(self) -> Backup:
        return await self.backups.create(BackupReason.SCHEDULED)

    async def _backup_before_migration(self, current: int, target: int) -> None:
        LOGGER.info("Backing up the database before migrating it from schema version %d to %d", current, target)
        await self.backups.create(BackupReason.MIGRATION)

    @asynccontextmanager
    async def components(self) -> AsyncIterator[Application]:
        """Start only what the CLI's commands need: the store, the HTTP client, the followed series, the queue's state.

        A daemon may run on the same data meanwhile. As the daemon's start does, this applies the config's `series:`
        list and creates the data dir and the library folder when they do not exist yet.
        """
        try:
            await self._prepare_directories()
            await self._start_step("store", self._open_store, self._close_store)
            await self._start_step("http", self.http.start, self.http.close)
            await self._start_step("series", self._sync_series, self.rescanner.stop)
            await self._start_step("queue state", self.downloader.restore, self.downloader.stop)
            yield self
            await self.bus.drain()
        finally:
            await self._stop_components(deadline=time.monotonic() + STOP_TIMEOUT)

    @asynccontextmanager
    async def storage(self) -> AsyncIterator[Application]:
        """Start only the store (and take the data dir's shared lock): for `aniworld-daemon backup`."""
        try:
            await self._prepare_directories()
            await self._start_step("store", self._open_store, self._close_store)
            yield self
        finally:
            await self._stop_components(deadline=time.monotonic() + STOP_TIMEOUT)

    async def _open_store(self) -> None:
        # The data dir's lock first: a restore running now must finish before the database is opened.
        self.lock.acquire_shared()
        try:
            await self.db.open()
        except BaseException:
            self.lock.release()
            raise

    async def _close_store(self) -> None:
        try:
            await self.db.close()
        finally:
            self.lock.release()

    async def _scheduled_rescan(self, trigger: str) -> ScanResult:
        return await self.rescanner.rescan(trigger)

    async def _prepare_directories(self) -> None:
        for what, path in (("data dir", self.config.data_dir), ("library", self.config.library.path)):
            if await asyncio.to_thread(path.is_dir):
                continue
            LOGGER.info("Creating %s", path)
            try:
                await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
            except OSError as err:
                raise StorageError(f"cannot create the {what} {path}: {err.strerror or err}") from err

    async def _start_step(
        self, name: str, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
    ) -> None:
        LOGGER.debug("Starting %s", name)
        await start()
        self._stop_stack.append((name, stop))

    async def stop(self) -> None:
        """Stop components in reverse order within STOP_TIMEOUT, then cancel leftover background tasks."""
        if self._stopping:
            return
        self._stopping = True
        deadline = time.monotonic() + STOP_TIMEOUT
        self.notifier.stopping()
        self.bus.emit(ServerShutdown())
        await self.bus.drain()
        await self._stop_components(deadline)
        await self._cancel_tasks()
        self.notifier.close()
        LOGGER.info("Stopped")

    async def _stop_components(self, deadline: float) -> None:
        while self._stop_stack:
            name, stop = self._stop_stack.pop()
            remaining = max(0.1, deadline - time.monotonic())
            LOGGER.debug("Stopping %s", name)
            try:
                await asyncio.wait_for(stop(), timeout=remaining)
            except TimeoutError:
                LOGGER.error("Stopping %s took longer than the stop budget; abandoned", name)
            except Exception:
                LOGGER.exception("Stopping %s failed", name)

    # -- background tasks -----------------------------------------------------------------------------------------

    def create_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` as a named background task: tracked, its failure logged, cancelled on stop."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            LOGGER.error("Background task %s failed", task.get_name(), exc_info=error)

    async def _cancel_tasks(self) -> None:
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- health, reload -------------------------------------------------------------------------------------------

    async def reload(self) -> list[str]:
        """Re-read and re-validate the config file; an invalid file is refused (its problems returned), kept running."""
        LOGGER.info("Reloading %s", self.config.source)
        try:
            new = await asyncio.to_thread(load_config, self.config.source)
        except ConfigError as err:
            LOGGER.error("Reload refused, keeping the running configuration; %d problem(s):", len(err.errors))
            for line in err.errors:
                LOGGER.error("  %s", line)
            self.notifier.status("Running; last reload refused (invalid configuration)")
            return err.errors
        for name in RESTART_FIELDS:
            if getattr(new, name) != getattr(self.config, name):
                LOGGER.warning("Changes to '%s' take effect after a restart", name)
        self.config = new
        self.http.reconfigure(new.provider)
        self.provider.reconfigure(new.provider.base_url)
        self.downloader.reconfigure(new)
        self.series.reconfigure(NamingTemplate(new.library.naming))
        self.health.reconfigure(new.library.path, new.downloads.min_free_space)
        self.rescanner.reconfigure(new)
        self.scheduler.reconfigure(new.schedule)
        # data_dir needs a restart: the backups stay beside the database in use until then.
        self.backups.reconfigure(self.db.path.parent, new.source, new.backup.keep)
        newest = await self.backups.newest()
        self.scheduler.reconfigure_backups(new.backup.every, newest.created_at if newest else None)
        await self.series.sync_config(new.series)
        apply_log_level(new.logging.level, verbose=self._verbose)
        self.notifier.status(self.status_line())
        LOGGER.info("Reloaded configuration")
        return []

    def status_line(self) -> str:
        """A one-line summary for `systemctl status`."""
        addresses = ", ".join(f"{host}:{port}" for host, port in self.web.addresses)
        return f"Running; {len(self.config.series)} series configured; HTTP on {addresses}"

    # -- the daemon's main ----------------------------------------------------------------------------------------

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop; SIGHUP reloads. Returns the process exit status."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_log_loop_exception)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.create_task(self.reload(), name="reload"))
        try:
            try:
                await self.start()
            except AniworldError as err:
                LOGGER.error("Start-up failed: %s", err.message)
                return 1
            # Everything start-up made (modules, classes, the components) lives as long as the process: moved out of
            # the collector's sight, a full collection scans what requests create, not ~65k long-lived objects
            # (measured: pauses of 30+ ms every second under API load became 0.4 ms).
            gc.collect()
            gc.freeze()
            self.create_task(self.health.watch(self.bus), name="health-watch")
            self.notifier.ready(self.status_line())
            if (interval := self.notifier.watchdog_interval) is not None:
                self.create_task(self._watchdog(interval), name="systemd-watchdog")
            LOGGER.info("Ready")
            await self._stop_requested.wait()
            await self.stop()
            return 0
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def _request_stop(self, sig: signal.Signals) -> None:
        if self._stop_requested.is_set():
            LOGGER.info("Already stopping (got %s again)", sig.name)
            return
        LOGGER.info("Got %s, stopping", sig.name)
        self._stop_requested.set()

    async def _watchdog(self, interval: float) -> None:
        # Pinging from the loop itself means a blocked loop stops the pings and systemd restarts us.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    error = context.get("exception")
    LOGGER.error("Unhandled error in the event loop: %s", context.get("message", "unknown"), exc_info=error)


@asynccontextmanager
async def open_site(config: ProviderConfig) -> AsyncIterator[tuple[HttpClient, AniworldProvider]]:
    """A started HTTP client and the provider on it, closed on exit: the CLI's site commands need no config file."""
    async with HttpClient(config) as http:
        yield http, AniworldProvider(http, config.base_url)


async def _nothing() -> None:
    """The stop of a start step that leaves nothing running."""
