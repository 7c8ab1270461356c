"""The REST API through the real Application over real HTTP: every route, auth, paging, errors, the seed's flow."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from aniworld_daemon.app import Application
from aniworld_daemon.config import ApiConfig
from aniworld_daemon.errors import Unauthorized
from aniworld_daemon.models import Download, DownloadStatus, Episode, EpisodeState, Priority
from aniworld_daemon.web.auth import INGRESS_PROXY, KEY_FILE, Auth, load_or_create_key
from tests.fakesite.server import FakeSite
from tests.helpers import Daemon, StartApp, cli, minimal_config

KEY = "test-api-key-0123456789abcdef"
PASSWORD = "correct horse battery staple"
SERIES = "die-kleinen-baeren"  # three episodes, German dub on every hoster
FOLLOWED = "blade-of-dawn"  # followed from the config


def api_yaml(site: FakeSite, *, key: str | None = KEY, password: str | None = PASSWORD) -> str:
    """Lines after minimal_config's `api:` (key, password), then a daemon on the fake site that downloads and rescans
    only when asked; one series followed from the config."""
    auth = (f"  key: {key}\n" if key else "") + (f"  password: {json.dumps(password)}\n" if password else "")
    return auth + (
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "  cooldown: 1s\n  languages: [de-dub]\n  hosters: [vidoza]\n"
        "schedule:\n  run_on_start: false\n  rescan: '0 3 * * *'\n"
        "downloads:\n  auto_start: false\n  min_free_space: 0\n  retry_backoff: 1s\n"
        f"series:\n  - key: {FOLLOWED}\n    seasons: [1]\n"
    )


@dataclass
class Served:
    """A started Application and where it listens."""

    app: Application
    base: str

    def session(self, *, key: str | None = KEY, token: str | None = None) -> aiohttp.ClientSession:
        """A client session that sends the key, or a bearer token, or (both None) no credentials."""
        headers = {"Authorization": f"Bearer {token}"} if token else ({"X-Api-Key": key} if key else {})
        return aiohttp.ClientSession(base_url=self.base, headers=headers, timeout=aiohttp.ClientTimeout(total=20))


Serve = Callable[..., Any]


@pytest.fixture
def serve(fakesite: FakeSite, start_app: StartApp) -> Serve:
    """Start the real Application on `api_yaml(**options)`; returns a Served."""

    async def start(**options: Any) -> Served:
        app = await start_app(api_yaml(fakesite, **options))
        host, port = app.web.addresses[0]
        return Served(app, f"http://{host}:{port}")

    return start


@pytest.fixture
async def served(serve: Serve) -> Served:
    """The daemon with the test key and password."""
    result: Served = await serve()
    return result


@pytest.fixture
async def api(served: Served) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that sends the API key."""
    async with served.session() as session:
        yield session


