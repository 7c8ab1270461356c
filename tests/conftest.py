"""Shared fixtures: config files, free ports, the real Application over real HTTP, and daemon subprocesses.

Plain helpers (free_port, minimal_config, Daemon, ...) live in tests/helpers.py; test modules import them from there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, settings

from aniworld_daemon.app import Application
from aniworld_daemon.config import Config, load_config
from tests.fakesite.core import Media, ensure_media
from tests.fakesite.server import FakeSite
from tests.helpers import Broker, Daemon, Recorder, StartApp, api_session, free_port, minimal_config

# One Hypothesis profile for the whole suite, loaded here because conftest.py is imported before any test module (a
# test's own @settings(...) starts from it and overrides only what it names). Our property tests do real work per
# example (files, YAML, parsing big pages), so on a loaded 2-core machine or a cold run (first imports, empty caches)
# an example can take longer than Hypothesis' 200 ms deadline, or the first examples can trip its too_slow health
# check, and the test fails for the machine, not for the code. Neither says anything about correctness: the tests
# bound their input sizes themselves, and pytest-timeout still ends a test that really hangs.
settings.register_profile("aniworld", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("aniworld")


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
async def start_app(write_config: Callable[..., Path], port: int) -> AsyncIterator[StartApp]:
    """Start real Applications on `minimal_config(port, extra)`; every one is stopped at the end of the test.

    `events`, when given, is subscribed before the start, so it also records what starting emits. A fixture that
    wraps this one for the fake site must request `fakesite` before `start_app`: then the apps stop before the site.
    """
    started: list[Application] = []

    async def start(extra: str = "", events: Recorder | None = None) -> Application:
        application = Application(load_config(write_config(minimal_config(port, extra))))
        if events is not None:
            application.bus.subscribe(events)
        await application.start()
        started.append(application)
        return application

    yield start
    for application in started:
        await application.stop()


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
    """An HTTP client whose base URL is the running app, sending its API key."""
    async with api_session(app) as session:
        yield session


@pytest.fixture
def daemon() -> Iterator[Callable[..., Daemon]]:
    """Start daemons as subprocesses; all are killed at the end of the test."""
    started: list[Daemon] = []

    def start(config_file: Path, env: dict[str, str] | None = None, wrapper: Sequence[str] = ()) -> Daemon:
        process = Daemon(config_file, env, wrapper)
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


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real mosquitto on a free 127.0.0.1 port, anonymous, one per test module; killed at the end."""
    started = Broker(tmp_path_factory.mktemp("broker"))
    started.start()
    yield started
    started.kill()


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start brokers of a test's own (a password file: `users={...}`; a TLS listener: `tls=True`); killed at the end."""
    started: list[Broker] = []

    def start(**options: Any) -> Broker:
        made = Broker(tmp_path / f"broker-{len(started)}", **options)
        made.start()
        started.append(made)
        return made

    yield start
    for made in started:
        made.kill()
