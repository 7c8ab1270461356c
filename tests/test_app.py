"""The real Application in-process: HTTP health, error mapping, lifecycle order, background tasks, reload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from aniworld_daemon import __version__
from aniworld_daemon.app import Application
from aniworld_daemon.config import Config, load_config
from aniworld_daemon.errors import (
    AniworldError,
    Blocked,
    ConfigError,
    ConflictError,
    DownloadError,
    HosterError,
    NotFound,
    NotFoundError,
    ParseError,
    ProviderError,
    StorageError,
    ValidationError,
)
from aniworld_daemon.events import HealthChanged
from aniworld_daemon.health import HealthChecks
from aniworld_daemon.models import HealthStatus
from aniworld_daemon.systemd import SystemdNotifier
from tests.fakesite.server import FakeSite
from tests.helpers import Recorder, minimal_config


@contextlib.asynccontextmanager
async def app_client(config: Config) -> AsyncIterator[tuple[Application, aiohttp.ClientSession]]:
    """A started Application for `config` and an HTTP client on it."""
    application = Application(config)
    await application.start()
    host, port = application.web.addresses[0]
    try:
        async with aiohttp.ClientSession(base_url=f"http://{host}:{port}") as client:
            yield application, client
    finally:
        await application.stop()


async def test_health(client: aiohttp.ClientSession) -> None:
    async with client.get("/health") as response:
        assert response.status == 200
        assert await response.json() == {"status": "healthy", "version": __version__}


async def test_health_degraded_when_library_disappears(app: Application, client: aiohttp.ClientSession) -> None:
    shutil.rmtree(app.config.library.path)
    async with client.get("/health") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "degraded"
    assert body["problems"] == [f"library {app.config.library.path} is missing or not writable"]


async def test_health_unhealthy_without_database(app: Application, client: aiohttp.ClientSession) -> None:
    await app.db.close()
    async with client.get("/health") as response:
        assert response.status == 503
        assert (await response.json())["status"] == "unhealthy"


async def test_health_degraded_while_the_site_cools_down(
    write_config: Callable[..., Path], port: int, fakesite: FakeSite
) -> None:
    """A 403 from the site puts it in cooldown, and /health says so (degraded, with the host and the end time)."""
    config = load_config(write_config(minimal_config(port, f"provider:\n  base_url: {fakesite.base_url}\n")))
    fakesite.knobs.block("site", after=0)
    async with app_client(config) as (application, client):
        with pytest.raises(Blocked):
            await application.provider.new_episodes()
        async with client.get("/health") as response:
            body = await response.json()
    host = fakesite.base_url.removeprefix("http://")
    assert response.status == 200
    assert body["status"] == "degraded"
    [problem] = body["problems"]
    assert problem.startswith(f"{host} refused us; no requests to it until ")


async def test_reload_applies_provider_limits_and_keeps_cooldowns(
    write_config: Callable[..., Path], port: int, fakesite: FakeSite
) -> None:
    """After a reload with max_connections 1 the site never sees two requests at once; a cooldown survives it."""
    provider = f"provider:\n  base_url: {fakesite.base_url}\n  requests_per_second: 100\n"
    path = write_config(minimal_config(port, provider + "  max_connections: 4\n"))
    application = Application(load_config(path))
    await application.start()
    try:
        path.write_text(minimal_config(port, provider + "  max_connections: 1\n"), encoding="utf-8")
        assert await application.reload() == []
        fakesite.knobs.latency = 0.05
        await asyncio.gather(*(application.provider.new_episodes() for _ in range(4)))
        assert fakesite.log.max_concurrency("site") == 1
        fakesite.knobs.block("site", after=fakesite.log.count("site"))
        with pytest.raises(Blocked):
            await application.provider.new_episodes()
        assert await application.reload() == []
        assert len(application.http.cooldowns()) == 1
    finally:
        await application.stop()


async def test_unknown_route_is_a_json_404(client: aiohttp.ClientSession) -> None:
    async with client.get("/no/such/route") as response:
        assert response.status == 404
        assert await response.json() == {
            "error": {"code": "not_found", "message": "Not Found", "details": {"path": "/no/such/route"}}
        }
    async with client.post("/health") as response:
        assert response.status == 405
        assert (await response.json())["error"]["code"] == "method_not_allowed"


ERROR_CASES = [
    (ValidationError("episodes: expected a list", details={"field": "episodes"}), 422, "validation_error"),
    (ConfigError(["config.yaml:3: api -> port: expected an integer"]), 422, "config_invalid"),
    (NotFoundError("no queue item abc"), 404, "not_found"),
    (ConflictError("a rescan is already running"), 409, "conflict"),
    (NotFound("https://aniworld.to/anime/stream/x: 404"), 404, "provider_not_found"),
    (Blocked("aniworld.to is in cooldown"), 503, "provider_blocked"),
    (ParseError("series page without a title"), 503, "provider_parse_error"),
    (ProviderError("connection reset"), 503, "provider_error"),
    (HosterError("voe: no source"), 503, "hoster_error"),
    (StorageError("disk I/O error"), 503, "storage_error"),
    (DownloadError("ffprobe found no video"), 500, "download_error"),
    (AniworldError("something odd"), 500, "internal_error"),
]


@pytest.mark.parametrize(("error", "status", "code"), ERROR_CASES, ids=[type(case[0]).__name__ for case in ERROR_CASES])
async def test_error_tree_maps_to_http(config: Config, error: AniworldError, status: int, code: str) -> None:
    application = Application(config)

    async def failing(request: web.Request) -> web.Response:
        raise error

    application.web.app.router.add_get("/test/fail", failing)
    await application.start()
    try:
        host, port = application.web.addresses[0]
        headers = {"X-Api-Key": application.auth.key}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(f"http://{host}:{port}/test/fail") as response,
        ):
            assert response.status == status
            assert await response.json() == {
                "error": {"code": code, "message": error.message, "details": error.details}
            }
    finally:
        await application.stop()


async def test_unexpected_exception_is_500_without_its_text(config: Config, caplog: pytest.LogCaptureFixture) -> None:
    application = Application(config)

    async def buggy(request: web.Request) -> web.Response:
        raise KeyError("secret-internal-detail")

    application.web.app.router.add_get("/test/bug", buggy)
    await application.start()
    try:
        host, port = application.web.addresses[0]
        headers = {"X-Api-Key": application.auth.key}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(f"http://{host}:{port}/test/bug") as response,
        ):
            assert response.status == 500
            body = await response.json()
    finally:
        await application.stop()
    assert body == {"error": {"code": "internal_error", "message": "internal error; see the daemon log", "details": {}}}
    assert "secret-internal-detail" not in str(body)
    assert any("Unhandled error in GET /test/bug" in record.getMessage() for record in caplog.records)


async def test_start_creates_directories_and_stops_in_reverse(config: Config, caplog: pytest.LogCaptureFixture) -> None:
    assert not config.data_dir.exists()
    application = Application(config)
    with caplog.at_level(logging.DEBUG, logger="aniworld_daemon.app"):
        await application.start()
        assert config.data_dir.is_dir()
        assert config.library.path.is_dir()
        assert (config.data_dir / "aniworld.db").is_file()
        await application.stop()
    steps = [
        record.getMessage()
        for record in caplog.records
        if record.name == "aniworld_daemon.app" and record.getMessage().startswith(("Starting ", "Stopping "))
    ]
    assert steps[1:] == [
        "Starting store",
        "Starting http",
        "Starting series",
        "Starting rescans",
        "Starting downloader",
        "Starting scheduler",
        "Starting auth",
        "Starting web",
        "Stopping web",
        "Stopping auth",
        "Stopping scheduler",
        "Stopping downloader",
        "Stopping rescans",
        "Stopping series",
        "Stopping http",
        "Stopping store",
    ]


async def test_port_in_use_fails_start_and_unwinds(config: Config) -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", config.api.port))
    blocker.listen()
    try:
        application = Application(config)
        with pytest.raises(AniworldError, match=rf"cannot listen on 127\.0\.0\.1:{config.api.port}"):
            await application.start()
        assert not await application.db.ping()  # the store that had started was closed again
    finally:
        blocker.close()


async def test_background_tasks_logged_and_cancelled(app: Application, caplog: pytest.LogCaptureFixture) -> None:
    cancelled = asyncio.Event()

    async def crashes() -> None:
        raise RuntimeError("task bug")

    async def runs_forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()

    app.create_task(crashes(), name="crashes")
    forever = app.create_task(runs_forever(), name="forever")
    await asyncio.sleep(0.05)
    assert any("Background task crashes failed" in record.getMessage() for record in caplog.records)
    assert not forever.done()
    await app.stop()
    assert cancelled.is_set()
    assert forever.cancelled()


async def test_reload_keeps_old_config_when_new_one_is_invalid(
    write_config: Callable[..., Path], port: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(minimal_config(port, "logging:\n  level: info\n"))
    application = Application(load_config(path))
    await application.start()
    try:
        path.write_text(minimal_config(port, "logging:\n  level: loud\n"))
        assert await application.reload() != []
        assert application.config.logging.level == "info"
        assert f"{path}:8: logging -> level: unknown log level 'loud'" in caplog.text
        path.write_text(minimal_config(port, "logging:\n  level: warning\n"))
        assert await application.reload() == []
        assert application.config.logging.level == "warning"
        assert logging.getLogger().level == logging.WARNING
    finally:
        await application.stop()
        logging.getLogger().setLevel(logging.WARNING)


async def test_notifier_sends_ready_status_stopping(tmp_path: Path, config: Config) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify.sock"))
    receiver.setblocking(False)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "3000000"})
    assert notifier.watchdog_interval == 1.5
    application = Application(config, notifier=notifier)
    await application.start()
    notifier.ready(application.status_line())
    await application.stop()
    messages = []
    while True:
        try:
            messages.append(receiver.recv(4096).decode())
        except BlockingIOError:
            break
    receiver.close()
    host, port = config.api.host, config.api.port
    assert messages == [
        f"READY=1\nSTATUS=Running; 0 series configured; HTTP on {host}:{port}",
        "STOPPING=1\nSTATUS=Stopping",
    ]


def test_notifier_watchdog_for_another_pid_is_ignored() -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert notifier.enabled
    assert notifier.watchdog_interval is None
    assert not SystemdNotifier({}).enabled


async def test_health_changes_are_announced_on_the_bus(app: Application) -> None:
    """The watcher emits HealthChanged when the checks' verdict changes (not for the first report, not repeatedly)."""
    space = {"free": 10**12}
    checks = HealthChecks(app.db, app.http, app.config.library.path, 10**9, free_space=lambda _path: space["free"])
    events = Recorder()
    app.bus.subscribe(events, HealthChanged)
    watcher = asyncio.get_running_loop().create_task(checks.watch(app.bus, interval=0.05))
    try:
        await asyncio.sleep(0.2)
        space["free"] = 10**6  # below the minimum: degraded
        await asyncio.sleep(0.3)
        space["free"] = 10**12
        await asyncio.sleep(0.3)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    await app.bus.drain()
    assert [event.data.status for event in events.of(HealthChanged)] == [HealthStatus.DEGRADED, HealthStatus.HEALTHY]
    assert "below downloads.min_free_space" in events.of(HealthChanged)[0].data.problems[0]
