"""Power cuts: the daemon's data dir and library live on a file system that loses what was not synced (lossyfs).

The real daemon runs against the fake site with its data dir and library on a `LossyMount`; the test drives it over
the REST API (episodes added one request at a time, the completed list polled) and records every 2xx it got. At
seeded random moments it cuts the power (the file system's process is SIGKILLed, so everything not fsynced is gone)
and SIGKILLs the daemon, mounts what was durable and starts a new daemon. After every cut: each add answered 201 is
still queued (or done), each download the API showed completed is still completed with a whole, valid file at its
path, the database passes integrity_check, and the library holds no file that is not whole. The seed is printed (and
taken from ANIWORLD_CUT_SEED when set); ANIWORLD_CUTS sets the number of cuts (default 4). See README, "Reliability".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME
from tests.fakesite.server import FakeSite
from tests.helpers import Daemon, Restarts, ffprobe, integrity, minimal_config, query
from tests.reliability.lossyfs import LossyMount, fuse_available

KEY = "power-cut-api-key-0123456789abcdef"
# Every place comes as an MP4 from Vidoza (German dub), so a completed file must equal the source byte for byte.
POOL = {"blade-of-dawn": {0: 2, 1: 6, 2: 4}, "sword-shield-chronicle": {1: 6, 2: 3}}
CUTS = 4
BANDWIDTH = 1_500_000  # bytes/s per connection: an episode takes about 1.3 s, so cuts land in transfers and imports
WINDOW = (0.5, 6.0)  # seconds of driving after a daemon answers, before the cut


def config_yaml(site: FakeSite, port: int, mount: Path) -> str:
    """Data dir and library on the lossy mount; nothing queued but what the test adds; fast retries."""
    series = "".join(f"  - key: {key}\n    seasons: [{', '.join(map(str, POOL[key]))}]\n" for key in POOL)
    text = minimal_config(
        port,
        f"  key: {KEY}\n"
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "  cooldown: 1s\n  languages: [de-dub]\n  hosters: [vidoza]\n"
        "schedule:\n  run_on_start: true\n"
        "downloads:\n  max_concurrent: 2\n  retries: 10\n  retry_backoff: 1s\n  min_free_space: 0\n"
        "  auto_download: false\n"
        f"series:\n{series}",
    )
    # The config itself stays off the mount (an installer writes it once, long before any cut).
    return text.replace("path: ./library", f"path: {mount / 'library'}").replace(
        "data_dir: ./data", f"data_dir: {mount / 'data'}"
    )


@dataclass
class Ledger:
    """What the daemon acknowledged to the client, over every cut."""

    added: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # item id -> place, from 201 answers
    asked: set[tuple[str, int, int]] = field(default_factory=set)  # places sent (answered or not)
    completed: dict[str, str] = field(default_factory=dict)  # item id -> file path, as the API showed it completed


@pytest.fixture
def lossy(tmp_path: Path) -> Iterator[LossyMount]:
    """A mounted lossyfs with `data` and `library` made durable, as an installer leaves them; unmounted at the end."""
    reason = fuse_available()
    if reason is not None:
        pytest.skip(reason)
    mount = LossyMount(tmp_path / "backing", tmp_path / "mnt", tmp_path / "lossyfs.log")
    mount.mount()
    try:
        for name in ("data", "library"):
            (mount.mountpoint / name).mkdir()
        fsync_folder(mount.mountpoint)
        yield mount
    finally:
        mount.unmount()


@pytest.fixture
def run(
    lossy: LossyMount, tmp_path: Path, port: int, fakesite: FakeSite, daemon: Callable[..., Daemon]
) -> Iterator[Restarts]:
    """The config (off the mount) and a daemon starter; every daemon's log is printed at the end."""
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(fakesite, port, lossy.mountpoint), encoding="utf-8")
    state = Restarts(lossy.mountpoint, config, daemon)
    yield state
    for number, text in enumerate(state.all_logs(), 1):
        print(f"----- daemon {number} log -----\n{text}")


def fsync_folder(path: Path) -> None:
    """Make a folder's entries durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


async def answering(session: aiohttp.ClientSession, process: Daemon, within: float = 60.0) -> None:
    """Wait (bounded) until the daemon answers its API."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with session.get("/api/queue/status") as response:
                if response.status == 200:
                    return
        if process.process.poll() is not None:
            pytest.fail(f"the daemon exited ({process.process.returncode}):\n{process.log}")
        if time.monotonic() > deadline:
            pytest.fail(f"the daemon did not answer within {within} s:\n{process.log}")
        await asyncio.sleep(0.1)


