"""MQTT under downloads: how often `progress` and `state` go out, and how soon a finished download's `event` arrives.

Run: `.venv/bin/python -m bench.mqtt [--rounds 2] [--bandwidth 200000] [--quick]`. Starts a real mosquitto
(tests.helpers.Broker, anonymous, on 127.0.0.1), the fake site with every media connection capped at `bandwidth`
bytes/s (one ~1.9 MB MP4 episode takes about 10 s at 200 kB/s), and the real `Application` with
`downloads.max_concurrent` 3 and MQTT to the broker. A subscriber (aiomqtt, in a process of its own, so it does not
share the daemon's event loop, as Home Assistant does not) subscribes to `aniworld/#` and stamps every message with
`time.monotonic()`: CLOCK_MONOTONIC, one clock for every process of the machine.

Each round queues 3 MP4 episodes (Doodstream) at once. While all 3 download (from the third DownloadStarted to the
first DownloadComplete of the round) the messages of each topic are counted per second:
1. `progress` and `state`: the mean rate and the busiest second (targets: at most 1 message per second each; the
   bridge coalesces every change and progress report into one message per second).
2. completion -> `event`: from each download's DownloadComplete on the bus (a subscriber registered before the bridge's,
   `time.monotonic()` when the bus delivers it) to its `download_complete` message at the subscriber (target < 100 ms;
   the median and the max over all downloads).

A missed target is a figure, not a failure: the run exits non-zero only on errors (a download that fails, a subscriber
or broker that does not start, a daemon that never says `online`). `--quick` is a smoke run: one round at 600 kB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aniworld_daemon.app import Application
from aniworld_daemon.config import load_config
from aniworld_daemon.events import (
    DownloadCancelled,
    DownloadComplete,
    DownloadFailed,
    DownloadStarted,
    Event,
    EventData,
)
from bench.download import MP4_EPISODES
from bench.download import config_text as download_config
from tests.fakesite.core import Knobs, ensure_media
from tests.fakesite.server import FakeSite
from tests.helpers import Broker

BASE = "aniworld"
PARALLEL = 3
TARGET_RATE = 1  # messages per second of `progress` and of `state`, at most
TARGET_LATENCY_MS = 100.0  # completion -> `event` at the subscriber, less than
ROUND_TIMEOUT = 300.0  # seconds for one round: a stuck download ends the benchmark instead of hanging it
START_TIMEOUT = 30.0  # seconds for the subscriber to subscribe and for the daemon to say `online`
EVENT_WAIT = 5.0  # seconds to wait, after the last round, for `event` messages still on their way
RATE_TOPICS = ("progress", "state")
SHOWN_TOPICS = ("progress", "state", "queue", "event")
# The subscriber, run with `python -c` in a process of its own; argv: host, port, topic filter. One JSON line per
# message: [monotonic seconds, topic, payload, retained]; a first line ["ready"] once the subscription stands.
SUBSCRIBER = """
import asyncio
import json
import sys
import time

import aiomqtt


