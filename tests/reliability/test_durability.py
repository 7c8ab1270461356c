"""Power-loss durability of the import, traced: the file is fsynced, linked into place, its folder fsynced, and only
then is the episode marked downloaded (a commit, which fsyncs SQLite's WAL with synchronous=FULL).

A kill -9 keeps the page cache, so only the order of these system calls protects a download from a power cut. The
real daemon runs under Debian's strace against the in-process fake site; the test reads the trace.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME
from tests.fakesite.server import FakeSite
from tests.helpers import Daemon, minimal_config, query

SERIES = "die-kleinen-baeren"  # season 1: three episodes, German dub on every hoster
LINKS = ("link", "linkat", "rename", "renameat", "renameat2")
SYSCALLS = "fsync,fdatasync,link,linkat,rename,renameat,renameat2"
# `1234 fsync(7</path>) = 0`, `1234 linkat(AT_FDCWD, "/a", AT_FDCWD, "/b", 0) = 0`; strace -y decodes fds to paths.
LINE_RE = re.compile(r"^(?P<pid>\d+) +(?P<call>\w+)\((?P<args>.*)\) += (?P<result>-?\d+)")
UNFINISHED_RE = re.compile(r"^(?P<pid>\d+) +(?P<call>\w+)\((?P<args>.*) <unfinished \.\.\.>$")
RESUMED_RE = re.compile(r"^(?P<pid>\d+) +<\.\.\. (?P<call>\w+) resumed>(?P<args>.*)\) += (?P<result>-?\d+)")
FD_PATH_RE = re.compile(r"^\d+<(?P<path>.*)>$")
STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Call:
    """One finished system call, in the order the calls finished."""

    name: str
    args: str
    result: int

    @property
    def fd_path(self) -> str:
        """The path of an fd argument (fsync, fdatasync), decoded by strace -y; "" for other calls."""
        match = FD_PATH_RE.match(self.args.strip())
        return unescape(match.group("path")) if match else ""

    @property
    def paths(self) -> list[str]:
        """The quoted path arguments (link, rename)."""
        return [unescape(text) for text in STRING_RE.findall(self.args)]

    @property
    def is_sync(self) -> bool:
        """An fsync or fdatasync."""
        return self.name in ("fsync", "fdatasync")


def unescape(text: str) -> str:
    """A path as strace prints it (non-ASCII bytes as octal escapes) back to the path."""
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode("utf-8")


def parse_trace(text: str) -> list[Call]:
    """Successful calls of `strace -f -y` output, in completion order (an interrupted call counts when it resumes)."""
    calls: list[Call] = []
    pending: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        if match := UNFINISHED_RE.match(line):
            pending[(match["pid"], match["call"])] = match["args"]
        elif match := RESUMED_RE.match(line):
            start = pending.pop((match["pid"], match["call"]), "")
            if int(match["result"]) == 0:
                calls.append(Call(match["call"], start + match["args"], 0))
        elif (match := LINE_RE.match(line)) and int(match["result"]) == 0:
            calls.append(Call(match["call"], match["args"], 0))
    return calls


def config_yaml(site: FakeSite, port: int) -> str:
    """One series, three wanted episodes from one MP4 hoster, one download at a time, queued at start."""
    return minimal_config(
        port,
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  languages: [de-dub]\n"
        "  hosters: [doodstream]\n"
        "schedule:\n  run_on_start: true\n  rescan: {every: 1h}\n"
        "downloads:\n  max_concurrent: 1\n  min_free_space: 0\n"
        f"series:\n  - key: {SERIES}\n    seasons: [1]\n",
    )


@pytest.fixture
def traced(
    tmp_path: Path, write_config: Callable[..., Path], port: int, fakesite: FakeSite, daemon: Callable[..., Daemon]
) -> Iterator[tuple[Daemon, Path]]:
    """The daemon under `strace -f -y`, and the trace file."""
    strace = shutil.which("strace")
    assert strace is not None, "strace is missing: `make test` installs Debian's strace"
    trace = tmp_path / "strace.txt"
    process = daemon(
        write_config(config_yaml(fakesite, port)),
        wrapper=[strace, "-f", "-y", "-qq", "-e", f"trace={SYSCALLS}", "-o", str(trace)],
    )
    yield process, trace
    print(f"----- daemon log -----\n{process.log}")


def first(calls: list[Call], wanted: Callable[[Call], bool], what: str, after: int = -1) -> int:
    """The index of the first call after `after` that is `wanted`; fails naming `what` when there is none."""
    for index, call in enumerate(calls):
        if index > after and wanted(call):
            return index
    pytest.fail(f"no {what} in the trace" + (f" after call {after}" if after >= 0 else ""))


def check_import(calls: list[Call], temp: str, target: str, wal: str) -> None:
    """fsync(temp) < link/rename temp -> target < fsync(target's folder) < a commit, and no commit in between."""
    file_synced = first(calls, lambda call: call.is_sync and call.fd_path == temp, f"fsync of {temp}")
    linked = first(
        calls, lambda call: call.name in LINKS and call.paths[-1:] == [target], f"link or rename to {target}"
    )
    folder_synced = first(
        calls, lambda call: call.is_sync and call.fd_path == str(Path(target).parent), "fsync of its folder", linked
    )
    recorded = first(calls, lambda call: call.is_sync and call.fd_path == wal, "a commit", folder_synced)
    assert file_synced < linked < folder_synced < recorded, (temp, file_synced, linked, folder_synced, recorded)
    assert calls[linked].paths[0] == temp
    # No commit between the data sync and the folder sync: the episode cannot be marked before both are durable.
    between = [call for call in calls[file_synced:folder_synced] if call.is_sync and call.fd_path == wal]
    assert between == [], between


def terminate_traced(process: Daemon) -> None:
    """SIGTERM to the daemon under strace (strace passes no signals on): the tracer's only child."""
    pid = process.process.pid
    [child] = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()
    os.kill(int(child), signal.SIGTERM)


async def test_an_import_is_synced_then_linked_then_its_folder_synced_then_recorded(
    traced: tuple[Daemon, Path], tmp_path: Path
) -> None:
    """For every episode: fsync(temp file) < link into the library < fsync(folder) < the WAL commit marking it done."""
    process, trace = traced
    database = tmp_path / "data" / "aniworld.db"

    def completed() -> list[tuple[str, str]]:
        if not database.exists():
            return []
        try:
            return query(database, "SELECT id, file_path FROM downloads WHERE status = 'completed'")
        except sqlite3.OperationalError:  # created but not migrated yet
            return []

    await process.until(lambda: len(completed()) == 3, "three completed downloads", 90)
    done = completed()
    terminate_traced(process)
    assert await process.exited(30) == 0
    calls = parse_trace(trace.read_text())
    library = tmp_path / "library"
    wal = f"{database}-wal"
    for item_id, relative in done:
        target = str(library / relative)
        temp = str(library / TEMP_DIR_NAME / f"{item_id}{Path(relative).suffix}")
        check_import(calls, temp, target, wal)