async def drive(session: aiohttp.ClientSession, ledger: Ledger, choices: random.Random) -> None:
    """Add a new episode per request and poll the completed items, recording every acknowledgement, until cancelled."""
    places = [
        (key, season, number)
        for key, seasons in POOL.items()
        for season, count in seasons.items()
        for number in range(1, count + 1)
    ]
    while True:
        fresh = [place for place in places if place not in ledger.asked]
        if fresh and choices.random() < 0.6:
            key, season, number = place = choices.choice(fresh)
            ledger.asked.add(place)
            body = {"serie_id": key, "episodes": [{"season": season, "episode": number}]}
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.post("/api/queue/add", json=body) as response:
                    if response.status == 201:
                        for item_id in (await response.json())["added_items"]:
                            ledger.added[item_id] = place
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with session.get("/api/queue", params={"status": "completed", "limit": "100"}) as response:
                if response.status == 200:
                    for item in (await response.json())["items"]:
                        ledger.completed[item["id"]] = item["file_path"]
        await asyncio.sleep(choices.uniform(0.05, 0.5))


def digest_of(data: bytes) -> tuple[int, str]:
    """Size and SHA-256 of some bytes: a failure shows these, not a megabyte of video."""
    return len(data), hashlib.sha256(data).hexdigest()


def digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file's content."""
    return digest_of(path.read_bytes())


def partial_files(run: Restarts) -> list[str]:
    """The names of yt-dlp's partial files in the temp dir right now."""
    try:
        return [path.name for path in run.temp.iterdir() if ".part" in path.name]
    except FileNotFoundError:
        return []


def check_acknowledged(run: Restarts, ledger: Ledger, source: bytes, cut: int, seed: int) -> None:
    """Every acknowledged add is a queue item; every completed download is still completed, its file whole."""
    rows = {
        item_id: (key, season, number, status, file_path)
        for item_id, key, season, number, status, file_path in query(
            run.database, "SELECT id, series_key, season, number, status, file_path FROM downloads"
        )
    }
    lost = {item_id: place for item_id, place in ledger.added.items() if item_id not in rows}
    assert lost == {}, f"adds answered 201 but gone after cut {cut} (seed {seed}): {lost}"
    for item_id, place in ledger.added.items():
        assert rows[item_id][:3] == place, (item_id, rows[item_id], seed)
    for item_id, file_path in ledger.completed.items():
        assert rows[item_id][3:] == ("completed", file_path), (
            f"{item_id} was completed as {file_path} before cut {cut}, now {rows[item_id][3:]} (seed {seed})"
        )
        video = run.library / file_path
        assert video.is_file(), f"{file_path} completed before cut {cut} is gone (seed {seed})"
        assert digest(video) == digest_of(source), f"{file_path} is not whole after cut {cut} (seed {seed})"
    assert integrity(run.database) == "ok", f"after cut {cut} (seed {seed})"


def check_library(run: Restarts, source: bytes, duration: float, cut: int, seed: int) -> None:
    """Nothing half-written in the library: every video whole and valid, every NFO well-formed, every poster there."""
    for path in run.library.rglob("*"):
        relative = path.relative_to(run.library)
        if relative.parts[0] == TEMP_DIR_NAME or not path.is_file():
            continue
        if path.suffix == ".mp4":
            assert digest(path) == digest_of(source), f"{relative} is not whole after cut {cut} (seed {seed})"
            assert float(ffprobe(path)["format"]["duration"]) == pytest.approx(duration, abs=0.5), relative
        elif path.name == "tvshow.nfo":
            ET.fromstring(path.read_bytes())  # raises on a half-written file
        elif path.name == "poster.jpg":
            assert path.stat().st_size > 0, f"{relative} is empty after cut {cut} (seed {seed})"
        else:
            pytest.fail(f"unexpected file in the library after cut {cut} (seed {seed}): {relative}")


async def test_power_cuts_lose_nothing_acknowledged(
    run: Restarts, lossy: LossyMount, fakesite: FakeSite, port: int
) -> None:
    seed = int(os.environ.get("ANIWORLD_CUT_SEED") or random.SystemRandom().randrange(10**6))
    count = int(os.environ.get("ANIWORLD_CUTS") or CUTS)
    print(f"power cuts: seed {seed}, {count} cuts (ANIWORLD_CUT_SEED={seed} repeats the moments)")
    moments = random.Random(seed)
    choices = random.Random(seed + 1)
    fakesite.knobs.bandwidth = BANDWIDTH
    source = fakesite.media.mp4.read_bytes()
    ledger = Ledger()
    base = f"http://127.0.0.1:{port}"
    timeout = aiohttp.ClientTimeout(total=5)
    transfers = 0  # cuts that landed while a download had partial files

    for cut in range(count + 1):
        process = run.launch()
        async with aiohttp.ClientSession(base_url=base, headers={"X-Api-Key": KEY}, timeout=timeout) as session:
            await answering(session, process)
            if cut:
                check_acknowledged(run, ledger, source, cut, seed)
                check_library(run, source, fakesite.media.duration, cut, seed)
            if cut == count:
                break
            driver = asyncio.create_task(drive(session, ledger, choices))
            await asyncio.sleep(moments.uniform(*WINDOW))
            transfers += bool(partial_files(run))
            # The power goes first, then the daemon: whatever it answers after the cut was synced before it.
            lossy.power_cut()
            process.signal(signal.SIGKILL)
            assert await process.exited(10) == -signal.SIGKILL
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        lossy.mount()

    print(
        f"power cuts (seed {seed}): {count} cuts ({transfers} during a download), {len(ledger.added)} adds "
        f"acknowledged, {len(ledger.completed)} downloads seen completed, all still there"
    )
    assert ledger.added, "no add was acknowledged: the test drove nothing"


