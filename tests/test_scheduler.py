"""The rescan scheduler: triggers and their next fire times, and real runs through APScheduler on the test's loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from aniworld_daemon.config import CronSchedule, DailySchedule, IntervalSchedule, RescanSchedule, ScheduleConfig
from aniworld_daemon.scheduler import Scheduler, build_trigger

BERLIN = ZoneInfo("Europe/Berlin")
JITTER = timedelta(seconds=120)
EVERY_SECOND = IntervalSchedule(timedelta(seconds=1))
HOURLY = IntervalSchedule(timedelta(hours=1))
NIGHTLY = CronSchedule("0 3 * * *")


def schedule_config(rescan: RescanSchedule, *, run_on_start: bool = False) -> ScheduleConfig:
    """A schedule section with `rescan`; full_refresh does not matter to the scheduler."""
    return ScheduleConfig(rescan=rescan, run_on_start=run_on_start, full_refresh=timedelta(days=7))


class RescanJob:
    """A rescan job that records when it started with which trigger; it can take a while or fail."""

    def __init__(self, *, duration: float = 0.0, fail: bool = False) -> None:
        self.duration = duration
        self.fail = fail
        self.calls: list[tuple[str, float]] = []  # (trigger, time.monotonic() at the start)
        self.called = asyncio.Event()
        self.active = 0
        self.max_active = 0
        self.cancelled = 0

    @property
    def triggers(self) -> list[str]:
        return [trigger for trigger, _ in self.calls]

    @property
    def starts(self) -> list[float]:
        return [started for _, started in self.calls]

    async def __call__(self, trigger: str) -> str:
        self.calls.append((trigger, time.monotonic()))
        self.called.set()
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.duration:  # no await otherwise: the whole call is one step of the loop
                await asyncio.sleep(self.duration)
            if self.fail:
                raise RuntimeError(f"rescan {len(self.calls)} failed")
            return f"result of {trigger}"
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1

    async def wait_calls(self, count: int, within: float) -> None:
        """Wait until the job was called `count` times, or fail the test after `within` seconds."""
        deadline = time.monotonic() + within
        while len(self.calls) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{count} calls expected within {within}s, got {self.triggers}")
            await asyncio.sleep(0.01)


@pytest.fixture
async def make_scheduler() -> AsyncIterator[Callable[..., Scheduler]]:
    """Build schedulers in UTC; every one is stopped at the end of the test."""
    made: list[Scheduler] = []

    def make(rescan: RescanSchedule, job: RescanJob, *, run_on_start: bool = False, **kwargs: Any) -> Scheduler:
        scheduler = Scheduler(schedule_config(rescan, run_on_start=run_on_start), job, **{"tz": UTC, **kwargs})
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        await scheduler.stop()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


# ---------------------------------------------------------------------------------------------------------------
# Triggers: next fire times from a fixed 'now'
# ---------------------------------------------------------------------------------------------------------------


def at(day: int, hour: int, minute: int = 0, *, month: int = 1, tz: Any = UTC) -> datetime:
    """A moment in 2025 (2025-01-06 is a Monday)."""
    return datetime(2025, month, day, hour, minute, tzinfo=tz)


@pytest.mark.parametrize(
    ("schedule", "tz", "now", "expected"),
    [
        pytest.param(NIGHTLY, UTC, at(6, 10), [at(7, 3), at(8, 3), at(9, 3)], id="crontab nightly"),
        pytest.param(
            CronSchedule("*/15 * * * *"), UTC, at(6, 10, 7), [at(6, 10, 15), at(6, 10, 30), at(6, 10, 45)], id="*/15"
        ),
        pytest.param(
            DailySchedule(dt_time(3, 0), ("thu", "mon")),
            BERLIN,
            at(6, 10, tz=BERLIN),
            [at(9, 3, tz=BERLIN), at(13, 3, tz=BERLIN), at(16, 3, tz=BERLIN)],
            id="daily mon thu",
        ),
        pytest.param(
            DailySchedule(dt_time(3, 0), ("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
            BERLIN,
            at(29, 12, month=3, tz=BERLIN),
            # 03:00 local on both sides of the switch to summer time (30 March): 02:00 UTC, then 01:00 UTC.
            [at(30, 3, month=3, tz=BERLIN), at(31, 3, month=3, tz=BERLIN)],
            id="daily across DST",
        ),
        # Crontab weekdays count from Sunday = 0 (APScheduler's own numbering starts at Monday = 0).
        pytest.param(CronSchedule("30 4 * * 0"), UTC, at(6, 10), [at(12, 4, 30), at(19, 4, 30)], id="0 is sunday"),
        pytest.param(CronSchedule("0 3 * * 7"), UTC, at(6, 10), [at(12, 3), at(19, 3)], id="7 is sunday"),
        pytest.param(
            CronSchedule("0 3 * * 1-5"),
            UTC,
            at(11, 10),
            [at(13, 3), at(14, 3), at(15, 3), at(16, 3), at(17, 3), at(20, 3)],
            id="1-5 is mon-fri",
        ),
        pytest.param(CronSchedule("0 3 * * */2"), UTC, at(6, 10), [at(7, 3), at(9, 3), at(11, 3), at(12, 3)], id="*/2"),
        pytest.param(
            CronSchedule("0 3 * * fri-sun"), UTC, at(6, 10), [at(10, 3), at(11, 3), at(12, 3), at(17, 3)], id="names"
        ),
        # Both day fields restricted: either one matching is enough (the 13th, and every Friday).
        pytest.param(
            CronSchedule("0 3 13 * 5"), UTC, at(6, 10), [at(10, 3), at(13, 3), at(17, 3)], id="day or weekday"
        ),
        # ... but a day field starting with '*' makes cron require both (the 1st/11th/21st/31st that is a Monday).
        pytest.param(CronSchedule("0 3 */10 * 1"), UTC, at(6, 10), [at(31, 3, month=3)], id="day and weekday"),
    ],
)
def test_trigger_fire_times(schedule: RescanSchedule, tz: Any, now: datetime, expected: list[datetime]) -> None:
    trigger = build_trigger(schedule, tz)
    previous = None
    for want in expected:
        previous = trigger.get_next_fire_time(previous, previous or now)
        assert previous is not None
        assert want <= previous <= want + JITTER, f"expected {want} (+ up to {JITTER} jitter), got {previous}"


@pytest.mark.parametrize(
    ("every", "jitter"),
    [
        (timedelta(seconds=1), None),
        (timedelta(seconds=9), None),
        (timedelta(seconds=10), 1.0),
        (timedelta(minutes=1), 6.0),
        (timedelta(minutes=20), 120.0),
        (timedelta(hours=6), 120.0),
    ],
)
def test_interval_trigger_jitter_and_first_run(every: timedelta, jitter: float | None) -> None:
    before = datetime.now(UTC)
    trigger = build_trigger(IntervalSchedule(every), UTC)
    after = datetime.now(UTC)
    assert trigger.jitter == jitter
    first = trigger.get_next_fire_time(None, after)
    assert before + every <= first <= after + every + timedelta(seconds=jitter or 0)


@pytest.mark.parametrize("schedule", [NIGHTLY, DailySchedule(dt_time(3, 0), ("mon",))])
def test_clock_triggers_have_two_minutes_of_jitter(schedule: RescanSchedule) -> None:
    assert build_trigger(schedule, UTC).jitter == 120


@pytest.mark.parametrize("expression", ["0 3 * * 8", "0 3 * * 5-2", "0 3 * * mon/0", "0 3 * * funday"])
def test_invalid_crontab_weekdays_are_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="weekday"):
        build_trigger(CronSchedule(expression), UTC)


@pytest.mark.parametrize(
    ("schedule", "description"),
    [
        (NIGHTLY, "crontab '0 3 * * *'"),
        (DailySchedule(dt_time(3, 0), ("thu", "mon")), "daily at 03:00 on mon, thu"),
        (DailySchedule(dt_time(23, 30), ("sun", "sat", "fri", "thu", "wed", "tue", "mon")), "daily at 23:30"),
        (IntervalSchedule(timedelta(hours=6)), "every 6h"),
        (IntervalSchedule(timedelta(minutes=90)), "every 1h30m"),
        (IntervalSchedule(timedelta(days=7)), "every 7d"),
        (EVERY_SECOND, "every 1s"),
    ],
)
def test_description(schedule: RescanSchedule, description: str) -> None:
    assert Scheduler(schedule_config(schedule), RescanJob()).state().description == description


# ---------------------------------------------------------------------------------------------------------------
# The scheduler on the real event loop
# ---------------------------------------------------------------------------------------------------------------


def test_state_before_start() -> None:
    last_run = datetime(2025, 1, 6, 4, 0, tzinfo=BERLIN)
    state = Scheduler(schedule_config(NIGHTLY), RescanJob(), last_run=last_run).state()
    assert state.next_run is None
    assert state.last_run == last_run
    assert state.last_run is not None
    assert state.last_run.tzinfo is UTC
    assert not state.running
    with pytest.raises(ValueError, match="aware"):
        Scheduler(schedule_config(NIGHTLY), RescanJob(), last_run=datetime(2025, 1, 6, 4, 0))


@pytest.mark.parametrize(
    ("schedule", "unjittered"),
    [
        (NIGHTLY, CronTrigger(hour=3, minute=0, timezone=BERLIN)),
        (CronSchedule("*/15 * * * *"), CronTrigger(minute="*/15", timezone=BERLIN)),
        (DailySchedule(dt_time(3, 0), ("mon", "thu")), CronTrigger(day_of_week="mon,thu", hour=3, timezone=BERLIN)),
    ],
)
async def test_next_run_after_start(
    make_scheduler: Callable[..., Scheduler], schedule: RescanSchedule, unjittered: Any
) -> None:
    scheduler = make_scheduler(schedule, RescanJob(), tz=BERLIN)
    before = datetime.now(UTC)
    await scheduler.start()
    after = datetime.now(UTC)
    next_run = scheduler.state().next_run
    assert next_run is not None
    assert next_run.tzinfo is UTC
    earliest, latest = unjittered.get_next_fire_time(None, before), unjittered.get_next_fire_time(None, after)
    assert earliest <= next_run <= latest + JITTER


async def test_interval_runs_the_job_repeatedly(make_scheduler: Callable[..., Scheduler]) -> None:
    job = RescanJob()
    scheduler = make_scheduler(EVERY_SECOND, job)
    started, before = time.monotonic(), datetime.now(UTC)
    await scheduler.start()
    await job.wait_calls(2, within=6)
    assert job.triggers == ["schedule", "schedule"]
    # No run before its time: the first comes one interval after start, the second one more.
    assert job.starts[0] - started >= 0.95
    assert job.starts[1] - started >= 1.95
    state = scheduler.state()
    assert state.last_run is not None
    assert state.last_run >= before + timedelta(seconds=1.9)
    assert state.next_run is not None
    assert state.next_run > state.last_run
    assert not state.running


async def test_slow_runs_never_overlap(
    make_scheduler: Callable[..., Scheduler], caplog: pytest.LogCaptureFixture
) -> None:
    # Startup run from 0 to 1.5 s; the run due at 1 s is skipped (a different job is running), the one at 2 s runs
    # to 3.5 s; the one at 3 s is skipped (max_instances), the one at 4 s runs.
    job = RescanJob(duration=1.5)
    scheduler = make_scheduler(EVERY_SECOND, job, run_on_start=True)
    with caplog.at_level(logging.INFO, logger="aniworld_daemon.scheduler"):
        await scheduler.start()
        await job.wait_calls(3, within=10)
    assert job.triggers == ["startup", "schedule", "schedule"]
    assert job.max_active == 1
    assert all(later - earlier >= 1.45 for earlier, later in zip(job.starts, job.starts[1:], strict=False))
    assert "Skipping a rescan (schedule): another one is still running" in caplog.messages


async def test_overdue_runs_are_coalesced(make_scheduler: Callable[..., Scheduler]) -> None:
    job = RescanJob()
    scheduler = make_scheduler(EVERY_SECOND, job)
    await scheduler.start()
    # A blocked loop (or a suspended machine) misses the runs due at 1 s and 2 s: they make one run, not two.
    time.sleep(2.3)  # noqa: ASYNC251 - blocking the loop is the point
    await asyncio.wait_for(job.called.wait(), timeout=5)
    # Uncoalesced run times would be run back to back in the same executor task, before this line runs.
    assert job.triggers == ["schedule"]


async def test_run_on_start(make_scheduler: Callable[..., Scheduler]) -> None:
    job = RescanJob()
    scheduler = make_scheduler(HOURLY, job, run_on_start=True)
    started, before = time.monotonic(), datetime.now(UTC)
    await scheduler.start()
    after = datetime.now(UTC)
    await job.wait_calls(1, within=3)
    assert job.triggers == ["startup"]
    assert job.starts[0] - started < 3
    state = scheduler.state()
    assert state.last_run is not None
    assert before <= state.last_run
    # The startup run does not replace the schedule: the next run is one interval after start.
    assert state.next_run is not None
    assert before + timedelta(hours=1) <= state.next_run <= after + timedelta(hours=1) + JITTER


async def test_reconfigure(make_scheduler: Callable[..., Scheduler]) -> None:
    job = RescanJob()
    scheduler = make_scheduler(NIGHTLY, job)
    await scheduler.start()
    nightly = scheduler.state().next_run
    assert nightly is not None
    assert nightly.hour == 3

    # A reload with the same schedule keeps the job as it is (an interval would otherwise restart).
    scheduler.reconfigure(schedule_config(NIGHTLY, run_on_start=True))
    assert scheduler.state().next_run == nightly

    before = datetime.now(UTC)
    scheduler.reconfigure(schedule_config(EVERY_SECOND))
    after = datetime.now(UTC)
    state = scheduler.state()
    assert state.description == "every 1s"
    assert state.next_run is not None
    assert before + timedelta(seconds=1) <= state.next_run <= after + timedelta(seconds=1)
    await job.wait_calls(1, within=4)
    assert job.triggers == ["schedule"]


async def test_reconfigure_before_start(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(NIGHTLY, RescanJob())
    scheduler.reconfigure(schedule_config(HOURLY))
    assert scheduler.state().next_run is None
    before = datetime.now(UTC)
    await scheduler.start()
    state = scheduler.state()
    assert state.description == "every 1h"
    assert state.next_run is not None
    assert before + timedelta(hours=1) <= state.next_run


async def test_failing_runs_are_logged_and_the_schedule_goes_on(
    make_scheduler: Callable[..., Scheduler], caplog: pytest.LogCaptureFixture
) -> None:
    job = RescanJob(fail=True)
    scheduler = make_scheduler(EVERY_SECOND, job, run_on_start=True)
    await scheduler.start()
    await job.wait_calls(2, within=5)
    assert job.triggers == ["startup", "schedule"]
    failures = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert [record.getMessage() for record in failures] == [
        "The rescan (startup) failed",
        "The rescan (schedule) failed",
    ]
    assert all(record.name == "aniworld_daemon.scheduler" for record in failures)
    assert [str(record.exc_info[1]) for record in failures if record.exc_info] == ["rescan 1 failed", "rescan 2 failed"]
    assert scheduler.state().next_run is not None


async def test_run_now() -> None:
    job = RescanJob()
    scheduler = Scheduler(schedule_config(NIGHTLY), job, last_run=datetime(2025, 1, 1, tzinfo=UTC))
    before = datetime.now(UTC)
    # Not started: run_now() does not need the scheduler running (the CLI uses it so).
    assert await scheduler.run_now() == "result of manual"
    assert await scheduler.run_now("cli") == "result of cli"
    assert job.triggers == ["manual", "cli"]
    last_run = scheduler.state().last_run
    assert last_run is not None
    assert last_run >= before

    job.fail = True
    with pytest.raises(RuntimeError, match="rescan 3 failed"):
        await scheduler.run_now()
    assert scheduler.state().last_run is not None
    assert not scheduler.state().running


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 10])
async def test_stop_cancels_the_run_and_leaves_no_tasks(yields: int, caplog: pytest.LogCaptureFixture) -> None:
    # Stop at every point of the startup run's life: before it is due, submitted, started, and well under way.
    baseline = asyncio.all_tasks()
    job = RescanJob(duration=3600)
    scheduler = Scheduler(schedule_config(HOURLY, run_on_start=True), job, tz=UTC)
    await scheduler.start()
    for _ in range(yields):
        await asyncio.sleep(0)
    if yields == 10:
        await job.wait_calls(1, within=3)
        assert scheduler.state().running
    async with asyncio.timeout(5):
        await scheduler.stop()
    assert job.cancelled == len(job.calls)
    assert asyncio.all_tasks() == baseline
    # APScheduler reports a task it cancelled before its first step from a done-callback: give it time to show.
    await asyncio.sleep(0.05)
    assert errors(caplog) == []
    state = scheduler.state()
    assert state.next_run is None
    assert not state.running
    await scheduler.stop()  # twice is harmless


async def test_stop_before_start_does_nothing() -> None:
    scheduler = Scheduler(schedule_config(NIGHTLY), RescanJob(), tz=UTC)
    await scheduler.stop()
    assert scheduler.state().next_run is None
