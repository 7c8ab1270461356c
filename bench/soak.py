"""Soak: the daemon for a long run under random faults and a stream of new episodes; nothing may leak or get lost.

Run: `.venv/bin/python -m bench.soak [--minutes 20] [--seed 16] [--stuck 5] [--quick]`. Starts a real mosquitto
(tests.helpers.Broker), the fake site (tests/fakesite, in this process) and the daemon as a subprocess
(`python -m aniworld_daemon run -c CONFIG`) following FULL_SERIES (QUICK_SERIES with --quick) in German sub or dub,
with auto_download, a rescan every 30 s (10 s with --quick), 2 downloads at a time, short retry backoffs and a short
cooldown; media at 500 kB/s per connection (about 4 s per episode; 2 MB/s with --quick). Attached for the whole
run: two WebSocket clients in every room (reading every message and checking that the seq of the events has no gap)
and an MQTT subscriber on `aniworld/#` (bench.mqtt's, in a process of its own, started again after each broker
restart).

While it runs, a seeded RNG (`--seed`) switches faults on, in rounds of FAULTS in a random order with random gaps and
lengths: a 5xx burst (the site's pages, or one hoster's media), a 403 block of the site that lifts again, slow
hosters (every media connection capped at SLOW_BANDWIDTH bytes/s), and a kill -9 of the broker that starts again a
few seconds later. New episodes keep appearing: `FakeSite.release()` publishes the next episode of a running followed
series every 6 s (4 s with --quick): the catalog has no upper bound on releases, so downloads flow the whole run and
no library file has to be deleted to make work.

Each period (a minute; 10 s with --quick) prints one row: the daemon's RSS (/proc/<pid>/status) at its end; the
lowest open fds (/proc/<pid>/fd), asyncio tasks (`aniworld_asyncio_tasks` of GET /metrics) and threads
(/proc/<pid>/status) of the samples taken every SAMPLE_EVERY seconds in it while the daemon was connected to the
broker (without one it holds one socket and about 3 tasks less: the fault, not a sign of health); database size
(.db + -wal), queue items by status, downloads completed in the period, WebSocket and MQTT messages received, the
faults started. At the end the
faults stop, a last rescan picks up the last releases and the queue drains (bounded); then the targets:

1. flat after warm-up (the first quarter): RSS, fds, tasks and threads grow less than 5% from the mean of the second
   quarter to the mean of the last quarter; fds, tasks and threads are small integers, so an absolute slack of
   SLACK is allowed for them too (not judged with --quick: 4 rows are too few to call anything flat);
2. nothing lost: every episode the site offers in a wanted season and language has exactly one `completed` item and
   one file in the library, nothing is left pending or downloading, nothing is left in the temp dir;
3. nothing stuck: no item was `downloading` for longer than `--stuck` minutes at any sample;
4. the WebSocket clients stayed attached and saw every event (no seq gap), the daemon said `online` again after the
   last broker restart, and it exits 0 on SIGTERM.

Exit status 1 when a target is missed, so a long run can gate a release. The 20-minute default is the figure to quote;
`--quick` (about 40 s plus start and drain) is the smoke run tests/test_bench.py makes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME
from aniworld_daemon.models import Language
from bench.api import Process, rss_mb, verdict, wait_until_answering
from bench.mqtt import BASE, Subscriber
from tests.fakesite.core import Knobs, ensure_media
from tests.fakesite.server import FakeSite
from tests.helpers import Broker, free_port, query

TARGET_GROWTH = 0.05  # second quarter -> last quarter, at most
SLACK = 2  # absolute slack for the small integers (fds, tasks, threads)
LANGUAGES = (Language.DE_SUB, Language.DE_DUB)
# The running series get the releases; the finished ones add to the backlog of the first quarter (the warm-up).
FULL_SERIES = ("the-ogres-bride", "die-kleinen-baeren", "sword-shield-chronicle", "blade-of-dawn")
QUICK_SERIES = ("the-ogres-bride", "die-kleinen-baeren")
RELEASED_SERIES = ("the-ogres-bride", "die-kleinen-baeren")
SLOW_BANDWIDTH = 100_000  # bytes/s per media connection of a slow hoster: about 19 s per ~1.9 MB episode
SLOW_REQUEST = 6.0  # seconds: a media request that took longer was slowed (an MP4 takes about 4 s at 500 kB/s)
FAULTS = ("5xx", "403", "slow", "broker")
# Doodstream first: the Ogre's Bride and Blade of Dawn come as MP4 from it, the others as HLS from VOE (they lack it).
HOSTERS = ("doodstream", "voe", "vidmoly", "filemoon", "vidoza", "streamtape", "speedfiles", "luluvdo")
MEDIA_HOSTERS = ("doodstream", "voe")  # a media 5xx burst on one of them: the download falls back to the next hoster
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
# Seconds between two samples of fds, tasks and threads; a row shows the lowest of its period. Each download in flight
# holds sockets, files, tasks and a thread while it runs, so a single sample says more about the moment than about the
# daemon; a leak raises the floor as well, and the floor does not jump with the downloads in flight.
SAMPLE_EVERY = 5.0
ROOMS = ("downloads", "download_progress", "scan_progress", "system")
METRIC_RE = re.compile(r'^(aniworld_[a-z_]+)(?:\{state="([a-z]+)"\})? (\S+)$', re.MULTILINE)
EPISODE_SUFFIXES = frozenset({".mp4", ".mkv", ".webm"})


@dataclass(frozen=True, slots=True)
class Plan:
    """How long and how often: the run's time scale."""

    seconds: float  # the measured run (rows), without start and drain
    period: float  # seconds per row
    rescan: str  # schedule.rescan of the daemon
    release_every: float  # seconds between two releases
    bandwidth: int  # bytes/s per media connection while the hosters are not slow
    fault_every: float  # mean seconds between two faults
    fault_length: tuple[float, float]  # seconds a 403 block, slow hosters or a broker outage last
    drain: float  # seconds the queue gets to drain at the end
    stuck: float  # seconds an item may stay `downloading`
    series: tuple[str, ...]
    quick: bool

    @classmethod
    def make(cls, minutes: float, stuck_minutes: float, quick: bool) -> Plan:
        """The plan of a `--minutes` run, or of the quick one."""
        if quick:
            return cls(
                seconds=40.0,
                period=10.0,
                rescan="every 10s",
                release_every=4.0,
                bandwidth=2_000_000,  # an episode in about a second: the backlog is gone within the first rows
                fault_every=5.0,
                fault_length=(2.0, 5.0),
                drain=120.0,
                stuck=stuck_minutes * 60,
                series=QUICK_SERIES,
                quick=True,
            )
        # Downloads of about 4 s, 10 releases a minute and a rescan every 30 s keep the daemon busy about half the
        # time, spread over the minute, so the faults land on rescans and downloads, not on an idle daemon.
        return cls(
            seconds=minutes * 60,
            period=60.0,
            rescan="every 30s",
            release_every=6.0,
            bandwidth=500_000,
            fault_every=40.0,
            fault_length=(10.0, 40.0),
            drain=600.0,
            stuck=stuck_minutes * 60,
            series=FULL_SERIES,
            quick=False,
        )


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the table: the figures of one period."""

    at: float  # seconds since the start of the run
    rss: float  # MB, at the end of the period
    # fds, tasks and threads: the lowest of the period's samples with the broker up; None when it was down throughout
    fds: int | None
    tasks: int | None
    threads: int | None
    db: float  # MB of the .db and its -wal
    queue: dict[str, int]
    completed: int  # in this period
    ws: int
    mqtt: int
    faults: str


@dataclass
class Totals:
    """What the run saw outside the daemon: WebSocket and MQTT traffic, faults, releases, stuck items."""

    ws_messages: int = 0
    ws_drops: int = 0
    ws_gaps: list[str] = field(default_factory=list)
    mqtt_messages: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    period_faults: list[str] = field(default_factory=list)
    releases: list[tuple[str, int, int]] = field(default_factory=list)
    stuck: dict[str, float] = field(default_factory=dict)  # item id -> longest time seen `downloading`, seconds
    refusals: Counter[int] = field(default_factory=Counter)  # status -> answers of the site and hosters, 4xx and 5xx
    slow_media: int = 0  # media requests served while the hosters were slow


def config_text(site: FakeSite, broker: Broker, plan: Plan, *, root: Path, port: int, key: str) -> str:
    """The daemon's config: the fake site, the broker, auto_download, frequent rescans, quick retries and cooldowns."""
    return (
        f"library:\n  path: {root / 'library'}\n  write_nfo: false\n"
        f"data_dir: {root / 'data'}\n"
        f"api:\n  host: 127.0.0.1\n  port: {port}\n  key: {key}\n"
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 10\n"
        f"  languages: [{', '.join(language.value for language in LANGUAGES)}]\n  hosters: [{', '.join(HOSTERS)}]\n"
        # Short, so a lifted block lets the daemon in again within the run (it doubles per refusal, up to 6 h).
        "  cooldown: 5s\n"
        # Many cheap retries: a fault delays an episode, it must not fail it for good.
        "downloads:\n  max_concurrent: 2\n  retries: 12\n  retry_backoff: 2s\n  min_free_space: 0\n"
        f"schedule:\n  rescan: {plan.rescan}\n  run_on_start: true\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  base_topic: {BASE}\n  discovery: true\n"
        "logging:\n  level: info\n"
        "series:\n" + "".join(f"  - {series}\n" for series in plan.series)
    )


