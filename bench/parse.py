"""Parse speed of the biggest pages: the 1,000+-episode season page, its series page, an episode page and the feed.

Run: `.venv/bin/python -m bench.parse [--runs N] [--quick]`. The pages are the fake site's, rendered in the real
markup. Prints the median and 90th percentile per page and the ratio of the median to the 50 ms target; for
comparison, the time BeautifulSoup needs only to build its tree for the same season page. `--quick` is a smoke run
(3 runs per page).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

from bs4 import BeautifulSoup

from aniworld_daemon.provider.pages import parse_episode_page, parse_feed, parse_season_page, parse_series_page
from tests.fakesite import pages
from tests.fakesite.catalog import load_catalog
from tests.fakesite.hosters import HOSTER_DISPLAY

BASE = "http://127.0.0.1:8800"
TARGET_MS = 50.0
LONG_SERIES = "endless-voyage"


def measure(parse: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and 90th percentile of `runs` calls, in milliseconds, after two warm-up calls."""
    for _ in range(2):
        parse()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        parse()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def main() -> None:
    """Render the pages once, then time each parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 runs per page")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs

    catalog = load_catalog()
    ctx = pages.Context(base=BASE, display=HOSTER_DISPLAY)
    series = catalog[LONG_SERIES]
    season = series.seasons[0]
    episode = season.episodes[-1]
    season_html = pages.season_page(ctx, catalog, series, season)
    thousand = dataclasses.replace(season, episodes=season.episodes[:1000])
    thousand_html = pages.season_page(ctx, catalog, series, thousand)
    cases: list[tuple[str, str, Callable[[], object]]] = [
        ("season page (1,000 episodes)", thousand_html, lambda: parse_season_page(thousand_html, BASE + season.path)),
        (
            f"season page ({len(season.episodes):,} episodes)",
            season_html,
            lambda: parse_season_page(season_html, BASE + season.path),
        ),
    ]
    series_html = pages.series_page(ctx, catalog, series)
    cases.append(
        ("series page (with season 1's table)", series_html, lambda: parse_series_page(series_html, BASE + series.path))
    )
    episode_html = pages.episode_page(ctx, catalog, series, season, episode)
    cases.append(("episode page", episode_html, lambda: parse_episode_page(episode_html, BASE + episode.path)))
    feed_html = pages.feed_page(ctx, catalog)
    cases.append(("new-episodes feed", feed_html, lambda: parse_feed(feed_html, BASE + "/neue-episoden")))

    print(f"{'page':<38} {'size':>9} {'median':>9} {'p90':>9} {'median/target':>14}")
    for name, html, parse in cases:
        median, p90 = measure(parse, runs)
        print(f"{name:<38} {len(html) / 1024:>7.0f}kB {median:>7.1f}ms {p90:>7.1f}ms {median / TARGET_MS:>13.2f}x")
    soup_median, _ = measure(lambda: BeautifulSoup(season_html, "lxml"), max(runs // 5, 3))
    parse_median, _ = measure(lambda: parse_season_page(season_html, BASE + season.path), runs)
    print(
        f"\nBeautifulSoup(season page, 'lxml') tree alone: {soup_median:.0f} ms median, "
        f"{soup_median / parse_median:.1f}x our whole parse ({parse_median:.1f} ms); target {TARGET_MS:.0f} ms"
    )


if __name__ == "__main__":
    main()
