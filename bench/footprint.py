"""Footprint: the daemon's time from process start to READY and its idle memory, at a small and a large size.

Run: `.venv/bin/python -m bench.footprint [--episodes 12] [--starts 3] [--quick]`. The daemon is a real subprocess,
`python -m aniworld_daemon run`, with config.example.yaml adapted to this machine: the library and the data dir in a
temp folder, the API on 127.0.0.1, the fake site (tests/fakesite, in this process) as `provider.base_url` with the
politeness budget raised (REQUESTS_PER_SECOND: the budget is not what is measured), `schedule.run_on_start: false`
(so the first idle figure is idle; the bench starts the rescan) and MQTT on to a real mosquitto (tests.helpers.Broker).
Everything else is the example's: auto_download and auto_start on, `max_concurrent` 2, NFO files and posters.

Two sizes, each with its series followed (stored in the database before the start, through
`Application.components()`, as bench/api.py stores its queue) and a library holding every episode but MISSING of them:
- small: SMALL_SERIES series, an empty queue;
- large: LARGE_SERIES series and LARGE_QUEUE queue items (finished ones: the history of a long-running daemon; pending
  items would be downloaded and change what is measured).

Per size:
1. READY: from `Popen` (the interpreter's start and every import included) to the `READY=1` datagram on a
   `NOTIFY_SOCKET` this bench listens on, as systemd's `Type=notify` sees it; the median of `--starts` starts
   (target < TARGET_READY s), with the bytecode cache in use as on an installed system (bytecode_env).
2. Idle RSS after the start (VmRSS of /proc/<pid>/status once /health says healthy, i.e. MQTT connected, plus SETTLE s).
3. One rescan (`POST /api/anime/rescan`), which queues the MISSING episodes, and their downloads (auto_start), then
   idle RSS again, with the peak (VmHWM). Targets: idle RSS < TARGET_RSS_MB (small) / (large).
Before the sizes: what the daemon imports at start, `import aniworld_daemon.cli.main, aniworld_daemon.app` in a fresh
interpreter, timed, and (not with --quick) `python -X importtime` summed per top-level package.

A missed target is a figure, not a failure: the run exits non-zero only on errors (a daemon that does not start or
exits non-zero, a failed download, a rescan that does not complete). `--quick` is a smoke run of the small size only:
one start, SMALL_SERIES series of 4 episodes, 3 downloads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
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
import yaml

from aniworld_daemon.app import Application
from aniworld_daemon.config import load_config
from aniworld_daemon.models import Download, DownloadStatus, Priority, Series, SeriesSource
from aniworld_daemon.naming import NamingTemplate, SeriesNaming
from aniworld_daemon.web.auth import KEY_FILE
from bench.api import rss_mb, verdict
from bench.mqtt import mosquitto_version
from bench.rescan import synthetic_catalog
from tests.fakesite.catalog import Catalog
from tests.fakesite.core import ensure_media
from tests.fakesite.server import FakeSite
from tests.helpers import ROOT, Broker, Daemon, free_port

TARGET_READY = 1.5  # seconds from the process start to READY=1
TARGET_RSS_MB = {"small": 60.0, "large": 120.0}
SMALL_SERIES = 20
LARGE_SERIES = 2_000
LARGE_QUEUE = 10_000
MISSING = 10  # episodes not on disk: the rescan queues them and the daemon downloads them
REQUESTS_PER_SECOND = 1_000
SETTLE = 1.0  # seconds between "nothing left to do" and an idle RSS reading
START_TIMEOUT = 60.0  # seconds to READY and to healthy
WORK_TIMEOUT = 900.0  # seconds for the rescan and the downloads of one size (2,000 series take a while)
STOP_TIMEOUT = 45.0  # the daemon's own stop takes at most 30 s
POLL = 0.2
IMPORT_TABLE_ROWS = 10
# What `aniworld-daemon run` imports before it starts anything: the CLI and the Application with every component.
START_IMPORTS = "import aniworld_daemon.cli.main, aniworld_daemon.app"
IMPORTTIME_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


@dataclass(frozen=True, slots=True)
class Size:
    """One size of the benchmark."""

    name: str
    series: int
    episodes: int  # per series
    queue: int  # finished queue items stored before the start
    missing: int  # episodes not on disk, downloaded after the rescan


@dataclass(frozen=True, slots=True)
class Footprint:
    """What one size measured."""

    ready: tuple[float, ...]  # seconds from Popen to READY=1, one per start
    idle_mb: float
    after_mb: float
    peak_mb: float
    idle_parts: str  # the anonymous (heap) and file-backed (code, shared libraries) parts of each
    after_parts: str
    rescan_seconds: float
    requests: int
    download_seconds: float


def example_config(root: Path, site: FakeSite, broker: Broker) -> str:
    """config.example.yaml with temp folders, 127.0.0.1, the fake site, a raised budget, no rescan at start, MQTT on."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    config["library"]["path"] = str(root / "library")
    config["data_dir"] = str(root / "data")
    config["api"].update(host="127.0.0.1", port=free_port())
    config["provider"].update(base_url=site.base_url, requests_per_second=REQUESTS_PER_SECOND)
    config["schedule"]["run_on_start"] = False
    config["mqtt"].update(enabled=True, host="127.0.0.1", port=broker.port)
    return yaml.safe_dump(config, sort_keys=False)