async def main(host, port, topics):
    async with aiomqtt.Client(host, port, identifier="aniworld-bench-subscriber") as client:
        await client.subscribe(topics, qos=1)
        print(json.dumps(["ready"]), flush=True)
        async for message in client.messages:
            now = time.monotonic()
            raw = message.payload
            payload = bytes(raw).decode(errors="replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
            sys.stdout.write(json.dumps([now, str(message.topic), payload, message.retain]) + "\\n")
            sys.stdout.flush()


asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the subscriber received it."""

    at: float  # time.monotonic() at the subscriber
    topic: str
    payload: str
    retained: bool


@dataclass(slots=True)
class Downloads:
    """What the bus said about the downloads: the windows with all 3 active, completion times, failures."""

    active: set[str] = field(default_factory=set)
    opened: float | None = None  # when the current window (PARALLEL downloads active) opened
    windows: list[tuple[float, float]] = field(default_factory=list)
    completed: dict[str, float] = field(default_factory=dict)  # item id -> time.monotonic() of DownloadComplete
    failures: list[str] = field(default_factory=list)
    finished: int = 0  # completed, failed or cancelled items
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: Event[EventData]) -> None:
        """Follow one download event."""
        now = time.monotonic()
        data = event.data
        if isinstance(data, DownloadStarted):
            self.active.add(data.item_id)
            if len(self.active) >= PARALLEL and self.opened is None:
                self.opened = now
            return
        if isinstance(data, DownloadComplete):
            self.completed[data.item_id] = now
        elif isinstance(data, DownloadFailed):
            self.failures.append(f"S{data.season}E{data.episode}: {data.error_message}")
        elif not isinstance(data, DownloadCancelled):
            return
        self.active.discard(data.item_id)
        if self.opened is not None and len(self.active) < PARALLEL:
            self.windows.append((self.opened, now))
            self.opened = None
        self.finished += 1
        self.changed.set()


class Subscriber:
    """The subscriber process and the messages it reported so far."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.messages: list[Message] = []
        self.arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, broker: Broker, topics: str, log: Path) -> Subscriber:
        """Start the subscriber and wait (bounded) until it has subscribed."""
        with log.open("wb") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                SUBSCRIBER,
                "127.0.0.1",
                str(broker.port),
                topics,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
                limit=1 << 24,  # one line per message; a `queue` payload can be long
            )
        subscriber = cls(process, log)
        assert process.stdout is not None
        try:
            first = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            await subscriber.stop()
            raise RuntimeError(f"the subscriber did not subscribe within {START_TIMEOUT:g} s") from None
        if json.loads(first or b"null") != ["ready"]:
            await subscriber.stop()
            raise RuntimeError(f"the subscriber did not start: {subscriber.errors()}")
        subscriber._reader = asyncio.get_running_loop().create_task(subscriber._read(), name="subscriber")
        return subscriber

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            at, topic, payload, retained = json.loads(line)
            self.messages.append(Message(at, topic, payload, retained))
            self.arrived.set()

    async def until(self, check: Callable[[], bool], what: str, seconds: float) -> None:
        """Wait (bounded) until `check()` holds after some message; RuntimeError naming `what` otherwise."""
        try:
            async with asyncio.timeout(seconds):
                while not check():
                    if self.process.returncode is not None:
                        raise RuntimeError(f"the subscriber exited: {self.errors()}")
                    self.arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.arrived.wait(), 0.5)
        except TimeoutError:
            raise RuntimeError(f"no {what} within {seconds:g} s") from None

    def saw(self, topic: str, payload: str) -> bool:
        """Whether a message with this payload arrived on `topic`."""
        return any(message.topic == topic and message.payload == payload for message in self.messages)

    def errors(self) -> str:
        """What the subscriber wrote to stderr."""
        return self.log.read_text(errors="replace").strip()

    def live(self, topic: str) -> list[Message]:
        """The messages published on `topic` while subscribed (retained replays left out)."""
        return [message for message in self.messages if message.topic == topic and not message.retained]

    def completions(self) -> dict[str, float]:
        """Item id -> arrival time of its first `download_complete` message on `<base>/event`."""
        found: dict[str, float] = {}
        for message in self.live(f"{BASE}/event"):
            event = json.loads(message.payload)
            if event.get("type") == "download_complete":
                found.setdefault(str(event["data"]["item_id"]), message.at)
        return found

    async def stop(self) -> None:
        """Terminate the subscriber (it never ends by itself) and wait for it."""
        if self.process.returncode is None:
            self.process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 10)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def config_text(site: FakeSite, broker: Broker, root: Path) -> str:
    """bench.download's daemon config (one series, the queue starting at once) with MQTT to the broker."""
    return download_config(
        site,
        root,
        PARALLEL,
        series=("blade-of-dawn",),
        extra=f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  base_topic: {BASE}\n  discovery: true\n",
    )


