"""What test modules share that is not a fixture: ports and configs, the daemon subprocess, an event recorder, the CLI.

Fixtures live in conftest.py (and import from here); test modules import these helpers from here, never from each
other or from conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeGuard, TypeVar

import aiohttp
import pytest

from aniworld_daemon.app import Application
from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME
from aniworld_daemon.events import Event, EventData
from aniworld_daemon.models import Download, DownloadStatus

ROOT = Path(__file__).resolve().parent.parent

D = TypeVar("D", bound=EventData)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def minimal_config(port: int, extra: str = "") -> str:
    """A small valid config on 127.0.0.1:port with library and data in the config's folder."""
    return f"library:\n  path: ./library\ndata_dir: ./data\napi:\n  host: 127.0.0.1\n  port: {port}\n{extra}"


def _is_of(event: Event[EventData], kind: type[D]) -> TypeGuard[Event[D]]:
    return isinstance(event.data, kind)


class Recorder:
    """Every event of the bus, in order: `bus.subscribe(recorder)`, then `recorder.of(DownloadFailed)`."""

    def __init__(self) -> None:
        self.events: list[Event[EventData]] = []

    def __call__(self, event: Event[EventData]) -> None:
        """Record one event."""
        self.events.append(event)

    def of(self, kind: type[D]) -> list[Event[D]]:
        """The events whose payload is a `kind` (a payload class of aniworld_daemon.events), typed as such."""
        return [event for event in self.events if _is_of(event, kind)]


class StartApp(Protocol):
    """The `start_app` fixture: start a real Application on `minimal_config(port, extra)`."""

    async def __call__(self, extra: str = "", events: Recorder | None = None) -> Application: ...


async def cli(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run `aniworld-daemon ARGS` and return (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aniworld_daemon",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def ffprobe(path: Path) -> dict[str, Any]:
    """ffprobe's JSON view of a media file."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return dict(json.loads(result.stdout))


def query(database: Path, sql: str, *values: object) -> list[tuple[Any, ...]]:
    """Rows of one query on a read-only connection (safe while the daemon runs: SQLite WAL)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        return connection.execute(sql, values).fetchall()
    finally:
        connection.close()


def downgrade_to_schema_1(database: Path, source: str = "config") -> None:
    """Turn a current database into one as the first release left it: schema 1, one series (`frieren`)."""
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TABLE seasons")
        conn.execute("DROP TABLE sessions")  # schema 3
        conn.execute("DROP INDEX downloads_status")
        for column in ("alternative_titles", "folder_matched", "refreshed_at"):
            conn.execute(f"ALTER TABLE series DROP COLUMN {column}")
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO series (key, site, title, folder, monitored, source, added_at, updated_at)"
            " VALUES ('frieren', 'aniworld.to', 'Frieren', 'Frieren (2023)', 1, ?, 0, 0)",
            (source,),
        )
    conn.close()


def integrity(database: Path) -> str:
    """SQLite's integrity check of the daemon's database (read-only: works on a crashed WAL database too)."""
    [(result,)] = query(database, "PRAGMA integrity_check")
    return str(result)


class Daemon:
    """`aniworld-daemon run` as a real subprocess, with its stderr captured to a file."""

    def __init__(self, config_file: Path, env: dict[str, str] | None = None, wrapper: Sequence[str] = ()) -> None:
        self.config_file = config_file
        self.log_file = config_file.parent / "daemon.log"
        self._log = self.log_file.open("wb")
        # `wrapper` runs the daemon under another program (strace): then `process` is that program.
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "aniworld_daemon", "run", "-c", str(config_file)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, **(env or {})},
            cwd=config_file.parent,
        )

    @property
    def log(self) -> str:
        """Everything the daemon logged so far."""
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal to the daemon."""
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the exit status."""
        return self.process.wait(timeout=timeout)

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        """Wait until `text` appears in the log (bounded), or fail with the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"{text!r} not logged within {timeout}s; log:\n{self.log}")

    async def until(self, check: Callable[[], bool], what: str, seconds: float, poll: float = 0.05) -> None:
        """Poll `check` without blocking the loop; fail with the log on timeout or when the daemon exits.

        Async, unlike wait_for_log(): an in-process fake site shares the loop and must keep answering.
        """
        deadline = time.monotonic() + seconds
        while not check():
            if self.process.poll() is not None:
                pytest.fail(f"the daemon exited ({self.process.returncode}) while waiting for {what}:\n{self.log}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {seconds} s waiting for {what}:\n{self.log}")
            await asyncio.sleep(poll)

    async def exited(self, seconds: float) -> int:
        """The exit status, awaited without blocking the loop."""
        deadline = time.monotonic() + seconds
        while (status := self.process.poll()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"the daemon did not exit within {seconds} s:\n{self.log}")
            await asyncio.sleep(0.05)
        return status

    def close(self) -> None:
        """Kill the daemon if it still runs and close the log."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def api_session(app: Application, timeout: float = 10) -> aiohttp.ClientSession:
    """An HTTP client whose base URL is the running app, sending its API key (use it with `async with`)."""
    host, port = app.web.addresses[0]
    return aiohttp.ClientSession(
        base_url=f"http://{host}:{port}",
        headers={"X-Api-Key": app.auth.key},
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def until(check: Callable[[], Awaitable[bool]], within: float = 30.0, what: str = "condition") -> None:
    """Poll `check` every 50 ms until it is true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


async def finished(app: Application, *ids: str, within: float = 30.0) -> list[Download]:
    """Wait until these items are completed, failed or cancelled; return them."""

    async def done() -> bool:
        items = [await app.db.get_download(item_id) for item_id in ids]
        return all(
            item is not None and item.status not in (DownloadStatus.PENDING, DownloadStatus.DOWNLOADING)
            for item in items
        )

    await until(done, within, f"downloads {', '.join(ids)} to finish")
    return [item for item in [await app.db.get_download(item_id) for item_id in ids] if item is not None]


@dataclass
class Restarts:
    """One config's daemons, started one after the other (each restart follows a kill), and their logs."""

    folder: Path
    config: Path
    starter: Callable[..., Daemon]
    env: dict[str, str] = field(default_factory=dict)  # on top of the test's environment
    daemons: list[Daemon] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)  # logs of the daemons that ended (a restart empties daemon.log)

    def launch(self) -> Daemon:
        """Start `aniworld-daemon run` with the config, after saving the previous daemon's log."""
        if self.daemons:
            self.logs.append(self.daemons[-1].log)
        process = self.starter(self.config, self.env)
        self.daemons.append(process)
        return process

    def all_logs(self) -> list[str]:
        """The log of every daemon started so far, in order."""
        return [*self.logs, self.daemons[-1].log] if self.daemons else []

    @property
    def library(self) -> Path:
        """The library root (`minimal_config`'s)."""
        return self.folder / "library"

    @property
    def temp(self) -> Path:
        """The library's temp dir."""
        return self.library / TEMP_DIR_NAME

    @property
    def database(self) -> Path:
        """The daemon's SQLite file."""
        return self.folder / "data" / "aniworld.db"


