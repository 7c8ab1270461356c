"""Random kills: the daemon is SIGKILLed at seeded random moments while it downloads, rescans and is driven through
every surface: REST calls (a reorder, a retry, a series added, a pause, a backup), an MQTT request (a series added)
and WebSocket snapshots.

After each kill the database must hold the effect of every API call that was answered 2xx (and every MQTT request
answered `ok`) before it; a pause must still hold after the restart. After the last kill a daemon runs the queue to
its end; then every episode must be in the library once, at its template path, in the container its name says, with
the source's duration (an MP4 byte for byte the source), with one history line each, and nothing else may be left in
the library, the temp dir or the logs. The seed is printed (and taken from ANIWORLD_KILL_SEED when set);
ANIWORLD_KILL_SIZE picks the size: `small` (the default, in `make test`: 13 episodes, 6 kills) or `full` (21
episodes, 30 kills); ANIWORLD_KILLS overrides the number of kills. See README, "Reliability".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import time
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from tests.fakesite.core import RequestRecord
from tests.fakesite.server import FakeSite
from tests.helpers import Broker, Daemon, Restarts, ffprobe, integrity, minimal_config, query

Pool = tuple[tuple[str, tuple[int, ...], str], ...]

# (series, seasons, language): the German dub of Blade of Dawn, Sword & Shield and the little bears comes from Vidoza
# (MP4), the others from VOE (HLS). The queue takes series in key order, so MP4 and HLS episodes both download while
# kills land. CONFIGURED series are in the config; the API and the MQTT request follow one more each while it runs.
CONFIGURED: dict[str, Pool] = {
    "small": (
        ("blade-of-dawn", (2,), "de-dub"),  # 4 MP4
        ("reincarnated-as-a-village-blacksmith", (1,), "de-dub"),  # 3 HLS
    ),
    "full": (
        ("blade-of-dawn", (1,), "de-dub"),  # 6 MP4
        ("moonlit-academy", (2,), "de-sub"),  # 4 HLS
        ("reincarnated-as-a-village-blacksmith", (1,), "de-dub"),  # 3 HLS
    ),
}
FOLLOWED_BY_API = {"small": ("die-kleinen-baeren", (1,)), "full": ("die-kleinen-baeren", (1, 2))}  # 3 / 5 MP4
FOLLOWED_BY_MQTT = ("sword-shield-chronicle", (2,))  # 3 MP4
MP4_SERIES = frozenset({"blade-of-dawn", "sword-shield-chronicle", "die-kleinen-baeren"})
KILLS = {"small": 6, "full": 30}
# The first queued episode's page answers 500 in the first half of the lives: its item fails (retries: 2), and the
# driver's retry (POST /api/queue/retry) brings it back.
FAILING = {"small": ("blade-of-dawn", 2, 1), "full": ("blade-of-dawn", 1, 1)}
BANDWIDTH = 400_000  # bytes/s per connection: an episode takes about 5 s, so most kills land in a transfer
CONCURRENT = 2  # downloads.max_concurrent
STARTUP = 1.5  # seconds from a launch until the daemon downloads again (Python, imports, start, the first requests)
PARTIAL_RE = re.compile(r"\.part(?:-Frag\d+)?(?:\.part)?$")
LIBRARY_EXTRAS = frozenset({"tvshow.nfo", "poster.jpg"})
BASE_TOPIC = "killtest"


def config_yaml(site: FakeSite, port: int, pool: Pool, broker: Broker) -> str:
    """Two downloads at a time, rescans at every start and every 5 s, two attempts 1 s apart, MQTT on."""
    series = "".join(
        f"  - key: {key}\n    seasons: [{', '.join(map(str, seasons))}]\n    languages: [{language}]\n"
        for key, seasons, language in pool
    )
    return minimal_config(
        port,
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "  cooldown: 1s\n  languages: [de-dub]\n  hosters: [vidoza, voe]\n"
        "schedule:\n  run_on_start: true\n  rescan: {every: 5s}\n"
        f"downloads:\n  max_concurrent: {CONCURRENT}\n  retries: 2\n  retry_backoff: 1s\n  min_free_space: 0\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  base_topic: {BASE_TOPIC}\n  keepalive: 5\n"
        f"series:\n{series}",
    )


@pytest.fixture
def size() -> str:
    """ANIWORLD_KILL_SIZE: small (default) or full."""
    value = os.environ.get("ANIWORLD_KILL_SIZE", "small")
    if value not in CONFIGURED:
        pytest.fail(f"ANIWORLD_KILL_SIZE must be one of {', '.join(CONFIGURED)}, not {value!r}")
    return value


@pytest.fixture
def run(
    tmp_path: Path, port: int, fakesite: FakeSite, daemon: Callable[..., Daemon], size: str, broker: Broker
) -> Iterator[Restarts]:
    """The config and a daemon starter; every daemon's log is printed at the end (pytest shows it on failure)."""
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(fakesite, port, CONFIGURED[size], broker), encoding="utf-8")
    state = Restarts(tmp_path, config, daemon)
    yield state
    for number, text in enumerate(state.all_logs(), 1):
        print(f"----- daemon {number} log -----\n{text}")