def per_second(messages: Sequence[Message], windows: Sequence[tuple[float, float]]) -> tuple[int, list[int]]:
    """The messages inside the windows, and their count in each second of each window (from the window's start)."""
    counts: list[int] = []
    total = 0
    for start, end in windows:
        buckets = [0] * max(1, int(end - start) + 1)
        for message in messages:
            if start <= message.at < end:
                buckets[int(message.at - start)] += 1
                total += 1
        counts += buckets
    return total, counts


def gaps(messages: Sequence[Message], windows: Sequence[tuple[float, float]]) -> list[float]:
    """The times between consecutive messages inside each window, in seconds."""
    found: list[float] = []
    for start, end in windows:
        times = sorted(message.at for message in messages if start <= message.at < end)
        found += [later - earlier for earlier, later in itertools.pairwise(times)]
    return found


def rate(messages: Sequence[Message], windows: Sequence[tuple[float, float]]) -> float:
    """Messages per second: 1 / the mean gap between consecutive ones in a window.

    Not the count over the seconds, which a window's two edges can push above the real rate (10 messages 1 s apart fit
    in 9.01 s); with fewer than two messages in every window, the count over the seconds is all there is.
    """
    between = gaps(messages, windows)
    if between:
        return len(between) / sum(between)
    seconds = sum(end - start for start, end in windows)
    return per_second(messages, windows)[0] / seconds if seconds else 0.0


def verdict(met: bool) -> str:
    """The word for a target."""
    return "met" if met else "MISSED"


def mosquitto_version() -> str:
    """`mosquitto 2.0.11`, from its help text."""
    executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    result = subprocess.run([executable, "-h"], capture_output=True, text=True, timeout=10, check=False)
    words = (result.stdout or result.stderr).split()
    return f"mosquitto {words[2]}" if len(words) > 2 and words[1] == "version" else "mosquitto"


async def run_rounds(app: Application, downloads: Downloads, rounds: int) -> None:
    """Queue PARALLEL episodes per round and wait until all of them are done."""
    for number in range(rounds):
        episodes = MP4_EPISODES[number * PARALLEL : (number + 1) * PARALLEL]
        target = downloads.finished + len(episodes)
        before = len(downloads.windows)
        await app.downloader.add(episodes[0][0], [(season, episode) for _, season, episode in episodes])
        deadline = time.monotonic() + ROUND_TIMEOUT
        while downloads.finished < target:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"round {number + 1} did not finish within {ROUND_TIMEOUT:g} s")
            downloads.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(downloads.changed.wait(), left)
        if downloads.failures:
            raise RuntimeError("downloads failed: " + "; ".join(downloads.failures))
        names = ", ".join(f"S{season}E{episode}" for _, season, episode in episodes)
        window = [f"{end - start:.2f} s" for start, end in downloads.windows[before:]]
        print(f"round {number + 1}: {names}; all {PARALLEL} downloading together for {', '.join(window) or 'no time'}")


