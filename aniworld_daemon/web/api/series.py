"""The series' routes (`/api/anime...`, `/api/search`): following, details, search, rescans and downloads."""

from __future__ import annotations

import voluptuous as vol
from aiohttp import web

from aniworld_daemon import wire
from aniworld_daemon.errors import NotFoundError
from aniworld_daemon.models import Series
from aniworld_daemon.provider.urls import series_url
from aniworld_daemon.validators import non_empty_string, validate_payload
from aniworld_daemon.web.api import PAGE, Api, call_as, page, query, read_json, respond

SEARCH_QUERY = vol.Schema({vol.Required("q"): non_empty_string})
SEARCH_BODY = vol.Schema({vol.Required("query"): non_empty_string})


def routes(api: Api) -> list[web.RouteDef]:
    """The series' route table."""

    def link(series: Series) -> str:
        return series_url(api.config().provider.base_url, series.key)

    async def followed(key: str) -> Series:
        series = await api.series.find(key)
        if series is None:
            raise NotFoundError(f"series {key} is not followed", details={"serie_id": key})
        return series

    async def listing(request: web.Request) -> web.Response:
        params = query(request, PAGE)
        everything = await api.series.list()
        chosen = everything[params["offset"] : params["offset"] + params["limit"]]
        items = [wire.anime_json(series, await api.series.episodes(series.key), link(series)) for series in chosen]
        return respond(page(items, len(everything), params["offset"], params["limit"]))

    async def detail(request: web.Request) -> web.Response:
        series = await followed(request.match_info["key"])
        return respond(wire.anime_detail_json(series, await api.series.episodes(series.key), link(series)))

    async def search_body(request: web.Request) -> web.Response:
        body = validate_payload(SEARCH_BODY, await read_json(request))
        results = await api.commands.call("search", {"query": body["query"]})
        return respond(wire.search_json(body["query"], results))

    async def search_query(request: web.Request) -> web.Response:
        text = query(request, SEARCH_QUERY)["q"]
        results = await api.commands.call("search", {"query": text})
        return respond(wire.search_json(text, results))

    async def add(request: web.Request) -> web.Response:
        body = await read_json(request)
        arguments = {"series": body.get("link")} | {
            name: body[name] for name in ("languages", "seasons", "monitored") if name in body
        }
        unknown = sorted(set(body) - {"link", "languages", "seasons", "monitored"})
        if unknown:
            validate_payload(vol.Schema({}), {name: body[name] for name in unknown})  # names the extra field
        series = await call_as(api, "series.follow", arguments, {"series": "link"})
        return respond(wire.anime_detail_json(series, await api.series.episodes(series.key), link(series)), status=201)

    async def remove(request: web.Request) -> web.Response:
        await api.commands.call("series.unfollow", {"key": request.match_info["key"]})
        return web.Response(status=204)

    async def update(request: web.Request) -> web.Response:
        body = await read_json(request)
        if "key" in body:  # the series is the one in the path; a key in the body would only be ignored
            validate_payload(vol.Schema({}), {"key": body["key"]})
        series = await api.commands.call("series.update", {**body, "key": request.match_info["key"]})
        return respond(wire.anime_detail_json(series, await api.series.episodes(series.key), link(series)))

    async def download(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        added = await api.commands.call("series.download_missing", {"key": key})
        return respond(
            {
                "status": "success",
                "added_items": [item.id for item in added],
                "message": f"queued {len(added)} missing episode(s) of {key}",
            },
            status=201,
        )

    async def rescan(request: web.Request) -> web.Response:
        body = await read_json(request)
        keys = [body["key"]] if body.get("key") is not None else None
        unknown = sorted(set(body) - {"key"})
        if unknown:
            validate_payload(vol.Schema({}), {name: body[name] for name in unknown})
        scan_id = await call_as(api, "rescan.start", {"keys": keys, "trigger": "api"}, {"keys": "key"})
        return respond({"scan_id": scan_id, "status": "started"}, status=202)

    return [
        web.get("/api/anime", listing),
        web.post("/api/anime/search", search_body),
        web.get("/api/search", search_query),
        web.post("/api/anime/add", add),
        web.post("/api/anime/rescan", rescan),
        web.get("/api/anime/{key}", detail),
        web.delete("/api/anime/{key}", remove),
        web.patch("/api/anime/{key}", update),
        web.post("/api/anime/{key}/download", download),
    ]
