"""The command table: every operation a user can ask for, registered once with its schema and its coroutine.

The CLI, REST, the WebSocket and MQTT are thin adapters: they look a command up by name, hand it the arguments they
received, and render what it returns (with `wire.py`). Arguments are validated here, at the boundary, so each surface
gets the same checks and the same error (`ValidationError` naming the field).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from aniworld_daemon.config import rescan_schedule
from aniworld_daemon.downloads.engine import Downloader
from aniworld_daemon.errors import NotFoundError, ValidationError
from aniworld_daemon.models import EpisodeState, Language, Priority
from aniworld_daemon.provider.aniworld import KEY_EXAMPLE, AniworldProvider, normalize_key
from aniworld_daemon.rescan import Rescanner
from aniworld_daemon.scheduler import Scheduler
from aniworld_daemon.series import SeriesManager, SeriesUpdate
from aniworld_daemon.store.backups import Backups
from aniworld_daemon.store.database import Database
from aniworld_daemon.validators import (
    boolean,
    int_range,
    languages,
    non_empty_string,
    one_of,
    seasons,
    series_key,
    unique_list,
    validate_payload,
)
from aniworld_daemon.wire import schedule_json

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

AUTO_DOWNLOAD = "auto_download"  # the settings key of the runtime auto_download switch
SCHEDULE_OVERRIDE = "schedule_override"  # the settings key of the runtime override of schedule.rescan
SCHEDULE_HINT = "expected a crontab like '0 3 * * *', 'every 6h', '03:00 mon,thu', {every: 6h}, or null"

priority = one_of("priority", tuple(priority.value for priority in Priority))
item_ids = unique_list(non_empty_string, "queue item id")
series_keys = unique_list(series_key, "series key")
episode_place = vol.Schema(
    {vol.Required("season"): int_range(0, 100_000), vol.Required("episode"): int_range(0, 100_000)}
)


def maybe(validator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`validator`, or null for "not given" (voluptuous' Any would hide the validator's own message)."""

    def validate(value: Any) -> Any:
        return None if value is None else validator(value)

    return validate


def series_ref(provider: AniworldProvider) -> Callable[[Any], str]:
    """A series URL on the provider's site or a key (`one-piece`, `https://aniworld.to/anime/stream/one-piece`).

    The validator returns the key. The site's address is read at each call, so a reloaded `provider.base_url` counts.
    """

    def validate(value: Any) -> str:
        if not isinstance(value, str):
            raise vol.Invalid(KEY_EXAMPLE)
        try:
            return normalize_key(value, provider.base_url)
        except ValidationError as err:
            # As a schema error, so the caller's ValidationError names the field like every other bad argument.
            raise vol.Invalid(err.message) from None

    validate.__name__ = "series_ref"
    return validate


def wanted_seasons(value: Any) -> tuple[int, ...] | str:
    """A list of season numbers, or `all` for every regular season."""
    if value == "all":
        return "all"
    return tuple(sorted(seasons(value)))


@dataclass(frozen=True, slots=True)
class Command:
    """One operation: its name, a one-line summary, the schema of its arguments and the coroutine that does it."""

    name: str
    summary: str
    schema: vol.Schema
    handler: Handler


class CommandTable:
    """The operations by name; `call` validates the arguments and runs the command."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def register(self, name: str, summary: str, schema: Mapping[Any, Any], handler: Handler) -> None:
        """Add a command; a name is registered once."""
        if name in self._commands:
            raise ValueError(f"command {name!r} is registered already")
        self._commands[name] = Command(name, summary, vol.Schema(dict(schema)), handler)

    def names(self) -> list[str]:
        """Every command name, sorted."""
        return sorted(self._commands)

    def get(self, name: str) -> Command:
        """The command called `name`; NotFoundError when there is none."""
        command = self._commands.get(name)
        if command is None:
            raise NotFoundError(f"no command {name!r}", details={"command": name, "commands": self.names()})
        return command

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Validate `arguments` against the command's schema and run it; ValidationError names a bad field."""
        command = self.get(name)
        validated = validate_payload(command.schema, dict(arguments or {}))
        return await command.handler(validated)