def proc_status(pid: int) -> tuple[int, int]:
    """Threads and open fds of a process."""
    threads = 0
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("Threads:"):
            threads = int(line.split()[1])
    return threads, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def database_mb(data_dir: Path) -> float:
    """The database and its WAL, in MB."""
    files = [data_dir / "aniworld.db", data_dir / "aniworld.db-wal"]
    return sum(path.stat().st_size for path in files if path.exists()) / 1e6


@dataclass(frozen=True, slots=True)
class Api:
    """The daemon's HTTP API, with its key."""

    session: aiohttp.ClientSession
    base: str  # http://127.0.0.1:PORT
    key: str

    async def metrics(self) -> tuple[int, dict[str, int], int]:
        """Asyncio tasks, queue items by state and downloads completed since start, from GET /metrics."""
        async with self.session.get(f"{self.base}/metrics", headers={"X-Api-Key": self.key}) as response:
            text = await response.text()
            if response.status != 200:
                raise RuntimeError(f"GET /metrics: {response.status} {text[:300]}")
        queue: dict[str, int] = {}
        tasks = completed = -1
        for name, state, value in METRIC_RE.findall(text):
            if name == "aniworld_asyncio_tasks":
                tasks = int(float(value))
            elif name == "aniworld_queue_items" and state:
                queue[state] = int(float(value))
            elif name == "aniworld_downloads_completed_total":
                completed = int(float(value))
        if tasks < 0 or completed < 0 or not queue:
            raise RuntimeError(f"GET /metrics lacks the tasks, queue or completed figures:\n{text[:2000]}")
        return tasks, queue, completed

    async def rescan(self) -> None:
        """Start a rescan of every series now (one running already serves as well: 409)."""
        async with self.session.post(
            f"{self.base}/api/anime/rescan", headers={"X-Api-Key": self.key}, json={}
        ) as response:
            if response.status not in (202, 409):
                raise RuntimeError(f"POST /api/anime/rescan: {response.status} {await response.text()}")


