"""Rescan speed: a full and an incremental rescan of 200 followed series (~5,000 files) against the fake site.

Run: `.venv/bin/python -m bench.rescan [--series 200] [--episodes 25] [--latency 0.05] [--quick]`. The fake site
answers every request after `latency` seconds; the daemon may keep `max_connections: 2` requests in flight
(requests_per_second is set high, so the connections and the latency are the limit). The politeness limit of a rescan
is requests x latency / connections: no client that keeps to the budget can be faster. Prints, for the full and the
incremental rescan: wall time, requests, that limit and the ratio (target for the full rescan: <= 1.15x). A second
catalog with twice the episodes per series shows that the incremental rescan grows with the series, not the episodes.
Only rescans are measured: the rescans queue the missing episodes as by default (`auto_download`), but the queue is
never started (`auto_start: false`), so no download shares the site, the connections or the CPU with them (and the
incremental row shows 0 missing: the first rescan queued them).
`--quick` is a smoke run (20 series, 10 ms latency) of a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from aniworld_daemon.app import Application
from aniworld_daemon.config import load_config
from aniworld_daemon.library import list_folders, scan_folder
from aniworld_daemon.models import Language
from aniworld_daemon.naming import NamingTemplate, SeriesNaming
from tests.fakesite.catalog import Catalog, Season, Series
from tests.fakesite.core import Knobs, ensure_media
from tests.fakesite.server import FakeSite
from tests.helpers import free_port

CONNECTIONS = 2
TARGET_RATIO = 1.15
MISSING_PER_SERIES = 2  # the newest episodes of every series are not on disk
NAMING = "{title} ({year})/Season {season:02}/{title} - S{season:02}E{episode:02} - {episode_title}"
OFFERS = {Language.DE_SUB: ("voe", "doodstream"), Language.DE_DUB: ("vidoza",)}


@dataclass(frozen=True, slots=True)
class Measured:
    """One rescan: wall time, requests and what the scan found."""

    wall: float
    requests: int
    missing: int
    status: str


def synthetic_catalog(series_count: int, episodes: int) -> Catalog:
    """`series_count` series of `episodes` episodes (two seasons when more than 12); every other one is running."""
    catalog = Catalog()
    released = date(2020, 1, 1)
    for index in range(series_count):
        key = f"bench-series-{index:03d}"
        sizes = [episodes] if episodes <= 12 else [episodes // 2, episodes - episodes // 2]
        seasons = []
        for number, size in enumerate(sizes, start=1):
            made = []
            for episode in range(1, size + 1):
                released += timedelta(hours=1)
                made.append(
                    catalog.make_episode(
                        key,
                        season=number,
                        number=episode,
                        titles=(f"Folge {episode}", f"Episode {episode}"),
                        offers=OFFERS,
                        released=released,
                    )
                )
            seasons.append(Season(series=key, number=number, episodes=tuple(made)))
        catalog.series[key] = Series(
            key=key,
            id=10_000 + index,
            title=f"Bench Series {index:03d}",
            alternative_titles=(),
            start_year=2000 + index % 25,
            end_year=None if index % 2 == 0 else 2000 + index % 25 + 1,
            description="A series of the rescan benchmark.",
            fsk=12,
            imdb=None,
            genres=("Action",),
            broken=False,
            seasons=tuple(seasons),
        )
    return catalog


def build_library(root: Path, catalog: Catalog, template: NamingTemplate) -> int:
    """Every episode but the newest MISSING_PER_SERIES of each series as a sparse 2 MB file; returns the count."""
    files = 0
    for series in catalog:
        naming = SeriesNaming(title=series.title, year=series.start_year, key=series.key)
        episodes = list(series.episodes())
        for episode in episodes[: len(episodes) - MISSING_PER_SERIES]:
            path = root / template.episode_path(naming, episode.season, episode.number, episode.title_de, None, ".mkv")
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as handle:
                handle.truncate(2 * 1024 * 1024)
            files += 1
    return files


async def rescan(app: Application, site: FakeSite) -> Measured:
    """One rescan through the application, measured from the site's request log."""
    before = site.log.count("site")
    start = time.perf_counter()
    result = await app.rescanner.rescan("bench")
    wall = time.perf_counter() - start
    requests = site.log.count("site") - before
    assert requests == result.report.requests, (requests, result.report.requests)
    missing = sum(len(outcome.missing) for outcome in result.series)
    return Measured(wall, requests, missing, result.report.status.value)