async def call(session: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, JSON body or text or None) of one request."""
    kwargs: dict[str, Any] = {}
    if isinstance(body, str | bytes):
        kwargs["data"] = body
    elif body is not None:
        kwargs["json"] = body
    async with session.request(method, path, **kwargs) as response:
        if response.status == 204:
            return 204, None
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


# --- every route needs credentials, but the public ones -------------------------------------------------------------

PUBLIC = {
    ("GET", "/health"),
    ("POST", "/api/auth/login"),
    ("GET", "/api/auth/status"),
    ("GET", "/api/openapi.yaml"),
    ("GET", "/"),  # the dashboard's page and files: the page asks for a login or the key itself
    ("GET", "/static/{path}"),
}


async def test_every_route_but_the_public_ones_answers_401_without_credentials(served: Served) -> None:
    routes = sorted(
        {
            (route.method, route.resource.canonical)
            for route in served.app.web.app.router.routes()
            if route.method != "HEAD" and route.resource is not None
        }
    )
    assert len(routes) >= 40
    async with served.session(key=None) as anonymous, served.session(key="wrong-key-0123456789") as wrong:
        for method, pattern in routes:
            path = pattern.replace("{item_id}", "x").replace("{key}", FOLLOWED).replace("{scan_id}", "x")
            status, body = await call(anonymous, method, path)
            if (method, pattern) in PUBLIC:
                assert status != 401, (method, path, body)
                continue
            assert status == 401, (method, path, status, body)
            assert body["error"]["code"] == "unauthorized"
            assert (await call(wrong, method, path))[0] == 401, (method, path)
    # REST refuses a key in the query string (it would land in logs and histories).
    async with served.session(key=None) as anonymous:
        assert (await call(anonymous, "GET", f"/api/queue/status?api_key={KEY}"))[0] == 401


async def test_key_and_bearer_both_work(served: Served) -> None:
    async with served.session() as by_header, served.session(key=None, token=KEY) as by_bearer:
        assert (await call(by_header, "GET", "/api/queue/status"))[0] == 200
        assert (await call(by_bearer, "GET", "/api/queue/status"))[0] == 200


# --- errors: 400, 404, 409, 413, 422 with the field named ----------------------------------------------------------

ERRORS = [
    ("POST", "/api/queue/add", "{not json", 400, "bad_request", "body"),
    ("POST", "/api/queue/add", "[1, 2]", 400, "bad_request", "body"),
    ("POST", "/api/queue/add", {"serie_id": FOLLOWED}, 422, "validation_error", "episodes"),
    (
        "POST",
        "/api/queue/add",
        {"serie_id": FOLLOWED, "episodes": [{"season": "one", "episode": 1}]},
        422,
        "validation_error",
        "episodes[0] -> season",
    ),
    (
        "POST",
        "/api/queue/add",
        {"serie_id": "nobody", "episodes": [{"season": 1, "episode": 1}]},
        404,
        "not_found",
        None,
    ),
    ("POST", "/api/queue/add", {"serie_id": FOLLOWED, "episodes": [], "x": 1}, 422, "validation_error", None),
    ("DELETE", "/api/queue/no-such-item", None, 404, "not_found", None),
    ("POST", "/api/queue/reorder", {"item_id": "nope", "new_position": 0}, 404, "not_found", None),
    ("POST", "/api/queue/reorder", {"item_id": "nope", "new_position": -1}, 422, "validation_error", "new_position"),
    ("POST", "/api/queue/retry/nope", None, 404, "not_found", None),
    ("GET", "/api/queue?status=bogus", None, 422, "validation_error", "status"),
    ("GET", "/api/queue?limit=0", None, 422, "validation_error", "limit"),
    ("GET", "/api/queue/status?limit=x", None, 422, "validation_error", "limit"),
    ("GET", "/api/anime/nobody", None, 404, "not_found", None),
    ("PATCH", f"/api/anime/{FOLLOWED}", {"monitored": "maybe"}, 422, "validation_error", "monitored"),
    ("POST", "/api/anime/add", {"link": FOLLOWED}, 409, "conflict", None),
    ("POST", "/api/anime/add", {}, 422, "validation_error", "link"),
    ("POST", "/api/anime/rescan", {"key": "not a key!"}, 422, "validation_error", "key"),
    ("POST", "/api/queue/retry/%20", None, 422, "validation_error", "item_id"),
    ("POST", "/api/queue/add", b"\xff\xfe{", 400, "bad_request", "body"),
    ("POST", "/api/anime/search", '{"query": "\\ud800"}', 400, "bad_request", "body"),
    ("DELETE", "/api/anime/nobody", None, 404, "not_found", None),
    ("POST", "/api/anime/nobody/download", None, 404, "not_found", None),
    ("POST", "/api/anime/rescan", {"key": "nobody"}, 404, "not_found", None),
    ("GET", "/api/scans/nope", None, 404, "not_found", None),
    ("POST", "/api/scheduler/config", {"rescan": "every day"}, 422, "validation_error", "rescan"),
    ("POST", "/api/scheduler/config", {}, 422, "validation_error", "rescan"),
    ("GET", "/api/history?kind=nope", None, 422, "validation_error", "kind"),
    ("POST", "/api/auth/login", {}, 422, "validation_error", "password"),
    ("POST", "/api/queue/add", "x" * 300_000, 413, "payload_too_large", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "field"), ERRORS, ids=[f"{e[0]} {e[1]} {e[3]}" for e in ERRORS]
)
async def test_bad_requests_get_4xx_naming_the_field(
    api: aiohttp.ClientSession, method: str, path: str, body: Any, status: int, code: str, field: str | None
) -> None:
    got, answer = await call(api, method, path, body)
    assert got == status, answer
    assert answer["error"]["code"] == code
    if field is not None:
        assert answer["error"]["details"]["field"] == field, answer


# --- the seed's flow, end to end over HTTP ---------------------------------------------------------------------------


async def poll(check: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    """Await `check()` every 100 ms until it returns something truthy; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_search_add_rescan_download_clear(served: Served, api: aiohttp.ClientSession, fakesite: FakeSite) -> None:
    status, found = await call(api, "GET", "/api/search?q=kleinen")
    assert status == 200
    [hit] = [result for result in found["results"] if result["key"] == SERIES]
    status, same = await call(api, "POST", "/api/anime/search", {"query": "kleinen"})
    assert (status, same["results"]) == (200, found["results"])

    status, added = await call(
        api, "POST", "/api/anime/add", {"link": hit["url"], "languages": ["de-dub"], "seasons": [1]}
    )
    assert status == 201, added
    assert added["key"] == SERIES

    status, started = await call(api, "POST", "/api/anime/rescan", {"key": SERIES})
    assert status == 202, started

    async def report() -> Any:
        got, body = await call(api, "GET", f"/api/scans/{started['scan_id']}")
        return body if got == 200 and body["status"] != "running" else None

    finished = await poll(report, "the rescan's report")
    assert finished["status"] == "complete", finished
    status, anime = await call(api, "GET", f"/api/anime/{SERIES}")
    assert anime["missing_episodes"] == {"1": [1, 2, 3]}

    # auto_download queued them; the queue is stopped (auto_start: false) until started over HTTP
    status, queue = await call(api, "GET", "/api/queue/status")
    assert [item["episode"] for item in queue["status"]["pending_queue"]] == [1, 2, 3]
    assert queue["status"]["is_running"] is False
    fakesite.knobs.bandwidth = 600_000  # an episode takes about 3 s: progress shows
    assert (await call(api, "POST", "/api/queue/start"))[0] == 200

    async def progressing() -> Any:
        _, body = await call(api, "GET", "/api/queue/status")
        active = body["status"]["active_downloads"]
        return active if active and (active[0]["progress"] or {}).get("percent") else None

    active = await poll(progressing, "progress in /api/queue/status")
    assert 0 < active[0]["progress"]["percent"] <= 100
    fakesite.knobs.bandwidth = None

    async def completed() -> Any:
        _, body = await call(api, "GET", "/api/queue/status")
        return body if body["statistics"]["completed_count"] == 3 else None

    done = await poll(completed, "three completed downloads", 60)
    for item in done["status"]["completed_downloads"]:
        assert (served.app.config.library.path / item["file_path"]).is_file()
    status, cleared = await call(api, "DELETE", "/api/queue/completed")
    assert (status, cleared) == (200, {"cleared_count": 3})
    status, after = await call(api, "GET", "/api/queue/status")
    assert after["statistics"]["total_items"] == 0