# --- the attached clients -------------------------------------------------------------------------------------------


async def websocket_client(session: aiohttp.ClientSession, url: str, key: str, name: str, totals: Totals) -> None:
    """Join every room and read every message until the daemon stops; count them, note seq gaps, reconnect on a drop.

    Every event type belongs to one of the rooms, so once all are joined every event after the last room's snapshot
    (its seq is the newest event the snapshot covers) must arrive: the seqs above it have no gap.
    """
    while True:
        seqs: set[int] = set()
        snapshot: int | None = None  # the seq of the last room's snapshot
        joined = 0
        after_join = False
        kind = None
        async with session.ws_connect(url, headers={"X-Api-Key": key}) as socket:
            for room in ROOMS:
                await socket.send_json({"action": "join", "room": room})
            async for message in socket:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                totals.ws_messages += 1
                data = json.loads(message.data)
                kind = data.get("type")
                if kind == "server_shutdown":
                    break
                if kind == "joined":
                    joined += 1
                    after_join = True
                elif after_join:  # the hub sends a room's snapshot right after `joined`
                    after_join = False
                    if joined == len(ROOMS):
                        snapshot = int(data["seq"])
                elif isinstance(data.get("seq"), int):
                    seqs.add(data["seq"])
            else:
                totals.ws_drops += 1  # closed without server_shutdown: the daemon dropped us
        if snapshot is not None and seqs:
            missing = [seq for seq in range(snapshot + 1, max(seqs) + 1) if seq not in seqs]
            totals.ws_gaps += [f"{name}: no event with seq {seq}" for seq in missing]
        if kind == "server_shutdown":
            return
        await asyncio.sleep(1)


