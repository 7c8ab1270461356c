"""The system's routes: status and health checks, configuration, history, backups, metrics, the contract, login."""

from __future__ import annotations

from importlib import resources

import voluptuous as vol
from aiohttp import web

from aniworld_daemon import wire
from aniworld_daemon.config import validate_text
from aniworld_daemon.errors import ConfigError, Unauthorized
from aniworld_daemon.metrics import CONTENT_TYPE
from aniworld_daemon.models import HistoryKind
from aniworld_daemon.validators import non_empty_string, one_of, validate_payload
from aniworld_daemon.web.api import PAGING, Api, BadRequest, ok, page, query, read_json, read_text, respond
from aniworld_daemon.web.auth import client_address

MAX_CONFIG_BYTES = 256 * 1024
HISTORY_QUERY = vol.Schema({**PAGING, vol.Optional("kind"): one_of("kind", tuple(kind.value for kind in HistoryKind))})
LOGIN_BODY = vol.Schema({vol.Required("password"): non_empty_string})


def openapi_text() -> bytes:
    """The REST contract shipped with the package (web/openapi.yaml)."""
    return resources.files("aniworld_daemon.web").joinpath("openapi.yaml").read_bytes()


def routes(api: Api) -> list[web.RouteDef]:
    """The system's route table."""
    contract = openapi_text()

    async def status(_: web.Request) -> web.Response:
        report = await api.health.report()
        latest = await api.db.list_scans(limit=1)
        return respond(
            wire.system_status_json(
                report, api.version, api.uptime, latest[0] if latest else None, api.scheduler.state()
            )
        )

    async def config(_: web.Request) -> web.Response:
        return respond(wire.config_json(api.config()))

    async def validate(request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_CONFIG_BYTES:
            raise BadRequest(f"a configuration of more than {MAX_CONFIG_BYTES // 1024} KiB is not one")
        text = await read_text(request)
        try:
            await validate_text(text, api.config().source)
        except ConfigError as err:
            return respond({"valid": False, "errors": list(err.errors)})
        return respond({"valid": True, "errors": []})

    async def reload(_: web.Request) -> web.Response:
        problems = await api.reload()
        if problems:
            raise ConfigError(problems)
        return ok("configuration reloaded")

    async def history(request: web.Request) -> web.Response:
        params = query(request, HISTORY_QUERY)
        kind = HistoryKind(params["kind"]) if "kind" in params else None
        entries = await api.db.list_history(params["limit"], params["offset"], kind)
        total = await api.db.count_history(kind)
        return respond(page([wire.history_json(entry) for entry in entries], total, params["offset"], params["limit"]))

    async def backups(_: web.Request) -> web.Response:
        return respond({"backups": [wire.backup_json(backup) for backup in await api.commands.call("backup.list", {})]})

    async def backup(_: web.Request) -> web.Response:
        made = await api.commands.call("backup.create", {})
        return respond(wire.backup_json(made), status=201)

    async def metrics(_: web.Request) -> web.Response:
        counts = await api.db.count_downloads_by_status()
        latest = await api.db.list_scans(limit=1)
        body = api.metrics.render(counts, len(api.downloader.active()), latest[0] if latest else None)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=contract, content_type="application/yaml")

    async def login(request: web.Request) -> web.Response:
        body = validate_payload(LOGIN_BODY, await read_json(request))
        session = await api.auth.login(body["password"], client_address(request))
        return respond(
            {"access_token": session.token, "token_type": "bearer", "expires_at": session.expires_at.isoformat()}
        )

    async def logout(request: web.Request) -> web.Response:
        await api.auth.logout(request)
        return web.Response(status=204)

    async def auth_status(request: web.Request) -> web.Response:
        try:
            method: str | None = await api.auth.authenticate(request)
        except Unauthorized:
            method = None
        return respond(
            {"authenticated": method is not None, "method": method, "password_login": api.auth.password_enabled}
        )

    return [
        web.get("/api/system/status", status),
        web.get("/api/config", config),
        web.post("/api/config/validate", validate),
        web.post("/api/config/reload", reload),
        web.get("/api/history", history),
        web.get("/api/system/backups", backups),
        web.post("/api/system/backup", backup),
        web.get("/metrics", metrics),
        web.get("/api/openapi.yaml", openapi),
        web.post("/api/auth/login", login),
        web.post("/api/auth/logout", logout),
        web.get("/api/auth/status", auth_status),
    ]