# --- the queue: operations, paging, the cached status ---------------------------------------------------------------


async def store_items(app: Application, count: int, status: DownloadStatus = DownloadStatus.PENDING) -> list[str]:
    """`count` queue items of the followed series stored directly (seasons 1.., episode 1)."""
    now = datetime.now(UTC)
    items = [
        Download(f"item-{status.value}-{n:05d}", FOLLOWED, 100 + n, 1, Priority.NORMAL, 0, status, now)
        for n in range(count)
    ]
    added = await app.db.add_downloads(items)
    for item in added:
        if item.status is not status:
            await app.db.update_download(item.id, status=status)
    return [item.id for item in added]


async def test_status_lists_are_capped_statistics_exact_pages_walk_everything(
    served: Served, api: aiohttp.ClientSession
) -> None:
    pending = await store_items(served.app, 250)
    await store_items(served.app, 3, DownloadStatus.FAILED)
    status, body = await call(api, "GET", "/api/queue/status")
    assert status == 200
    assert len(body["status"]["pending_queue"]) == 100
    assert body["statistics"]["pending_count"] == 250
    assert body["statistics"]["failed_count"] == 3
    _, small = await call(api, "GET", "/api/queue/status?limit=5")
    assert len(small["status"]["pending_queue"]) == 5
    seen: list[str] = []
    offset = 0
    while True:
        _, chunk = await call(api, "GET", f"/api/queue?status=pending&offset={offset}&limit=100")
        assert chunk["total"] == 250
        seen += [item["id"] for item in chunk["items"]]
        offset += 100
        if offset >= chunk["total"]:
            break
    assert seen == pending  # queue order, each once
    # Unchanged queue: the same bytes; a change shows at once.
    async with api.get("/api/queue/status") as first, api.get("/api/queue/status") as second:
        assert await first.read() == await second.read()
    assert (await call(api, "DELETE", "/api/queue/", {"item_ids": pending[:10]}))[0] == 204
    _, changed = await call(api, "GET", "/api/queue/status")
    assert changed["statistics"]["pending_count"] == 240
    # Another process (a foreground `download`) claims an item: the cached answer must notice its commit.
    with sqlite3.connect(served.app.config.data_dir / "aniworld.db") as other:
        other.execute("UPDATE downloads SET status = 'downloading' WHERE id = ?", (pending[10],))
    other.close()

    async def noticed() -> Any:
        _, claimed = await call(api, "GET", "/api/queue/status")
        figures = claimed["statistics"]
        return (figures["pending_count"], figures["active_count"]) == (239, 1)

    await poll(noticed, "the status to show another process's claim", 3)


