"""REST API under a big queue: `GET /api/queue/status` under load against a constant aiohttp handler, a paged walk, RSS.

Run: `.venv/bin/python -m bench.api [--items 10000] [--connections 50] [--duration 10] [--quick]`. Needs Debian's
`wrk` (`make test` installs it). The queue is stored before the daemon starts (`Application.components()`, the CLI's
way in): `--items` items in SERIES series, PER_STATE of them each completed, failed and cancelled, the rest pending.
Once the daemon (`python -m aniworld_daemon run`, a subprocess on 127.0.0.1) answers /health, PER_STATE pending items
are claimed `downloading` from this process, as a foreground `aniworld-daemon download` beside the daemon would
(the daemon itself puts `downloading` rows of a previous run back to `pending` when it starts), so every list of the
status response has items. Then:

1. `wrk` (its own process, keep-alive connections) on the default `GET /api/queue/status` (each list capped at 100,
   the statistics exact) with the API key, and on a plain aiohttp handler in a separate process that answers the same
   bytes: the limit of this stack (aiohttp, loopback, wrk) measured in the same run on the same machine. Prints
   requests/s, p50 and p99 of both and the ratios daemon / constant (targets: throughput >= 0.5x, p99 <= 2x).
2. One full paged walk through the queue, `GET /api/queue?status=S&offset=N&limit=100` for every status, timed;
   every stored id must be seen exactly once (else an error).
3. The daemon's RSS after the load (VmRSS of /proc/<pid>/status; target < 80 MB).

A missed target is a figure, not a failure: the run exits non-zero only on errors (a non-2xx answer, a missing or
repeated id, a daemon that does not start). `--quick` is a smoke run: 1,000 items, wrk for 1 s with 10 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from aniworld_daemon.app import Application
from aniworld_daemon.config import load_config
from aniworld_daemon.models import Download, DownloadStatus, Language, Priority, Series
from tests.helpers import free_port

TARGET_THROUGHPUT = 0.5  # daemon / constant, at least
TARGET_P99 = 2.0  # daemon / constant, at most
TARGET_RSS_MB = 80.0
SERIES = 20
PER_STATE = 100  # items downloading, completed, failed and cancelled each; the rest is pending
PAGE = 100
THREADS = 2
START_TIMEOUT = 60.0  # seconds for the daemon (and the constant server) to answer
STOP_TIMEOUT = 40.0  # the daemon's own stop takes at most 30 s
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# The comparison server: a plain aiohttp handler that answers fixed bytes, in a small process of its own (it imports
# aiohttp alone, not the daemon: no middleware, no access log). Run with `python -c`; argv: the body file, the port.
CONSTANT_SERVER = """
import sys
from aiohttp import web

with open(sys.argv[1], "rb") as handle:
    body = handle.read()

async def constant(request):
    return web.Response(body=body, content_type="application/json")

app = web.Application()
app.router.add_get("/", constant)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
"""


@dataclass(frozen=True, slots=True)
class Load:
    """What wrk saw on one URL."""

    requests_per_second: float
    p50: float  # seconds
    p99: float
    requests: int
    errors: str  # wrk's socket-error line, "" when there was none


@dataclass(frozen=True, slots=True)
class Walk:
    """One paged walk through every status of the queue."""

    seconds: float
    pages: int
    items: int
    slowest: float  # seconds of the slowest page
    last_pending: float  # seconds of the last page of the pending items (the deepest offset)


class Process:
    """A child process with its output in a log file; stopped with SIGTERM (SIGKILL after a timeout)."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(cls, log: Path, *args: str, cwd: Path | None = None) -> Process:
        """Start `args` with stdout and stderr going to `log`."""
        with log.open("wb") as handle:
            process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=handle, stderr=handle, cwd=cwd
            )
        return cls(process, log)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def tail(self, lines: int = 30) -> str:
        """The last lines of its output, for an error message."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> int:
        """SIGTERM, then wait (SIGKILL after STOP_TIMEOUT); the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode


def config_text(root: Path, port: int, key: str) -> str:
    """A daemon config on 127.0.0.1:port; the site is a closed local port (nothing contacts it), nothing runs alone."""
    return (
        f"library:\n  path: {root / 'library'}\n  write_nfo: false\n"
        f"data_dir: {root / 'data'}\n"
        f"api:\n  host: 127.0.0.1\n  port: {port}\n  key: {key}\n"
        f"provider:\n  base_url: http://127.0.0.1:{free_port()}\n"
        "downloads:\n  auto_start: false\n  min_free_space: 0\n"
        "schedule:\n  run_on_start: false\n"
    )