def naming_of(series: Any) -> SeriesNaming:
    """The naming fields of a fake-site series (its folder is what the daemon would pick)."""
    return SeriesNaming(title=series.title, year=series.start_year, key=series.key)


def missing_places(catalog: Catalog, count: int) -> set[tuple[str, int, int]]:
    """The newest episode of the first `count` series (or more per series when there are fewer series)."""
    places: list[tuple[str, int, int]] = []
    newest = [list(series.episodes())[::-1] for series in catalog]
    for depth in range(max(len(episodes) for episodes in newest)):
        for episodes in newest:
            if len(places) < count and depth < len(episodes):
                places.append((episodes[depth].series, episodes[depth].season, episodes[depth].number))
    return set(places)


def build_library(root: Path, catalog: Catalog, template: NamingTemplate, missing: set[tuple[str, int, int]]) -> int:
    """Every episode but `missing` as a sparse 2 MB file (bench/rescan.py's layout); returns the count."""
    files = 0
    for series in catalog:
        for episode in series.episodes():
            if (episode.series, episode.season, episode.number) in missing:
                continue
            name = template.episode_path(
                naming_of(series), episode.season, episode.number, episode.title_de, None, ".mkv"
            )
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as handle:
                handle.truncate(2 * 1024 * 1024)
            files += 1
    return files


def finished_items(
    catalog: Catalog, template: NamingTemplate, count: int, missing: set[tuple[str, int, int]]
) -> list[Download]:
    """`count` finished queue items of episodes on disk: 98% completed, 1% failed, 1% cancelled."""
    now = datetime.now(UTC) - timedelta(days=30)
    on_disk = [
        (series, episode)
        for series in catalog
        for episode in series.episodes()
        if (episode.series, episode.season, episode.number) not in missing
    ]
    if count > len(on_disk):
        raise RuntimeError(f"{count} queue items need {count} episodes on disk, the library has {len(on_disk)}")
    items = []
    for index, (series, episode) in enumerate(on_disk[:count]):
        status = DownloadStatus.COMPLETED
        if index % 100 == 1:
            status = DownloadStatus.FAILED
        elif index % 100 == 2:
            status = DownloadStatus.CANCELLED
        done = status is not DownloadStatus.CANCELLED
        items.append(
            Download(
                id=secrets.token_hex(16),
                series_key=series.key,
                season=episode.season,
                number=episode.number,
                priority=Priority.NORMAL,
                position=0,  # add_downloads numbers them
                status=status,
                created_at=now + timedelta(seconds=index),
                hoster="voe" if done else None,
                attempts=5 if status is DownloadStatus.FAILED else int(done),
                error_code="hoster_error" if status is DownloadStatus.FAILED else None,
                error_message="the hoster answered 404" if status is DownloadStatus.FAILED else None,
                bytes_downloaded=300_000_000 if status is DownloadStatus.COMPLETED else 0,
                bytes_total=300_000_000 if status is DownloadStatus.COMPLETED else None,
                started_at=now if done else None,
                finished_at=now + timedelta(minutes=5) if done else None,
                file_path=(
                    template.episode_path(
                        naming_of(series), episode.season, episode.number, episode.title_de, None, ".mkv"
                    )
                    if status is DownloadStatus.COMPLETED
                    else None
                ),
            )
        )
    return items