async def test_queue_operations(served: Served, api: aiohttp.ClientSession) -> None:
    status, added = await call(
        api,
        "POST",
        "/api/queue/add",
        {
            "serie_id": FOLLOWED,
            "serie_name": "Blade of Dawn",
            "episodes": [{"season": 1, "episode": n} for n in (1, 2, 3)],
        },
    )
    assert status == 201
    first, second, third = added["added_items"]
    assert (await call(api, "POST", "/api/queue/reorder", {"item_id": third, "new_position": 0}))[0] == 200
    _, page = await call(api, "GET", "/api/queue?status=pending")
    assert [item["id"] for item in page["items"]] == [third, first, second]
    for action in ("pause", "resume", "start", "stop", "pause", "pause"):  # idempotent
        assert (await call(api, "POST", f"/api/queue/{action}"))[0] == 200
    _, body = await call(api, "GET", "/api/queue/status")
    assert (body["status"]["is_paused"], body["status"]["is_running"]) == (True, False)
    assert (await call(api, "DELETE", f"/api/queue/{first}"))[0] == 204
    failed = await store_items(served.app, 2, DownloadStatus.FAILED)
    assert (await call(api, "POST", f"/api/queue/retry/{failed[0]}")) == (200, {"retried_count": 1})
    assert (await call(api, "POST", "/api/queue/retry", {"item_ids": []})) == (200, {"retried_count": 1})
    assert (await call(api, "DELETE", "/api/queue/failed")) == (200, {"cleared_count": 0})


# --- series ----------------------------------------------------------------------------------------------------------


