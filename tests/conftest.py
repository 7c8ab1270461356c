"""Shared fixtures: config files, free ports, the real Application over real HTTP, and daemon subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from aniworld_daemon.app import Application
from aniworld_daemon.config import Config, load_config
from tests.fakesite.core import Media, ensure_media
from tests.fakesite.server import FakeSite

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def minimal_config(port: int, extra: str = "") -> str:
    """A small valid config on 127.0.0.1:port with library and data in the config's folder."""
    return f"library:\n  path: ./library\ndata_dir: ./data\napi:\n  host: 127.0.0.1\n  port: {port}\n{extra}"


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config.yaml into the test's temp folder and return its path."""

    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def port() -> int:
    """A free TCP port."""
    return free_port()


@pytest.fixture
def config(write_config: Callable[..., Path], port: int) -> Config:
    """A valid config for a daemon on 127.0.0.1:port."""
    return load_config(write_config(minimal_config(port)))


@pytest.fixture
async def app(config: Config) -> AsyncIterator[Application]:
    """The real Application, started, serving HTTP on 127.0.0.1."""
    application = Application(config)
    await application.start()
    try:
        yield application
    finally:
        await application.stop()


@pytest.fixture
async def client(app: Application) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose base URL is the running app."""
    host, port = app.web.addresses[0]
    async with aiohttp.ClientSession(
        base_url=f"http://{host}:{port}", timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        yield session


class Daemon:
    """`aniworld-daemon run` as a real subprocess, with its stderr captured to a file."""

    def __init__(self, config_file: Path, env: dict[str, str] | None = None) -> None:
        self.config_file = config_file
        self.log_file = config_file.parent / "daemon.log"
        self._log = self.log_file.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aniworld_daemon", "run", "-c", str(config_file)],
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


@pytest.fixture
def daemon() -> Iterator[Callable[..., Daemon]]:
    """Start daemons as subprocesses; all are killed at the end of the test."""
    started: list[Daemon] = []

    def start(config_file: Path, env: dict[str, str] | None = None) -> Daemon:
        process = Daemon(config_file, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """The fake site's media files (MP4, HLS, cover), made once per test session with ffmpeg."""
    return ensure_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
async def fakesite(media: Media) -> AsyncIterator[FakeSite]:
    """A running fake aniworld.to with all its hoster origins on 127.0.0.1; stopped after the test."""
    async with FakeSite(media) as site:
        yield site
