"""The command table: each operation registered once with its schema, validated, dispatched; the CLI goes through it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from aniworld_daemon.app import Application
from aniworld_daemon.cli.main import main
from aniworld_daemon.commands import CommandTable
from aniworld_daemon.config import Config
from aniworld_daemon.errors import NotFoundError, ValidationError
from aniworld_daemon.validators import int_range, non_empty_string
from tests.fakesite.server import FakeSite
from tests.helpers import StartApp, minimal_config

OPERATIONS = {
    "queue.add",
    "queue.remove",
    "queue.cancel",
    "queue.reorder",
    "queue.retry",
    "queue.clear_completed",
    "queue.clear_failed",
    "queue.start",
    "queue.stop",
    "queue.pause",
    "queue.resume",
    "series.follow",
    "series.unfollow",
    "series.update",
    "series.download_missing",
    "rescan",
    "rescan.start",
    "search",
    "scheduler.show",
    "scheduler.configure",
    "settings.auto_download",
    "backup.list",
    "backup.create",
}


def test_the_daemon_registers_every_operation_once(config: Config) -> None:
    assert set(Application(config).commands.names()) == OPERATIONS


async def test_a_command_added_to_the_table_is_validated_and_dispatched() -> None:
    table = CommandTable()
    received: list[dict[str, Any]] = []

    async def echo(args: dict[str, Any]) -> str:
        received.append(args)
        return f"{args['name']} x{args['times']}"

    table.register(
        "test.echo",
        "repeat a name",
        {vol.Required("name"): non_empty_string, vol.Optional("times", default=1): int_range(1, 3)},
        echo,
    )

    assert await table.call("test.echo", {"name": "ogre"}) == "ogre x1"
    assert received == [{"name": "ogre", "times": 1}]  # the schema's default filled in

    with pytest.raises(ValidationError) as bad:
        await table.call("test.echo", {"name": "ogre", "times": 7})
    assert bad.value.details["field"] == "times"
    assert "between 1 and 3" in bad.value.message
    with pytest.raises(ValidationError) as missing:
        await table.call("test.echo", {})
    assert missing.value.details["field"] == "name"
    with pytest.raises(ValidationError) as extra:
        await table.call("test.echo", {"name": "x", "colour": "red"})
    assert extra.value.details["field"] == "colour"
    assert len(received) == 1  # nothing invalid reached the handler

    with pytest.raises(NotFoundError):
        await table.call("test.unknown")
    with pytest.raises(ValueError, match="registered already"):
        table.register("test.echo", "again", {}, echo)


@pytest.mark.parametrize(
    ("name", "arguments", "field"),
    [
        ("queue.add", {"series": "blade-of-dawn", "episodes": [{"season": -1, "episode": 1}]}, "episodes[0] -> season"),
        ("queue.add", {"series": "blade-of-dawn", "episodes": [], "priority": "urgent"}, "priority"),
        ("queue.add", {"series": "not a key", "episodes": []}, "series"),
        ("queue.reorder", {"id": "abc", "position": -2}, "position"),
        ("queue.remove", {"ids": []}, "ids"),
        ("series.update", {"key": "x", "languages": ["fr-dub"]}, "languages[0]"),
        ("series.update", {"key": "x", "seasons": [1, 1]}, "seasons[1]"),
        ("rescan", {"dry_run": "yes please"}, "dry_run"),
        ("search", {"query": ""}, "query"),
        ("series.follow", {"series": "not a key"}, "series"),
        ("series.follow", {"series": 42}, "series"),
    ],
)
async def test_the_daemon_commands_refuse_bad_arguments_naming_the_field(
    app: Application, name: str, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as bad:
        await app.commands.call(name, arguments)
    assert bad.value.details["field"] == field


async def test_following_a_url_of_another_host_is_refused_naming_the_field(
    fakesite: FakeSite, start_app: StartApp
) -> None:
    app = await start_app(f"provider:\n  base_url: {fakesite.base_url}\nschedule:\n  run_on_start: false\n")
    before = fakesite.log.count("site")

    with pytest.raises(ValidationError) as bad:
        await app.commands.call("series.follow", {"series": "https://example.com/anime/stream/the-ogres-bride"})

    assert bad.value.details["field"] == "series"
    assert bad.value.message == (
        "series: the URL is on example.com, not on the site (aniworld.to or 127.0.0.1); "
        f"give the key the-ogres-bride or {fakesite.base_url}/anime/stream/the-ogres-bride"
    )
    assert fakesite.log.count("site") == before  # refused before anything is read
    assert await app.series.find("the-ogres-bride") is None
    # The site's own URLs still follow: on the configured base_url, and on aniworld.to (read at base_url all the same).
    ours = await app.commands.call("series.follow", {"series": f"{fakesite.base_url}/anime/stream/the-ogres-bride/"})
    theirs = await app.commands.call("series.follow", {"series": "https://www.aniworld.to/anime/stream/blade-of-dawn"})
    assert (ours.key, theirs.key) == ("the-ogres-bride", "blade-of-dawn")


async def test_queue_commands_act_on_the_real_queue(app: Application) -> None:
    """Through the table against the real engine and store: a series that is not followed is a 404, not a crash."""
    with pytest.raises(NotFoundError):
        await app.commands.call(
            "queue.add", {"series": "nobody-follows-this", "episodes": [{"season": 1, "episode": 1}]}
        )
    await app.commands.call("queue.pause")
    assert (await app.downloader.status()).is_paused
    await app.commands.call("queue.resume")
    assert not (await app.downloader.status()).is_paused
    assert await app.commands.call("queue.retry") == 0
    assert await app.commands.call("queue.clear_failed") == 0
    assert (await app.downloader.status()).statistics.total_items == 0
    assert await app.downloader.get("missing") is None


def test_the_cli_changes_state_through_the_table(
    write_config: Callable[..., Path], port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`scan` and `remove` call their commands by name (the site is not needed: nothing is followed)."""
    config_file = write_config(minimal_config(port, "schedule:\n  run_on_start: false\n"))
    called: list[str] = []
    original = CommandTable.call

    async def spy(self: CommandTable, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        called.append(name)
        return await original(self, name, arguments)

    monkeypatch.setattr(CommandTable, "call", spy)
    # main() sets up logging to this test's captured stderr: the handlers and levels go back after the test.
    for name in ("", "aiohttp.access", "aiosqlite", "apscheduler"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", list(logger.handlers))
        monkeypatch.setattr(logger, "level", logger.level)

    assert main(["scan", "--json", "-c", str(config_file)]) == 0
    assert main(["remove", "nobody-follows-this", "-c", str(config_file)]) == 1
    assert called == ["rescan", "series.unfollow"]
    assert "error: series nobody-follows-this is not followed" in capsys.readouterr().err