def queue_items(count: int) -> list[Download]:
    """`count` items over SERIES series, each a distinct episode; PER_STATE completed, failed, cancelled each."""
    now = datetime.now(UTC) - timedelta(days=1)
    settled = [DownloadStatus.COMPLETED, DownloadStatus.FAILED, DownloadStatus.CANCELLED]
    stride = count // (len(settled) * PER_STATE)
    items = []
    for index in range(count):
        # Every stride-th item is settled (PER_STATE of each such state), the rest pending: the states interleave.
        status = DownloadStatus.PENDING
        if index % stride == 0 and index // stride < len(settled) * PER_STATE:
            status = settled[(index // stride) % len(settled)]
        done = status is DownloadStatus.COMPLETED
        failed = status is DownloadStatus.FAILED
        episode = index // SERIES
        items.append(
            Download(
                id=secrets.token_hex(16),
                series_key=f"bench-series-{index % SERIES:02d}",
                season=1 + episode // 100,
                number=1 + episode % 100,
                priority=(Priority.HIGH, Priority.LOW, Priority.NORMAL, Priority.NORMAL)[index % 4],
                position=0,  # add_downloads numbers them
                status=status,
                created_at=now + timedelta(milliseconds=index),
                language=Language.DE_SUB if done or failed else None,
                hoster="voe" if done or failed else None,
                attempts=5 if failed else int(done),
                error_code="hoster_error" if failed else None,
                error_message="the hoster answered 404 for the embed page" if failed else None,
                bytes_downloaded=300_000_000 if done else 0,
                bytes_total=300_000_000 if done else None,
                started_at=now if done or failed else None,
                finished_at=now + timedelta(minutes=5) if done or failed else None,
                file_path=f"Bench Series/Season 01/Episode {index}.mkv" if done else None,
            )
        )
    return items


async def populate(config_file: Path, count: int) -> dict[str, DownloadStatus]:
    """Store the series and the queue before the daemon starts; the stored id -> status."""
    async with Application(load_config(config_file)).components() as app:
        for index in range(SERIES):
            key = f"bench-series-{index:02d}"
            await app.db.upsert_series(Series(key=key, title=f"Bench Series {index:02d}", folder=f"Bench {index:02d}"))
        added = await app.db.add_downloads(queue_items(count))
    if len(added) != count:
        raise RuntimeError(f"{len(added)} of {count} queue items stored")
    return {item.id: item.status for item in added}


async def claim(config_file: Path, stored: dict[str, DownloadStatus]) -> None:
    """Mark PER_STATE pending items `downloading` from this process, as a foreground download beside the daemon."""
    pending = [item_id for item_id, status in stored.items() if status is DownloadStatus.PENDING]
    async with Application(load_config(config_file)).components() as app:
        now = datetime.now(UTC)
        for item_id in pending[5 : 5 + PER_STATE]:  # not the first: the pending list starts with pending items
            if await app.db.claim_download(item_id, now) is None:
                raise RuntimeError(f"could not claim queue item {item_id}")
            stored[item_id] = DownloadStatus.DOWNLOADING


async def wait_until_answering(session: aiohttp.ClientSession, url: str, process: Process) -> None:
    """Poll `url` until it answers at all (any status), or fail with the process's output."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.process.returncode is not None:
            break
        try:
            async with session.get(url) as response:
                await response.read()
                return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT:.0f} s; its output:\n{process.tail()}")


async def get_json(session: aiohttp.ClientSession, url: str, key: str) -> tuple[bytes, Any]:
    """GET with the API key; the body and its JSON; RuntimeError unless 200."""
    async with session.get(url, headers={"X-Api-Key": key}) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {body[:500].decode(errors='replace')}")
    return body, json.loads(body)


def check_status(data: Any, stored: dict[str, DownloadStatus]) -> None:
    """The status response: lists capped at PAGE, none empty, the statistics exact."""
    lists = {
        DownloadStatus.DOWNLOADING: "active_downloads",
        DownloadStatus.PENDING: "pending_queue",
        DownloadStatus.COMPLETED: "completed_downloads",
        DownloadStatus.FAILED: "failed_downloads",
        DownloadStatus.CANCELLED: "cancelled_downloads",
    }
    counts = Counter(stored.values())
    problems = []
    for status, name in lists.items():
        shown = data["status"][name]
        if len(shown) != min(PAGE, counts[status]):
            problems.append(f"{name} lists {len(shown)} items, expected {min(PAGE, counts[status])}")
    figures = data["statistics"]
    expected = {
        "total_items": len(stored),
        "pending_count": counts[DownloadStatus.PENDING],
        "active_count": counts[DownloadStatus.DOWNLOADING],
        "completed_count": counts[DownloadStatus.COMPLETED],
        "failed_count": counts[DownloadStatus.FAILED],
        "cancelled_count": counts[DownloadStatus.CANCELLED],
    }
    problems += [
        f"{name} is {figures[name]}, expected {value}" for name, value in expected.items() if figures[name] != value
    ]
    if problems:
        raise RuntimeError("GET /api/queue/status: " + "; ".join(problems))


def seconds(text: str) -> float:
    """A wrk duration like `635.91us`, `1.02ms`, `1.20s` in seconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if found is None:
        raise RuntimeError(f"wrk printed a duration {text!r} this bench cannot read")
    return float(found[1]) * WRK_UNITS[found[2]]


def parse_wrk(output: str) -> Load:
    """Requests/s, the 50th and 99th latency percentiles and errors from `wrk --latency` output."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if rate is None or p50 is None or p99 is None or total is None:
        raise RuntimeError(f"wrk printed no figures:\n{output}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if bad is not None:
        raise RuntimeError(f"wrk saw {bad[1]} answers that were not 2xx:\n{output}")
    errors = re.search(r"^\s+Socket errors: (.*)$", output, re.MULTILINE)
    return Load(
        requests_per_second=float(rate[1]),
        p50=seconds(p50[1]),
        p99=seconds(p99[1]),
        requests=int(total[1]),
        errors=errors[1] if errors else "",
    )


def wrk_executable() -> str:
    """Debian's `wrk`, or RuntimeError."""
    executable = shutil.which("wrk")
    if executable is None:
        raise RuntimeError("wrk is missing: run `make test` (it installs Debian's wrk)")
    return executable


async def wrk(executable: str, url: str, key: str, connections: int, duration: int) -> Load:
    """Run wrk on `url` (its own process) with the API key header; what it saw."""
    process = await asyncio.create_subprocess_exec(
        executable,
        f"-t{min(THREADS, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-H",
        f"X-Api-Key: {key}",
        url,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), duration + 60)
    output = out.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}: {err.decode(errors='replace')}{output}")
    return parse_wrk(output)