async def populate(config_file: Path, catalog: Catalog, items: Sequence[Download]) -> None:
    """Follow every series of the catalog and store the queue items, before the daemon starts."""
    template = NamingTemplate(load_config(config_file).library.naming)
    async with Application(load_config(config_file)).components() as app:
        for series in catalog:
            await app.db.upsert_series(
                Series(
                    key=series.key,
                    title=series.title,
                    folder=template.series_folder(naming_of(series)),
                    source=SeriesSource.API,
                    year_start=series.start_year,
                    year_end=series.end_year,
                )
            )
        added = await app.db.add_downloads(items)
    if len(added) != len(items):
        raise RuntimeError(f"{len(added)} of {len(items)} queue items stored")


def rss_parts(pid: int) -> str:
    """`anon A MB, file F MB`: VmRSS split into RssAnon (the heap) and RssFile (code and shared libraries)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines())
    anon, file = (int(fields[name].split()[0]) * 1024 / 1e6 for name in ("RssAnon", "RssFile"))
    return f"anon {anon:.1f} MB, file {file:.1f} MB"


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.setblocking(False)

    async def ready(self, daemon: Daemon) -> float:
        """Wait for READY=1 from `daemon`; time.monotonic() at its arrival."""
        deadline = time.monotonic() + START_TIMEOUT
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or daemon.process.poll() is not None:
                raise RuntimeError(f"no READY=1 within {START_TIMEOUT:g} s; the daemon's log:\n{daemon.log}")
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(loop.sock_recv(self.socket, 4096), min(left, 1.0))
                if "READY=1" in message.decode(errors="replace").splitlines():
                    return time.monotonic()

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()


async def stop(daemon: Daemon) -> None:
    """SIGTERM, then the exit status must be 0."""
    daemon.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while (status := daemon.process.poll()) is None:
        if time.monotonic() > deadline:
            daemon.close()
            raise RuntimeError(f"the daemon did not stop within {STOP_TIMEOUT:g} s:\n{daemon.log}")
        await asyncio.sleep(0.05)
    daemon.close()
    if status != 0:
        raise RuntimeError(f"the daemon exited with {status} after SIGTERM:\n{daemon.log}")


async def get_json(session: aiohttp.ClientSession, url: str, key: str | None = None) -> tuple[int, Any]:
    """GET, the status and the JSON body."""
    headers = {"X-Api-Key": key} if key else {}
    async with session.get(url, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def until_healthy(session: aiohttp.ClientSession, base: str, daemon: Daemon) -> None:
    """Poll /health until it says healthy (the MQTT check passes once the broker connection stands)."""
    deadline = time.monotonic() + START_TIMEOUT
    body: Any = None
    while time.monotonic() < deadline and daemon.process.poll() is None:
        _, body = await get_json(session, f"{base}/health")
        if body.get("status") == "healthy":
            return
        await asyncio.sleep(POLL)
    raise RuntimeError(f"/health did not say healthy within {START_TIMEOUT:g} s ({body}); log:\n{daemon.log}")


async def statistics_of(session: aiohttp.ClientSession, base: str, key: str) -> dict[str, Any]:
    """The queue's statistics."""
    status, body = await get_json(session, f"{base}/api/queue/status?limit=1", key)
    if status != 200:
        raise RuntimeError(f"GET /api/queue/status: {status} {body}")
    return dict(body["statistics"])