async def mqtt_subscriber(broker: Broker, workdir: Path, number: int) -> Subscriber:
    """bench.mqtt's subscriber on `aniworld/#`, its stderr in a numbered log."""
    return await Subscriber.start(broker, f"{BASE}/#", workdir / f"subscriber-{number}.log")


@dataclass
class Mqtt:
    """The current subscriber (another after each broker restart) and what the earlier ones received."""

    broker: Broker
    workdir: Path
    subscriber: Subscriber
    online: bool = False  # the current subscriber has seen `online` on the status topic
    lives: int = 1  # subscribers started so far

    def settled(self) -> bool:
        """Whether the broker runs and the daemon has said `online` to the current subscriber (it is connected)."""
        self.online = self.online or any(
            message.topic == f"{BASE}/status" and message.payload == "online" for message in self.subscriber.messages
        )
        return self.broker.process is not None and self.online

    def take(self, totals: Totals) -> int:
        """Count and forget the messages received since the last call; how many."""
        self.settled()
        messages = self.subscriber.messages
        count = len(messages)
        totals.mqtt_messages += count
        messages.clear()  # a long run would otherwise hold every retained `queue` payload
        return count

    async def restart(self, totals: Totals) -> None:
        """After a broker restart: the old subscriber lost its connection; count what it got, start another."""
        self.take(totals)
        await self.subscriber.stop()
        self.subscriber = await mqtt_subscriber(self.broker, self.workdir, self.lives)
        self.lives += 1
        self.online = False


# --- the faults and the releases ------------------------------------------------------------------------------------


async def faults(site: FakeSite, mqtt: Mqtt, plan: Plan, rng: random.Random, totals: Totals) -> None:
    """Switch faults on in rounds of every kind (random order, gaps and lengths) until cancelled; then restore."""
    knobs = site.knobs
    try:
        while True:
            kinds = list(FAULTS)
            rng.shuffle(kinds)
            for kind in kinds:
                await asyncio.sleep(plan.fault_every * rng.uniform(0.5, 1.5))
                length = rng.uniform(*plan.fault_length)
                totals.faults[kind] += 1
                if kind == "5xx":
                    if rng.random() < 0.5:
                        knobs.fail_5xx["site"] = rng.randint(2, 6)
                        totals.period_faults.append(f"5xx:site*{knobs.fail_5xx['site']}")
                    else:
                        hoster = rng.choice(MEDIA_HOSTERS)
                        knobs.fail_media[hoster] = rng.randint(2, 6)
                        totals.period_faults.append(f"5xx:{hoster}*{knobs.fail_media[hoster]}")
                elif kind == "403":
                    totals.period_faults.append(f"403:{length:.0f}s")
                    knobs.block("site")
                    await asyncio.sleep(length)
                    knobs.unblock("site")
                elif kind == "slow":
                    totals.period_faults.append(f"slow:{length:.0f}s")
                    knobs.bandwidth = SLOW_BANDWIDTH
                    await asyncio.sleep(length)
                    knobs.bandwidth = plan.bandwidth
                else:
                    totals.period_faults.append(f"broker:{length:.0f}s")
                    await asyncio.to_thread(mqtt.broker.kill)
                    await asyncio.sleep(length)
                    await asyncio.to_thread(mqtt.broker.start)
                    await mqtt.restart(totals)
    finally:
        knobs.unblock("site")
        knobs.bandwidth = plan.bandwidth
        knobs.fail_5xx.clear()
        knobs.fail_media.clear()