async def test_series_routes(served: Served, api: aiohttp.ClientSession) -> None:
    status, listing = await call(api, "GET", "/api/anime")
    assert status == 200
    assert [entry["key"] for entry in listing["items"]] == [FOLLOWED]
    assert listing["total"] == 1
    status, changed = await call(api, "PATCH", f"/api/anime/{FOLLOWED}", {"monitored": False, "seasons": [1, 2]})
    assert status == 200
    assert (changed["monitored"], changed["seasons"]) == (False, [1, 2])
    status, detail = await call(api, "GET", f"/api/anime/{FOLLOWED}")
    assert detail["monitored"] is False
    assert (await call(api, "DELETE", f"/api/anime/{FOLLOWED}"))[0] == 204
    assert (await call(api, "GET", f"/api/anime/{FOLLOWED}"))[0] == 404


async def test_download_queues_the_missing_episodes_of_one_series(served: Served, api: aiohttp.ClientSession) -> None:
    await served.app.rescanner.rescan("test", [FOLLOWED], queue_missing=False)
    status, body = await call(api, "POST", f"/api/anime/{FOLLOWED}/download")
    assert status == 201, body
    assert len(body["added_items"]) == 6  # season 1 of Blade of Dawn
    assert (await call(api, "POST", f"/api/anime/{FOLLOWED}/download"))[1]["added_items"] == []


# --- scans and the scheduler ------------------------------------------------------------------------------------------


async def test_scans_are_paged_and_the_schedule_override_survives_a_restart(served: Served, serve: Serve) -> None:
    async with served.session() as api:
        for _ in range(3):
            status, started = await call(api, "POST", "/api/scheduler/trigger-rescan")
            assert (status, len(started["scan_id"])) == (202, 32)
            await served.app.rescanner.rescan("test")  # joins or follows: the trigger's scan is done after it
        status, scans = await call(api, "GET", "/api/scans?limit=2")
        assert (status, len(scans["items"])) == (200, 2)
        assert scans["total"] >= 3
        status, schedule = await call(api, "GET", "/api/scheduler/config")
        assert (schedule["source"], schedule["description"]) == ("config", "crontab '0 3 * * *'")
        status, schedule = await call(api, "POST", "/api/scheduler/config", {"rescan": "every 2h"})
        assert status == 200, schedule
        assert (schedule["source"], schedule["rescan"], schedule["description"]) == ("override", "every 2h", "every 2h")
        assert schedule["next_run"] is not None
    await served.app.stop()
    again: Served = await serve()
    async with again.session() as api:
        _, schedule = await call(api, "GET", "/api/scheduler/config")
        assert (schedule["source"], schedule["description"]) == ("override", "every 2h")
        _, schedule = await call(api, "POST", "/api/scheduler/config", {"rescan": None})
        assert (schedule["source"], schedule["description"]) == ("config", "crontab '0 3 * * *'")


# --- system: status, config, history, backups, metrics -------------------------------------------------------------


async def test_system_status_has_every_check(served: Served, api: aiohttp.ClientSession) -> None:
    status, body = await call(api, "GET", "/api/system/status")
    assert status == 200
    checks = {check["name"]: check["level"] for check in body["checks"]}
    assert checks == {
        "database": "ok",
        "library": "ok",
        "library_mounted": "ok",
        "free_space": "ok",
        "tools": "ok",
        "provider": "ok",
        "queue": "ok",
    }
    assert body["version"]
    assert body["uptime_seconds"] >= 0


async def test_an_empty_library_with_known_files_is_an_unmounted_disk(
    served: Served, api: aiohttp.ClientSession
) -> None:
    known = Episode(FOLLOWED, 1, 1, state=EpisodeState.DOWNLOADED, file_path="Blade/x.mp4", file_size=1)
    await served.app.db.upsert_episodes([known])
    _, body = await call(api, "GET", "/api/system/status")
    [check] = [check for check in body["checks"] if check["name"] == "library_mounted"]
    assert check["level"] == "error", check
    assert "mounted" in check["message"]
    _, health = await call(api, "GET", "/health")
    assert health["status"] == "degraded"


