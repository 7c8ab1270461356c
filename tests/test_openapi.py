"""The REST contract (aniworld_daemon/web/openapi.yaml) against the real Application over real HTTP.

One daemon serves the whole module, on 127.0.0.1 against the in-process fake site, with an API key and a password, one
series followed from the config and a queue seeded in every state. Nothing downloads: the download window is closed
for the test's duration, so even a `POST /api/queue/start` among the generated calls cannot start a transfer.

Schemathesis generates requests for every operation of the contract (valid ones and ones that break the contract's
request schemas) and checks each answer: no 5xx, a documented status, the documented content type and headers, a body
of the documented schema. The generated requests are blocking (`requests`), so they run in a worker thread while the
daemon and the fake site keep serving on the event loop. Every operation also runs once without credentials, and the
operations kept out of the generated calls are called here in a fixed order instead (see EXPLICIT_ONLY).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import aniworld_daemon.web
from aniworld_daemon.app import Application
from aniworld_daemon.config import load_config
from aniworld_daemon.models import DownloadStatus
from aniworld_daemon.web.auth import LOGIN_ATTEMPTS, PUBLIC_ROUTES
from tests.fakesite.core import Media
from tests.fakesite.server import FakeSite
from tests.helpers import free_port, minimal_config

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

KEY = "openapi-contract-key-0123456789"
PASSWORD = "contract password 42"
FOLLOWED = "blade-of-dawn"  # followed from the config (season 1: six episodes on the fake site)
SERIES = "die-kleinen-baeren"  # followed, changed and unfollowed by test_series_lifecycle
AUTH = {"X-Api-Key": KEY}
EXAMPLES = int(os.environ.get("OPENAPI_EXAMPLES", "10"))  # generated requests per operation and mode; more: deeper
TIMEOUT = 15.0  # seconds per request

CONTRACT = Path(aniworld_daemon.web.__file__).with_name("openapi.yaml")
DOCUMENT: dict[str, Any] = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
Operation = APIOperation[Any, Any, Any, Any]
Request = Case[Operation]


def load_operations(path: Path) -> dict[str, Operation]:
    """The contract's operations by label (`GET /api/queue`); an operation schemathesis cannot read fails here."""
    operations: dict[str, Operation] = {}
    for result in schemathesis.openapi.from_path(path).get_all_operations():
        assert isinstance(result, Ok), f"web/openapi.yaml: {result.err()}"
        operations[result.ok().label] = result.ok()
    return operations


OPERATIONS = load_operations(CONTRACT)
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Operations not among the generated calls, each called by a deterministic test instead.
EXPLICIT_ONLY = {
    # Re-reads the daemon's config file: test_config_reload calls it with a valid and with an invalid file.
    "POST /api/config/reload": "test_config_reload",
    # Five wrong passwords a minute from one client trip the rate limit, which would turn test_login's correct
    # password into a 429: test_login calls it in a fixed order (right password, logout, wrong ones, the 429).
    "POST /api/auth/login": "test_login",
}
GENERATED = sorted(set(OPERATIONS) - set(EXPLICIT_ONLY))
# Operations whose valid generated requests also use path parameters that exist (Served.known), so they reach the
# object and not only its 404. Not the DELETEs: they would remove the seeded objects the other operations show.
ON_KNOWN_OBJECTS = {
    "GET /api/anime/{key}",
    "PATCH /api/anime/{key}",
    "POST /api/anime/{key}/download",
    "GET /api/scans/{scan_id}",
    "POST /api/queue/retry/{item_id}",
}


def operation_document(label: str) -> dict[str, Any]:
    """The contract's operation object of `METHOD /path`."""
    method, path = label.split(" ", 1)
    operation: dict[str, Any] = DOCUMENT["paths"][path][method.lower()]
    return operation


def is_public(label: str) -> bool:
    """Whether the contract lets the operation through without credentials (`security: []`)."""
    security: list[dict[str, list[str]]] = operation_document(label).get("security", DOCUMENT["security"])
    return not security