def build_command_table(
    queue: Downloader,
    series: SeriesManager,
    rescanner: Rescanner,
    provider: AniworldProvider,
    *,
    scheduler: Scheduler,
    backups: Backups,
    settings: Database,
) -> CommandTable:
    """The daemon's commands over its components (called by the composition root)."""
    table = CommandTable()

    # -- the queue ---------------------------------------------------------------------------------------------------

    async def queue_add(args: dict[str, Any]) -> Any:
        places = [(place["season"], place["episode"]) for place in args["episodes"]]
        return await queue.add(args["series"], places, Priority(args["priority"]))

    table.register(
        "queue.add",
        "queue episodes of a followed series (queued ones are skipped); returns the new items",
        {
            vol.Required("series"): series_key,
            vol.Required("episodes"): [episode_place],
            vol.Optional("priority", default=Priority.NORMAL.value): priority,
        },
        queue_add,
    )
    table.register(
        "queue.remove",
        "remove items (a running one is stopped, its partial file deleted); returns how many existed",
        {vol.Required("ids"): item_ids},
        lambda args: queue.remove(args["ids"]),
    )
    table.register(
        "queue.cancel",
        "cancel pending or running items; they stay listed as cancelled; returns how many",
        {vol.Required("ids"): item_ids},
        lambda args: queue.cancel(args["ids"]),
    )
    table.register(
        "queue.reorder",
        "move a pending item to a position among the pending items (0 = next)",
        {vol.Required("id"): non_empty_string, vol.Required("position"): int_range(0)},
        lambda args: queue.reorder(args["id"], args["position"]),
    )
    table.register(
        "queue.retry",
        "queue failed (or cancelled) items again; no ids = every failed item; returns how many",
        {vol.Optional("ids", default=None): maybe(item_ids)},
        lambda args: queue.retry(args["ids"]),
    )
    table.register("queue.clear_completed", "delete the completed items", {}, lambda _: queue.clear_completed())
    table.register("queue.clear_failed", "delete the failed items", {}, lambda _: queue.clear_failed())
    table.register("queue.start", "process the queue", {}, lambda _: queue.start_queue())
    table.register("queue.stop", "stop; running downloads go back to pending", {}, lambda _: queue.stop_queue())
    table.register("queue.pause", "start no new downloads (survives restarts)", {}, lambda _: queue.pause())
    table.register("queue.resume", "undo a pause", {}, lambda _: queue.resume())

    # -- series ------------------------------------------------------------------------------------------------------

    async def follow(args: dict[str, Any]) -> Any:
        wanted = args["seasons"]
        return await series.follow(
            args["series"],
            languages=tuple(Language(value) for value in args["languages"] or ()),
            seasons=tuple(sorted(wanted)) if wanted else None,
            monitored=args["monitored"],
        )

    table.register(
        "series.follow",
        "follow a series by URL or key (reads its page once)",
        {
            vol.Required("series"): series_ref(provider),
            vol.Optional("languages", default=None): maybe(languages),
            vol.Optional("seasons", default=None): maybe(seasons),
            vol.Optional("monitored", default=True): boolean,
        },
        follow,
    )
    table.register(
        "series.unfollow",
        "stop following a series (its files stay)",
        {vol.Required("key"): series_key},
        lambda args: series.unfollow(args["key"]),
    )

    async def update(args: dict[str, Any]) -> Any:
        chosen = args.get("languages")
        change = SeriesUpdate(
            monitored=args.get("monitored"),
            languages=tuple(Language(value) for value in chosen) if chosen is not None else None,
            seasons=args.get("seasons"),
        )
        return await series.update(args["key"], change)

    table.register(
        "series.update",
        "change whether a series is monitored, its languages or its wanted seasons",
        {
            vol.Required("key"): series_key,
            vol.Optional("monitored"): boolean,
            vol.Optional("languages"): languages,
            vol.Optional("seasons"): wanted_seasons,
        },
        update,
    )

    # -- rescans and the site ------------------------------------------------------------------------------------

    table.register(
        "rescan",
        "rescan every monitored series (or the given keys) and wait for its report",
        {
            vol.Optional("keys", default=None): maybe(series_keys),
            vol.Optional("dry_run", default=False): boolean,
            vol.Optional("queue_missing", default=True): boolean,
            vol.Optional("trigger", default="manual"): non_empty_string,
        },
        lambda args: rescanner.rescan(
            args["trigger"], args["keys"] or None, dry_run=args["dry_run"], queue_missing=args["queue_missing"]
        ),
    )
    table.register(
        "rescan.start",
        "start a rescan (or join the running one) without waiting; returns its report's id",
        {
            vol.Optional("keys", default=None): maybe(series_keys),
            vol.Optional("trigger", default="api"): non_empty_string,
        },
        lambda args: rescanner.start(args["trigger"], args["keys"] or None),
    )

    async def download_missing(args: dict[str, Any]) -> Any:
        found = await series.get(args["key"])  # NotFoundError for a series nobody follows
        wanted = [
            (episode.season, episode.number)
            for episode in await series.episodes(found.key)
            if episode.state is EpisodeState.MISSING
        ]
        return await queue.add(found.key, wanted, Priority(args["priority"]))

    table.register(
        "series.download_missing",
        "queue every missing episode of one followed series; returns the new items",
        {vol.Required("key"): series_key, vol.Optional("priority", default=Priority.NORMAL.value): priority},
        download_missing,
    )
    table.register(
        "search",
        "search the site for series",
        {vol.Required("query"): non_empty_string},
        lambda args: provider.search(args["query"]),
    )

    # -- the schedule and backups ---------------------------------------------------------------------------------

    async def show_schedule(_: dict[str, Any]) -> Any:
        stored = await settings.get_setting(SCHEDULE_OVERRIDE)
        source = "override" if scheduler.overridden else "config"
        return schedule_json(scheduler.state(), source, stored if scheduler.overridden else None)

    async def configure_schedule(args: dict[str, Any]) -> Any:
        raw = args["rescan"]
        if raw is None:
            await settings.delete_setting(SCHEDULE_OVERRIDE)
            scheduler.set_override(None)
        else:
            schedule = validate_payload(vol.Schema({vol.Required("rescan"): rescan_schedule}), args)["rescan"]
            await settings.set_setting(SCHEDULE_OVERRIDE, raw)
            scheduler.set_override(schedule)
        return await show_schedule({})

    table.register(
        "scheduler.show", "the rescan schedule in force, its source, the next and last run", {}, show_schedule
    )
    table.register(
        "scheduler.configure",
        "override schedule.rescan at runtime (kept across restarts); null goes back to the configuration's",
        {vol.Required("rescan"): vol.Any(None, str, dict, msg=SCHEDULE_HINT)},
        configure_schedule,
    )

    async def set_auto_download(args: dict[str, Any]) -> Any:
        await settings.set_setting(AUTO_DOWNLOAD, args["enabled"])
        rescanner.set_auto_download(args["enabled"])
        return rescanner.auto_download

    table.register(
        "settings.auto_download",
        "switch whether rescans queue the missing episodes (kept across restarts); returns the new value",
        {vol.Required("enabled"): boolean},
        set_auto_download,
    )
    table.register("backup.list", "the backups (database and config file), newest first", {}, lambda _: backups.list())
    table.register("backup.create", "back up the database and the config file now", {}, lambda _: backups.create())
    return table