async def releases(site: FakeSite, plan: Plan, rng: random.Random, totals: Totals) -> None:
    """Publish the next episode of a running followed series every `plan.release_every` seconds, until cancelled."""
    running = [key for key in RELEASED_SERIES if key in plan.series]
    while True:
        await asyncio.sleep(plan.release_every)
        key = rng.choice(running)
        season, number = site.release(key)
        totals.releases.append((key, season, number))


# --- the run --------------------------------------------------------------------------------------------------------


HEADER = (
    f"{'time':>6} {'RSS MB':>7} {'fds':>4} {'tasks':>5} {'thr':>4} {'db MB':>6}"
    f" {'pend':>4} {'dl':>3} {'done':>4} {'fail':>4} {'+done':>5} {'ws msgs':>7} {'mqtt':>5}  faults started"
)


def shown(value: int | None) -> str:
    """A figure of the table, `-` for none."""
    return "-" if value is None else str(value)


def row_text(row: Row) -> str:
    """One line of the table."""
    minutes, seconds = divmod(round(row.at), 60)
    queue = row.queue
    return (
        f"{minutes:>3}:{seconds:02} {row.rss:>7.1f} {shown(row.fds):>4} {shown(row.tasks):>5} {shown(row.threads):>4}"
        f" {row.db:>6.2f}"
        f" {queue.get('pending', 0):>4} {queue.get('downloading', 0):>3} {queue.get('completed', 0):>4}"
        f" {queue.get('failed', 0):>4} {row.completed:>5} {row.ws:>7} {row.mqtt:>5}  {row.faults or '-'}"
    )


@dataclass(frozen=True, slots=True)
class Growth:
    """One figure's means over the second and the last quarter, and whether it stayed flat."""

    name: str
    second: float | None  # None: no row of the quarter has the figure
    last: float | None
    slack: float  # absolute slack on top of the 5%

    @property
    def growth(self) -> float:
        """Relative growth, second -> last quarter."""
        if self.second is None or self.last is None or not self.second:
            return 0.0
        return (self.last - self.second) / self.second

    @property
    def flat(self) -> bool:
        """Less than TARGET_GROWTH, or within the absolute slack; a quarter without the figure is not flat."""
        if self.second is None or self.last is None:
            return False
        return self.growth < TARGET_GROWTH or self.last - self.second <= self.slack


def growths(rows: Sequence[Row]) -> list[Growth]:
    """RSS, fds, tasks and threads: second quarter against the last (the first quarter is the warm-up).

    A row without fds, tasks and threads (the broker was down the whole period) is left out of their means; when no row
    of the second quarter has them, the first row after it that has them stands in (short runs have one-row quarters).
    """
    count = len(rows)
    second, third, fourth = count // 4, max(count // 2, count // 4 + 1), (3 * count) // 4
    figures: tuple[tuple[str, Callable[[Row], float | None], float], ...] = (
        ("RSS (MB)", lambda row: row.rss, 0.0),
        ("open fds", lambda row: row.fds, SLACK),
        ("asyncio tasks", lambda row: row.tasks, SLACK),
        ("threads", lambda row: row.threads, SLACK),
    )

    def mean(quarter: Sequence[Row], value: Callable[[Row], float | None]) -> float | None:
        values = [found for found in map(value, quarter) if found is not None]
        return statistics.fmean(values) if values else None

    def early(value: Callable[[Row], float | None]) -> float | None:
        found = mean(rows[second:third], value)
        later = (row for row in rows[third:fourth] if value(row) is not None)
        return found if found is not None else mean(list(itertools.islice(later, 1)), value)

    return [Growth(name, early(value), mean(rows[fourth:], value), slack) for name, value, slack in figures]


def expected_episodes(site: FakeSite, plan: Plan) -> set[tuple[str, int, int]]:
    """Every episode the daemon should want: regular seasons of the followed series, offered in a wanted language."""
    return {
        (key, episode.season, episode.number)
        for key in plan.series
        for episode in site.series(key).episodes()
        if episode.season != 0 and set(episode.languages) & set(LANGUAGES)
    }


def unsettled(database: Path) -> int:
    """Items still pending or downloading."""
    [(count,)] = query(database, "SELECT COUNT(*) FROM downloads WHERE status IN ('pending', 'downloading')")
    return int(count)