async def test_config_is_shown_without_secrets_and_validated_and_reloaded(
    served: Served, api: aiohttp.ClientSession
) -> None:
    status, config = await call(api, "GET", "/api/config")
    assert status == 200
    assert config["api"]["key"] == config["api"]["password"] == "**********"
    good = served.app.config.source.read_text(encoding="utf-8")
    status, verdict = await call(api, "POST", "/api/config/validate", good)
    assert (status, verdict) == (200, {"valid": True, "errors": []})
    status, verdict = await call(
        api, "POST", "/api/config/validate", good.replace("retry_backoff: 1s", "retry_backoff: soon")
    )
    assert status == 200
    assert verdict["valid"] is False
    [line] = verdict["errors"]
    assert "config.yaml:" in line, line
    assert "downloads -> retry_backoff" in line, line
    assert (await call(api, "POST", "/api/config/reload"))[0] == 200
    served.app.config.source.write_text(good.replace("requests_per_second: 500", "requests_per_second: lots"))
    status, refused = await call(api, "POST", "/api/config/reload")
    assert status == 422
    assert any("requests_per_second" in line for line in refused["error"]["details"]["errors"])


async def test_history_backups_and_metrics(served: Served, api: aiohttp.ClientSession) -> None:
    status, history = await call(api, "GET", "/api/history?limit=5")
    assert status == 200
    assert set(history) == {"items", "total", "offset", "limit"}
    status, made = await call(api, "POST", "/api/system/backup")
    assert status == 201
    status, listing = await call(api, "GET", "/api/system/backups")
    assert [backup["name"] for backup in listing["backups"]] == [made["name"]]
    backup = served.app.config.data_dir / "backups" / made["name"]
    assert backup.stat().st_size == made["size"] > 0
    await store_items(served.app, 4)
    async with api.get("/metrics") as response:
        assert response.status == 200
        text = await response.text()
    assert 'aniworld_queue_items{state="pending"} 4.0' in text
    assert 'aniworld_http_requests_total{method="POST",route="/api/system/backup",status="201"} 1.0' in text
    assert "aniworld_last_scan_duration_seconds" in text
    # At least the task serving this very request.
    [tasks] = [line.split()[1] for line in text.splitlines() if line.startswith("aniworld_asyncio_tasks ")]
    assert float(tasks) >= 1


# --- auth: the key file, login sessions, the rate limit, ingress, secrets -------------------------------------------


async def test_generated_key_is_private_and_printed_by_token(serve: Serve) -> None:
    served: Served = await serve(key=None)
    path = served.app.config.data_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text(encoding="utf-8").strip()
    assert len(key) >= 32
    code, out, err = await cli("token", "-c", str(served.app.config.source))
    assert (code, out.strip()) == (0, key), err
    async with served.session(key=key) as api:
        assert (await call(api, "GET", "/api/queue/status"))[0] == 200


async def test_login_rate_limit_session_restart_logout(served: Served, serve: Serve) -> None:
    async with served.session(key=None) as anonymous:
        for _ in range(5):
            assert (await call(anonymous, "POST", "/api/auth/login", {"password": "wrong"}))[0] == 401
        async with anonymous.post("/api/auth/login", json={"password": PASSWORD}) as response:
            assert response.status == 429
            assert 0 < int(response.headers["Retry-After"]) <= 61
    served.app.auth.limiter = type(served.app.auth.limiter)()  # a minute later
    async with served.session(key=None) as anonymous:
        status, session = await call(anonymous, "POST", "/api/auth/login", {"password": PASSWORD})
        assert status == 200
        assert session["token_type"] == "bearer"
    token = session["access_token"]
    await served.app.stop()
    again: Served = await serve()
    async with again.session(key=None, token=token) as api:
        assert (await call(api, "GET", "/api/queue/status"))[0] == 200  # survived the restart
        assert (await call(api, "GET", "/api/auth/status"))[1]["method"] == "session"
        assert (await call(api, "POST", "/api/auth/logout"))[0] == 204
        assert (await call(api, "GET", "/api/queue/status"))[0] == 401


