"""The rescans' routes: stored scan reports, and the scheduler (its runtime override, a rescan now)."""

from __future__ import annotations

import voluptuous as vol
from aiohttp import web

from aniworld_daemon import wire
from aniworld_daemon.errors import NotFoundError
from aniworld_daemon.validators import validate_payload
from aniworld_daemon.web.api import PAGE, Api, page, query, read_json, respond


def routes(api: Api) -> list[web.RouteDef]:
    """The rescans' route table."""

    async def listing(request: web.Request) -> web.Response:
        params = query(request, PAGE)
        reports = await api.db.list_scans(params["limit"], params["offset"])
        total = await api.db.count_scans()
        return respond(page([wire.report_json(report) for report in reports], total, params["offset"], params["limit"]))

    async def one(request: web.Request) -> web.Response:
        scan_id = request.match_info["scan_id"]
        report = await api.db.get_scan(scan_id)
        if report is None:
            raise NotFoundError(f"no scan report {scan_id}", details={"scan_id": scan_id})
        return respond(wire.report_json(report))

    async def schedule(_: web.Request) -> web.Response:
        current = await api.commands.call("scheduler.show", {})
        return respond(current)

    async def set_schedule(request: web.Request) -> web.Response:
        body = await read_json(request)
        return respond(await api.commands.call("scheduler.configure", body))

    async def trigger(request: web.Request) -> web.Response:
        validate_payload(vol.Schema({}), await read_json(request))
        scan_id = await api.commands.call("rescan.start", {"keys": None, "trigger": "api"})
        return respond({"scan_id": scan_id, "status": "started"}, status=202)

    return [
        web.get("/api/scans", listing),
        web.get("/api/scans/{scan_id}", one),
        web.get("/api/scheduler/config", schedule),
        web.post("/api/scheduler/config", set_schedule),
        web.post("/api/scheduler/trigger-rescan", trigger),
    ]
