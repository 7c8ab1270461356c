"""The REST API: thin handlers over the command table and `wire.py`, one module per capability.

Each module has `routes(api)`, the route table of its capability; the server adds them all. Bodies and query
parameters are validated here, at the boundary, with the shared named validators: a bad one is a 400/422 naming the
field, never a 500.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import voluptuous as vol
from aiohttp import web

from aniworld_daemon.commands import CommandTable
from aniworld_daemon.config import Config
from aniworld_daemon.downloads.engine import Downloader
from aniworld_daemon.errors import AniworldError, ValidationError
from aniworld_daemon.events import EventBus
from aniworld_daemon.health import HealthChecks
from aniworld_daemon.metrics import Metrics
from aniworld_daemon.rescan import Rescanner
from aniworld_daemon.scheduler import Scheduler
from aniworld_daemon.series import SeriesManager
from aniworld_daemon.store.database import Database
from aniworld_daemon.validators import validate_payload
from aniworld_daemon.web.auth import Auth

DEFAULT_PAGE = 100
MAX_PAGE = 1000


class BadRequest(AniworldError):
    """A request whose body is not what the route reads (not JSON, not an object, not YAML text)."""

    code = "bad_request"


@dataclass(frozen=True, slots=True)
class Api:
    """What the handlers use: the daemon's parts, handed in by the composition root."""

    commands: CommandTable
    bus: EventBus
    downloader: Downloader
    series: SeriesManager
    db: Database
    rescanner: Rescanner
    scheduler: Scheduler
    health: HealthChecks
    auth: Auth
    metrics: Metrics
    version: str
    started: float  # time.monotonic() at start, for the uptime
    config: Callable[[], Config]  # the configuration in force (changes with reloads)
    reload: Callable[[], Awaitable[list[str]]]  # SIGHUP's reload: the refusal's lines, [] when it took effect

    @property
    def uptime(self) -> float:
        """Seconds since the daemon started."""
        return time.monotonic() - self.started


async def read_text(request: web.Request) -> str:
    """The request's body as text in its declared charset (UTF-8 when none); BadRequest when it cannot be read so."""
    raw = await request.read()
    charset = request.charset or "utf-8"
    try:
        text = raw.decode(charset)
    except LookupError:
        raise BadRequest(f"unknown charset {charset!r}; send UTF-8", details={"field": "body"}) from None
    except UnicodeDecodeError as err:
        raise BadRequest(f"the body is not {charset} text: {err.reason}", details={"field": "body"}) from None
    return text


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); BadRequest when it is not JSON or not an object."""
    text = await read_text(request)
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
        # JSON may spell lone surrogates (\ud800) that no Unicode text holds: refuse them here, not when answering.
        json.dumps(data, ensure_ascii=False).encode()
    except ValueError as err:  # UnicodeEncodeError is a ValueError
        raise BadRequest(f"the body is not valid JSON text: {err}", details={"field": "body"}) from None
    except RecursionError:  # "[[[[..." nested deeper than the decoder goes: no body the API reads looks like that
        raise BadRequest("the body is nested too deeply to be read", details={"field": "body"}) from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", details={"field": "body"})
    return data


async def call_as(api: Api, command: str, arguments: Mapping[str, Any], fields: Mapping[str, str]) -> Any:
    """Run a command; a ValidationError names the client's field (`fields`: the command's name -> the client's).

    The API keeps the seed's names (`link`, `key`, `item_id`) where the command table has its own (`series`, `keys`,
    `ids`); the check stays in the table, the name in the answer is the one the client sent.
    """
    try:
        return await api.commands.call(command, arguments)
    except ValidationError as err:
        raise _renamed(err, fields) from None


def _renamed(err: ValidationError, fields: Mapping[str, str]) -> ValidationError:
    def rename(field: str) -> str:
        for ours, theirs in fields.items():
            if field == ours or field.startswith((f"{ours} ", f"{ours}[")):
                # "keys[0]" is the one key sent as `key`: the index goes with the rename
                rest = field[len(ours) :]
                return theirs + (rest.split("]", 1)[1] if rest.startswith("[") and theirs != ours else rest)
        return field

    details = dict(err.details)
    errors = [{**problem, "field": rename(str(problem.get("field", "")))} for problem in details.get("errors", [])]
    field = rename(str(details.get("field", "")))
    message = err.message
    old_field = str(details.get("field", ""))
    if old_field and message.startswith(old_field):
        message = field + message[len(old_field) :]
    return ValidationError(message, details={**details, "field": field, "errors": errors})


def query_int(low: int, high: int) -> Callable[[Any], int]:
    """A whole number from a query string, low..high."""

    def validate(value: Any) -> int:
        if isinstance(value, str) and value.isascii() and value.isdigit() and low <= int(value) <= high:
            return int(value)
        raise vol.Invalid(f"expected a whole number from {low} to {high}")

    return validate


PAGING = {
    vol.Optional("offset", default="0"): query_int(0, 10**9),
    vol.Optional("limit", default=str(DEFAULT_PAGE)): query_int(1, MAX_PAGE),
}


PAGE = vol.Schema(PAGING)


def query(request: web.Request, schema: vol.Schema) -> dict[str, Any]:
    """The request's query parameters validated against `schema` (built once, at import); ValidationError names one."""
    params = {key: request.query.getone(key) for key in request.query}
    validated: dict[str, Any] = validate_payload(schema, params)
    return validated


def page(items: list[Any], total: int, offset: int, limit: int) -> dict[str, Any]:
    """The paged envelope: `{items, total, offset, limit}`."""
    return {"items": items, "total": total, "offset": offset, "limit": limit}


def respond(data: Any, status: int = 200) -> web.Response:
    """A JSON response (UTF-8; text that is no valid Unicode, like a lone surrogate echoed back, escaped)."""
    try:
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        body = json.dumps(data, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, content_type="application/json")


def ok(message: str, **extra: Any) -> web.Response:
    """The seed's acknowledgement: `{status: "success", message, ...}`."""
    return respond({"status": "success", "message": message, **extra})


def require(data: Mapping[str, Any], name: str) -> Any:
    """A required body field, or ValidationError naming it (for the few bodies read without a schema)."""
    if name not in data:
        raise ValidationError(f"{name}: required", details={"field": name, "errors": [f"{name}: required"]})
    return data[name]