async def rescan_and_download(
    session: aiohttp.ClientSession, base: str, key: str, daemon: Daemon, size: Size
) -> tuple[float, int, float]:
    """Start a rescan, wait for its report, then for the queued downloads; (rescan s, requests, downloads s)."""
    before = await statistics_of(session, base, key)
    start = time.monotonic()
    async with session.post(f"{base}/api/anime/rescan", json={}, headers={"X-Api-Key": key}) as response:
        body = await response.json()
        if response.status != 202:
            raise RuntimeError(f"POST /api/anime/rescan: {response.status} {body}")
    scan_id = body["scan_id"]
    deadline = start + WORK_TIMEOUT
    report: Any = None
    while time.monotonic() < deadline and daemon.process.poll() is None:
        status, report = await get_json(session, f"{base}/api/scans/{scan_id}", key)
        if status == 200 and report["status"] != "running":
            break
        await asyncio.sleep(POLL)
    rescan = time.monotonic() - start
    if report is None or report["status"] != "complete":
        raise RuntimeError(f"the rescan did not complete: {report}; log:\n{daemon.log}")
    if sum(report["missing"].values()) != size.missing:
        raise RuntimeError(f"the rescan found these missing: {report['missing']}; expected {size.missing} episodes")
    while time.monotonic() < deadline and daemon.process.poll() is None:
        now = await statistics_of(session, base, key)
        if now["failed_count"] > before["failed_count"]:
            raise RuntimeError(f"a download failed: {now}; log:\n{daemon.log}")
        done = now["completed_count"] - before["completed_count"]
        if done >= size.missing and now["pending_count"] == 0 and now["active_count"] == 0:
            return rescan, int(report["requests"]), time.monotonic() - start - rescan
        await asyncio.sleep(POLL)
    raise RuntimeError(f"{size.missing} downloads did not finish within {WORK_TIMEOUT:g} s; log:\n{daemon.log}")


async def measure(size: Size, workdir: Path, starts: int) -> Footprint:
    """Build the catalog, library and database of one size; start the daemon `starts` times; measure."""
    catalog = synthetic_catalog(size.series, size.episodes)
    template = NamingTemplate(
        yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))["library"]["naming"]
    )
    missing = missing_places(catalog, size.missing)
    root = workdir / size.name
    library = root / "library"
    began = time.perf_counter()
    files = await asyncio.to_thread(build_library, library, catalog, template, missing)
    items = finished_items(catalog, template, size.queue, missing)
    media = await asyncio.to_thread(ensure_media, workdir / "media")
    broker = Broker(root / "broker")
    await asyncio.to_thread(broker.start)
    notify = NotifySocket(root / "notify.sock")
    try:
        async with FakeSite(media, catalog=catalog) as site, aiohttp.ClientSession() as session:
            config_file = root / "config.yaml"
            config_file.write_text(example_config(root, site, broker), encoding="utf-8")
            await populate(config_file, catalog, items)
            print(
                f"\n{size.name}: {size.series:,} series x {size.episodes} episodes followed, {files:,} files on disk,"
                f" {len(items):,} queue items stored ({time.perf_counter() - began:.1f} s to build);"
                f" {size.missing} episodes missing"
            )
            config = load_config(config_file)
            base = f"http://127.0.0.1:{config.api.port}"
            env = {"NOTIFY_SOCKET": str(notify.path), **bytecode_env(workdir)}
            ready: list[float] = []
            for number in range(starts):
                launched = time.monotonic()
                daemon = Daemon(config_file, env=env)
                ready.append(await notify.ready(daemon) - launched)
                if number < starts - 1:
                    await stop(daemon)
            try:
                await until_healthy(session, base, daemon)
                await asyncio.sleep(SETTLE)
                idle, _ = rss_mb(daemon.process.pid)
                idle_parts = rss_parts(daemon.process.pid)
                key = (config.data_dir / KEY_FILE).read_text(encoding="utf-8").strip()
                rescan, requests, downloads = await rescan_and_download(session, base, key, daemon, size)
                await asyncio.sleep(SETTLE)
                after, peak = rss_mb(daemon.process.pid)
                after_parts = rss_parts(daemon.process.pid)
            finally:
                if daemon.process.poll() is None:
                    await stop(daemon)
                daemon.close()
    finally:
        notify.close()
        broker.kill()
    return Footprint(tuple(ready), idle, after, peak, idle_parts, after_parts, rescan, requests, downloads)


