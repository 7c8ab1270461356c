"""What a kill leaves on disk, prepared exactly, and what the next start makes of it.

Each case is one moment a SIGKILL can land (found by killing the daemon at random moments): the state it leaves is
written into the data dir and the library's temp dir between two starts of the real Application, and the second
start must end with the episode completed once, as a real MP4 of the source's duration at its template path, and
nothing hidden left in the library. The on-disk formats written here (yt-dlp's partial files, the daemon's stored
source promise, a scan row) are the ones a kill leaves, so these tests also pin them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aniworld_daemon.app import Application
from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME, TempFiles, partial_files
from aniworld_daemon.downloads.verify import SourcePromise, check
from aniworld_daemon.errors import ImportRefused
from aniworld_daemon.models import Download, DownloadStatus
from aniworld_daemon.provider.hosters import MediaKind
from tests.fakesite.core import Media
from tests.fakesite.server import FakeSite
from tests.helpers import StartApp, cli, ffprobe, finished

SERIES = "blade-of-dawn"  # season 1, German dub on VOE (HLS) and Vidoza (MP4)
FOLDER = "Blade of Dawn (2015)"
EPISODE = f"{FOLDER}/Season 01/Blade of Dawn - S01E01 - Das Licht im Schutt.mp4"


def engine_yaml(site: FakeSite, hoster: str, *, auto_start: bool) -> str:
    """One followed season, one hoster, two attempts per episode one second apart, no scheduled rescans."""
    return (
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        f"  cooldown: 1s\n  languages: [de-dub]\n  hosters: [{hoster}]\n"
        "schedule:\n  run_on_start: false\n"
        f"downloads:\n  retries: 2\n  retry_backoff: 1s\n  min_free_space: 0\n  auto_start: {str(auto_start).lower()}\n"
        f"series:\n  - key: {SERIES}\n    seasons: [1]\n"
    )


@dataclass(frozen=True)
class Stopped:
    """The state between the two starts: the queued item and where things live."""

    item: Download
    site: FakeSite
    library: Path
    database: Path

    @property
    def temp(self) -> Path:
        """The library's temp dir (created by the first start)."""
        return self.library / TEMP_DIR_NAME

    def segments(self, count: int | None = None) -> bytes:
        """The first `count` (default all) HLS segments, as yt-dlp appends them to its .part file."""
        paths = sorted(self.site.media.hls_dir.glob("seg*.ts"))
        return b"".join(path.read_bytes() for path in paths[:count])


def hls_not_remuxed(state: Stopped) -> None:
    """Killed after yt-dlp renamed the finished HLS download, before its remux: MPEG-TS named .mp4."""
    (state.temp / f"{state.item.id}.mp4").write_bytes(state.segments())


def hls_empty_state_file(state: Stopped) -> None:
    """Killed while yt-dlp rewrote its .ytdl state in place: two fragments in the .part, an empty .ytdl."""
    (state.temp / f"{state.item.id}.mp4.part").write_bytes(state.segments(2))
    (state.temp / f"{state.item.id}.mp4.ytdl").write_bytes(b"")


def mp4_complete_part(state: Stopped) -> None:
    """Killed after the last byte arrived, before yt-dlp renamed the .part; the announced length was stored."""
    source = state.site.media.mp4.read_bytes()
    (state.temp / f"{state.item.id}.mp4.part").write_bytes(source)
    promise = {"hoster": "vidoza", "size": len(source), "duration": None}
    (state.temp / f"{state.item.id}.source.json").write_text(json.dumps(promise), encoding="utf-8")


def mp4_complete_part_unannounced(state: Stopped) -> None:
    """The same .part at full length, without a stored length (as an older version leaves it)."""
    (state.temp / f"{state.item.id}.mp4.part").write_bytes(state.site.media.mp4.read_bytes())


def temp_file_beside_nfo(state: Stopped) -> None:
    """Killed between the write of tvshow.nfo's temp file and its rename (an older version wrote it there)."""
    folder = state.library / FOLDER
    folder.mkdir(parents=True)
    (folder / "tvshow.nfo").write_text("<tvshow><title>Blade of Dawn</title></tvshow>\n", encoding="utf-8")
    (folder / ".aafae402cf0c.tmp").write_bytes(b"<?xml version='1.0' encoding='utf-8'?>\n<tvshow>" + b" " * 220)


def scan_left_running(state: Stopped) -> None:
    """Killed during a rescan: its report row still says `running`."""
    connection = sqlite3.connect(state.database)
    with connection:
        connection.execute(
            "INSERT INTO scans (id, trigger, status, started_at) VALUES ('killed', 'schedule', 'running', ?)",
            (time.time() - 60,),
        )
    connection.close()


@dataclass(frozen=True)
class Case:
    """One kill moment: the hoster the episode comes from and the state the kill leaves."""

    hoster: str
    prepare: Callable[[Stopped], None]