async def walk(session: aiohttp.ClientSession, base: str, key: str, stored: dict[str, DownloadStatus]) -> Walk:
    """Page through every status with offset/limit; every stored id must come exactly once, under its status."""
    seen: Counter[str] = Counter()
    pages = 0
    slowest = last_pending = 0.0
    start = time.perf_counter()
    for status in DownloadStatus:
        offset = 0
        while True:
            began = time.perf_counter()
            _, data = await get_json(
                session, f"{base}/api/queue?status={status.value}&offset={offset}&limit={PAGE}", key
            )
            took = time.perf_counter() - began
            pages += 1
            slowest = max(slowest, took)
            for item in data["items"]:
                seen[item["id"]] += 1
                if stored.get(item["id"]) is not status:
                    raise RuntimeError(
                        f"item {item['id']} listed under {status.value}, stored as {stored.get(item['id'])}"
                    )
            offset += PAGE
            if offset >= data["total"]:
                if status is DownloadStatus.PENDING:
                    last_pending = took
                break
    elapsed = time.perf_counter() - start
    repeated = [item_id for item_id, times in seen.items() if times > 1]
    missing = set(stored) - set(seen)
    if repeated or missing:
        raise RuntimeError(f"paged walk: {len(repeated)} ids seen more than once, {len(missing)} never seen")
    return Walk(seconds=elapsed, pages=pages, items=sum(seen.values()), slowest=slowest, last_pending=last_pending)


def rss_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (the peak) of a process, in MB of 10^6 bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) * 1024 / 1e6, int(fields["VmHWM"].split()[0]) * 1024 / 1e6


def verdict(met: bool) -> str:
    """The word for a target."""
    return "met" if met else "MISSED"


def load_row(name: str, load: Load) -> str:
    """One row of the load table."""
    return (
        f"{name:<30} {load.requests_per_second:>11,.0f} {load.p50 * 1000:>8.2f}ms {load.p99 * 1000:>8.2f}ms"
        f" {load.requests:>9,}  {load.errors or 'none'}"
    )