async def test_ingress_is_trusted_only_under_the_supervisor(tmp_path: Path, served: Served) -> None:
    config = ApiConfig("127.0.0.1", 8099, KEY, None)

    def request() -> Any:
        transport = _Transport()
        return make_mocked_request("GET", "/api/queue/status", transport=transport)

    under_supervisor = Auth(config, tmp_path, served.app.db, environ={"SUPERVISOR_TOKEN": "x"})
    assert await under_supervisor.authenticate(request()) == "ingress"
    elsewhere = Auth(config, tmp_path, served.app.db, environ={})
    with pytest.raises(Unauthorized):
        await elsewhere.authenticate(request())


class _Transport:
    """A transport whose peer is the Supervisor's ingress proxy."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (INGRESS_PROXY, 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


async def test_no_secret_reaches_a_response_or_the_log(
    served: Served, api: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    bodies = []
    for method, path, body in [
        ("GET", "/api/config", None),
        ("GET", "/api/system/status", None),
        ("POST", "/api/auth/login", {"password": "nope"}),
        ("POST", "/api/auth/login", {"password": PASSWORD}),
        ("GET", "/api/auth/status", None),
        ("GET", "/metrics", None),
        ("POST", "/api/config/reload", None),
    ]:
        async with api.request(method, path, json=body) as response:
            bodies.append(await response.text())
    text = "\n".join(bodies) + "\n".join(record.getMessage() for record in caplog.records)
    assert KEY not in text
    assert PASSWORD not in text


def test_api_key_file_mode_survives_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        key = load_or_create_key(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path) == key


async def test_the_daemon_log_and_its_answers_never_hold_a_secret(
    fakesite: FakeSite, write_config: Callable[..., Path], port: int, daemon: Callable[..., Daemon]
) -> None:
    """A real daemon at debug level, its secrets partly from !secret: every answer of a tour of the API, and the
    whole log, are searched for the key, the password and the MQTT password."""
    mqtt_password = "mqtt-secret-value-4711"
    mqtt_host = "broker-from-secrets.example"  # not a secret field: hidden because it came from !secret
    config = write_config(
        minimal_config(port, api_yaml(fakesite))
        + "logging:\n  level: debug\nmqtt:\n  enabled: false\n  host: !secret mqtt_host\n"
        + "  password: !secret mqtt_password\n"
    )
    secrets = f"mqtt_password: {mqtt_password}\nmqtt_host: {mqtt_host}\n"
    (config.parent / "secrets.yaml").write_text(secrets, encoding="utf-8")
    process = daemon(config)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(base_url=base, timeout=aiohttp.ClientTimeout(total=10)) as probe:

        async def healthy() -> bool:
            try:
                async with probe.get("/health") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await process.until(lambda: "Ready" in process.log, "the daemon to be ready", 30)
        assert await healthy()
    answers = []
    async with aiohttp.ClientSession(base_url=base, headers={"X-Api-Key": KEY}) as api:
        for method, path, body in [
            ("GET", "/api/config", None),
            ("GET", "/api/system/status", None),
            ("GET", "/api/queue/status", None),
            ("GET", "/api/anime", None),
            ("GET", f"/api/anime/{FOLLOWED}", None),
            ("GET", "/api/scheduler/config", None),
            ("GET", "/api/history", None),
            ("GET", "/metrics", None),
            ("POST", "/api/auth/login", {"password": "wrong"}),
            ("POST", "/api/auth/login", {"password": PASSWORD}),
            ("GET", "/api/auth/status", None),
            ("POST", "/api/config/reload", None),
            ("POST", "/api/config/validate", config.read_text(encoding="utf-8")),
        ]:
            kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
            async with api.request(method, path, **kwargs) as response:
                assert response.status < 500, (method, path)
                answers.append(await response.text())
    process.signal(signal.SIGTERM)
    assert await process.exited(30) == 0
    everything = "\n".join(answers) + process.log
    assert "**********" in answers[0]
    for secret in (KEY, PASSWORD, mqtt_password, mqtt_host):
        assert secret not in everything, secret