def has_inputs(label: str) -> bool:
    """Whether the operation has anything to break: parameters, a body, or credentials."""
    path = label.split(" ", 1)[1]
    operation = operation_document(label)
    parameters = [*DOCUMENT["paths"][path].get("parameters", []), *operation.get("parameters", [])]
    return bool(parameters or "requestBody" in operation or not is_public(label))


def closed_window() -> str:
    """A daily download window (local time) that opens six hours from now: no download starts during the test."""
    now = datetime.now().astimezone()
    start, end = now + timedelta(hours=6), now + timedelta(hours=7)
    return f"{start:%H:%M}-{end:%H:%M}"


def daemon_yaml(site: FakeSite, port: int) -> str:
    """The test daemon's config: the API key and password, the fake site, one followed series, a closed window."""
    extra = (
        f"  key: {KEY}\n  password: {json.dumps(PASSWORD)}\n"
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "schedule:\n  run_on_start: false\n"
        f"downloads:\n  auto_start: false\n  min_free_space: 0\n  window: {closed_window()}\n"
        f"series:\n  - key: {FOLLOWED}\n    seasons: [1]\n"
    )
    return minimal_config(port, extra)


@dataclass
class Served:
    """The running daemon: the Application, its base URL, its config file, and path parameters that exist in it."""

    app: Application
    base: str
    config_file: Path
    known: dict[str, str]  # path parameter name -> a value that names an existing object


