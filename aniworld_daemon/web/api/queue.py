"""The queue's routes: its status (capped lists, exact statistics, cached per change), pages, and every operation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable
from typing import Any

import voluptuous as vol
from aiohttp import web

from aniworld_daemon import wire
from aniworld_daemon.commands import episode_place, item_ids, priority
from aniworld_daemon.errors import NotFoundError
from aniworld_daemon.models import DownloadStatus, Priority
from aniworld_daemon.validators import (
    int_range,
    non_empty_string,
    one_of,
    optional_string,
    series_key,
    validate_payload,
)
from aniworld_daemon.web.api import (
    DEFAULT_PAGE,
    MAX_PAGE,
    PAGING,
    Api,
    call_as,
    ok,
    page,
    query,
    query_int,
    read_json,
    respond,
)

STATUS_LIMIT = vol.Schema({vol.Optional("limit", default=str(DEFAULT_PAGE)): query_int(0, MAX_PAGE)})
ONE_STATE = vol.Schema(
    {
        vol.Optional("status", default=DownloadStatus.PENDING.value): one_of(
            "status", tuple(status.value for status in DownloadStatus)
        ),
        **PAGING,
    }
)
ADD_BODY = vol.Schema(
    {
        vol.Required("serie_id"): series_key,
        vol.Optional("serie_folder"): optional_string,  # the seed sends them; the daemon knows both already
        vol.Optional("serie_name"): optional_string,
        vol.Required("episodes"): vol.All(
            [episode_place],
            vol.Length(min=1, msg='give at least one episode, like [{"season": 1, "episode": 3}]'),
        ),
        vol.Optional("priority", default=Priority.NORMAL.value): priority,
    }
)
IDS_BODY = vol.Schema({vol.Required("item_ids"): item_ids})
RETRY_BODY = vol.Schema({vol.Optional("item_ids", default=[]): vol.Any([], item_ids)})
REORDER_BODY = vol.Schema({vol.Required("item_id"): non_empty_string, vol.Required("new_position"): int_range(0)})


class QueueStatusCache:
    """`GET /api/queue/status` serialised once per change: a request while nothing changed gets the same bytes.

    When the queue changed, the first request rebuilds the answer and the requests arriving meanwhile wait for that
    one build instead of each reading and serialising the queue again.
    """

    def __init__(self) -> None:
        self._bodies: dict[int, tuple[Hashable, asyncio.Future[bytes]]] = {}

    async def body(self, api: Api, limit: int) -> bytes:
        """The status JSON with lists of at most `limit` items, from the cache unless the queue changed."""
        revision = await api.downloader.revision()
        cached = self._bodies.get(limit)
        if cached is not None and cached[0] == revision and not (cached[1].done() and cached[1].exception()):
            return await asyncio.shield(cached[1])
        if len(self._bodies) > 8:  # a handful of limits in use at once; forget the rest
            self._bodies.clear()
        build = asyncio.ensure_future(self._build(api, limit))
        # Every waiter may have gone (clients that hung up): the build's failure is then still taken, not left to GC.
        build.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._bodies[limit] = (revision, build)
        return await asyncio.shield(build)

    @staticmethod
    async def _build(api: Api, limit: int) -> bytes:
        snapshot = await api.downloader.status(limit=limit)
        series = {entry.key: entry for entry in await api.series.list()}
        return json.dumps(wire.queue_json(snapshot, series), separators=(",", ":"), ensure_ascii=False).encode()


def routes(api: Api) -> list[web.RouteDef]:
    """The queue's route table."""
    cache = QueueStatusCache()

    async def status(request: web.Request) -> web.Response:
        limit = query(request, STATUS_LIMIT)["limit"]
        return web.Response(body=await cache.body(api, limit), content_type="application/json")

    async def one_state(request: web.Request) -> web.Response:
        params = query(request, ONE_STATE)
        state = DownloadStatus(params["status"])
        items = await api.db.list_downloads((state,), limit=params["limit"], offset=params["offset"])
        total = (await api.db.count_downloads_by_status())[state]
        series = {entry.key: entry for entry in await api.series.list()}
        live = {entry.item.id: entry.progress for entry in api.downloader.active()}
        return respond(
            page(
                [wire.item_json(item, series, live.get(item.id)) for item in items],
                total,
                params["offset"],
                params["limit"],
            )
        )

    async def add(request: web.Request) -> web.Response:
        body = validate_payload(ADD_BODY, await read_json(request))
        added = await api.commands.call(
            "queue.add", {"series": body["serie_id"], "episodes": body["episodes"], "priority": body["priority"]}
        )
        return respond(
            {
                "status": "success",
                "added_items": [item.id for item in added],
                "message": f"queued {len(added)} of {len(body['episodes'])} episode(s)"
                + ("; the others are queued already" if len(added) < len(body["episodes"]) else ""),
            },
            status=201,
        )

    async def remove_one(request: web.Request) -> web.Response:
        item_id = request.match_info["item_id"]
        if not await call_as(api, "queue.remove", {"ids": [item_id]}, {"ids": "item_id"}):
            raise NotFoundError(f"queue item {item_id} not found", details={"id": item_id})
        return web.Response(status=204)

    async def remove_many(request: web.Request) -> web.Response:
        body = validate_payload(IDS_BODY, await read_json(request))
        await api.commands.call("queue.remove", {"ids": body["item_ids"]})
        return web.Response(status=204)

    def control(command: str, done: str) -> Any:
        async def handler(_: web.Request) -> web.Response:
            await api.commands.call(command, {})
            return ok(done)

        return handler

    async def reorder(request: web.Request) -> web.Response:
        body = validate_payload(REORDER_BODY, await read_json(request))
        await api.commands.call("queue.reorder", {"id": body["item_id"], "position": body["new_position"]})
        return ok(f"moved {body['item_id']} to position {body['new_position']}")

    def clear(command: str) -> Any:
        async def handler(_: web.Request) -> web.Response:
            return respond({"cleared_count": await api.commands.call(command, {})})

        return handler

    async def retry(request: web.Request) -> web.Response:
        body = validate_payload(RETRY_BODY, await read_json(request))
        count = await api.commands.call("queue.retry", {"ids": body["item_ids"] or None})
        return respond({"retried_count": count})

    async def retry_one(request: web.Request) -> web.Response:
        item_id = request.match_info["item_id"]
        if not await call_as(api, "queue.retry", {"ids": [item_id]}, {"ids": "item_id"}):
            raise NotFoundError(f"no failed or cancelled queue item {item_id}", details={"id": item_id})
        return respond({"retried_count": 1})

    return [
        web.get("/api/queue/status", status),
        web.get("/api/queue", one_state),
        web.post("/api/queue/add", add),
        web.post("/api/queue/start", control("queue.start", "queue started")),
        web.post("/api/queue/stop", control("queue.stop", "queue stopped")),
        web.post("/api/queue/pause", control("queue.pause", "queue paused")),
        web.post("/api/queue/resume", control("queue.resume", "queue resumed")),
        web.post("/api/queue/reorder", reorder),
        web.post("/api/queue/retry", retry),
        web.post("/api/queue/retry/{item_id}", retry_one),
        # The fixed names before the {item_id} pattern: routes match in the order they are added.
        web.delete("/api/queue/completed", clear("queue.clear_completed")),
        web.delete("/api/queue/failed", clear("queue.clear_failed")),
        web.delete("/api/queue/", remove_many),
        web.delete("/api/queue/{item_id}", remove_one),
    ]