CASES = {
    "hls-not-remuxed": Case("voe", hls_not_remuxed),
    "hls-empty-ytdl": Case("voe", hls_empty_state_file),
    "mp4-complete-part": Case("vidoza", mp4_complete_part),
    "mp4-complete-part-unannounced": Case("vidoza", mp4_complete_part_unannounced),
    "tmp-beside-nfo": Case("vidoza", temp_file_beside_nfo),
    "scan-left-running": Case("vidoza", scan_left_running),
}


def hidden_files(library: Path) -> list[str]:
    """Every hidden name in the library, the temp dir itself excepted."""
    return sorted(
        str(path.relative_to(library))
        for path in library.rglob(".*")
        if path.relative_to(library).parts[0] != TEMP_DIR_NAME
    )


@pytest.mark.parametrize("name", list(CASES))
async def test_a_start_repairs_what_a_kill_left(name: str, fakesite: FakeSite, start_app: StartApp) -> None:
    case = CASES[name]
    first = await start_app(engine_yaml(fakesite, case.hoster, auto_start=False))
    [item] = await first.commands.call("queue.add", {"series": SERIES, "episodes": [{"season": 1, "episode": 1}]})
    await first.temp.prepare()
    await first.stop()
    state = Stopped(item, fakesite, first.config.library.path, first.config.data_dir / "aniworld.db")
    case.prepare(state)
    fakesite.log.clear()

    second: Application = await start_app(engine_yaml(fakesite, case.hoster, auto_start=True))
    [done] = await finished(second, item.id)

    # The episode completed without a failed attempt: a leftover of our own is not the episode's failure.
    assert (done.status, done.attempts, done.error_message) == (DownloadStatus.COMPLETED, 0, None)
    assert done.file_path == EPISODE
    video = state.library / EPISODE
    probe = ffprobe(video)
    assert "mp4" in probe["format"]["format_name"].split(","), probe["format"]["format_name"]
    assert float(probe["format"]["duration"]) == pytest.approx(fakesite.media.duration, abs=0.5)
    if case.hoster == "vidoza":
        assert video.read_bytes() == fakesite.media.mp4.read_bytes()
    assert hidden_files(state.library) == []
    assert sorted(path.name for path in state.temp.iterdir()) == []
    media = [(record.status, record.headers.get("Range")) for record in fakesite.log.media(case.hoster)]
    if name == "mp4-complete-part":
        assert media == []  # complete and announced: imported without asking the hoster again
    if name == "mp4-complete-part-unannounced":
        assert (416, f"bytes={fakesite.media.mp4.stat().st_size}-") in media  # the resume the server refused
        assert (200, None) in media  # then once more from the start, in the same attempt
    if name == "tmp-beside-nfo":
        assert (state.library / FOLDER / "tvshow.nfo").is_file()

    if name == "scan-left-running":
        report = await second.db.get_scan("killed")
        assert report is not None
        assert report.status.value == "interrupted"
        assert report.finished_at is not None
        code, out, err = await cli("scans", "-c", str(second.config.source))
        assert code == 0, err
        assert "interrupted" in out.splitlines()[-1], out
        code, out, err = await cli("scans", "--json", "--limit", "1", "-c", str(second.config.source))
        assert code == 0, err
        [shown] = json.loads(out)
        assert (shown["id"], shown["status"], shown["trigger"]) == ("killed", "interrupted", "schedule")


# --- the trust rules, one leftover at a time ------------------------------------------------------------------------

ITEM = "0123456789abcdef0123456789abcdef"
YTDL_STATE = json.dumps({"downloader": {"current_fragment": {"index": 2}, "extra_state": {}}})


@dataclass(frozen=True)
class Leftover:
    """Files an earlier attempt left (name suffix -> size or text), the stored promise, and what vet() keeps."""

    kind: MediaKind
    files: dict[str, int | str]
    promise: SourcePromise | None
    kept: list[str]  # suffixes left after vet(), sorted; vet() returns whether any (but the promise) remain


LEFTOVERS = {
    "mp4 .part short of the length: resumed": Leftover(
        MediaKind.MP4, {".mp4.part": 500}, SourcePromise("vidoza", size=1000), [".mp4.part", ".source.json"]
    ),
    "mp4 .part at the length: taken as finished": Leftover(
        MediaKind.MP4, {".mp4.part": 1000}, SourcePromise("vidoza", size=1000), [".mp4", ".source.json"]
    ),
    "mp4 .part past the length: dropped": Leftover(
        MediaKind.MP4, {".mp4.part": 1001}, SourcePromise("vidoza", size=1000), []
    ),
    "mp4 finished without a known length: dropped": Leftover(MediaKind.MP4, {".mp4": 1000}, None, []),
    "another hoster's files: dropped": Leftover(
        MediaKind.MP4, {".mp4.part": 500}, SourcePromise("doodstream", size=1000), []
    ),
    "hls .part with its state: resumed, fragments refetched": Leftover(
        MediaKind.HLS,
        {".mp4.part": 700, ".mp4.ytdl": YTDL_STATE, ".mp4.part-Frag3.part": 300},
        None,
        [".mp4.part", ".mp4.ytdl"],
    ),
    "hls empty state file: dropped": Leftover(MediaKind.HLS, {".mp4.part": 700, ".mp4.ytdl": ""}, None, []),
    "hls unreadable state file: dropped": Leftover(
        MediaKind.HLS, {".mp4.part": 700, ".mp4.ytdl": '{"downloader": {'}, None, []
    ),
    "hls .part without a state file: dropped": Leftover(MediaKind.HLS, {".mp4.part": 700}, None, []),
    "hls finished, not remuxed: kept for the gate": Leftover(MediaKind.HLS, {".mp4": 900}, None, [".mp4"]),
}


