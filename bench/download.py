"""Download overhead and parallelism: the daemon's engine against the `yt-dlp` CLI alone, over the fake site.

Run: `.venv/bin/python -m bench.download [--episodes 6] [--parallel 6] [--bandwidth 500000] [--quick]`. The fake
site serves every media connection at `bandwidth` bytes/s, so one ~1.9 MB episode takes about 4 s to transfer.
A (overhead, one download at a time): the same episodes, half MP4 (Doodstream) and half HLS (VOE), downloaded by the
real `Application` (enqueue -> episode page -> redirect -> resolver -> yt-dlp -> ffprobe -> import) and by the
`yt-dlp` CLI alone on media URLs resolved beforehand (untimed); prints both wall times and the ratio (target
<= 1.05x). B (parallelism): MP4 episodes with `downloads.max_concurrent` 3 and 1; prints the speedup (target >= 2.7x).
The politeness budget is set high (requests_per_second: 50), so the downloads are measured, not the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aniworld_daemon.app import Application
from aniworld_daemon.config import Config, load_config
from aniworld_daemon.downloads import verify
from aniworld_daemon.downloads.job import candidates
from aniworld_daemon.events import DownloadComplete, DownloadFailed, Event, EventData
from aniworld_daemon.provider.aniworld import AniworldProvider
from aniworld_daemon.provider.hosters import HosterRegistry
from aniworld_daemon.provider.hosters.base import MediaSource
from aniworld_daemon.provider.http import HttpClient
from tests.fakesite.core import CHUNK, Knobs, Media, RequestRecord, ensure_media
from tests.fakesite.server import FakeSite
from tests.helpers import free_port

TARGET_RATIO = 1.05
TARGET_SPEEDUP = 2.7
PARALLEL = 3
REQUESTS_PER_SECOND = 50
RUN_TIMEOUT = 600.0  # seconds for one run: a stuck download ends the benchmark instead of hanging it
# With de-sub first and hosters [doodstream, voe], Blade of Dawn comes from Doodstream (MP4) and Sword/Shield
# Chronicle from VOE (HLS): their de-sub offers are [voe, filemoon, doodstream] and [voe, vidmoly].
HOSTERS = ("doodstream", "voe")
MP4_EPISODES = tuple(("blade-of-dawn", 1, n) for n in range(1, 7)) + tuple(("blade-of-dawn", 2, n) for n in range(1, 5))
HLS_EPISODES = tuple(("sword-shield-chronicle", 1, n) for n in range(1, 7)) + tuple(
    ("sword-shield-chronicle", 2, n) for n in range(1, 4)
)

Place = tuple[str, int, int]  # series key, season, episode


@dataclass(frozen=True, slots=True)
class Phases:
    """One episode of a sequential run: before its first media request, the transfer, after its last one."""

    before: float
    transfer: float
    after: float


@dataclass(frozen=True, slots=True)
class Measured:
    """One run: wall time, per-episode phases (sequential runs only) and what the site saw."""

    wall: float
    phases: tuple[Phases, ...]
    max_streams: int  # the most media requests in flight at once, seen by the fake site
    stream_seconds: float  # the mean time the site took to serve one MP4 or HLS segment
    media_requests: int
    site_requests: int  # requests to the site itself (pages, redirects), not to hosters


def mean(values: Sequence[float]) -> float:
    """The mean, 0 for nothing."""
    return statistics.fmean(values) if values else 0.0


def config_text(
    site: FakeSite,
    root: Path,
    concurrency: int,
    *,
    series: Sequence[str] = ("blade-of-dawn", "sword-shield-chronicle"),
    extra: str = "",
) -> str:
    """A daemon config over the fake site with a fresh library and data dir under `root`; rescans never run.

    `extra`: more sections (another bench's, e.g. `mqtt:`).
    """
    return (
        f"library:\n  path: {root / 'library'}\n  write_nfo: false\n"
        f"data_dir: {root / 'data'}\n"
        f"api:\n  host: 127.0.0.1\n  port: {free_port()}\n"
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: {REQUESTS_PER_SECOND}\n"
        f"  languages: [de-sub]\n  hosters: [{', '.join(HOSTERS)}]\n"
        f"downloads:\n  max_concurrent: {concurrency}\n  retries: 1\n  auto_download: false\n  auto_start: true\n"
        "schedule:\n  run_on_start: false\n"
        "series:\n" + "".join(f"  - {key}\n" for key in series) + extra
    )


def write_config(site: FakeSite, root: Path, concurrency: int) -> Config:
    """Write and load the config of one run."""
    root.mkdir(parents=True)
    path = root / "config.yaml"
    path.write_text(config_text(site, root, concurrency), encoding="utf-8")
    return load_config(path)


def phases(site: FakeSite, windows: Sequence[tuple[float, float]]) -> tuple[Phases, ...]:
    """Split each episode's window (sequential runs) at its first and last media request, from the site's log."""
    media = site.log.media()
    found = []
    for start, end in windows:
        inside = [record for record in media if start <= record.started < end]
        if not inside:
            raise RuntimeError(f"no media request between {start:.3f} and {end:.3f}")
        first = min(record.started for record in inside)
        # The site's record of the last request ends a throttle sleep after its last byte (see max_streams).
        last = min(max(record.finished for record in inside), end)
        found.append(Phases(before=first - start, transfer=last - first, after=end - last))
    return tuple(found)


def max_streams(records: Sequence[RequestRecord], bandwidth: int | None) -> int:
    """The most media requests in flight at the same moment (an end sorts before a start at the same instant)."""
    # The site sleeps CHUNK / bandwidth after every chunk, the last one too: its record of a request ends that long
    # after the client has read everything and may have asked for the next HLS segment. That is not an overlap.
    tail = CHUNK / bandwidth if bandwidth else 0.0
    ends = [(max(record.started, record.finished - tail), -1) for record in records]
    current = peak = 0
    for _, delta in sorted([(record.started, 1) for record in records] + ends):
        current += delta
        peak = max(peak, current)
    return peak


def measured(site: FakeSite, wall: float, windows: Sequence[tuple[float, float]] | None) -> Measured:
    """A Measured from the wall time and the site's log of this run."""
    # Answered media requests only: a request that failed (e.g. a connection yt-dlp dropped) is no stream.
    served = [record for record in site.log.media() if record.status in (200, 206)]
    streams = [record.finished - record.started for record in served if record.content_type.startswith("video/")]
    return Measured(
        wall=wall,
        phases=phases(site, windows) if windows is not None else (),
        max_streams=max_streams(served, site.knobs.bandwidth),
        stream_seconds=mean(streams),
        media_requests=len(served),
        site_requests=site.log.count("site"),
    )


async def run_daemon(site: FakeSite, root: Path, episodes: Sequence[Place], concurrency: int) -> Measured:
    """Queue `episodes` in a fresh Application and time it from the enqueue to the last import."""
    app = Application(write_config(site, root, concurrency))
    await app.start()
    try:
        completed: list[float] = []
        failures: list[str] = []
        finished = asyncio.Event()

        def on_event(event: Event[EventData]) -> None:
            if isinstance(event.data, DownloadComplete):
                completed.append(time.monotonic())
            elif isinstance(event.data, DownloadFailed):
                failures.append(
                    f"{event.data.series_key} S{event.data.season}E{event.data.episode}: {event.data.error_message}"
                )
            if len(completed) + len(failures) >= len(episodes):
                finished.set()

        app.bus.subscribe(on_event, DownloadComplete, DownloadFailed)
        site.log.clear()
        start = time.monotonic()
        for key in dict.fromkeys(key for key, _, _ in episodes):
            await app.downloader.add(key, [(season, number) for k, season, number in episodes if k == key])
        await asyncio.wait_for(finished.wait(), RUN_TIMEOUT)
        wall = time.monotonic() - start
    finally:
        await app.stop()
    if failures:
        raise RuntimeError("downloads failed: " + "; ".join(failures))
    imported = [path for path in (root / "library").rglob("*.mp4") if ".aniworld-tmp" not in path.parts]
    if len(imported) != len(episodes):
        raise RuntimeError(f"{len(imported)} files imported, expected {len(episodes)}")
    windows = list(zip([start, *completed[:-1]], completed, strict=True)) if concurrency == 1 else None
    return measured(site, wall, windows)


async def resolve(site: FakeSite, root: Path, episodes: Sequence[Place]) -> list[MediaSource]:
    """The media URL and headers of each episode, found like the daemon finds them (page, redirect, resolver)."""
    config = write_config(site, root, 1)
    registry = HosterRegistry(config.provider.hosters)
    sources = []
    async with HttpClient(config.provider) as http:
        provider = AniworldProvider(http, config.provider.base_url)
        for key, season, number in episodes:
            page = await provider.episode(key, season, number)
            candidate = candidates(page, config.provider.languages, registry)[0]
            embed_url = await provider.resolve_redirect(candidate.link.redirect_url)
            sources.append(await candidate.resolver.resolve(http, embed_url))
    return sources


def ytdlp_cli() -> str:
    """The venv's `yt-dlp` executable (beside this Python)."""
    path = Path(sys.executable).parent / "yt-dlp"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: run `make test` to install the test dependencies")
    return str(path)


async def run_cli(site: FakeSite, root: Path, sources: Sequence[MediaSource]) -> Measured:
    """Run the `yt-dlp` CLI on each resolved media URL, one after the other, timed from the first start."""
    out = root / "cli"
    out.mkdir(parents=True)
    executable = ytdlp_cli()
    windows = []
    site.log.clear()
    start = time.monotonic()
    for index, source in enumerate(sources):
        headers = [
            argument for name, value in source.headers.items() for argument in ("--add-header", f"{name}:{value}")
        ]
        began = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            executable,
            "--quiet",
            "--no-progress",
            "--no-cache-dir",
            *headers,
            "-o",
            str(out / f"episode-{index}.%(ext)s"),
            source.url,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, error = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
        windows.append((began, time.monotonic()))
        if process.returncode != 0:
            raise RuntimeError(f"yt-dlp failed on {source.hoster}: {error.decode(errors='replace').strip()}")
    wall = time.monotonic() - start
    files = [path for path in out.iterdir() if path.suffix == ".mp4"]
    if len(files) != len(sources):
        raise RuntimeError(f"yt-dlp wrote {len(files)} files, expected {len(sources)}")
    return measured(site, wall, windows)


async def probe_ms(media: Media, runs: int = 5) -> float:
    """The median time of one `verify.probe` (ffprobe) of the fake MP4, in milliseconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await verify.probe(media.mp4)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def sequential_row(name: str, run: Measured) -> str:
    """One row of part A: wall time, mean per episode and its phases, and what the site saw."""
    count = len(run.phases)
    return (
        f"{name:<22} {run.wall:>8.2f}s {run.wall / count:>8.2f}s"
        f" {mean([p.before for p in run.phases]) * 1000:>8.0f}ms"
        f" {mean([p.transfer for p in run.phases]):>8.2f}s"
        f" {mean([p.after for p in run.phases]) * 1000:>8.0f}ms"
        f" {run.max_streams:>8} {run.media_requests:>6} {run.site_requests:>5}"
    )


async def overhead(site: FakeSite, workdir: Path, episodes: Sequence[Place]) -> float:
    """Part A: the daemon against the CLI alone on the same episodes, one download at a time; returns the ratio."""
    mp4 = sum(1 for place in episodes if place in MP4_EPISODES)
    print(
        f"\nA. Overhead, one download at a time: {len(episodes)} episodes"
        f" ({mp4} MP4 via doodstream, {len(episodes) - mp4} HLS via voe)"
    )
    daemon = await run_daemon(site, workdir / "a-daemon", episodes, 1)
    sources = await resolve(site, workdir / "a-resolve", episodes)
    cli = await run_cli(site, workdir / "a-cli", sources)
    print(
        f"{'run':<22} {'wall':>9} {'/episode':>9} {'before':>10} {'transfer':>9} {'after':>10}"
        f" {'streams':>8} {'media':>6} {'site':>5}"
    )
    print(sequential_row("daemon (Application)", daemon))
    print(sequential_row("yt-dlp CLI alone", cli))
    ratio = daemon.wall / cli.wall
    print(
        f"ratio daemon / CLI: {ratio:.3f}x (target <= {TARGET_RATIO}x);"
        f" per episode {(daemon.wall - cli.wall) / len(episodes) * 1000:+.0f} ms"
    )
    print(
        "  before = from the previous episode's end (or the enqueue / process start) to the first media request:"
        "\n    daemon: dispatch, series page (first episode of a series), episode page, redirect, embed page(s),"
        "\n    yt-dlp set-up and its generic extractor (the first download in the process: + its one-time imports);"
        "\n    CLI: process start, yt-dlp import, generic extractor (its URLs were resolved beforehand, untimed)"
        "\n  after = from the last media byte to the episode's end: daemon: HLS remux, ffprobe, import, database;"
        "\n    CLI: HLS remux and process exit. streams = most media requests in flight; media/site = requests"
    )
    return ratio


async def parallelism(site: FakeSite, workdir: Path, episodes: Sequence[Place]) -> float:
    """Part B: max_concurrent PARALLEL against 1 on the same MP4 episodes; returns the speedup."""
    print(f"\nB. Parallelism: {len(episodes)} MP4 episodes via doodstream, each connection capped")
    serial = await run_daemon(site, workdir / "b-serial", episodes, 1)
    parallel = await run_daemon(site, workdir / f"b-parallel-{PARALLEL}", episodes, PARALLEL)
    print(f"{'run':<22} {'wall':>9} {'/stream':>9} {'streams':>8} {'media':>6} {'site':>5}")
    for name, run in ((f"max_concurrent {PARALLEL}", parallel), ("max_concurrent 1", serial)):
        print(
            f"{name:<22} {run.wall:>8.2f}s {run.stream_seconds:>8.2f}s"
            f" {run.max_streams:>8} {run.media_requests:>6} {run.site_requests:>5}"
        )
    speedup = serial.wall / parallel.wall
    rounds = -(-len(episodes) // PARALLEL)
    ideal = serial.wall * rounds / len(episodes)
    print(
        f"speedup of {PARALLEL} parallel downloads: {speedup:.2f}x"
        f" (target >= {TARGET_SPEEDUP}x);"
        f" {len(episodes) / rounds:.1f}x would be {ideal:.2f}s, the parallel run took"
        f" {(parallel.wall - ideal) / rounds * 1000:+.0f} ms per round of {PARALLEL}"
        "\n  /stream = mean time the site took to serve one file at the capped bandwidth"
    )
    return speedup


async def run(episodes: int, parallel: int, bandwidth: int, workdir: Path) -> None:
    """Start the fake site with the bandwidth cap, then run parts A and B."""
    media = await asyncio.to_thread(ensure_media, workdir / "media")
    hls_bytes = sum(path.stat().st_size for path in media.hls_dir.glob("*.ts"))
    print(
        f"fake site: media at {bandwidth:,} bytes/s per connection (MP4 {media.mp4.stat().st_size:,} bytes,"
        f" HLS {hls_bytes:,} bytes in {len(list(media.hls_dir.glob('*.ts')))} segments);"
        f" daemon: requests_per_second {REQUESTS_PER_SECOND} (the politeness budget is not what is measured);"
        f" ffprobe of one file: {await probe_ms(media):.0f} ms"
    )
    half = (episodes + 1) // 2
    mixed = [*MP4_EPISODES[:half], *HLS_EPISODES[: episodes - half]]
    async with FakeSite(media, knobs=Knobs(bandwidth=bandwidth)) as site:
        await overhead(site, workdir, mixed)
        await parallelism(site, workdir, MP4_EPISODES[:parallel])


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=6, help="episodes of part A (half MP4, half HLS)")
    parser.add_argument("--parallel", type=int, default=6, help="MP4 episodes of part B")
    # 500 kB/s: ~4 s per 1.9 MB test episode. Each round of parallel starts pays a fixed ~250 ms (the site's
    # request spacing, yt-dlp set-ups, ffprobe); a real 300 MB episode at a hoster's cap makes that negligible.
    parser.add_argument("--bandwidth", type=int, default=500_000, help="bytes/s per media connection")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 + 3 episodes at 4 MB/s")
    args = parser.parse_args()
    # The `yt-dlp` CLI reads only the headers of its first answer for an MP4 URL and drops that connection; the
    # site may log the write that fails then as an error with a traceback. It is not one.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    if args.quick:
        args.episodes, args.parallel, args.bandwidth = 2, PARALLEL, 4_000_000
    if not 1 <= args.episodes <= len(MP4_EPISODES) + len(HLS_EPISODES):
        parser.error(f"--episodes must be 1..{len(MP4_EPISODES) + len(HLS_EPISODES)}")
    if not 1 <= args.parallel <= len(MP4_EPISODES):
        parser.error(f"--parallel must be 1..{len(MP4_EPISODES)}")
    with tempfile.TemporaryDirectory(prefix="aniworld-bench-") as tmp:
        asyncio.run(run(args.episodes, args.parallel, args.bandwidth, Path(tmp)))


if __name__ == "__main__":
    main()