def line(name: str, measured: Measured, latency: float) -> str:
    """One result row with the politeness limit and the ratio."""
    limit = measured.requests * latency / CONNECTIONS
    ratio = measured.wall / limit if limit else float("nan")
    return (
        f"{name:<28} {measured.wall:>8.2f}s {measured.requests:>9} {limit:>8.2f}s {ratio:>7.2f}x"
        f" {measured.missing:>8} {measured.status:>9}"
    )


async def run(series_count: int, episodes: int, latency: float, workdir: Path) -> tuple[Measured, Measured]:
    """Build the catalog and library, start the site and the daemon, run a full and an incremental rescan."""
    catalog = synthetic_catalog(series_count, episodes)
    library = workdir / f"library-{episodes}"
    template = NamingTemplate(NAMING)
    start = time.perf_counter()
    files = build_library(library, catalog, template)
    built = time.perf_counter() - start
    media = ensure_media(workdir / "media")
    async with FakeSite(media, catalog=catalog, knobs=Knobs(latency=latency)) as site:
        config_file = workdir / f"config-{episodes}.yaml"
        series_lines = "".join(f"  - {series.key}\n" for series in catalog)
        config_file.write_text(
            f"library:\n  path: {library}\n  naming: '{NAMING}'\n  write_nfo: false\n"
            f"data_dir: {workdir / f'data-{episodes}'}\n"
            f"api:\n  host: 127.0.0.1\n  port: {free_port()}\n"
            f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 10000\n"
            f"  max_connections: {CONNECTIONS}\n  languages: [de-sub]\n"
            # auto_download (the default) stays on, so each rescan queues what is missing as it would for a user;
            # the queue never starts, so no download competes with the rescans for the site, connections or CPU.
            "downloads:\n  auto_start: false\n"
            f"schedule:\n  run_on_start: false\nseries:\n{series_lines}",
            encoding="utf-8",
        )
        app = Application(load_config(config_file))
        await app.start()
        try:
            disk = time.perf_counter()
            for folder in await asyncio.to_thread(list_folders, library):
                await asyncio.to_thread(scan_folder, library, folder, template, None)
            disk = time.perf_counter() - disk
            full = await rescan(app, site)
            incremental = await rescan(app, site)
        finally:
            await app.stop()
    running = sum(1 for series in catalog if series.running)
    print(
        f"\n{series_count} series x {episodes} episodes: {files:,} files on disk (built in {built:.1f}s), "
        f"{running} running; disk scan alone {disk * 1000:.0f} ms"
    )
    print(f"{'rescan':<28} {'wall':>9} {'requests':>9} {'limit':>9} {'ratio':>8} {'missing':>8} {'status':>9}")
    print(line("full (first)", full, latency))
    print(line("incremental (no changes)", incremental, latency))
    print(f"incremental requests: {incremental.requests} = 1 feed + {incremental.requests - 1} (running: {running})")
    return full, incremental


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--episodes", type=int, default=25)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 series x 25 episodes, 10 ms latency")
    args = parser.parse_args()
    if args.quick:
        args.series, args.latency = 20, 0.01
    with tempfile.TemporaryDirectory(prefix="aniworld-bench-") as tmp:
        workdir = Path(tmp)
        full, incremental = asyncio.run(run(args.series, args.episodes, args.latency, workdir))
        _, doubled = asyncio.run(run(args.series, args.episodes * 2, args.latency, workdir))
    ratio = full.wall / (full.requests * args.latency / CONNECTIONS)
    print(
        f"\nfull rescan: {ratio:.2f}x the politeness limit (target <= {TARGET_RATIO}x)"
        f"\nincremental: {incremental.requests} requests / {incremental.wall:.2f}s with {args.episodes} episodes"
        f" per series, {doubled.requests} requests / {doubled.wall:.2f}s with {args.episodes * 2}:"
        " O(series), not O(episodes)"
    )


if __name__ == "__main__":
    main()