def report(size: Size, found: Footprint) -> None:
    """Print one size's figures against the targets."""
    ready = statistics.median(found.ready)
    target = TARGET_RSS_MB[size.name]
    starts = ", ".join(f"{seconds:.2f}" for seconds in found.ready)
    print(
        f"{size.name} READY: {ready:.2f} s after the process start, median of {len(found.ready)} ({starts})"
        f" (target < {TARGET_READY:g} s): {verdict(ready < TARGET_READY)}"
    )
    print(
        f"{size.name} idle RSS after the start: {found.idle_mb:.1f} MB ({found.idle_parts})"
        f" (target < {target:g} MB): {verdict(found.idle_mb < target)}"
    )
    print(
        f"{size.name} idle RSS after one rescan and {size.missing} downloads: {found.after_mb:.1f} MB"
        f" ({found.after_parts}; peak {found.peak_mb:.1f} MB)"
        f" (target < {target:g} MB): {verdict(found.after_mb < target)}"
    )
    print(
        f"  the rescan: {found.rescan_seconds:.1f} s, {found.requests:,} requests;"
        f" the {size.missing} downloads after it: {found.download_seconds:.1f} s"
    )


def bytecode_env(workdir: Path) -> dict[str, str]:
    """Bytecode cached as after `pip install` (which compiles it), in a temp folder, whatever this shell says.

    With PYTHONDONTWRITEBYTECODE set (as in some containers) the daemon's modules would be compiled from source at
    every start: 0.2 s more to READY than on an installed system. PYTHONPYCACHEPREFIX keeps the repository clean.
    """
    return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(workdir / "pycache")}


def start_imports(workdir: Path) -> tuple[float, list[tuple[str, float]]]:
    """What `run` imports before it starts: wall seconds in a fresh interpreter, and -X importtime per top package."""
    env = {**os.environ, **bytecode_env(workdir)}
    # The first import writes the bytecode cache; the timed ones read it, as the daemon's starts do.
    subprocess.run([sys.executable, "-c", START_IMPORTS], timeout=120, check=True, cwd=ROOT, env=env)
    timed = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import time; t = time.perf_counter(); {START_IMPORTS}; print(time.perf_counter() - t)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
        env=env,
    )
    profile = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", START_IMPORTS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
        env=env,
    )
    per_package: Counter[str] = Counter()
    for line in profile.stderr.splitlines():
        if (match := IMPORTTIME_LINE.match(line)) is not None:
            per_package[match[4].split(".")[0]] += int(match[1])
    return float(timed.stdout), [(name, micros / 1e6) for name, micros in per_package.most_common()]


def print_imports(workdir: Path, table: bool) -> None:
    """Print the start-up imports: the wall time, and the per-package table unless `table` is false."""
    seconds, packages = start_imports(workdir)
    print(f"imports at start ({START_IMPORTS}): {seconds * 1000:.0f} ms in a fresh interpreter")
    if table:
        total = sum(share for _, share in packages)
        print(f"  python -X importtime, self time per top-level package ({total * 1000:.0f} ms with its overhead):")
        for name, share in packages[:IMPORT_TABLE_ROWS]:
            print(f"  {name:<28} {share * 1000:>7.1f} ms")


async def run(sizes: Sequence[Size], starts: int, workdir: Path, table: bool) -> None:
    """Print the imports, then measure and report each size."""
    print(
        f"daemon: config.example.yaml + MQTT to {mosquitto_version()};"
        f" Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    await asyncio.to_thread(print_imports, workdir, table)
    for size in sizes:
        report(size, await measure(size, workdir, starts))


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=12, help="episodes per series")
    parser.add_argument("--starts", type=int, default=3, help="daemon starts per size (READY is their median)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: the small size only, 3 downloads, one start")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    if args.starts < 1:
        parser.error("--starts must be at least 1")
    if args.quick:
        sizes = [Size("small", SMALL_SERIES, 4, 0, 3)]
        args.starts = 1
    else:
        sizes = [
            Size("small", SMALL_SERIES, args.episodes, 0, MISSING),
            Size("large", LARGE_SERIES, args.episodes, LARGE_QUEUE, MISSING),
        ]
    with tempfile.TemporaryDirectory(prefix="aniworld-bench-") as tmp:
        asyncio.run(run(sizes, args.starts, Path(tmp), table=not args.quick))


if __name__ == "__main__":
    main()