class Broker:
    """A real mosquitto on 127.0.0.1: anonymous, with a password file, or with a TLS listener (certificates by openssl).

    Its config and files live in `folder`; `kill()` and `start()` again keep the port, as a broker restart does.
    """

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None, tls: bool = False) -> None:
        self.folder = folder
        self.port = free_port()
        self.users = dict(users or {})
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = folder / "mosquitto.log"
        folder.mkdir(parents=True, exist_ok=True)
        if tls:
            self._make_certificates()
        if self.users:
            self._make_password_file()

    @property
    def ca_file(self) -> Path:
        """The CA that signed the broker's certificate (TLS only)."""
        return self.folder / "ca.pem"

    def start(self) -> None:
        """Start mosquitto and wait (bounded) until it accepts connections."""
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr", "log_type all"]
        lines.append("allow_anonymous false" if self.users else "allow_anonymous true")
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to its own user, which cannot read pytest's private temp folders.
            lines.append("user root")
        if self.users:
            lines.append(f"password_file {self.folder / 'passwords'}")
        if self.tls:
            lines += [
                f"cafile {self.ca_file}",
                f"certfile {self.folder / 'server.pem'}",
                f"keyfile {self.folder / 'server.key'}",
            ]
        config = self.folder / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        log = self.log_file.open("ab")
        self.process = subprocess.Popen([executable, "-c", str(config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mosquitto exited: {self.log_file.read_text(errors='replace')}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        pytest.fail("mosquitto did not accept connections within 10 s")

    def kill(self) -> None:
        """SIGKILL the broker (no goodbye to its clients) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def _make_password_file(self) -> None:
        passwords = self.folder / "passwords"
        passwords.touch(mode=0o600)
        for user, password in self.users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True, timeout=30)

    def _make_certificates(self) -> None:
        """A CA and a server certificate for 127.0.0.1 and localhost, valid for a day."""
        folder = self.folder

        def run(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, timeout=60, capture_output=True, cwd=folder)

        run(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=aniworld test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        )
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        )
        (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="utf-8")
        run(
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        )