@pytest.mark.parametrize("name", list(LEFTOVERS))
async def test_only_trustworthy_leftovers_are_resumed(name: str, tmp_path: Path) -> None:
    case = LEFTOVERS[name]
    temp = TempFiles(tmp_path)
    folder = await temp.prepare()
    for suffix, content in case.files.items():
        path = folder / f"{ITEM}{suffix}"
        if isinstance(content, int):
            path.write_bytes(b"\0" * content)
        else:
            path.write_text(content, encoding="utf-8")
    if case.promise is not None:
        temp.save_promise(ITEM, case.promise)
    (folder / "other-item.mp4.part").write_bytes(b"\0")  # another item's file is never touched

    kept = await temp.vet(ITEM, case.kind, "vidoza")

    assert kept is any(suffix != ".source.json" for suffix in case.kept)
    assert sorted(path.name.removeprefix(ITEM) for path in folder.iterdir() if path.name.startswith(ITEM)) == case.kept
    assert (folder / "other-item.mp4.part").exists()


NUMBERS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
JSON = st.recursive(NUMBERS, lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children))


@given(JSON | st.fixed_dictionaries({"hoster": st.text(max_size=10), "size": NUMBERS, "duration": NUMBERS}))
def test_a_damaged_promise_is_no_promise(data: object) -> None:
    """Whatever the stored JSON holds, reading it gives a promise or None, never an exception."""
    promise = SourcePromise.from_json(data)
    assert promise is None or SourcePromise.from_json(promise.to_json()) == promise


# --- the import gate on its own -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """A file (the source MP4, or the HLS segments joined as yt-dlp leaves them before its remux), a promise, and
    the refusal expected (None: accepted)."""

    content: str  # "mp4" | "ts"
    promise: Callable[[Media], SourcePromise | None]
    resumed: bool
    refused: str | None


GATES = {
    "mp4 at the announced length": Gate("mp4", lambda m: SourcePromise("v", size=m.mp4.stat().st_size), True, None),
    "mp4 a byte short": Gate(
        "mp4", lambda m: SourcePromise("v", size=m.mp4.stat().st_size + 1), False, "the source announced"
    ),
    "ts named .mp4, duration right: remuxed": Gate("ts", lambda m: SourcePromise("v", duration=6.0), True, None),
    "ts named .mp4, twice as long as promised": Gate("ts", lambda m: SourcePromise("v", duration=3.0), True, "lasts"),
    "resumed without a promise": Gate("mp4", lambda m: None, True, "unknown"),
    "fresh without a promise: plays, accepted": Gate("mp4", lambda m: None, False, None),
}


@pytest.mark.parametrize("name", list(GATES))
async def test_the_import_gate(name: str, media: Media, tmp_path: Path) -> None:
    case = GATES[name]
    path = tmp_path / f"{ITEM}.mp4"
    if case.content == "mp4":
        path.write_bytes(media.mp4.read_bytes())
    else:
        path.write_bytes(b"".join(segment.read_bytes() for segment in sorted(media.hls_dir.glob("seg*.ts"))))

    if case.refused is not None:
        with pytest.raises(ImportRefused, match=case.refused):
            await check(path, case.promise(media), resumed=case.resumed)
        return
    info = await check(path, case.promise(media), resumed=case.resumed)
    assert "mp4" in info.container
    assert "mp4" in ffprobe(path)["format"]["format_name"].split(",")
    assert info.duration == pytest.approx(media.duration, abs=0.5)
    assert os.listdir(tmp_path) == [path.name]  # the remux left no copy behind


# Which temp files belong to item "abc": every name yt-dlp gives its files, its promise, and nothing of another item.
PARTIAL_NAMES = [
    ("abc.mp4", True),
    ("abc.mp4.part", True),
    ("abc.mp4.ytdl", True),
    ("abc.mp4.part-Frag7", True),
    ("abc.mp4.part-Frag7.part", True),
    ("abc.temp.mp4", True),
    ("abc.fhls-720.mp4.part", True),
    ("abc.source.json", True),
    ("abcd.mp4", False),  # another item whose id starts with ours
    ("abc.5.mp4", False),
    ("abc", False),
    ("xabc.mp4", False),
    (".0123456789ab.tmp", False),
]


def test_partial_files_claim_exactly_an_items_files(tmp_path: Path) -> None:
    for name, _ in PARTIAL_NAMES:
        (tmp_path / name).write_bytes(b"x")
    assert partial_files(tmp_path, "abc") == sorted(tmp_path / name for name, belongs in PARTIAL_NAMES if belongs)
