"""When rescans and backups run: the configured schedules as APScheduler jobs on the daemon's event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from tzlocal import get_localzone

from aniworld_daemon.config import CronSchedule, DailySchedule, RescanSchedule, ScheduleConfig
from aniworld_daemon.validators import WEEKDAYS, cron_weekdays

LOGGER = logging.getLogger(__name__)

JOB_ID = "rescan"
STARTUP_JOB_ID = "startup"
BACKUP_JOB_ID = "backup"
# A run may start this late (event loop busy, machine suspended) before it counts as missed.
MISFIRE_GRACE_SECONDS = 3600
# Rescans of many daemons should not all hit the site in the same second: clock-based runs start up to this late.
MAX_JITTER_SECONDS = 120.0
# Intervals this short are for trying things out: their runs stay on the beat.
MIN_JITTERED_INTERVAL = timedelta(seconds=10)

RescanJob = Callable[[str], Awaitable[object]]
"""The rescan the scheduler runs, called with the trigger name: "schedule", "startup" or run_now()'s."""
BackupJob = Callable[[], Awaitable[object]]
"""The scheduled backup."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def first_backup_due(anchor: datetime, every: timedelta, now: datetime) -> datetime:
    """When the first scheduled backup after a start is due: `every` after `anchor` (the newest backup), now if past.

    Counting from the newest backup, not from the start, keeps a daemon restarted more often than `every` backing up.
    """
    return max(now, anchor + every)


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the scheduler reports: the schedule in words, and the next and last run."""

    description: str  # e.g. "crontab '0 3 * * *'", "daily at 03:00 on mon, thu", "every 6h"
    next_run: datetime | None  # aware UTC; None while the scheduler is not started
    last_run: datetime | None  # aware UTC; start of the last run the scheduler started (or given at construction)
    running: bool  # a run started by this scheduler (scheduled, startup or run_now) is in progress


def build_trigger(schedule: RescanSchedule, tz: tzinfo) -> BaseTrigger:
    """The APScheduler trigger for a schedule, with jitter: clock-based up to 120 s, intervals up to 10% (max 120 s).

    Intervals under 10 s get no jitter. Crontabs keep cron(8)'s meaning of weekday numbers and of day OR weekday.
    """
    if isinstance(schedule, CronSchedule):
        return _crontab_trigger(schedule.expression, tz)
    if isinstance(schedule, DailySchedule):
        days = "*" if set(schedule.days) >= set(WEEKDAYS) else ",".join(schedule.days)
        return CronTrigger(
            day_of_week=days,
            hour=schedule.at.hour,
            minute=schedule.at.minute,
            second=schedule.at.second,
            timezone=tz,
            jitter=MAX_JITTER_SECONDS,
        )
    jitter = None
    if schedule.every >= MIN_JITTERED_INTERVAL:
        jitter = min(MAX_JITTER_SECONDS, schedule.every.total_seconds() / 10)
    return IntervalTrigger(seconds=schedule.every.total_seconds(), timezone=tz, jitter=jitter)


def _crontab_trigger(expression: str, tz: tzinfo) -> BaseTrigger:
    """A crontab with cron(8)'s meaning, which CronTrigger.from_crontab does not give in two places (see below)."""
    minute, hour, day, month, weekday = expression.split()
    # APScheduler 3 counts weekdays from Monday = 0 (documented in from_crontab), so '1-5' would mean Tue-Sat and
    # '0' Monday; the field is passed on as day names instead, which mean the same in both.
    weekdays = cron_weekdays(weekday)

    def cron(day_field: str, weekday_field: str, jitter: float | None) -> BaseTrigger:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day_field,
            month=month,
            day_of_week=weekday_field,
            timezone=tz,
            jitter=jitter,
        )

    if day.startswith("*") or weekday.startswith("*"):
        return cron(day, weekdays, MAX_JITTER_SECONDS)
    # cron(8): when both day fields are restricted (do not start with '*'), a day matching either one runs, so
    # '0 3 1 * mon' runs on the 1st and on every Monday. CronTrigger requires both; the union is two triggers.
    return OrTrigger([cron(day, "*", None), cron("*", weekdays, None)], jitter=MAX_JITTER_SECONDS)


def _describe(schedule: RescanSchedule) -> str:
    """The schedule in words for logs and the API."""
    if isinstance(schedule, CronSchedule):
        return f"crontab '{schedule.expression}'"
    if isinstance(schedule, DailySchedule):
        at = schedule.at.isoformat(timespec="seconds" if schedule.at.second else "minutes")
        if set(schedule.days) >= set(WEEKDAYS):
            return f"daily at {at}"
        return f"daily at {at} on {', '.join(sorted(schedule.days, key=WEEKDAYS.index))}"
    return f"every {_format_duration(schedule.every)}"


def _format_duration(duration: timedelta) -> str:
    """'6h', '1h30m', '7d', '45s': the units the config accepts."""
    seconds = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _aware_utc(value: datetime | None) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        raise ValueError("last_run must be an aware datetime")
    return value.astimezone(UTC) if value is not None else None