async def seed(app: Application) -> dict[str, str]:
    """Give every listing something to show: a scan report, queue items in every state, a backup.

    Returns the path parameters of existing objects: the followed series, the scan report and the failed item.
    """
    scan = await app.commands.call("rescan", {"keys": [FOLLOWED]})  # queues the six missing episodes (auto_download)
    pending = await app.db.list_downloads((DownloadStatus.PENDING,))
    assert len(pending) >= 4, f"the seed rescan queued {len(pending)} items"
    now = datetime.now(UTC)
    # Straight into the database: the closed window keeps the engine from ever getting that far itself.
    await app.db.update_download(
        pending[0].id,
        status=DownloadStatus.FAILED,
        attempts=5,
        error_code="hoster_error",
        error_message="every hoster failed",
        started_at=now,
        finished_at=now,
    )
    await app.db.update_download(
        pending[1].id,
        status=DownloadStatus.COMPLETED,
        attempts=1,
        bytes_downloaded=12_345_678,
        bytes_total=12_345_678,
        file_path="Blade of Dawn (2015)/Season 01/episode.mp4",
        started_at=now,
        finished_at=now,
    )
    await app.db.update_download(pending[2].id, status=DownloadStatus.CANCELLED, bytes_downloaded=1_000_000)
    await app.commands.call("backup.create", {})
    return {"key": FOLLOWED, "scan_id": scan.report.id, "item_id": pending[0].id}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(media: Media, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """One daemon for the whole module, on the fake site (stopped before the site)."""
    folder = tmp_path_factory.mktemp("openapi")
    async with FakeSite(media) as site:
        port = free_port()
        config_file = folder / "config.yaml"
        config_file.write_text(daemon_yaml(site, port), encoding="utf-8")
        application = Application(load_config(config_file))
        await application.start()
        try:
            known = await seed(application)
            yield Served(application, f"http://127.0.0.1:{port}", config_file, known)
        finally:
            await application.stop()


def call(served: Served, case: Request, headers: dict[str, str] | None) -> Response:
    """Send a case (blocking) and check the answer against the contract; raises the checks' failures."""
    response = case.call(base_url=served.base, headers=headers, timeout=TIMEOUT)
    case.validate_response(response, checks=CHECKS, headers=headers)
    return response


async def request(
    served: Served,
    label: str,
    status: int,
    *,
    headers: dict[str, str] | None = None,
    **parts: Any,
) -> Any:
    """Call `label` with fixed `parts` (path_parameters, query, body, media_type) and the API key; check its answer.

    The answer must conform to the contract and have `status`; returns its JSON body (None when it has none).
    """
    case = OPERATIONS[label].Case(**parts)
    response = await asyncio.to_thread(call, served, case, AUTH if headers is None else headers)
    assert response.status_code == status, f"{label} {parts}: {response.status_code} {response.text[:500]}"
    return response.json() if response.content and "json" in response.headers.get("content-type", [""])[0] else None


# --------------------------------------------------------------------------------------------- the contract itself


async def test_every_route_is_in_the_contract(served: Served) -> None:
    """The routes the app registers and the operations of the contract are the same set; public ones agree too."""
    registered = {
        (route.method, route.resource.canonical)
        for route in served.app.web.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {
        (method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item if method in HTTP_METHODS
    }
    assert registered - documented == set(), "routes missing from web/openapi.yaml"
    assert documented - registered == set(), "operations in web/openapi.yaml that the app does not serve"
    public = {label.split(" ", 1)[1] for label in OPERATIONS if is_public(label)}
    assert public == PUBLIC_ROUTES
    # Every operation kept out of the generated calls has the test that calls it instead.
    assert all(callable(globals().get(test)) for test in EXPLICIT_ONLY.values()), EXPLICIT_ONLY
    assert set(EXPLICIT_ONLY) | set(ON_KNOWN_OBJECTS) <= set(OPERATIONS)


async def test_openapi_route_serves_the_contract(served: Served) -> None:
    """`GET /api/openapi.yaml` answers without credentials with this very file, as YAML."""
    response = await asyncio.to_thread(requests.get, f"{served.base}/api/openapi.yaml", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == "application/yaml"
    assert response.content == CONTRACT.read_bytes()


# --------------------------------------------------------------------------------------------- generated requests


def exercise(served: Served, operation: Operation, mode: GenerationMode) -> int:
    """Send EXAMPLES generated cases of one operation with the API key; the first non-conforming answer raises.

    Returns how many requests were sent.
    """
    sent = 0
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE and operation.label in ON_KNOWN_OBJECTS:
        names = [parameter.name for parameter in operation.path_parameters]
        known = {name: served.known[name] for name in names}
        strategy = strategy | operation.as_strategy(generation_mode=mode, path_parameters=known)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],  # no shrinking: a failure is reported with its request as generated
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=strategy)
    def check(case: Request) -> None:
        nonlocal sent
        sent += 1
        # Generated credentials are replaced by the key: these calls test the operation, not the authentication.
        call(served, case, {**AUTH, "Authorization": f"Bearer {KEY}"})

    check()
    return sent


@pytest.mark.parametrize("label", GENERATED)
async def test_generated_requests_conform(served: Served, label: str) -> None:
    """Valid and contract-breaking requests of one operation: every answer is documented, none is a 5xx.

    An operation without inputs (`GET /health`, `GET /api/openapi.yaml`, `GET /api/auth/status`) has nothing to
    break: it gets the valid requests only.
    """
    operation = OPERATIONS[label]
    sent = await asyncio.to_thread(exercise, served, operation, GenerationMode.POSITIVE)
    if has_inputs(label):
        sent += await asyncio.to_thread(exercise, served, operation, GenerationMode.NEGATIVE)
    assert sent >= 1


# --------------------------------------------------------------------------------------------- authentication


def placeholder_case(operation: Operation, **parts: Any) -> Request:
    """A case of `operation` with placeholder path parameters and `parts` (no body, query or credentials but these)."""
    names = [parameter.name for parameter in operation.path_parameters]
    return operation.Case(path_parameters=dict.fromkeys(names, "placeholder"), **parts)


async def test_every_private_operation_needs_credentials(served: Served) -> None:
    """Every operation once without credentials: 401 unless public; with a wrong key or the key in the URL too."""
    problems: list[str] = []
    for label, operation in OPERATIONS.items():
        case = placeholder_case(operation)
        response = await asyncio.to_thread(call, served, case, None)
        if is_public(label):
            if response.status_code == 401:
                problems.append(f"{label} is public but answered 401 without credentials")
        elif response.status_code != 401:
            problems.append(f"{label} answered {response.status_code} without credentials: {response.text[:200]}")
    assert not problems, "\n".join(problems)

    wrong = await asyncio.to_thread(
        call, served, placeholder_case(OPERATIONS["GET /api/queue"]), {"X-Api-Key": "x" * 20}
    )
    assert wrong.status_code == 401
    in_url = OPERATIONS["GET /api/queue/status"].Case(query={"api_key": KEY})
    response = await asyncio.to_thread(call, served, in_url, None)
    assert response.status_code == 401, "the API key in the URL must be refused"
    bearer = {"Authorization": f"Bearer {KEY}"}
    await request(served, "GET /api/queue/status", 200, headers=bearer)
    assert await request(served, "GET /api/auth/status", 200, headers=bearer) == {
        "authenticated": True,
        "method": "key",
        "password_login": True,
    }
    anonymous = await request(served, "GET /api/auth/status", 200, headers={})
    assert anonymous == {"authenticated": False, "method": None, "password_login": True}


# --------------------------------------------------------------------------------------------- bodies and fields

BODY_OPERATIONS = sorted(label for label in OPERATIONS if "requestBody" in operation_document(label))


def body_media_type(label: str) -> str:
    """The first media type the contract documents for the operation's body."""
    content: dict[str, Any] = operation_document(label)["requestBody"]["content"]
    return next(iter(content))


async def test_unreadable_bodies_are_bad_requests(served: Served) -> None:
    """A body that is not UTF-8, or names a charset nobody knows, is a 400 bad_request on every route with a body."""
    problems: list[str] = []
    for label in BODY_OPERATIONS:  # the login too: a body it cannot read is no failed login
        media_type = body_media_type(label)
        unreadable = [
            ({"Content-Type": media_type}, b"\xff\xfe{"),
            ({"Content-Type": f"{media_type}; charset=no-such-charset"}, b"{}"),
        ]
        for content_type, body in unreadable:
            case = placeholder_case(OPERATIONS[label], body=body, media_type=media_type)
            headers = {**AUTH, **content_type}
            response = await asyncio.to_thread(case.call, base_url=served.base, headers=headers, timeout=TIMEOUT)
            if response.status_code != 400:
                problems.append(f"{label} ({content_type['Content-Type']}, {body!r}): {response.status_code}")
            else:
                case.validate_response(response, checks=CHECKS, headers=headers)  # the documented 400
    assert not problems, "\n".join(problems)


async def test_oversized_bodies_are_refused(served: Served) -> None:
    """A body of more than 256 KiB: 413 payload_too_large (a configuration to validate: 400, it says why)."""
    for label in BODY_OPERATIONS:
        media_type = body_media_type(label)
        case = placeholder_case(OPERATIONS[label], body=b" " * (257 * 1024), media_type=media_type)
        response = await asyncio.to_thread(call, served, case, {**AUTH, "Content-Type": media_type})
        expected = 400 if label == "POST /api/config/validate" else 413
        assert response.status_code == expected, f"{label}: {response.status_code} {response.text[:300]}"


# Bodies and queries with one bad field, and the field `details.field` must name: the one the client sent.
BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("GET /api/queue", {"query": {"limit": 0}}, "limit"),
    ("GET /api/history", {"query": {"kind": "scan", "offset": -1}}, "offset"),
    ("GET /api/search", {"query": {"q": " "}}, "q"),
    (
        "POST /api/queue/add",
        {"body": {"serie_id": FOLLOWED, "episodes": [{"season": -1, "episode": 1}]}},
        "episodes[0] -> season",
    ),
    ("POST /api/queue/reorder", {"body": {"item_id": "x", "new_position": -1}}, "new_position"),
    ("DELETE /api/queue/", {"body": {"item_ids": []}}, "item_ids"),
    ("POST /api/anime/search", {"body": {"query": ""}}, "query"),
    ("POST /api/anime/add", {"body": {"link": "not a series!"}}, "link"),
    ("POST /api/anime/add", {"body": {"link": SERIES, "languages": ["klingon"]}}, "languages[0]"),
    ("POST /api/anime/rescan", {"body": {"key": "not a key!"}}, "key"),
    ("PATCH /api/anime/{key}", {"path_parameters": {"key": FOLLOWED}, "body": {"seasons": [-1]}}, "seasons[0]"),
    ("POST /api/scheduler/config", {"body": {"rescan": "every fortnight"}}, "rescan"),
    ("POST /api/scheduler/trigger-rescan", {"body": {"keys": [FOLLOWED]}}, "keys"),
    ("POST /api/queue/retry/{item_id}", {"path_parameters": {"item_id": " "}}, "item_id"),
    ("DELETE /api/queue/{item_id}", {"path_parameters": {"item_id": " "}}, "item_id"),
    ("DELETE /api/anime/{key}", {"path_parameters": {"key": "not_a_key"}}, "key"),
]


@pytest.mark.parametrize(("label", "parts", "field"), BAD_FIELDS, ids=[f"{row[0]} {row[2]}" for row in BAD_FIELDS])
async def test_validation_errors_name_the_field_sent(
    served: Served, label: str, parts: dict[str, Any], field: str
) -> None:
    """A 422 names the bad field as the request spelled it, not as the command behind the route calls it."""
    error = await request(served, label, 422, **parts)
    assert error["error"]["details"]["field"] == field, error


# --------------------------------------------------------------------------------------------- fixed sequences


async def wait_for_scan(served: Served, scan_id: str, within: float = 30.0) -> dict[str, Any]:
    """Poll `GET /api/scans/{scan_id}` until the scan is no longer running; its report."""
    deadline = time.monotonic() + within
    while True:
        report: dict[str, Any] = await request(
            served, "GET /api/scans/{scan_id}", 200, path_parameters={"scan_id": scan_id}
        )
        if report["status"] != "running":
            return report
        assert time.monotonic() < deadline, f"scan {scan_id} still running after {within} s"
        await asyncio.sleep(0.1)


async def test_series_lifecycle(served: Served) -> None:
    """Follow, rescan, change, queue, reorder, remove and unfollow a series, each answer checked by the contract."""
    await request(served, "POST /api/queue/stop", 200)
    key = {"key": SERIES}
    added = await request(served, "POST /api/anime/add", 201, body={"link": SERIES, "languages": ["de-dub"]})
    assert added["key"] == SERIES
    assert added["source"] == "api"
    await request(served, "POST /api/anime/add", 409, body={"link": SERIES})
    await request(served, "POST /api/anime/add", 404, body={"link": "no-such-series-here"})

    started = await request(served, "POST /api/anime/rescan", 202, body={"key": SERIES})
    report = await wait_for_scan(served, started["scan_id"])
    assert report["status"] == "complete", report
    await request(served, "POST /api/anime/rescan", 404, body={"key": "not-followed-here"})

    detail = await request(served, "GET /api/anime/{key}", 200, path_parameters=key)
    assert detail["episode_list"], "the rescan found no episodes"
    changed = await request(
        served, "PATCH /api/anime/{key}", 200, path_parameters=key, body={"monitored": False, "seasons": [1]}
    )
    assert (changed["monitored"], changed["seasons"]) == (False, [1])
    changed = await request(served, "PATCH /api/anime/{key}", 200, path_parameters=key, body={"seasons": "all"})
    assert changed["seasons"] is None

    # The rescan queued the missing episodes (auto_download); removing them makes them missing again.
    pending = await request(served, "GET /api/queue", 200, query={"status": "pending", "limit": 1000})
    rescanned = [item["id"] for item in pending["items"] if item["serie_id"] == SERIES]
    assert len(rescanned) >= 2, pending
    await request(served, "DELETE /api/queue/", 204, body={"item_ids": rescanned})

    queued = await request(served, "POST /api/anime/{key}/download", 201, path_parameters=key)
    ids = queued["added_items"]
    assert len(ids) == len(rescanned), queued
    again = await request(
        served,
        "POST /api/queue/add",
        201,
        body={"serie_id": SERIES, "episodes": [{"season": 1, "episode": 1}], "priority": "high"},
    )
    assert again["added_items"] == [], "an episode queued already is skipped"
    await request(served, "GET /api/queue/status", 200, query={"limit": 1000})
    page = await request(served, "GET /api/queue", 200, query={"status": "pending", "limit": 1000})
    assert set(ids) <= {item["id"] for item in page["items"]}

    await request(served, "POST /api/queue/reorder", 200, body={"item_id": ids[-1], "new_position": 0})
    await request(served, "DELETE /api/queue/{item_id}", 204, path_parameters={"item_id": ids[0]})
    await request(served, "DELETE /api/queue/{item_id}", 404, path_parameters={"item_id": ids[0]})
    await request(served, "DELETE /api/queue/", 204, body={"item_ids": ids[1:]})
    await request(served, "POST /api/queue/retry/{item_id}", 404, path_parameters={"item_id": ids[0]})

    await request(served, "DELETE /api/anime/{key}", 204, path_parameters=key)
    await request(served, "GET /api/anime/{key}", 404, path_parameters=key)
    await request(served, "DELETE /api/anime/{key}", 404, path_parameters=key)


async def test_schedule_override(served: Served) -> None:
    """Override the rescan schedule, refuse a bad one, and go back to the configuration's."""
    override = await request(served, "POST /api/scheduler/config", 200, body={"rescan": {"every": "6h"}})
    assert (override["source"], override["rescan"]) == ("override", {"every": "6h"})
    await request(served, "POST /api/scheduler/config", 422, body={"rescan": "every second"})
    back = await request(served, "POST /api/scheduler/config", 200, body={"rescan": None})
    assert (back["source"], back["rescan"]) == ("config", None)


async def test_config_validate(served: Served) -> None:
    """A YAML text is checked as text/plain and as application/yaml; the answer is 200 either way."""
    text = served.config_file.read_text(encoding="utf-8")
    # As application/yaml the body is the document (serialised by schemathesis), as text/plain the file's text.
    bodies = {"application/yaml": (yaml.safe_load(text), {"library": {}}), "text/plain": (text, "library: {}\n")}
    for media_type, (good, bad) in bodies.items():
        valid = await request(served, "POST /api/config/validate", 200, body=good, media_type=media_type)
        assert valid == {"valid": True, "errors": []}
        invalid = await request(served, "POST /api/config/validate", 200, body=bad, media_type=media_type)
        assert invalid["valid"] is False
        assert any("library -> path" in line for line in invalid["errors"]), invalid


async def test_config_reload(served: Served) -> None:
    """`POST /api/config/reload`: 200 with the unchanged file, 422 config_invalid with a broken one (kept out)."""
    original = served.config_file.read_text(encoding="utf-8")
    await request(served, "POST /api/config/reload", 200)
    served.config_file.write_text(original + "downloads_typo: 1\n", encoding="utf-8")
    try:
        refused = await request(served, "POST /api/config/reload", 422)
    finally:
        served.config_file.write_text(original, encoding="utf-8")
    assert refused["error"]["code"] == "config_invalid"
    assert any("downloads_typo" in line for line in refused["error"]["details"]["errors"])
    await request(served, "GET /api/queue/status", 200)  # the old configuration still runs


async def test_login(served: Served) -> None:
    """Login, use and revoke a session; wrong passwords are 401 until the rate limit answers 429 with Retry-After.

    Runs last: the rate limit counts every failed login of 127.0.0.1 for a minute.
    """
    session = await request(served, "POST /api/auth/login", 200, headers={}, body={"password": PASSWORD})
    bearer = {"Authorization": f"Bearer {session['access_token']}"}
    status = await request(served, "GET /api/auth/status", 200, headers=bearer)
    assert status["method"] == "session"
    await request(served, "GET /api/queue/status", 200, headers=bearer)
    await request(served, "POST /api/auth/logout", 204, headers=bearer)
    await request(served, "GET /api/queue/status", 401, headers=bearer)

    await request(served, "POST /api/auth/login", 422, headers={}, body={})
    await request(served, "POST /api/auth/login", 422, headers={}, body={"password": PASSWORD, "user": "admin"})
    await request(served, "POST /api/auth/login", 400, headers={}, body=[PASSWORD])
    for _ in range(LOGIN_ATTEMPTS):
        await request(served, "POST /api/auth/login", 401, headers={}, body={"password": "wrong password"})
    limited = await request(served, "POST /api/auth/login", 429, headers={}, body={"password": PASSWORD})
    assert limited["error"]["details"]["retry_after"] >= 1
    # Read before the rate limit: an unreadable body is a 400 even now.
    await request(served, "POST /api/auth/login", 400, headers={}, body=b"\xff\xfe{", media_type="application/json")