# --- the file system's own promise, one case at a time -------------------------------------------------------------
# Each case starts from a durable folder `f` holding a durable file `f/old` ("old"), does its steps, cuts the power and
# mounts again: `expected` is every file left under `f` with its content. These pin what lossyfs models (its
# docstring), so the power-cut test above can trust it to drop what a real power cut may drop.


def write(path: Path, data: bytes, *, sync: bool) -> None:
    """Write a whole file (created when missing), fsynced or not."""
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        if sync:
            os.fsync(handle.fileno())


def overwrite_unsynced(folder: Path) -> None:
    """New content, never synced."""
    write(folder / "old", b"new", sync=False)


def overwrite_synced(folder: Path) -> None:
    """New content, fsynced."""
    write(folder / "old", b"new", sync=True)


def append_datasync(folder: Path) -> None:
    """Appended and fdatasynced (SQLite's WAL)."""
    with (folder / "old").open("ab") as handle:
        handle.write(b"+more")
        handle.flush()
        os.fdatasync(handle.fileno())


def shrink_synced(folder: Path) -> None:
    """Truncated, then fsynced."""
    with (folder / "old").open("r+b") as handle:
        handle.truncate(1)
        os.fsync(handle.fileno())


def create_file_synced(folder: Path) -> None:
    """A new file whose content is synced, not its folder."""
    write(folder / "new", b"data", sync=True)


def create_folder_synced(folder: Path) -> None:
    """A new file whose folder is synced, not its content."""
    write(folder / "new", b"data", sync=False)
    fsync_folder(folder)


def create_both_synced(folder: Path) -> None:
    """A new file, content and folder synced."""
    write(folder / "new", b"data", sync=True)
    fsync_folder(folder)


def rename_unsynced(folder: Path) -> None:
    """A rename, its folder not synced."""
    (folder / "old").rename(folder / "moved")


def rename_synced(folder: Path) -> None:
    """A rename, its folder synced."""
    (folder / "old").rename(folder / "moved")
    fsync_folder(folder)


def link_then_unlink_synced(folder: Path) -> None:
    """The import's way: link, sync the folder, unlink the old name."""
    os.link(folder / "old", folder / "linked")
    fsync_folder(folder)
    (folder / "old").unlink()


def unlink_unsynced(folder: Path) -> None:
    """An unlink, its folder not synced."""
    (folder / "old").unlink()


def new_subfolder_unsynced(folder: Path) -> None:
    """A synced file in a synced new subfolder whose own name was never synced."""
    (folder / "sub").mkdir()
    write(folder / "sub" / "file", b"data", sync=True)
    fsync_folder(folder / "sub")


def new_subfolder_synced(folder: Path) -> None:
    """The same, with the parent synced too."""
    new_subfolder_unsynced(folder)
    fsync_folder(folder)


MODEL = {
    "overwrite-unsynced": (overwrite_unsynced, {"old": b"old"}),
    "overwrite-synced": (overwrite_synced, {"old": b"new"}),
    "append-fdatasync": (append_datasync, {"old": b"old+more"}),
    "shrink-synced": (shrink_synced, {"old": b"o"}),
    "create-file-synced": (create_file_synced, {"old": b"old"}),
    "create-folder-synced": (create_folder_synced, {"old": b"old", "new": b""}),
    "create-both-synced": (create_both_synced, {"old": b"old", "new": b"data"}),
    "rename-unsynced": (rename_unsynced, {"old": b"old"}),
    "rename-synced": (rename_synced, {"moved": b"old"}),
    "link-unlink": (link_then_unlink_synced, {"old": b"old", "linked": b"old"}),
    "unlink-unsynced": (unlink_unsynced, {"old": b"old"}),
    "subfolder-unsynced": (new_subfolder_unsynced, {"old": b"old"}),
    "subfolder-synced": (new_subfolder_synced, {"old": b"old", "sub/file": b"data"}),
}


@pytest.mark.parametrize("name", list(MODEL))
def test_lossyfs_keeps_exactly_what_was_synced(name: str, lossy: LossyMount) -> None:
    steps, expected = MODEL[name]
    folder = lossy.mountpoint / "f"
    folder.mkdir()
    write(folder / "old", b"old", sync=True)
    fsync_folder(folder)
    fsync_folder(lossy.mountpoint)
    steps(folder)
    lossy.power_cut()
    lossy.mount()
    found = {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    assert found == expected
