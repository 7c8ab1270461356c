"""The command line: `aniworld-daemon COMMAND`, the parser and main; each command group has a module of its own."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from aniworld_daemon import __version__, wire
from aniworld_daemon.app import Application
from aniworld_daemon.cli import library as library_commands
from aniworld_daemon.cli import queue as queue_commands
from aniworld_daemon.cli import site as site_commands
from aniworld_daemon.cli import system as system_commands
from aniworld_daemon.cli.output import default_progress, print_json
from aniworld_daemon.config import Config, ProviderConfig, default_provider_config, load_config
from aniworld_daemon.errors import AniworldError, ConfigError
from aniworld_daemon.log import configure_logging
from aniworld_daemon.models import Language, SeriesSource
from aniworld_daemon.web.auth import load_or_create_key

DEFAULT_CONFIG = "config.yaml"
CONFIG_ENV = "ANIWORLD_DAEMON_CONFIG"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help=f"configuration file (YAML or the add-on's options.json; default: ${CONFIG_ENV} or ./{DEFAULT_CONFIG})",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log at debug level")

    parser = argparse.ArgumentParser(
        prog="aniworld-daemon",
        description="Follows anime series on aniworld.to and downloads missing episodes into your library.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("run", parents=[common], help="run the daemon (stops on SIGTERM/Ctrl-C, reloads on SIGHUP)")
    commands.add_parser("check-config", parents=[common], help="validate the configuration; exit 0 valid, 1 invalid")

    site = argparse.ArgumentParser(add_help=False, parents=[common])
    site.add_argument(
        "--base-url", help="the site to read (default: provider.base_url of the config, else https://aniworld.to)"
    )
    site.add_argument("--json", action="store_true", help="print JSON (the shapes are documented in the README)")
    found = commands.add_parser("search", parents=[site], help="search the site for series")
    found.add_argument("query", help="words of the title")
    info = commands.add_parser("info", parents=[site], help="show a series with its seasons and episodes")
    info.add_argument("series", metavar="URL_OR_KEY", help="a series URL or key, e.g. one-piece")
    episode = commands.add_parser("episode", parents=[site], help="show an episode's titles, languages and hosters")
    episode.add_argument("url", metavar="URL", help="an episode URL (.../staffel-N/episode-M or .../filme/film-K)")
    episode.add_argument("--resolve", action="store_true", help="follow every hoster link to its media URL")

    add = commands.add_parser("add", parents=[common], help="follow a series (reads its page once)")
    add.add_argument("series", metavar="URL_OR_KEY", help="a series URL or key, e.g. one-piece")
    add.add_argument(
        "--language",
        dest="languages",
        action="append",
        choices=[language.value for language in Language],
        help="wanted language, in order of preference (repeat it; default: provider.languages)",
    )
    add.add_argument(
        "--season",
        dest="seasons",
        action="append",
        type=_season_number,
        help="wanted season (repeat it; 0 = the movies; default: every regular season)",
    )
    remove = commands.add_parser("remove", parents=[common], help="stop following a series (its files stay)")
    remove.add_argument("key", metavar="KEY", help="the series key, as shown by `list`")
    listing = commands.add_parser("list", parents=[common], help="show the followed series")
    listing.add_argument("--json", action="store_true", help="print JSON (the shape is documented in the README)")
    scan = commands.add_parser(
        "scan", parents=[common], help="rescan now: compare the site with the library and show what is missing"
    )
    scan.add_argument("keys", metavar="KEY", nargs="*", help="only these series (default: every monitored one)")
    scan.add_argument("--dry-run", action="store_true", help="write nothing into the library and queue nothing")
    scan.add_argument("--json", action="store_true", help="print JSON (the shape is documented in the README)")
    scans = commands.add_parser("scans", parents=[common], help="show the stored reports of the latest rescans")
    scans.add_argument("--limit", type=_count, default=10, help="how many reports, newest first (default 10)")
    scans.add_argument("--json", action="store_true", help="print JSON (the shape is documented in the README)")
    fetch = commands.add_parser(
        "download", parents=[common], help="download missing episodes now, in the foreground, with progress"
    )
    fetch.add_argument("series", metavar="URL_OR_KEY", help="a series URL or key (followed, not monitored, if new)")
    fetch.add_argument("--season", type=_season_number, help="only this season (0 = the movies)")
    fetch.add_argument("--episode", type=_episode_number, help="only this episode (with --season; default season 1)")
    fetch.add_argument("--json", action="store_true", help="print JSON (the shape is documented in the README)")
    commands.add_parser(
        "token", parents=[common], help="print the API key (api.key, else the one generated in the data dir)"
    )
    queue = commands.add_parser("queue", parents=[common], help="show the download queue of the configured data dir")
    queue.add_argument("--json", action="store_true", help="print JSON (the shape of GET /api/queue/status)")
    backup = commands.add_parser(
        "backup", parents=[common], help="back up the database and the config file now (the daemon may run meanwhile)"
    )
    backup.add_argument("--list", action="store_true", help="list the backups instead, newest first")
    backup.add_argument("--json", action="store_true", help="print JSON (the shape of GET /api/system/backups)")
    restore = commands.add_parser(
        "restore", parents=[common], help="restore a backup into the data dir (only while the daemon is stopped)"
    )
    restore.add_argument("file", metavar="FILE", help="a backup file, or a name listed by `backup --list`")
    restore.add_argument(
        "--with-config",
        dest="replace_config",
        action="store_true",
        help="also put the backup's config file in place of yours (default: written beside it as *.restored)",
    )
    restore.add_argument("--json", action="store_true", help="print JSON (the shape is documented in the README)")
    status = commands.add_parser(
        "status", parents=[common], help="the running daemon at a glance (asks its API); exit 1 when it does not answer"
    )
    status.add_argument("--json", action="store_true", help="print JSON (the bodies of the API's status routes)")
    return parser


def _season_number(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a season number like 1 (0 = the movies), got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to 1000, got {text!r}")
    return int(text)


def _episode_number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected an episode number like 3, got {text!r}")
    return int(text)


def _config_path(args: argparse.Namespace) -> Path:
    """The config file: -c, else $ANIWORLD_DAEMON_CONFIG, else ./config.yaml."""
    if args.config is not None:
        return Path(args.config)
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))


def _provider_config(args: argparse.Namespace) -> ProviderConfig | None:
    """The provider settings for the site commands: the config's (when one is given or found), --base-url wins."""
    path = _config_path(args)
    explicit = args.config is not None or CONFIG_ENV in os.environ
    provider = None
    if explicit or path.exists():
        config = _load(path)
        if config is None:
            return None
        provider = config.provider
    try:
        if provider is None:
            return default_provider_config(args.base_url or "https://aniworld.to")
        if args.base_url:
            return replace(provider, base_url=default_provider_config(args.base_url).base_url)
    except ConfigError as err:
        print(err.errors[0], file=sys.stderr)
        return None
    return provider