@pytest.fixture
async def mqtt(broker: Broker) -> AsyncIterator[aiomqtt.Client]:
    """The test's MQTT client, subscribed to the daemon's responses."""
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(f"{BASE_TOPIC}/response/+", qos=1)
        yield client


def items(database: Path) -> list[tuple[str, int, int, str, str | None]]:
    """(series, season, episode, status, file path) of every queue item; [] before the database exists."""
    if not database.exists():
        return []
    try:
        return query(database, "SELECT series_key, season, number, status, file_path FROM downloads")
    except sqlite3.OperationalError:  # created, not migrated yet
        return []


def transfers(run: Restarts) -> tuple[str, ...]:
    """The kinds ("mp4", "hls") of the downloads with partial files in the temp dir right now, one per item."""
    try:
        names = [path.name for path in run.temp.iterdir()]
    except FileNotFoundError:
        return ()
    items = {name.split(".", 1)[0] for name in names if PARTIAL_RE.search(name)}
    # yt-dlp keeps a .ytdl state file for a fragmented (HLS) download only
    hls = {name.split(".", 1)[0] for name in names if name.endswith(".ytdl") or "-Frag" in name}
    return tuple(sorted("hls" if item in hls else "mp4" for item in items))


def range_start(record: RequestRecord) -> int:
    """The first byte a request asked for (0 without a Range header)."""
    match = re.fullmatch(r"bytes=(\d+)-\d*", record.headers.get("Range", ""))
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class Figures:
    """What the kills cost, from the fake site's request log."""

    mp4_resumed: int  # MP4 requests that continued a partial file by Range
    mp4_restarted: int  # MP4 requests from byte 0 for a file requested before
    segments_again: int  # HLS segments fetched more than once
    served: int  # media bytes the hosters wrote (MP4 and segments)
    kept: int  # bytes of the sources in the library (an MP4's size, an HLS episode's segments)


def figures(site: FakeSite, mp4_episodes: int, hls_episodes: int) -> Figures:
    """Count resumes, restarts, repeated segments and bytes from every media request."""
    by_path: dict[str, list[RequestRecord]] = {}
    for record in site.log.media():
        if record.status in (200, 206):
            by_path.setdefault(record.path.partition("?")[0], []).append(record)
    resumed = restarted = again = 0
    served = 0
    for path, records in by_path.items():
        if path.endswith(".m3u8"):
            continue
        served += sum(record.body_bytes for record in records)
        if path.endswith(".mp4"):
            later = records[1:]
            resumed += sum(1 for record in later if range_start(record) > 0)
            restarted += sum(1 for record in later if range_start(record) == 0)
        else:
            again += len(records) - 1
    segments = sum(path.stat().st_size for path in site.media.hls_dir.glob("seg*.ts"))
    kept = mp4_episodes * site.media.mp4.stat().st_size + hls_episodes * segments
    return Figures(resumed, restarted, again, served, kept)


