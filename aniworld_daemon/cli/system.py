"""The system's CLI commands: `backup` (now, or `--list`), `restore FILE` and `status` (the running daemon at a glance).

`backup` works on the data dir directly, whether the daemon runs or not: SQLite's snapshot (VACUUM INTO inside one
read transaction) is consistent beside a writing daemon in WAL mode, and it needs no API key or reachable port, so it
also works in the moment one wants it most: with the daemon stopped, before an upgrade. `status` asks the running
daemon over its API, with the key `token` prints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from aniworld_daemon.app import DB_FILE, Application
from aniworld_daemon.cli.output import cut, place
from aniworld_daemon.config import Config
from aniworld_daemon.errors import DaemonUnreachable
from aniworld_daemon.store.backups import Backup, BackupReason, Restored, find_backup, list_backups, restore
from aniworld_daemon.web.auth import KEY_FILE, read_key

STATUS_TIMEOUT = 10.0  # seconds for all of `status`'s requests together
# A daemon listening on every address is asked on the loopback one.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


async def backup_now(config: Config) -> Backup:
    """Take a backup of the configured data dir now (beside a running daemon, or without one)."""
    async with Application(config).storage() as app:
        return await app.backups.create(BackupReason.MANUAL)


def backups(config: Config) -> list[Backup]:
    """The backups in the configured data dir, newest first."""
    return list_backups(config.data_dir / "backups")


def restore_backup(config: Config, given: str, *, replace_config: bool) -> Restored:
    """Restore a backup (a path, or a name in the backups folder) into the configured data dir."""
    archive = find_backup(given, config.data_dir)
    return restore(archive, config.data_dir, config.data_dir / DB_FILE, config.source, replace_config=replace_config)


def _size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} GB"


def backup_text(made: Backup, folder: Path) -> str:
    """`backup` as text."""
    return f"Backed up the database and the config file to {folder / made.name} ({_size(made.size)})"


def backups_text(found: Sequence[Backup], folder: Path) -> str:
    """`backup --list` as a table, newest first."""
    if not found:
        return f"No backups in {folder} yet."
    width = max(len(backup.name) for backup in found)
    lines = [f"{'NAME':<{width}}  {'SIZE':>9}  {'REASON':<11}  TAKEN"]
    lines += [f"{b.name:<{width}}  {_size(b.size):>9}  {b.reason.value:<11}  {_local(b.created_at)}" for b in found]
    return "\n".join([*lines, f"(in {folder})"])


def restore_text(done: Restored) -> str:
    """`restore` as text: what was put back, where the old database went, what to do about the config."""
    taken = f", taken {_local(done.created_at)}" if done.created_at else ""
    lines = [f"Restored {done.source.name}{taken} into {done.database} (schema version {done.schema_version})."]
    if done.safety is not None:
        lines.append(f"The database it replaced was backed up as {done.safety.name}.")
    if done.config is None:
        lines.append("The backup holds no config file; the config in use stays.")
    elif done.config_replaced:
        lines.append(f"The backup's config file replaced {done.config}.")
    else:
        lines.append(
            f"The backup's config file is at {done.config}: compare it with yours, or restore again with --with-config "
            "to put it in place."
        )
    return "\n".join(lines)


# --- status ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """What `status` read from the daemon: its address and the bodies of its status routes."""

    address: str
    system: dict[str, Any]
    queue: dict[str, Any]


def daemon_address(config: Config) -> str:
    """The URL of the configured daemon's API, as a client on this machine reaches it."""
    host = _WILDCARDS.get(config.api.host, config.api.host)
    return f"http://[{host}]:{config.api.port}" if ":" in host else f"http://{host}:{config.api.port}"


async def status(config: Config) -> Status:
    """Ask the running daemon for its status and its queue; DaemonUnreachable when it does not answer."""
    address = daemon_address(config)
    key = config.api.key or read_key(config.data_dir)
    headers = {"X-Api-Key": key} if key else {}
    try:
        async with aiohttp.ClientSession(
            base_url=address, headers=headers, timeout=aiohttp.ClientTimeout(total=STATUS_TIMEOUT)
        ) as session:
            system = await _get(session, address, "/api/system/status")
            queue = await _get(session, address, "/api/queue/status?limit=0")
    except (aiohttp.ClientError, TimeoutError) as err:
        reason = _reason(err)
        raise DaemonUnreachable(
            f"no aniworld-daemon answers at {address} ({reason}); is it running? (systemctl status aniworld-daemon)",
            details={"address": address},
        ) from err
    return Status(address, system, queue)