def completions(database: Path) -> Counter[tuple[str, int, int]]:
    """Completed items per episode."""
    rows = query(
        database,
        "SELECT series_key, season, number, COUNT(*) FROM downloads WHERE status = 'completed' GROUP BY 1, 2, 3",
    )
    return Counter({(str(key), int(season), int(number)): int(count) for key, season, number, count in rows})


def leftovers(library: Path) -> tuple[int, int]:
    """Episode files in the library, and files of any kind left in its temp dir."""
    files = [
        path
        for path in library.rglob("*")
        if path.is_file() and TEMP_DIR_NAME not in path.parts and path.suffix in EPISODE_SUFFIXES
    ]
    return len(files), sum(1 for path in (library / TEMP_DIR_NAME).rglob("*") if path.is_file())


def count_refusals(site: FakeSite, totals: Totals) -> None:
    """Count the site's and hosters' error answers and slowed media requests so far, then forget the log.

    The faults' effect, seen from the server's side; the log is cleared because a long run would otherwise hold every
    request (the per-origin counters that blocks use keep counting).
    """
    for record in site.log.records:
        if record.status >= 400:
            totals.refusals[record.status] += 1
        if record.media and record.finished - record.started > SLOW_REQUEST:
            totals.slow_media += 1
    site.log.clear()


def check_stuck(database: Path, totals: Totals, limit: float) -> None:
    """Note every item `downloading` for longer than `limit` seconds right now."""
    now = time.time()
    for item_id, started in query(database, "SELECT id, started_at FROM downloads WHERE status = 'downloading'"):
        if started is not None and now - float(started) > limit:
            totals.stuck[str(item_id)] = max(totals.stuck.get(str(item_id), 0.0), now - float(started))


async def drain(api: Api, database: Path, want: set[tuple[str, int, int]], plan: Plan) -> float:
    """Ask for a rescan (the last releases), then wait (bounded) until every wanted episode is done; seconds taken."""
    start = time.monotonic()
    await api.rescan()
    while time.monotonic() - start < plan.drain:
        done = completions(database)
        if want <= set(done) and unsettled(database) == 0:
            break
        await asyncio.sleep(1)
    return time.monotonic() - start


