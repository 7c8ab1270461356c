"""`aniworld-daemon status`: the running daemon (a subprocess, downloading, on MQTT) at a glance, and no daemon."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.fakesite.server import FakeSite
from tests.helpers import Broker, Daemon, cli, minimal_config, until

SERIES = "die-kleinen-baeren"  # season 1: three episodes, German dub on every hoster


async def test_status_of_a_running_daemon(
    write_config: Callable[..., Path], port: int, daemon: Callable[..., Daemon], fakesite: FakeSite, broker: Broker
) -> None:
    fakesite.knobs.bandwidth = 150_000  # seconds per episode: the status sees downloads in progress
    config_file = write_config(
        minimal_config(
            port,
            f"provider:\n  base_url: {fakesite.base_url}\n  requests_per_second: 500\n  languages: [de-dub]\n"
            "downloads:\n  max_concurrent: 2\n  min_free_space: 0\n"
            f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  discovery: false\n"
            f"series:\n  - key: {SERIES}\n    seasons: [1]\n",
        )
    )
    running = daemon(config_file)
    await running.until(lambda: "Ready" in running.log, "the daemon to be ready", 20)
    address = f"http://127.0.0.1:{port}"

    async def settled() -> bool:
        """Two downloads transferring and MQTT connected (the daemon's own view, read over its API)."""
        key = (config_file.parent / "data" / "api_key").read_text().strip()
        async with aiohttp.ClientSession(base_url=address, headers={"X-Api-Key": key}) as session:
            async with session.get("/api/queue/status?limit=0") as response:
                queue = await response.json()
            async with session.get("/api/system/status") as response:
                system = await response.json()
        active = queue["status"]["active_downloads"]
        mqtt = [check for check in system["checks"] if check["name"] == "mqtt"]
        return len(active) == 2 and all(item["progress"] for item in active) and mqtt[0]["level"] == "ok"

    await until(settled, within=30, what="two downloads in progress and MQTT connected")

    status, out, err = await cli("status", "-c", str(config_file))
    assert status == 0, err
    lines = out.splitlines()
    assert re.fullmatch(rf"aniworld-daemon \S+ at {address}: (healthy|degraded), up \d+s", lines[0]), out
    assert re.search(r"^Queue: running; 1 pending, 2 active, 0 completed, 0 failed$", out, re.MULTILINE), out
    transfers = [
        line
        for line in lines
        if re.fullmatch(r"  S01E0[1-3]  Die kleinen Bären & das große Abenteuer  \d+%  [\d.]+ MB/s.*", line)
    ]
    assert len(transfers) == 2, out
    assert re.search(r"^Rescans: last \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\w+, \d+ new\); next ", out, re.MULTILINE), out
    assert f"MQTT: connected to 127.0.0.1:{broker.port}" in out

    status, out, err = await cli("status", "-c", str(config_file), "--json")
    assert status == 0, err
    shown = json.loads(out)
    assert shown["address"] == address
    assert shown["system"]["status"] in ("healthy", "degraded")
    assert shown["queue"]["statistics"]["active_count"] == 2
    assert shown["queue"]["status"]["pending_queue"] == []  # limit=0: counts only, and the active ones
    assert len(shown["queue"]["status"]["active_downloads"]) == 2


@pytest.mark.parametrize(
    ("host", "asked", "as_json"),
    [
        pytest.param("127.0.0.1", "127.0.0.1", False, id="loopback, text"),
        pytest.param("0.0.0.0", "127.0.0.1", True, id="every address (asked on the loopback), json"),
    ],
)
async def test_status_without_a_daemon_names_the_address_and_fails(
    write_config: Callable[..., Path], port: int, host: str, asked: str, as_json: bool
) -> None:
    config_file = write_config(minimal_config(port).replace("host: 127.0.0.1", f"host: {host}"))
    status, out, err = await cli("status", "-c", str(config_file), *(["--json"] if as_json else []))
    assert status == 1
    assert out == ""
    assert err.startswith(f"error: no aniworld-daemon answers at http://{asked}:{port} (Connection refused)"), err