def report(subscriber: Subscriber, downloads: Downloads) -> None:
    """Print the rates in the windows and the completion -> event delays."""
    windows = downloads.windows
    seconds = sum(end - start for start, end in windows)
    plural = "s" if len(windows) != 1 else ""
    print(
        f"\nmessages while {PARALLEL} downloads were active ({seconds:.1f} s in {len(windows)} window{plural}),"
        " counted per second from each window's start\n(mean/s = 1 / the mean gap between consecutive messages):"
    )
    print(f"{'topic':<22} {'messages':>9} {'mean/s':>8} {'busiest second':>15} {'shortest gap':>13}")
    busiest: dict[str, int] = {}
    means: dict[str, float] = {}
    for name in SHOWN_TOPICS:
        messages = subscriber.live(f"{BASE}/{name}")
        total, counts = per_second(messages, windows)
        between = gaps(messages, windows)
        busiest[name] = max(counts, default=0)
        means[name] = rate(messages, windows)
        shortest = f"{min(between) * 1000:.0f} ms" if between else "-"
        print(f"{BASE + '/' + name:<22} {total:>9} {means[name]:>8.2f} {busiest[name]:>15} {shortest:>13}")
    for name in RATE_TOPICS:
        met = 0 < busiest[name] <= TARGET_RATE
        note = "" if busiest[name] else " (none published: nothing to judge)"
        print(
            f"{name}: {means[name]:.2f} messages/s, busiest second {busiest[name]}"
            f" (target <= {TARGET_RATE}/s): {verdict(met)}{note}"
        )

    arrived = subscriber.completions()
    delays = [(arrived[item] - done) * 1000 for item, done in downloads.completed.items() if item in arrived]
    lost = len(downloads.completed) - len(delays)
    if delays:
        median, worst = statistics.median(delays), max(delays)
        print(
            f"completion -> event: median {median:.1f} ms, max {worst:.1f} ms over {len(delays)} downloads"
            f" (target < {TARGET_LATENCY_MS:g} ms): {verdict(worst < TARGET_LATENCY_MS and not lost)}"
            + (f"; {lost} completions never arrived as an event" if lost else "")
        )
    else:
        print(
            f"completion -> event: no event arrived for {lost} completions (target < {TARGET_LATENCY_MS:g} ms): MISSED"
        )
    whole = Counter(message.topic.removeprefix(f"{BASE}/") for message in subscriber.messages if not message.retained)
    print(
        "  whole run, live messages per topic: "
        + ", ".join(f"{topic} {count}" for topic, count in sorted(whole.items()))
        + "\n  event = every bus event but progress; state and queue are retained and coalesced with progress"
    )


async def run(rounds: int, bandwidth: int, workdir: Path) -> None:
    """Start broker, subscriber, fake site and daemon; run the rounds; print the figures."""
    media = await asyncio.to_thread(ensure_media, workdir / "media")
    broker = Broker(workdir / "broker")
    await asyncio.to_thread(broker.start)
    subscriber: Subscriber | None = None
    try:
        subscriber = await Subscriber.start(broker, f"{BASE}/#", workdir / "subscriber.log")
        size = media.mp4.stat().st_size
        print(
            f"broker: {mosquitto_version()} on 127.0.0.1:{broker.port}; fake site: media at {bandwidth:,} bytes/s per"
            f" connection (MP4 {size:,} bytes, ~{size / bandwidth:.1f} s per download);"
            f" daemon: max_concurrent {PARALLEL}, {rounds} round(s) of {PARALLEL} episodes"
        )
        async with FakeSite(media, knobs=Knobs(bandwidth=bandwidth)) as site:
            root = workdir / "daemon"
            root.mkdir()
            config_file = root / "config.yaml"
            config_file.write_text(config_text(site, broker, root), encoding="utf-8")
            app = Application(load_config(config_file))
            downloads = Downloads()
            # Before the start, so this subscriber is called before the bridge's for every event.
            app.bus.subscribe(downloads, DownloadStarted, DownloadComplete, DownloadFailed, DownloadCancelled)
            await app.start()
            try:
                await subscriber.until(lambda: subscriber.saw(f"{BASE}/status", "online"), "online", START_TIMEOUT)
                await run_rounds(app, downloads, rounds)
                with contextlib.suppress(RuntimeError):  # a lost event is a figure, reported below
                    await subscriber.until(
                        lambda: len(subscriber.completions()) >= len(downloads.completed), "more events", EVENT_WAIT
                    )
            finally:
                await app.stop()
        report(subscriber, downloads)
    finally:
        if subscriber is not None:
            await subscriber.stop()
        broker.kill()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help=f"rounds of {PARALLEL} episodes downloaded together")
    parser.add_argument("--bandwidth", type=int, default=200_000, help="bytes/s per media connection")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round at 600 kB/s")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.bandwidth = 1, 600_000
    if not 1 <= args.rounds <= len(MP4_EPISODES) // PARALLEL:
        parser.error(f"--rounds must be 1..{len(MP4_EPISODES) // PARALLEL}")
    if args.bandwidth < 10_000:
        parser.error("--bandwidth must be at least 10000 bytes/s")
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="aniworld-bench-") as tmp:
        asyncio.run(run(args.rounds, args.bandwidth, Path(tmp)))


if __name__ == "__main__":
    main()