async def run(plan: Plan, seed: int, workdir: Path) -> bool:
    """The whole soak; True when every target was met."""
    rng = random.Random(seed)
    media = await asyncio.to_thread(ensure_media, workdir / "media")
    broker = Broker(workdir / "broker")
    await asyncio.to_thread(broker.start)
    key = secrets.token_hex(16)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    root = workdir / "daemon"
    root.mkdir()
    database = root / "data" / "aniworld.db"
    totals = Totals()
    rows: list[Row] = []
    background: list[asyncio.Task[None]] = []
    mqtt: Mqtt | None = None
    daemon: Process | None = None
    status = -1
    drained = 0.0
    try:
        mqtt = Mqtt(broker, workdir, await mqtt_subscriber(broker, workdir, 0))
        async with (
            FakeSite(media, knobs=Knobs(bandwidth=plan.bandwidth)) as site,
            aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session,
        ):
            config_file = root / "config.yaml"
            config_file.write_text(config_text(site, broker, plan, root=root, port=port, key=key), encoding="utf-8")
            daemon = await Process.start(
                root / "daemon.log", sys.executable, "-m", "aniworld_daemon", "run", "-c", str(config_file), cwd=root
            )
            await wait_until_answering(session, f"{base}/health", daemon)
            api = Api(session, base, key)
            print(
                f"soak: {plan.seconds:g} s, a row every {plan.period:g} s, seed {seed}; daemon pid {daemon.pid}"
                f" following {', '.join(plan.series)} (rescan {plan.rescan}, 2 downloads at a time);"
                f" a release every {plan.release_every:g} s; a fault every ~{plan.fault_every:g} s"
                f" ({', '.join(FAULTS)}); media at {plan.bandwidth:,} B/s, slow hosters {SLOW_BANDWIDTH:,} B/s;"
                f" broker on 127.0.0.1:{broker.port}",
                flush=True,
            )
            loop = asyncio.get_running_loop()
            ws_url = f"ws://127.0.0.1:{port}/ws/connect"
            background = [
                loop.create_task(websocket_client(session, ws_url, key, f"ws{index}", totals), name=f"ws{index}")
                for index in (1, 2)
            ]
            background.append(loop.create_task(faults(site, mqtt, plan, rng, totals), name="faults"))
            background.append(loop.create_task(releases(site, plan, rng, totals), name="releases"))
            print(HEADER, flush=True)
            start = time.monotonic()
            completed_before = ws_before = mqtt_before = 0
            steps = round(plan.period / SAMPLE_EVERY)
            for number in range(1, round(plan.seconds / plan.period) + 1):
                floor: dict[str, int] = {}  # the lowest fds, tasks and threads of this period's samples
                for step in range(1, steps + 1):
                    at = start + (number - 1) * plan.period + step * plan.period / steps
                    await asyncio.sleep(max(0.0, at - time.monotonic()))
                    for task in background:  # a crashed helper task would silently stop the faults or the clients
                        if task.done() and not task.cancelled() and task.exception() is not None:
                            raise RuntimeError(f"the bench's {task.get_name()} task failed") from task.exception()
                    if daemon.process.returncode is not None:
                        raise RuntimeError(f"the daemon exited with {daemon.process.returncode}:\n{daemon.tail()}")
                    threads, fds = proc_status(daemon.pid)
                    tasks, queue, completed = await api.metrics()
                    check_stuck(database, totals, plan.stuck)
                    # Without a broker the daemon holds no MQTT socket and tasks: such a sample is low for the fault.
                    if mqtt.settled():
                        for name, value in (("fds", fds), ("tasks", tasks), ("threads", threads)):
                            floor[name] = min(floor.get(name, value), value)
                rss, _ = rss_mb(daemon.pid)
                mqtt.take(totals)
                count_refusals(site, totals)
                row = Row(
                    at=time.monotonic() - start,
                    rss=rss,
                    fds=floor.get("fds"),
                    tasks=floor.get("tasks"),
                    threads=floor.get("threads"),
                    db=database_mb(root / "data"),
                    queue=queue,
                    completed=completed - completed_before,
                    ws=totals.ws_messages - ws_before,
                    mqtt=totals.mqtt_messages - mqtt_before,  # every subscriber's, a restarted broker's too
                    faults=" ".join(totals.period_faults),
                )
                totals.period_faults.clear()
                completed_before, ws_before, mqtt_before = completed, totals.ws_messages, totals.mqtt_messages
                rows.append(row)
                print(row_text(row), flush=True)
            # The end: no more faults or releases (the fault task restores the knobs; the broker runs again).
            for task in background[2:]:
                task.cancel()
            for task in background[2:]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if broker.process is None:  # cancelled during an outage
                await asyncio.to_thread(broker.start)
                await mqtt.restart(totals)
            want = expected_episodes(site, plan)
            drained = await drain(api, database, want, plan)
            check_stuck(database, totals, plan.stuck)
            await asyncio.sleep(1)  # the last MQTT and WebSocket messages of the drain
            mqtt.take(totals)
            count_refusals(site, totals)
            online = mqtt.online
            status = await daemon.stop()
            for task in background[:2]:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, 10)
            done = completions(database)
            left = unsettled(database)
            [(failed,)] = query(database, "SELECT COUNT(*) FROM downloads WHERE status = 'failed'")
            files, temp = leftovers(root / "library")
    finally:
        for task in background:
            task.cancel()
        if daemon is not None:
            await daemon.stop()
        if mqtt is not None:
            await mqtt.subscriber.stop()
        broker.kill()

    return report(
        rows,
        totals,
        plan,
        want=want,
        done=done,
        left=left,
        failed=int(failed),
        files=files,
        temp=temp,
        online=online,
        status=status,
        drained=drained,
        log=daemon.tail() if daemon is not None else "",
    )


def mean_text(value: float | None) -> str:
    """A quarter's mean, `-` for none."""
    return "-" if value is None else f"{value:.1f}"