def _site_command(args: argparse.Namespace) -> int:
    """Run `search`, `info` or `episode`; errors are one line on stderr and exit status 1."""
    provider = _provider_config(args)
    if provider is None:
        return 1
    configure_logging("warning", verbose=args.verbose)
    progress = sys.stderr if sys.stderr.isatty() and not args.json else None
    try:
        if args.command == "search":
            results = asyncio.run(site_commands.search(provider, args.query))
            output = wire.search_json(args.query, results) if args.json else site_commands.search_text(results)
        elif args.command == "info":
            series, seasons = asyncio.run(site_commands.info(provider, args.series, progress=progress))
            output = wire.info_json(series, seasons) if args.json else site_commands.info_text(series, seasons)
        else:
            page, resolved = asyncio.run(site_commands.episode(provider, args.url, resolve=args.resolve))
            output = wire.episode_json(page, resolved) if args.json else site_commands.episode_text(page, resolved)
    except AniworldError as err:
        return _print_error(err)
    return _print_output(output)


def _print_error(err: AniworldError) -> int:
    """A command's failure: one `error:` line on stderr, exit status 1."""
    print(f"error: {err.message}", file=sys.stderr)
    return 1


def _print_output(output: object) -> int:
    """A command's result: text as it is, anything else as JSON; exit status 0."""
    if isinstance(output, str):
        print(output)
    else:
        print_json(output)
    return 0