def _reason(err: Exception) -> str:
    """Why a request got no answer, in a few words ("Connection refused")."""
    if isinstance(err, TimeoutError):
        return f"no answer within {STATUS_TIMEOUT:.0f} s"
    if isinstance(err, aiohttp.ClientConnectorError) and err.os_error.errno:
        return os.strerror(err.os_error.errno)
    return str(err) or type(err).__name__


async def _get(session: aiohttp.ClientSession, address: str, path: str) -> dict[str, Any]:
    async with session.get(path) as response:
        if response.status == 401:
            raise DaemonUnreachable(
                f"the daemon at {address} refused the API key (from api.key or the data dir's {KEY_FILE}); "
                "is this its configuration?",
                details={"address": address},
            )
        try:
            body = await response.json()
        except (aiohttp.ContentTypeError, ValueError) as err:
            raise DaemonUnreachable(
                f"{address}{path} answered {response.status} without JSON: is this aniworld-daemon?"
            ) from err
        if response.status != 200 or not isinstance(body, dict):
            raise DaemonUnreachable(f"{address}{path} answered {response.status}: {body}", details={"address": address})
        return body


def status_text(found: Status) -> str:
    """`status` as text: health and problems, the queue and its active downloads, rescans, MQTT."""
    system, queue = found.system, found.queue
    lines = [
        f"aniworld-daemon {system.get('version')} at {found.address}: {system.get('status')}, "
        f"up {_duration(float(system.get('uptime_seconds') or 0))}"
    ]
    checks = [check for check in system.get("checks", []) if isinstance(check, dict)]
    problems = [check for check in checks if check.get("level") != "ok"]
    for check in problems:
        lines.append(f"  {check.get('level')}: {check.get('name')}: {check.get('message')}")
    state, stats = queue.get("status", {}), queue.get("statistics", {})
    running = "paused" if state.get("is_paused") else "running" if state.get("is_running") else "stopped"
    lines.append(
        f"Queue: {running}; {stats.get('pending_count', 0)} pending, {stats.get('active_count', 0)} active, "
        f"{stats.get('completed_count', 0)} completed, {stats.get('failed_count', 0)} failed"
    )
    for item in state.get("active_downloads", []):
        lines.append("  " + _active_line(item))
    scans = system.get("scans", {})
    last = scans.get("last")
    last_text = (
        f"{_local_text(last.get('started_at'))} ({last.get('status')}, {last.get('new_episodes')} new)"
        if isinstance(last, dict)
        else "never"
    )
    running_scan = ", one is running" if scans.get("running") else ""
    lines.append(
        f"Rescans: last {last_text}; next {_local_text(scans.get('next_run')) or 'not scheduled'} "
        f"({scans.get('schedule')}){running_scan}"
    )
    mqtt = next((check for check in checks if check.get("name") == "mqtt"), None)
    if mqtt is None:
        lines.append("MQTT: off")
    elif mqtt.get("level") == "ok":
        lines.append(f"MQTT: {mqtt.get('message')}")
    else:
        lines.append(f"MQTT: not connected ({mqtt.get('message')})")
    return "\n".join(lines)


def _active_line(item: Mapping[str, Any]) -> str:
    progress = item.get("progress") or {}
    parts = [place(int(item.get("season", 0)), int(item.get("episode", 0))), cut(str(item.get("serie_name")), 40)]
    if progress.get("percent") is not None:
        parts.append(f"{progress['percent']:.0f}%")
    if progress.get("speed_mbps") is not None:
        parts.append(f"{progress['speed_mbps']:.1f} MB/s")
    if progress.get("eta_seconds") is not None:
        parts.append(f"{_duration(progress['eta_seconds'])} left")
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    total = math.floor(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _local_text(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        return _local(datetime.fromisoformat(value))
    except ValueError:
        return value