def report(
    rows: Sequence[Row],
    totals: Totals,
    plan: Plan,
    *,
    want: set[tuple[str, int, int]],
    done: Counter[tuple[str, int, int]],
    left: int,
    failed: int,
    files: int,
    temp: int,
    online: bool,
    status: int,
    drained: float,
    log: str,
) -> bool:
    """Print the growth figures and the end checks; whether every judged target was met."""
    met = True
    judged = "" if not plan.quick else " (not judged with --quick: too few rows to call anything flat)"
    print(
        f"\n1. growth from the second quarter to the last (the first is warm-up), target < {TARGET_GROWTH:.0%}{judged}:"
    )
    for figure in growths(rows):
        slack = f" or at most +{figure.slack:g}" if figure.slack else ""
        print(
            f"   {figure.name:<14} {mean_text(figure.second):>8} -> {mean_text(figure.last):>8}  {figure.growth:+6.1%}"
            f" (target < {TARGET_GROWTH:.0%}{slack}): {verdict(figure.flat)}"
        )
        met = met and (figure.flat or plan.quick)
    missing = sorted(want - set(done))
    twice = sorted(place for place, count in done.items() if count > 1)
    extra = sorted(set(done) - want)
    lost_ok = not missing and not twice and not extra and left == 0 and files == len(want) and temp == 0
    print(
        f"2. nothing lost: {len(want)} episodes wanted ({len(totals.releases)} released during the run),"
        f" {sum(1 for count in done.values() if count == 1)} completed once, {len(twice)} more than once,"
        f" {len(missing)} never, {len(extra)} not wanted; {left} items left pending/downloading after a drain of"
        f" {drained:.0f} s; {files} files in the library, {temp} in the temp dir; {failed} items failed for good"
        f" (each episode re-queued by a later rescan): {verdict(lost_ok)}"
    )
    for place in (missing + twice + extra)[:10]:
        print(f"   {place[0]} S{place[1]:02}E{place[2]:02}: completed {done.get(place, 0)} times")
    met = met and lost_ok
    worst = max(totals.stuck.values(), default=0.0)
    print(
        f"3. nothing stuck: {len(totals.stuck)} items `downloading` longer than {plan.stuck / 60:g} min"
        + (f" (longest {worst:.0f} s)" if totals.stuck else "")
        + f": {verdict(not totals.stuck)}"
    )
    met = met and not totals.stuck
    clients_ok = totals.ws_drops == 0 and not totals.ws_gaps and online and status == 0 and totals.mqtt_messages > 0
    print(
        f"4. clients: 2 WebSocket clients got {totals.ws_messages:,} messages, {totals.ws_drops} drops,"
        f" {len(totals.ws_gaps)} seq gaps; the MQTT subscriber got {totals.mqtt_messages:,} messages over"
        f" {totals.faults['broker'] + 1} broker lives, `online` after the last restart: {'yes' if online else 'NO'};"
        f" daemon exit status {status} after SIGTERM: {verdict(clients_ok)}"
    )
    for gap in totals.ws_gaps[:10]:
        print(f"   {gap}")
    met = met and clients_ok
    print(
        "   faults started: "
        + ", ".join(f"{kind} {totals.faults[kind]}" for kind in FAULTS)
        + f"; releases: {len(totals.releases)}; error answers of the site and hosters: "
        + (", ".join(f"{count} x {status}" for status, count in sorted(totals.refusals.items())) or "none")
        + f"; media requests that took over {SLOW_REQUEST:g} s: {totals.slow_media}"
    )
    if not met:
        print(f"\nMISSED: the daemon's last lines:\n{log}")
    return met


def main(argv: Sequence[str] | None = None) -> None:
    """Run the soak; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the measured run (default 20)")
    parser.add_argument("--seed", type=int, default=16, help="seed of the faults and releases")
    parser.add_argument("--stuck", type=float, default=5.0, help="minutes an item may stay downloading (default 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 s, a row every 10 s")
    args = parser.parse_args(argv)
    if args.minutes < 4 and not args.quick:
        parser.error("--minutes must be at least 4 (a row a minute, four quarters)")
    plan = Plan.make(args.minutes, args.stuck, args.quick)
    # A client that drops a media connection (a cancelled download) makes the site log a failed write; it is no error.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="aniworld-soak-") as tmp:
        met = asyncio.run(run(plan, args.seed, Path(tmp)))
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