class Scheduler:
    """Runs rescans on the configured schedule (AsyncIOScheduler, memory job store rebuilt from config)."""

    def __init__(
        self,
        config: ScheduleConfig,
        job: RescanJob,
        *,
        last_run: datetime | None = None,
        tz: tzinfo | None = None,
        backup_every: timedelta | None = None,
        backup_job: BackupJob | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._config = config
        self._backup_every = backup_every  # None: no scheduled backups
        self._backup_job = backup_job
        self._backup_anchor: datetime | None = None  # the newest backup, or when counting started (see start())
        self._clock = clock  # now, aware; tests pass a clock of their own
        self._override: RescanSchedule | None = None  # set over the API; wins over config.rescan until dropped
        self._job = job
        self._last_run = _aware_utc(last_run)
        # tzlocal (APScheduler's own default) gives the named zone, so '03:00' stays 03:00 across DST changes; the
        # fixed offset of datetime.now().astimezone() would not.
        self._tz: tzinfo = tz if tz is not None else get_localzone()
        self._scheduler = AsyncIOScheduler(timezone=self._tz)
        self._started = False
        self._stopping = False
        self._active = 0  # runs in progress, scheduled or run_now()
        self._tasks: set[asyncio.Task[object]] = set()  # executor tasks inside _scheduled_run, cancelled by stop()

    async def start(self, *, last_run: datetime | None = None, backup_anchor: datetime | None = None) -> None:
        """Start on the running loop and add the rescan job; with run_on_start, one run starts now (not awaited).

        `last_run`: when the last rescan ran (the newest stored scan report), so it survives restarts.
        `backup_anchor`: when the newest backup was taken (or when counting started); the first scheduled backup is
        due `backup_every` after it, or at once when that is past.
        """
        if self._started:
            raise RuntimeError("the scheduler was started already")
        if last_run is not None:
            self._last_run = _aware_utc(last_run)
        self._started = True
        self._scheduler.start()  # binds to the running loop
        self._add_rescan_job()
        self._backup_anchor = _aware_utc(backup_anchor) or self._clock()
        self._add_backup_job()
        if self._config.run_on_start:
            self._add_job(STARTUP_JOB_ID, DateTrigger(run_date=datetime.now(self._tz), timezone=self._tz), "startup")
        LOGGER.info(
            "Rescans run %s%s; the next at %s",
            _describe(self.rescan),
            ", and now at startup" if self._config.run_on_start else "",
            self._format_next_run(),
        )

    async def stop(self) -> None:
        """Stop scheduling and cancel a scheduled run in progress; returns once no task of ours is left.

        A run_now() call runs in its caller's task and is not cancelled. Calling stop() again, or before start(),
        does nothing.
        """
        if not self._started or self._stopping:
            return
        self._stopping = True
        # Paused first, so a wakeup already queued on the loop submits nothing. Executor tasks created before are
        # queued ahead of the real shutdown below: they start, see _stopping and return. A task that shutdown()
        # cancelled before its first step would be logged by APScheduler as a job error.
        self._scheduler.pause()
        # AsyncIOScheduler.shutdown() only queues the real shutdown on the loop; its event says it has run. It cancels
        # the executor's tasks, so a run in progress (always one of ours) gets CancelledError.
        stopped = asyncio.Event()
        self._scheduler.add_listener(lambda _event: stopped.set(), EVENT_SCHEDULER_SHUTDOWN)
        self._scheduler.shutdown(wait=False)
        await stopped.wait()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()  # already cancelled by the shutdown; kept so stop() does not depend on that
        await asyncio.gather(*tasks, return_exceptions=True)
        LOGGER.debug("Scheduler stopped")

    @property
    def rescan(self) -> RescanSchedule:
        """The rescan schedule in force: the runtime override, else the configuration's."""
        return self._override if self._override is not None else self._config.rescan

    @property
    def overridden(self) -> bool:
        """Whether a runtime override is in force."""
        return self._override is not None

    def reconfigure(self, config: ScheduleConfig) -> None:
        """Use a reloaded schedule (SIGHUP): the job is replaced when the rescan schedule changed, kept otherwise."""
        before = self.rescan
        self._config = config
        self._reschedule(before)

    def set_override(self, schedule: RescanSchedule | None) -> None:
        """Run rescans on `schedule` instead of the configuration's (None: the configuration's again)."""
        before = self.rescan
        self._override = schedule
        self._reschedule(before)

    def _reschedule(self, before: RescanSchedule) -> None:
        if not self._started or self._stopping:
            return
        if self.rescan == before:
            # Re-adding an unchanged interval job would restart its interval: a reload must not postpone rescans.
            LOGGER.debug("Rescan schedule unchanged: %s", _describe(self.rescan))
            return
        self._add_rescan_job()
        LOGGER.info("Rescans now run %s; the next at %s", _describe(self.rescan), self._format_next_run())

    def reconfigure_backups(self, every: timedelta | None, anchor: datetime | None) -> None:
        """Use a reloaded `backup.every`; `anchor` is the newest backup. An unchanged interval keeps its job."""
        if every == self._backup_every:
            return
        self._backup_every = every
        if anchor is not None:
            self._backup_anchor = _aware_utc(anchor)
        if self._started and not self._stopping:
            self._add_backup_job()

    def next_backup(self) -> datetime | None:
        """When the next scheduled backup is due (UTC); None when none is scheduled or the scheduler is not started."""
        job = self._scheduler.get_job(BACKUP_JOB_ID) if self._started and not self._stopping else None
        return job.next_run_time.astimezone(UTC) if job is not None and job.next_run_time is not None else None

    def _add_backup_job(self) -> None:
        if self._backup_every is None or self._backup_job is None:
            if self._scheduler.get_job(BACKUP_JOB_ID) is not None:
                self._scheduler.remove_job(BACKUP_JOB_ID)
            return
        now = self._clock()
        due = first_backup_due(self._backup_anchor or now, self._backup_every, now)
        # The trigger gives the runs after the first; the first is due from the anchor, so a restart does not
        # postpone it. No jitter: a backup stays on this machine.
        self._scheduler.add_job(
            self._scheduled_backup,
            IntervalTrigger(seconds=self._backup_every.total_seconds(), timezone=self._tz),
            id=BACKUP_JOB_ID,
            name="scheduled backup",
            next_run_time=due.astimezone(self._tz),
            misfire_grace_time=MISFIRE_GRACE_SECONDS,
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )
        LOGGER.info("Backups are taken every %s; the next at %s", _format_duration(self._backup_every), due.isoformat())

    async def _scheduled_backup(self) -> None:
        """The backup job APScheduler runs: errors logged, never raised (the next run is due all the same)."""
        if self._stopping or self._backup_job is None:
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._backup_job()
        except asyncio.CancelledError:
            LOGGER.info("The scheduled backup was cancelled: the scheduler is stopping")
        except Exception:
            LOGGER.exception("The scheduled backup failed")
        finally:
            self._tasks.discard(task)

    def state(self) -> ScheduleState:
        """The schedule in words, the next run (None unless started), the last run, and whether a run is going on."""
        return ScheduleState(
            description=_describe(self.rescan),
            next_run=self._next_run(),
            last_run=self._last_run,
            running=self._active > 0,
        )

    async def run_now(self, trigger: str = "manual") -> object:
        """Run the job now in the caller's task and return its result (its exception propagates); updates last_run.

        Works without start(); does not wait for, or skip because of, a scheduled run in progress.
        """
        return await self._run(trigger)

    def _next_run(self) -> datetime | None:
        """The schedule's next run in UTC (a pending startup run is left out: it is due now and gone at once)."""
        job = self._scheduler.get_job(JOB_ID) if self._started and not self._stopping else None
        return job.next_run_time.astimezone(UTC) if job is not None and job.next_run_time is not None else None

    def _format_next_run(self) -> str:
        next_run = self._next_run()
        return next_run.astimezone(self._tz).isoformat(timespec="seconds") if next_run is not None else "never"

    def _add_rescan_job(self) -> None:
        self._add_job(JOB_ID, build_trigger(self.rescan, self._tz), "schedule")

    def _add_job(self, job_id: str, trigger: BaseTrigger, name: str) -> None:
        self._scheduler.add_job(
            self._scheduled_run,
            trigger,
            args=[name],
            id=job_id,
            name=f"{name} rescan",
            misfire_grace_time=MISFIRE_GRACE_SECONDS,
            coalesce=True,  # runs missed while the machine slept are one run, not a burst
            max_instances=1,
            replace_existing=True,
        )

    async def _scheduled_run(self, trigger: str) -> None:
        """The job APScheduler runs (in a task of its AsyncIOExecutor): one rescan, errors logged, never raised."""
        if self._stopping:
            return
        if self._active:
            # max_instances only covers one job id; the startup job, the schedule and run_now() share this check.
            LOGGER.info("Skipping a rescan (%s): another one is still running", trigger)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        LOGGER.info("Starting a rescan (%s)", trigger)
        try:
            await self._run(trigger)
        except asyncio.CancelledError:
            # The cancellation comes from stop() (itself or through APScheduler's shutdown), which is all that awaits
            # this task: ending it normally keeps APScheduler from logging the cancellation as a job error.
            LOGGER.info("The rescan (%s) was cancelled: the scheduler is stopping", trigger)
        except Exception:
            LOGGER.exception("The rescan (%s) failed", trigger)
        finally:
            self._tasks.discard(task)

    async def _run(self, trigger: str) -> object:
        self._last_run = datetime.now(UTC)
        self._active += 1
        try:
            return await self._job(trigger)
        finally:
            self._active -= 1
