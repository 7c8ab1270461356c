"""The aiohttp server: app factory, middlewares (metrics, errors, auth), the route table; bound last at start-up."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from aniworld_daemon import wire
from aniworld_daemon.config import ApiConfig
from aniworld_daemon.errors import (
    AniworldError,
    ConfigError,
    ConflictError,
    Forbidden,
    HosterError,
    NotFound,
    NotFoundError,
    ProviderError,
    RateLimited,
    StorageError,
    Unauthorized,
    ValidationError,
)
from aniworld_daemon.health import HealthReport
from aniworld_daemon.models import HealthStatus
from aniworld_daemon.web.api import Api, BadRequest
from aniworld_daemon.web.api import queue as queue_api
from aniworld_daemon.web.api import scans as scans_api
from aniworld_daemon.web.api import series as series_api
from aniworld_daemon.web.api import system as system_api
from aniworld_daemon.web.ws import WebSocketHub
from aniworld_daemon.wire import error_json, health_json

LOGGER = logging.getLogger(__name__)

# The one place where errors become HTTP statuses; the most specific class in an error's MRO wins.
HTTP_STATUS: dict[type[AniworldError], int] = {
    AniworldError: 500,
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    RateLimited: 429,
    ValidationError: 422,
    ConfigError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    NotFound: 404,
    ProviderError: 503,  # also Blocked and ParseError
    HosterError: 503,
    StorageError: 503,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}
MAX_BODY = 256 * 1024  # bytes; the largest body is a config file to validate
STATIC_DIR = Path(__file__).with_name("static")  # the dashboard: plain HTML, CSS and ES modules, no build step
STATIC_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_for(error: AniworldError) -> int:
    """The HTTP status for an error of the tree."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    """The JSON error body of the API contract, as a response."""
    return web.json_response(error_json(code, message, details), status=status)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Render every failure as the contract's JSON error; never leak exception text of unexpected errors."""
    try:
        return await handler(request)
    except AniworldError as err:
        status = status_for(err)
        if status >= 500:
            LOGGER.warning("%s %s failed: [%s] %s", request.method, request.path, err.code, err.message)
        response = error_response(status, err.code, err.message, err.details)
        if isinstance(err, RateLimited):
            response.headers["Retry-After"] = str(err.details.get("retry_after", 60))
        return response
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = _HTTP_CODES.get(err.status, "http_error")
        return error_response(err.status, code, err.reason, {"path": request.path})
    except Exception:
        LOGGER.exception("Unhandled error in %s %s", request.method, request.path)
        return error_response(500, AniworldError.code, "internal error; see the daemon log")


def count_requests(api: Api) -> Middleware:
    """The middleware that counts every request for /metrics by its route's pattern and final status."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)  # the error middleware inside turns every failure into a response
        resource = request.match_info.route.resource
        api.metrics.request(
            request.method, resource.canonical if resource is not None else "unmatched", response.status
        )
        return response

    return middleware


async def snapshot(api: Api, room: str) -> dict[str, Any]:
    """The message that brings a WebSocket client joining `room` up to date (the newest event's seq with it)."""
    seq = api.bus.last_seq
    series = {entry.key: entry for entry in await api.series.list()}
    if room == "downloads":
        return wire.ws_message("queue_status", wire.queue_json(await api.downloader.status(limit=100), series), seq)
    if room == "download_progress":
        return wire.ws_message("download_progress", wire.mqtt_progress_json(api.downloader.active(), series), seq)
    latest = await api.db.list_scans(limit=1)
    if room == "scan_progress":
        return wire.ws_message(
            "scan_status", wire.scan_status_json(api.rescanner.running, latest[0] if latest else None), seq
        )
    status = wire.system_status_json(
        await api.health.report(), api.version, api.uptime, latest[0] if latest else None, api.scheduler.state()
    )
    return wire.ws_message("system_status", status, seq)


def static_file(name: str) -> Path:
    """The dashboard's file `name` under STATIC_DIR; NotFound for anything else (no escaping the folder)."""
    try:
        path = (STATIC_DIR / name).resolve()
        found = path.is_relative_to(STATIC_DIR.resolve()) and path.suffix in STATIC_TYPES and path.is_file()
    except (OSError, ValueError):  # a NUL byte, a name too long
        found = False
    if not found:
        raise NotFoundError("no such file", details={"path": name})
    return path


def file_response(path: Path) -> web.FileResponse:
    """A static file with its content type; revalidated on every load, so an upgrade is never half cached."""
    response = web.FileResponse(path, headers={"Cache-Control": "no-cache"})
    response.content_type = STATIC_TYPES[path.suffix]
    return response


async def handle_dashboard(request: web.Request) -> web.FileResponse:
    """`GET /`: the dashboard's page (public: the page asks for a login or the API key itself)."""
    return file_response(static_file("index.html"))


async def handle_static(request: web.Request) -> web.FileResponse:
    """`GET /static/{path}`: the dashboard's scripts and styles (public)."""
    return file_response(static_file(request.match_info["path"]))


class WebServer:
    """Owns the aiohttp application and its listening socket."""

    def __init__(
        self, config: ApiConfig, *, version: str, health: Callable[[], Awaitable[HealthReport]], api: Api
    ) -> None:
        self._config = config
        self._version = version
        self._health = health
        self._api = api
        self.hub = WebSocketHub(api.bus, partial(snapshot, api), version=version)
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None

    def _build_app(self) -> web.Application:
        api = self._api
        # Outermost first: count the request, render errors (auth's 401 too), then check credentials.
        app = web.Application(
            middlewares=[count_requests(api), error_middleware, api.auth.middleware()], client_max_size=MAX_BODY
        )
        app.router.add_get("/health", self._handle_health)
        app.router.add_get("/ws/connect", self.hub.handle)
        app.router.add_get("/", handle_dashboard)
        app.router.add_get("/static/{path:.+}", handle_static)
        for module in (queue_api, series_api, scans_api, system_api):
            app.router.add_routes(module.routes(api))
        return app

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) pairs once started."""
        if self._runner is None:
            return []
        return [(str(address[0]), int(address[1])) for address in self._runner.addresses]

    async def start(self) -> None:
        """Bind the socket and start serving."""
        # aiohttp's default access logger ("aiohttp.access") is quieted below debug: /health is polled often.
        runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, self._config.host, self._config.port)
        try:
            await site.start()
        except OSError as err:
            await runner.cleanup()
            reason = os.strerror(err.errno) if err.errno else str(err)
            raise AniworldError(
                f"cannot listen on {self._config.host}:{self._config.port}: {reason}"
                " (is another instance running? change api.port)"
            ) from err
        self._runner = runner
        LOGGER.info("Listening on http://%s:%d", self._config.host, self._config.port)

    async def stop(self) -> None:
        """Tell WebSocket clients (`server_shutdown`, close 1001), stop accepting connections, close open ones."""
        await self.hub.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle_health(self, request: web.Request) -> web.Response:
        report = await self._health()
        status = 503 if report.status is HealthStatus.UNHEALTHY else 200
        return web.json_response(health_json(report, self._version), status=status)
