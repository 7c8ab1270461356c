"""The benchmarks still run: each one's `--quick` smoke run as a subprocess, exit status 0 and its figures printed.

Figures are not judged here (benchmarks print figures, never pass/fail); this only keeps `bench/` from rotting while
the package changes under it, as bench/rescan.py did once the daemon started downloading during its rescans.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SECONDS = 150  # a quick run takes a few seconds (parse, mqtt) to ~30 s (download); generous for a loaded 2-core machine

# bench module -> patterns its output must contain: the lines that carry its figures.
FIGURES = {
    "parse": [
        r"season page \(1,000 episodes\) +\d+kB +[\d.]+ms +[\d.]+ms +[\d.]+x",
        r"BeautifulSoup\(season page, 'lxml'\) tree alone: \d+ ms median, [\d.]+x our whole parse",
    ],
    "rescan": [
        r"full \(first\) +[\d.]+s +\d+ +[\d.]+s +[\d.]+x +\d+ +complete",
        r"incremental requests: \d+ = 1 feed \+ \d+ \(running: \d+\)",
        r"full rescan: [\d.]+x the politeness limit",
        r"incremental: \d+ requests / [\d.]+s with \d+ episodes per series, \d+ requests / [\d.]+s with \d+",
    ],
    "download": [
        r"ratio daemon / CLI: [\d.]+x",
        r"speedup of 3 parallel downloads: [\d.]+x",
    ],
    "api": [
        r"daemon /api/queue/status +[\d,]+ +[\d.]+ms +[\d.]+ms +[\d,]+",
        r"constant aiohttp handler +[\d,]+ +[\d.]+ms +[\d.]+ms +[\d,]+",
        r"throughput daemon / constant: [\d.]+x \(target >= 0\.5x\): (met|MISSED)",
        r"p99 daemon / constant: [\d.]+x \(target <= 2x\): (met|MISSED)",
        r"paged walk, .*: 1,000 items in \d+ pages, [\d.]+s .*every id seen once",
        r"daemon RSS after the load: [\d.]+ MB \(peak [\d.]+ MB\) with 1,000 items \(target < 80 MB\): (met|MISSED)",
    ],
    "mqtt": [
        r"aniworld/progress +\d+ +[\d.]+ +\d+ +(\d+ ms|-)",
        r"progress: [\d.]+ messages/s, busiest second \d+ \(target <= 1/s\): (met|MISSED)",
        r"state: [\d.]+ messages/s, busiest second \d+ \(target <= 1/s\): (met|MISSED)",
        r"completion -> event: median [\d.]+ ms, max [\d.]+ ms over 3 downloads \(target < 100 ms\): (met|MISSED)",
    ],
    "ws": [
        r"every client got every event in seq order: \d+ each, [\d,]+ deliveries",
        r"emit -> client latency: p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms \(target p99 < 100 ms\): (met|MISSED)",
        r"daemon RSS: [\d.]+ MB before the clients, [\d.]+ MB with \d+ clients connected \([+-]\d+ kB per client\)",
    ],
    # the small size with one start and 3 downloads; every figure line names its target
    "footprint": [
        r"imports at start \(.*\): \d+ ms in a fresh interpreter",
        r"small READY: [\d.]+ s after the process start, median of 1 \([\d.]+\) \(target < 1\.5 s\): (met|MISSED)",
        r"small idle RSS after the start: [\d.]+ MB \(anon [\d.]+ MB, file [\d.]+ MB\)"
        r" \(target < 60 MB\): (met|MISSED)",
        r"small idle RSS after one rescan and 3 downloads: [\d.]+ MB \(anon [\d.]+ MB, file [\d.]+ MB; peak [\d.]+ MB\)"
        r" \(target < 60 MB\): (met|MISSED)",
        r"the rescan: [\d.]+ s, \d+ requests; the 3 downloads after it: [\d.]+ s",
    ],
}


def check_quick_run(bench: str, patterns: list[str], seconds: int) -> None:
    """Run `bench --quick`; it must exit 0 and print every pattern."""
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", "--quick"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=seconds,
        check=False,
    )
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, output
    for pattern in patterns:
        assert re.search(pattern, result.stdout), f"{pattern!r} not printed; {output}"


@pytest.mark.timeout(SECONDS + 30)
@pytest.mark.parametrize("bench", list(FIGURES))
def test_quick_run_prints_its_figures(bench: str) -> None:
    check_quick_run(bench, FIGURES[bench], SECONDS)


# The soak judges itself: its quick run exits 1 when an episode is lost or stuck, a WebSocket client misses an event or
# the daemon does not say `online` after a broker restart (the growth targets need a long run and are only printed).
SOAK_SECONDS = 240  # 40 s of soak, start and drain; the drain is bounded at 120 s
SOAK_FIGURES = [
    r"time +RSS MB +fds +tasks +thr +db MB",
    # fds, tasks and threads are `-` in a row whose period the broker was down from start to end
    r"\d+:\d\d +[\d.]+ +(\d+|-) +(\d+|-) +(\d+|-) +[\d.]+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ ",
    r"RSS \(MB\) +[\d.]+ -> +[\d.]+ +[+-][\d.]+% \(target < 5%\): (met|MISSED)",
    r"asyncio tasks +([\d.]+|-) -> +([\d.]+|-) +[+-][\d.]+% \(target < 5% or at most \+2\): (met|MISSED)",
    r"nothing lost: \d+ episodes wanted \(\d+ released during the run\), .*: met",
    r"nothing stuck: 0 items `downloading` longer than [\d.]+ min: met",
    r"clients: 2 WebSocket clients got [\d,]+ messages, 0 drops, 0 seq gaps; .* exit status 0 after SIGTERM: met",
]


@pytest.mark.timeout(SOAK_SECONDS + 30)
def test_soak_quick_run_loses_nothing() -> None:
    check_quick_run("soak", SOAK_FIGURES, SOAK_SECONDS)
