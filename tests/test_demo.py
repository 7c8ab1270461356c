"""`make demo` end to end: scripts/demo --until-done runs the fake site and the daemon until the queue is done."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aniworld_daemon.config import load_config
from aniworld_daemon.library import MIN_EPISODE_BYTES, scan_folder
from aniworld_daemon.naming import NamingTemplate, SeriesNaming
from tests.fakesite.catalog import load_catalog
from tests.helpers import ROOT

DEMO = ROOT / "scripts" / "demo"
UNTIL_DONE = 240  # seconds the demo may take to finish its queue (about 15 s on a 2-core machine)
BANDWIDTH = 2_000_000  # bytes/s per media connection: faster than the demo's default, the test checks no speed
LISTED_FILE_RE = re.compile(r"^ +[0-9.]+ [kM]B  (?P<path>\S.*)$")


def run_demo(folder: Path) -> subprocess.CompletedProcess[str]:
    """Run scripts/demo --until-done into `folder`; on an overrun SIGTERM lets it stop the daemon and the site."""
    process = subprocess.Popen(
        [
            *(sys.executable, str(DEMO), "--dir", str(folder)),
            *("--until-done", str(UNTIL_DONE), "--bandwidth", str(BANDWIDTH)),
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=UNTIL_DONE + 60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        pytest.fail(f"scripts/demo overran its own --until-done {UNTIL_DONE}\n{stdout}\n{stderr[-5000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def listed_files(stdout: str) -> list[str]:
    """The library paths the demo listed at its end (relative, posix)."""
    _, found, listing = stdout.partition("\nThe library is ")
    assert found, stdout
    return [match["path"] for line in listing.splitlines() if (match := LISTED_FILE_RE.match(line))]


def listens(url: str) -> bool:
    """Whether something accepts connections at http://127.0.0.1:PORT."""
    host, _, port = url.removeprefix("http://").partition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, int(port))) == 0


@pytest.mark.timeout(UNTIL_DONE + 180)
def test_demo_downloads_every_episode_into_the_library(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = run_demo(folder)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-5000:]}"

    config = load_config(folder / "config.yaml")
    assert config.library.path == folder / "library"
    template = NamingTemplate(config.library.naming)
    catalog = load_catalog()
    listed = listed_files(result.stdout)
    episodes = 0
    for followed in config.series:
        series = catalog[followed.key]
        naming = SeriesNaming(title=series.title, year=series.start_year, key=series.key)
        series_folder = template.series_folder(naming)
        assert followed.seasons == (1,)
        season = series.season(1)
        assert season is not None
        wanted = {(1, episode.number) for episode in season.episodes}
        episodes += len(wanted)
        # Every wanted episode is listed at the path the naming template gives it ...
        mine = [path.removeprefix(series_folder + "/") for path in listed if path.startswith(series_folder + "/")]
        videos = [path for path in mine if path.endswith((".mp4", ".mkv"))]
        assert all(path.startswith("Season 01/") for path in videos), videos
        assert {template.parse(path, naming) for path in videos} == wanted, videos
        # ... and the library scanner (1 MB floor) counts each of those files as that episode.
        scan = scan_folder(config.library.path, series_folder, template, naming)
        assert {(file.season, file.number) for file in scan.files} == wanted
        assert all(file.size >= MIN_EPISODE_BYTES for file in scan.files)
    assert episodes >= 6
    assert f"rm -rf {folder}" in result.stdout
    # Both servers are gone: the demo stopped the daemon and the fake site.
    [site_url] = re.findall(r"fake site on (http://127\.0\.0\.1:[0-9]+)", result.stdout)
    assert not listens(site_url)
    assert not listens(f"http://127.0.0.1:{config.api.port}")