def _load(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as err:
        print(f"Invalid configuration ({len(err.errors)} problem(s)):", file=sys.stderr)
        for line in err.errors:
            print(line, file=sys.stderr)
        return None


def _library_command(args: argparse.Namespace) -> int:
    """Run `add`, `remove`, `list`, `scan` or `scans` on the data dir; errors are one line, exit status 1."""
    config = _load(_config_path(args))
    if config is None:
        return 1
    configure_logging("warning", verbose=args.verbose)
    try:
        output = asyncio.run(_run_library_command(config, args))
    except AniworldError as err:
        return _print_error(err)
    return _print_output(output)


async def _run_library_command(config: Config, args: argparse.Namespace) -> object:
    if args.command == "add":
        series = await library_commands.follow(
            config, args.series, languages=args.languages or (), seasons=args.seasons or ()
        )
        return f"Following {series.title} ({series.key}); its folder is {config.library.path / series.folder}"
    if args.command == "remove":
        series = await library_commands.unfollow(config, args.key)
        text = f"No longer following {series.title} ({series.key}); its files stay where they are"
        if series.source is SeriesSource.CONFIG:
            text += f"\nIt is listed under series: in {config.source}; remove it there too, or it comes back on start"
        return text
    if args.command == "list":
        rows = await library_commands.series_rows(config)
        return wire.series_json(rows) if args.json else library_commands.series_text(rows)
    if args.command == "scans":
        reports = await library_commands.scan_reports(config, args.limit)
        return [wire.report_json(report) for report in reports] if args.json else library_commands.reports_text(reports)
    progress = None if args.json else default_progress()
    result = await library_commands.scan(config, args.keys, dry_run=args.dry_run, progress=progress)
    if args.json:
        return wire.scan_json(result)
    return library_commands.scan_text(result, dry_run=args.dry_run)


def cmd_token(args: argparse.Namespace) -> int:
    """Print the API key clients send (X-Api-Key or Authorization: Bearer); it is created when there is none yet."""
    config = _load(_config_path(args))
    if config is None:
        return 1
    configure_logging("warning", verbose=args.verbose)
    try:
        key = config.api.key or load_or_create_key(config.data_dir)
    except AniworldError as err:
        return _print_error(err)
    print(key)
    return 0


def _system_command(args: argparse.Namespace) -> int:
    """Run `backup`, `restore` or `status`; errors are one line on stderr and exit status 1."""
    config = _load(_config_path(args))
    if config is None:
        return 1
    configure_logging("warning", verbose=args.verbose)
    folder = config.data_dir / "backups"
    try:
        if args.command == "status":
            found = asyncio.run(system_commands.status(config))
            return _print_output(
                wire.status_json(found.address, found.system, found.queue)
                if args.json
                else system_commands.status_text(found)
            )
        if args.command == "restore":
            done = system_commands.restore_backup(config, args.file, replace_config=args.replace_config)
            return _print_output(wire.restored_json(done) if args.json else system_commands.restore_text(done))
        if args.list:
            found_backups = system_commands.backups(config)
            if args.json:
                return _print_output({"backups": [wire.backup_json(backup) for backup in found_backups]})
            return _print_output(system_commands.backups_text(found_backups, folder))
        made = asyncio.run(system_commands.backup_now(config))
    except AniworldError as err:
        return _print_error(err)
    return _print_output(wire.backup_json(made) if args.json else system_commands.backup_text(made, folder))


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration and print every problem."""
    path = _config_path(args)
    config = _load(path)
    if config is None:
        return 1
    mqtt = f"MQTT on {config.mqtt.host}:{config.mqtt.port}" if config.mqtt.enabled else "MQTT off"
    print(f"{path}: valid ({len(config.series)} series, library {config.library.path}, {mqtt})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground until stopped."""
    config = _load(_config_path(args))
    if config is None:
        return 1
    configure_logging(config.logging.level, verbose=args.verbose)
    return asyncio.run(Application(config, verbose=args.verbose).run())


def _queue_command(args: argparse.Namespace) -> int:
    """Run `download` or `queue`; `download` exits 1 when an episode could not be downloaded."""
    config = _load(_config_path(args))
    if config is None:
        return 1
    configure_logging("warning", verbose=args.verbose)
    try:
        if args.command == "queue":
            snapshot, series = asyncio.run(queue_commands.snapshot(config))
            text = wire.queue_json(snapshot, series) if args.json else queue_commands.queue_text(snapshot, series)
            return _print_output(text)
        season = args.season if args.season is not None or args.episode is None else 1
        progress = None if args.json else default_progress()
        run = asyncio.run(
            queue_commands.download(config, args.series, season=season, episode=args.episode, progress=progress)
        )
    except AniworldError as err:
        return _print_error(err)
    _print_output(queue_commands.run_json(run) if args.json else queue_commands.run_text(run, config))
    return 0 if run.ok else 1


COMMANDS = {
    "run": cmd_run,
    "check-config": cmd_check_config,
    "search": _site_command,
    "info": _site_command,
    "episode": _site_command,
    "add": _library_command,
    "remove": _library_command,
    "list": _library_command,
    "scan": _library_command,
    "scans": _library_command,
    "download": _queue_command,
    "queue": _queue_command,
    "token": cmd_token,
    "backup": _system_command,
    "restore": _system_command,
    "status": _system_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)