async def run(items: int, connections: int, duration: int, workdir: Path) -> None:
    """Store the queue, start the daemon and the constant server, measure, stop both."""
    executable = wrk_executable()
    key = secrets.token_hex(16)
    port, constant_port = free_port(), free_port()
    config_file = workdir / "config.yaml"
    config_file.write_text(config_text(workdir, port, key), encoding="utf-8")
    start = time.perf_counter()
    stored = await populate(config_file, items)
    stored_in = time.perf_counter() - start
    base = f"http://127.0.0.1:{port}"
    daemon = await Process.start(
        workdir / "daemon.log", sys.executable, "-m", "aniworld_daemon", "run", "-c", str(config_file), cwd=workdir
    )
    constant: Process | None = None
    try:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            started = time.perf_counter()
            await wait_until_answering(session, f"{base}/health", daemon)
            started = time.perf_counter() - started
            await claim(config_file, stored)
            first = time.perf_counter()
            body, data = await get_json(session, f"{base}/api/queue/status", key)
            first = time.perf_counter() - first
            check_status(data, stored)
            again = time.perf_counter()
            await get_json(session, f"{base}/api/queue/status", key)
            again = time.perf_counter() - again
            rss_before, _ = rss_mb(daemon.pid)
            body_file = workdir / "status.json"
            body_file.write_bytes(body)
            constant = await Process.start(
                workdir / "constant.log",
                sys.executable,
                "-c",
                CONSTANT_SERVER,
                str(body_file),
                str(constant_port),
            )
            await wait_until_answering(session, f"http://127.0.0.1:{constant_port}/", constant)

            counts = Counter(stored.values())
            print(
                f"queue: {items:,} items in {SERIES} series ({counts[DownloadStatus.PENDING]:,} pending,"
                f" {counts[DownloadStatus.DOWNLOADING]} downloading by another process,"
                f" {counts[DownloadStatus.COMPLETED]} completed, {counts[DownloadStatus.FAILED]} failed,"
                f" {counts[DownloadStatus.CANCELLED]} cancelled), stored in {stored_in:.1f}s;"
                f" daemon answered /health {started:.1f}s after its start"
            )
            print(
                f"GET /api/queue/status: {len(body):,} bytes, lists of {PAGE}; first answer {first * 1000:.0f} ms,"
                f" the next (cached) {again * 1000:.1f} ms; daemon RSS before the load {rss_before:.1f} MB"
            )
            print(f"\n1. wrk -t{min(THREADS, connections)} -c{connections} -d{duration}s, keep-alive, the same body")
            print(f"{'server':<30} {'requests/s':>11} {'p50':>10} {'p99':>10} {'requests':>9}  socket errors")
            daemon_load = await wrk(executable, f"{base}/api/queue/status", key, connections, duration)
            print(load_row("daemon /api/queue/status", daemon_load))
            constant_load = await wrk(executable, f"http://127.0.0.1:{constant_port}/", key, connections, duration)
            print(load_row("constant aiohttp handler", constant_load))
            throughput = daemon_load.requests_per_second / constant_load.requests_per_second
            p99 = daemon_load.p99 / constant_load.p99
            print(
                f"throughput daemon / constant: {throughput:.2f}x (target >= {TARGET_THROUGHPUT}x):"
                f" {verdict(throughput >= TARGET_THROUGHPUT)}"
            )
            print(f"p99 daemon / constant: {p99:.2f}x (target <= {TARGET_P99:g}x): {verdict(p99 <= TARGET_P99)}")

            paged = await walk(session, base, key, stored)
            print(
                f"\n2. paged walk, GET /api/queue?status=S&offset=N&limit={PAGE}"
                f" for all {len(DownloadStatus)} statuses:"
                f" {paged.items:,} items in {paged.pages} pages, {paged.seconds:.2f}s"
                f" ({paged.seconds / paged.pages * 1000:.1f} ms per page, slowest {paged.slowest * 1000:.1f} ms,"
                f" last pending page {paged.last_pending * 1000:.1f} ms); every id seen once (no target)"
            )

            rss, peak = rss_mb(daemon.pid)
            print(
                f"\n3. daemon RSS after the load: {rss:.1f} MB (peak {peak:.1f} MB) with {items:,} items"
                f" (target < {TARGET_RSS_MB:g} MB): {verdict(rss < TARGET_RSS_MB)};"
                f" the constant aiohttp process: {rss_mb(constant.pid)[0]:.1f} MB"
            )
    finally:
        if constant is not None:
            await constant.stop()
        status = await daemon.stop()
    if status != 0:
        raise RuntimeError(f"the daemon exited with {status} after SIGTERM; its output:\n{daemon.tail()}")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1,000 items, wrk 1 s with 10 connections")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.connections, args.duration = 1_000, 10, 1
    if args.items < len(DownloadStatus) * PER_STATE + 5:
        parser.error(f"--items must be at least {len(DownloadStatus) * PER_STATE + 5}")
    with tempfile.TemporaryDirectory(prefix="aniworld-bench-") as tmp:
        asyncio.run(run(args.items, args.connections, args.duration, Path(tmp)))


if __name__ == "__main__":
    main()