def kill_window(site: FakeSite, run: Restarts, episodes: int, kills_left: int) -> tuple[float, float]:
    """Seconds after a launch in which the next kill lands, uniformly.

    On average a start-up plus the transfer time the queue still needs divided among the kills left, so the kills
    spread over the whole queue (start-ups, rescans, transfers, remuxes and imports all get hit) instead of all
    landing in its first episodes.
    """
    done = sum(1 for *_, status, _ in items(run.database) if status == "completed")
    try:
        partial = sum(path.stat().st_size for path in run.temp.iterdir() if PARTIAL_RE.search(path.name))
    except FileNotFoundError:
        partial = 0
    remaining = max(0, (episodes - done) * site.media.mp4.stat().st_size - partial)
    mean = STARTUP + remaining / (CONCURRENT * BANDWIDTH) / kills_left
    return (0.2, 2 * mean - 0.2)


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: when after the launch, and the partial files it interrupted."""

    after: float
    transfers: tuple[str, ...]  # the kind of each download it interrupted


@dataclass
class Acks:
    """What the daemon acknowledged (2xx, MQTT `ok`), to be found in its database after the next kill."""

    followed: set[str] = field(default_factory=set)  # series keys
    # A call the kill cut off may or may not have had its effect: while one is unanswered, its value is None (unknown).
    moved_first: str | None = None  # the item of the last reorder to position 0, while nothing reordered since
    retried: dict[str, float] = field(default_factory=dict)  # item id -> wall time of the retry's answer
    paused: bool | None = False  # the last acknowledged pause (True) or resume (False)
    backup: str | None = None  # the newest backup's name
    counts: Counter[str] = field(default_factory=Counter)  # acknowledged calls per kind, for the summary


class Driver:
    """Calls the daemon through REST, MQTT and WebSocket at random moments while it lives; records what it acked."""

    def __init__(self, run: Restarts, origin: str, mqtt: aiomqtt.Client, rng: random.Random, size: str) -> None:
        self.run = run
        self.origin = origin
        self.mqtt = mqtt
        self.rng = rng
        self.size = size
        self.acks = Acks()
        self._transaction = 0

    async def drive(self, paused_expected: bool | None) -> None:
        """Until cancelled: wait for the API, check the stored pause, then call at random; idle once it is killed."""
        try:
            await self._calls(paused_expected)
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.Event().wait()  # the kill came first: wait to be cancelled

    async def _calls(self, paused_expected: bool | None) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(self.origin, timeout=timeout) as session:
            key = await self._api_key(session)
            session.headers["X-Api-Key"] = key
            status = await self._get(session, "/api/queue/status")
            if paused_expected is not None:
                assert status["status"]["is_paused"] is paused_expected, "a pause acknowledged before the kill"
            if status["status"]["is_paused"]:
                self.acks.paused = None
                if await self._post(session, "/api/queue/resume", None, "resume") is not None:
                    self.acks.paused = False
            actions = [self._reorder, self._retry, self._follow, self._mqtt_follow, self._snapshot, self._backup]
            actions += [self._pause_resume, self._retry]
            while True:
                await self.rng.choice(actions)(session, key)
                await asyncio.sleep(self.rng.uniform(0.05, 0.4))

    async def _api_key(self, session: aiohttp.ClientSession) -> str:
        key_file = self.run.folder / "data" / "api_key"
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get("/health") as response:
                    if response.status < 500 and key_file.exists():
                        return key_file.read_text(encoding="ascii").strip()
            await asyncio.sleep(0.05)

    async def _get(self, session: aiohttp.ClientSession, path: str) -> dict[str, Any]:
        async with session.get(path) as response:
            assert response.status == 200, (path, response.status, await response.text())
            data: dict[str, Any] = await response.json()
            return data

    async def _post(
        self, session: aiohttp.ClientSession, path: str, body: Any, kind: str, method: str = "POST"
    ) -> dict[str, Any] | None:
        """The answer of a 2xx call (counted), else None; a dropped connection (the kill) is no answer."""
        try:
            async with session.request(method, path, json=body) as response:
                text = await response.text()
                assert response.status < 500, (path, response.status, text)
                if response.status >= 300:
                    return None
                self.acks.counts[kind] += 1
                return json.loads(text) if text else {}
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _reorder(self, session: aiohttp.ClientSession, _: str) -> None:
        pending = (await self._get(session, "/api/queue/status"))["status"]["pending_queue"]
        if len(pending) < 2:
            return
        item = self.rng.choice(pending[1:])["id"]
        self.acks.moved_first = None
        if await self._post(session, "/api/queue/reorder", {"item_id": item, "new_position": 0}, "reorder"):
            self.acks.moved_first = item

    async def _retry(self, session: aiohttp.ClientSession, _: str) -> None:
        failed = [item["id"] for item in (await self._get(session, "/api/queue/status"))["status"]["failed_downloads"]]
        if not failed:
            return
        self.acks.moved_first = None  # a retried item keeps its old position: the order changes
        if await self._post(session, "/api/queue/retry", {"item_ids": failed}, "retry") is not None:
            self.acks.retried.update(dict.fromkeys(failed, time.time()))

    async def _follow(self, session: aiohttp.ClientSession, _: str) -> None:
        key, seasons = FOLLOWED_BY_API[self.size]
        if key not in self.acks.followed and await self._post(
            session, "/api/anime/add", {"link": key, "seasons": list(seasons)}, "follow (REST)"
        ):
            self.acks.followed.add(key)

    async def _mqtt_follow(self, _: aiohttp.ClientSession, __: str) -> None:
        key, seasons = FOLLOWED_BY_MQTT
        if key in self.acks.followed:
            return
        self._transaction += 1
        transaction = f"t{self._transaction}"
        body = {"series": key, "seasons": list(seasons), "transaction": transaction}
        await self.mqtt.publish(f"{BASE_TOPIC}/request/add_series", json.dumps(body), qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                async for message in self.mqtt.messages:
                    answer = json.loads(bytes(message.payload))
                    if answer.get("transaction") == transaction:
                        # "already followed" answers an MQTT request whose answer the kill swallowed
                        if answer["status"] == "ok" or answer["error"]["code"] == "conflict":
                            self.acks.followed.add(key)
                            self.acks.counts["follow (MQTT)"] += 1
                        return

    async def _snapshot(self, session: aiohttp.ClientSession, key: str) -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.ws_connect("/ws/connect", params={"api_key": key}) as socket:
                await socket.send_json({"action": "join", "room": "downloads"})
                async with asyncio.timeout(3):
                    kinds = [json.loads((await socket.receive()).data)["type"] for _ in range(3)]
                assert kinds[:2] == ["connected", "joined"], kinds
                self.acks.counts["snapshot (WebSocket)"] += 1

    async def _backup(self, session: aiohttp.ClientSession, _: str) -> None:
        if self.rng.random() < 0.5:  # a backup copies the database: not every round
            return
        made = await self._post(session, "/api/system/backup", None, "backup")
        if made:
            self.acks.backup = made["name"]

    async def _pause_resume(self, session: aiohttp.ClientSession, _: str) -> None:
        self.acks.paused = None
        if await self._post(session, "/api/queue/pause", None, "pause") is not None:
            self.acks.paused = True
        await asyncio.sleep(self.rng.uniform(0, 0.3))
        self.acks.paused = None
        if await self._post(session, "/api/queue/resume", None, "resume") is not None:
            self.acks.paused = False


def check_acknowledged(run: Restarts, acks: Acks, seed: int, kill: int) -> None:
    """Every acknowledged call has its effect in the database the kill left."""
    where = f"after kill {kill} (seed {seed})"
    followed = {key for (key,) in query(run.database, "SELECT key FROM series")}
    assert acks.followed <= followed, where
    rows = {
        item: (status, finished_at, (key, season, number))
        for item, status, finished_at, key, season, number in query(
            run.database, "SELECT id, status, finished_at, series_key, season, number FROM downloads"
        )
    }
    for item, answered in acks.retried.items():
        status, finished_at, episode = rows[item]
        # pending again; failed only by a later attempt (which stamps finished_at after the retry's answer), or not
        # retried because a rescan had queued its episode again as another item (the retry skips it: a conflict)
        again = any(
            other != item and place == episode and state != "failed" for other, (state, _, place) in rows.items()
        )
        assert status != "failed" or finished_at > answered - 1 or again, (item, status, where)
    if acks.moved_first is not None:
        pending = [
            item
            for (item,) in query(
                run.database,
                "SELECT id FROM downloads WHERE status IN ('pending', 'downloading') "
                "ORDER BY status = 'pending', priority_rank, position, created_at, id",
            )
        ]
        # moved first among the pending ones: only items started since (downloading) may be ahead of it
        ahead = pending[: pending.index(acks.moved_first)] if acks.moved_first in pending else []
        started = {item for item in ahead if rows[item][0] == "downloading"}
        assert set(ahead) == started, (acks.moved_first, ahead, where)
    if acks.backup is not None:
        backup = run.folder / "data" / "backups" / acks.backup
        assert backup.is_file(), (acks.backup, where)
        with zipfile.ZipFile(backup) as archive:
            assert archive.testzip() is None, (acks.backup, where)  # every member's CRC
            copy = Path(archive.extract("aniworld.db", run.folder / "checked-backup"))
        assert integrity(copy) == "ok", where
        copy.unlink()


async def test_random_kills_lose_nothing_and_leave_nothing_broken(
    run: Restarts, fakesite: FakeSite, size: str, mqtt: aiomqtt.Client, port: int
) -> None:
    seed = int(os.environ.get("ANIWORLD_KILL_SEED") or random.SystemRandom().randrange(10**6))
    count = int(os.environ.get("ANIWORLD_KILLS") or KILLS[size])
    print(f"random kills: seed {seed}, size {size}, {count} kills (ANIWORLD_KILL_SEED={seed} repeats the moments)")
    rng = random.Random(seed)
    pool = (
        *CONFIGURED[size],
        (*FOLLOWED_BY_API[size], "de-dub"),
        (*FOLLOWED_BY_MQTT, "de-dub"),
    )
    wanted = {
        (key, season, episode.number)
        for key, seasons, _ in pool
        for season in seasons
        for episode in fakesite.series(key).season(season).episodes  # type: ignore[union-attr]
    }
    mp4_episodes = sum(1 for key, _, _ in wanted if key in MP4_SERIES)
    fakesite.knobs.bandwidth = BANDWIDTH
    failing = fakesite.episode_url(*FAILING[size]).removeprefix(fakesite.base_url)
    fakesite.knobs.fail_paths[failing] = 500
    driver = Driver(run, f"http://127.0.0.1:{port}", mqtt, rng, size)

    kills: list[Kill] = []
    paused_expected: bool | None = None
    for number in range(count):
        if number == count // 2:
            del fakesite.knobs.fail_paths[failing]
        window = kill_window(fakesite, run, len(wanted), count - number)
        process = run.launch()
        calls = asyncio.create_task(driver.drive(paused_expected))
        after = rng.uniform(*window)
        deadline = time.monotonic() + after
        while time.monotonic() < deadline:
            if process.process.poll() is not None:
                pytest.fail(f"the daemon exited ({process.process.returncode}) by itself:\n{process.log}")
            if calls.done():
                calls.result()  # a failed check of the driver fails the test
            await asyncio.sleep(0.01)
        interrupted = transfers(run)
        process.signal(signal.SIGKILL)
        assert await process.exited(10) == -signal.SIGKILL
        calls.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await calls
        kills.append(Kill(after, interrupted))
        if run.database.exists():
            assert integrity(run.database) == "ok", f"after kill {len(kills)} (seed {seed})"
            with contextlib.suppress(sqlite3.OperationalError):  # not migrated yet: nothing was acknowledged
                check_acknowledged(run, driver.acks, seed, len(kills))
        paused_expected = driver.acks.paused if run.database.exists() else None

    fakesite.knobs.bandwidth = None
    fakesite.knobs.fail_paths.pop(failing, None)
    final = run.launch()
    calls = asyncio.create_task(driver.drive(paused_expected))

    def all_done() -> bool:
        if calls.done():
            calls.result()
        rows = items(run.database)
        done = {(key, season, number) for key, season, number, status, _ in rows if status == "completed"}
        return done >= wanted and not any(status in ("pending", "downloading") for *_, status, _ in rows)

    # Ready first: the last killed daemon may have finished the queue, and a SIGTERM during the start-up's imports
    # would end this one before it has its handler.
    await final.until(lambda: "Ready" in final.log, "the last daemon to be ready", 30)
    await final.until(all_done, f"every episode to complete after {count} kills (seed {seed})", 240)
    calls.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await calls
    final.signal(signal.SIGTERM)
    assert await final.exited(30) == 0

    # Every episode completed exactly once, nothing else was queued, one history line each. A failed item may stay
    # beside its episode's completed one: a rescan queued the episode again as a new item, and a retry of the old
    # one is then refused as a conflict.
    everything = items(run.database)
    rows = [row for row in everything if row[3] == "completed"]
    assert Counter((key, season, number) for key, season, number, _, _ in rows) == Counter(wanted), seed
    leftovers = [row for row in everything if row[3] != "completed"]
    assert all(row[3] == "failed" and row[:3] in wanted for row in leftovers), (leftovers, seed)
    history = query(run.database, "SELECT series_key, season, number FROM history WHERE kind = 'download_completed'")
    assert Counter(history) == Counter(wanted), seed
    # In the library: one file per episode at its template path, as the source promised; beside them only NFOs and
    # posters; the temp dir empty.
    folders = dict(query(run.database, "SELECT key, folder FROM series"))
    source = fakesite.media.mp4.read_bytes()
    expected: set[Path] = set()
    for key, season, number, _, file_path in rows:
        assert file_path is not None
        # the episode title may be left out of a name that is too long (naming.MIN_CUT_TITLE_CHARS)
        pattern = rf"{re.escape(folders[key])}/Season {season:02d}/.+ - S{season:02d}E{number:02d}(?: - .+)?\.mp4"
        assert re.fullmatch(pattern, file_path), file_path
        video = run.library / file_path
        expected.add(video)
        probe = ffprobe(video)
        assert "mp4" in probe["format"]["format_name"].split(","), (file_path, probe["format"]["format_name"], seed)
        assert float(probe["format"]["duration"]) == pytest.approx(fakesite.media.duration, abs=0.5), (file_path, seed)
        if key in MP4_SERIES:
            assert video.read_bytes() == source, (file_path, seed)
    others = [
        str(path.relative_to(run.library))
        for path in run.library.rglob("*")
        if path.is_file() and path not in expected and path.name not in LIBRARY_EXTRAS
    ]
    assert others == [], (others, seed)
    assert integrity(run.database) == "ok"
    tracebacks = [number for number, text in enumerate(run.all_logs(), 1) if "Traceback" in text]
    assert tracebacks == [], f"tracebacks in the logs of daemons {tracebacks} (seed {seed})"

    numbers = figures(fakesite, mp4_episodes, len(wanted) - mp4_episodes)
    in_transfer = sum(1 for kill in kills if kill.transfers)
    kinds = Counter(kind for kill in kills for kind in kill.transfers)
    print(
        f"random kills (seed {seed}): {len(kills)} kills, {in_transfer} during a transfer "
        f"(interrupting {kinds['mp4']} MP4 and {kinds['hls']} HLS downloads); "
        f"{len(wanted)} episodes ({mp4_episodes} MP4, {len(wanted) - mp4_episodes} HLS); "
        f"MP4 requests resumed by Range {numbers.mp4_resumed}, restarted from 0 {numbers.mp4_restarted}; "
        f"HLS segments fetched again {numbers.segments_again}; "
        f"bytes served per byte kept {numbers.served / numbers.kept:.3f} ({numbers.served} / {numbers.kept}); "
        f"acknowledged calls: {dict(driver.acks.counts)}"
    )
