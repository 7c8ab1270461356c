"""Command line interface: `aniworld-daemon COMMAND`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aniworld_daemon import __version__
from aniworld_daemon.app import Application, configure_logging
from aniworld_daemon.config import Config, load_config
from aniworld_daemon.errors import ConfigError

DEFAULT_CONFIG = "config.yaml"
CONFIG_ENV = "ANIWORLD_DAEMON_CONFIG"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)),
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
    return parser


def _load(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as err:
        print(f"Invalid configuration ({len(err.errors)} problem(s)):", file=sys.stderr)
        for line in err.errors:
            print(line, file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration and print every problem."""
    config = _load(args.config)
    if config is None:
        return 1
    mqtt = f"MQTT on {config.mqtt.host}:{config.mqtt.port}" if config.mqtt.enabled else "MQTT off"
    print(f"{args.config}: valid ({len(config.series)} series, library {config.library.path}, {mqtt})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground until stopped."""
    config = _load(args.config)
    if config is None:
        return 1
    configure_logging(config.logging.level, verbose=args.verbose)
    return asyncio.run(Application(config, verbose=args.verbose).run())


COMMANDS = {"run": cmd_run, "check-config": cmd_check_config}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
