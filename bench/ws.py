"""WebSocket fan-out: how soon an event reaches each of 200 connected clients, and what they cost the daemon in memory.

Run: `.venv/bin/python -m bench.ws [--clients 200] [--events 500] [--interval 0.02] [--quick]`. Starts the real
daemon (`python -m aniworld_daemon run`, a subprocess on 127.0.0.1, queue stopped, nothing contacting any site) and
`--clients` WebSocket clients (aiohttp) split over CLIENT_PROCESSES processes of their own, so their loops do not share
a core with each other or with this driver more than the machine forces. Every client joins the `downloads` room.

The events are real ones from the daemon: this process calls `POST /api/queue/pause` and `POST /api/queue/resume`
alternately, one call every `--interval` seconds, and each makes the daemon emit `queue_paused` or `queue_resumed`
to the room. Each message carries the `timestamp` the daemon's bus stamped when it emitted the event; each client
notes its arrival with `time.time()` (the same machine clock: CLOCK_REALTIME) as soon as it parsed the message. Prints:

1. emit -> client latency over every delivery (events x clients): p50, p99 and max (target: p99 < 100 ms), and the
   median spread between the first and the last client to get one event.
2. The daemon's RSS (VmRSS of /proc/<pid>/status): before the clients connect, with all of them connected, and after
   the events, with the cost per client.

A missed target is a figure, not a failure: the run exits non-zero only on errors (a daemon or client process that does
not start, an API call that fails, a client that misses an event). `--quick` is a smoke run: 20 clients, 50 events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp

from bench.api import Process, config_text, rss_mb, verdict, wait_until_answering
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 100.0
CLIENT_PROCESSES = 2
ROOM = "downloads"
KINDS = frozenset({"queue_paused", "queue_resumed"})
READY_TIMEOUT = 60.0  # seconds for a client process to connect and join all its clients
DELIVERY_TIMEOUT = 30.0  # seconds for every client to see the last event once the driver is done
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)


# --- the client processes (`python -m bench.ws --client-process URL KEY COUNT`) -------------------------------------


@dataclass
class _Listener:
    """One client: the arrival time and emit time of every queue event it got."""

    socket: aiohttp.ClientWebSocketResponse
    arrivals: list[tuple[int, float, float]]  # (seq, emitted, arrived): seconds since the epoch

    async def read(self) -> None:
        """Note every event of KINDS as it arrives; ends when the daemon closes the connection."""
        async for message in self.socket:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            arrived = time.time()
            data = json.loads(message.data)
            if data.get("type") in KINDS:
                emitted = datetime.fromisoformat(data["timestamp"]).timestamp()
                self.arrivals.append((int(data["seq"]), emitted, arrived))


async def _connect(session: aiohttp.ClientSession, url: str, key: str) -> _Listener:
    socket = await session.ws_connect(url, headers={"X-Api-Key": key}, heartbeat=None)
    if (await socket.receive_json(timeout=30))["type"] != "connected":
        raise RuntimeError("the first message was not `connected`")
    await socket.send_json({"action": "join", "room": ROOM})
    for expected in ("joined", "queue_status"):  # the join, then the room's snapshot
        kind = (await socket.receive_json(timeout=30))["type"]
        if kind != expected:
            raise RuntimeError(f"expected {expected} after joining, got {kind}")
    return _Listener(socket, [])


async def client_process(url: str, key: str, count: int) -> None:
    """Connect `count` clients, say `ready`, then on `until N` wait for N events at each and print the arrivals."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        listeners: list[_Listener] = []
        for start in range(0, count, 25):  # in batches: a SYN flood of 200 would only test the listen backlog
            listeners += await asyncio.gather(
                *(_connect(session, url, key) for _ in range(start, min(count, start + 25)))
            )
        readers = [asyncio.get_running_loop().create_task(listener.read()) for listener in listeners]
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        expected = int(line.split()[1])
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while any(len(listener.arrivals) < expected for listener in listeners) and time.monotonic() < deadline:  # noqa: ASYNC110 - a bounded poll across 100 readers; the driver reports who fell short
            await asyncio.sleep(0.05)
        print(json.dumps([listener.arrivals for listener in listeners]), flush=True)
        for listener in listeners:
            await listener.socket.close()
        for reader in readers:
            reader.cancel()


# --- the driver -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clients:
    """One client process and how many clients it holds."""

    process: asyncio.subprocess.Process
    count: int

    async def ready(self) -> None:
        """Wait for its `ready` line."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), READY_TIMEOUT)
        if line.strip() != b"ready":
            raise RuntimeError(f"a client process said {line!r} instead of ready")

    async def arrivals(self, events: int) -> list[list[tuple[int, float, float]]]:
        """Ask for the arrivals of `events` events at each client; wait for them and the process's exit."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"until {events}\n".encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), DELIVERY_TIMEOUT + 30)
        await asyncio.wait_for(self.process.wait(), 30)
        if self.process.returncode != 0 or not line:
            raise RuntimeError(f"a client process exited with {self.process.returncode}")
        result: list[list[tuple[int, float, float]]] = json.loads(line)
        return result


async def start_clients(url: str, key: str, count: int, log: Path) -> Clients:
    """A client process holding `count` clients (its stderr goes to `log`)."""
    with log.open("ab") as handle:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.ws",
            "--client-process",
            url,
            key,
            str(count),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=handle,
            limit=2**26,  # the arrivals come back as one JSON line
            cwd=ROOT,
        )
    return Clients(process, count)


async def drive(session: aiohttp.ClientSession, base: str, key: str, events: int, interval: float) -> float:
    """Pause and resume the queue alternately, one call every `interval` s; the seconds it took."""
    start = time.perf_counter()
    for index in range(events):
        action = "pause" if index % 2 == 0 else "resume"
        async with session.post(f"{base}/api/queue/{action}", headers={"X-Api-Key": key}) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"POST /api/queue/{action}: {response.status} {body[:300]!r}")
        pause = start + (index + 1) * interval - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
    return time.perf_counter() - start


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The value at `fraction` of an ascending list (nearest rank)."""
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def run(clients: int, events: int, interval: float, workdir: Path) -> None:
    """Start the daemon and the clients, drive the events, print the figures, stop everything."""
    key = secrets.token_hex(16)
    port = free_port()
    config_file = workdir / "config.yaml"
    config_file.write_text(config_text(workdir, port, key), encoding="utf-8")
    base = f"http://127.0.0.1:{port}"
    daemon = await Process.start(
        workdir / "daemon.log", sys.executable, "-m", "aniworld_daemon", "run", "-c", str(config_file), cwd=workdir
    )
    groups: list[Clients] = []
    try:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            await wait_until_answering(session, f"{base}/health", daemon)
            await asyncio.sleep(0.5)  # let the start settle before the baseline
            idle, _ = rss_mb(daemon.pid)
            shares = [
                clients // CLIENT_PROCESSES + (index < clients % CLIENT_PROCESSES) for index in range(CLIENT_PROCESSES)
            ]
            connecting = time.perf_counter()
            groups = [
                await start_clients(f"{base}/ws/connect", key, share, workdir / "clients.log")
                for share in shares
                if share
            ]
            await asyncio.gather(*(group.ready() for group in groups))
            connecting = time.perf_counter() - connecting
            connected, _ = rss_mb(daemon.pid)
            took = await drive(session, base, key, events, interval)
            after, peak = rss_mb(daemon.pid)
            results = await asyncio.gather(*(group.arrivals(events) for group in groups))
            groups = []
    finally:
        for group in groups:
            if group.process.returncode is None:
                group.process.kill()
                await group.process.wait()
        status = await daemon.stop()
    if status != 0:
        raise RuntimeError(f"the daemon exited with {status} after SIGTERM; its output:\n{daemon.tail()}")

    per_client = [arrivals for result in results for arrivals in result]
    short = [len(arrivals) for arrivals in per_client if len(arrivals) != events]
    if len(per_client) != clients or short:
        raise RuntimeError(f"{len(short)} of {len(per_client)} clients missed events (got {short[:10]} of {events})")
    seqs = [[seq for seq, _, _ in arrivals] for arrivals in per_client]
    if any(got != seqs[0] for got in seqs) or any(b <= a for a, b in zip(seqs[0], seqs[0][1:], strict=False)):
        raise RuntimeError("the clients did not all get the same events in increasing seq order")
    delays = sorted((arrived - emitted) * 1000 for arrivals in per_client for _, emitted, arrived in arrivals)
    by_event: dict[int, list[float]] = {}
    for arrivals in per_client:
        for seq, _, arrived in arrivals:
            by_event.setdefault(seq, []).append(arrived)
    spread = statistics.median((max(times) - min(times)) * 1000 for times in by_event.values())
    p99 = percentile(delays, 0.99)

    print(
        f"clients: {clients} in {len(shares)} processes, joined to {ROOM}, connected and joined in {connecting:.1f}s;"
        f" {events} events (POST /api/queue/pause and /resume alternately, one every {interval * 1000:.0f} ms,"
        f" {took:.1f}s)"
    )
    print(f"every client got every event in seq order: {events} each, {len(delays):,} deliveries")
    print(
        f"1. emit -> client latency: p50 {percentile(delays, 0.5):.2f} ms, p99 {p99:.2f} ms, max {delays[-1]:.2f} ms"
        f" (target p99 < {TARGET_P99_MS:g} ms): {verdict(p99 < TARGET_P99_MS)};"
        f" first -> last client of one event: median {spread:.2f} ms"
    )
    print(
        f"2. daemon RSS: {idle:.1f} MB before the clients, {connected:.1f} MB with {clients} clients connected"
        f" ({(connected - idle) * 1000 / clients:+.0f} kB per client), {after:.1f} MB after the events"
        f" (peak {peak:.1f} MB)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark (or, with --client-process, one of its client processes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between two API calls")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 clients, 50 events")
    parser.add_argument("--client-process", nargs=3, metavar=("URL", "KEY", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client_process:
        url, key, count = args.client_process
        asyncio.run(client_process(url, key, int(count)))
        return
    if args.quick:
        args.clients, args.events = 20, 50
    if args.clients < 1 or args.events < 2:
        parser.error("--clients must be at least 1 and --events at least 2")
    with tempfile.TemporaryDirectory(prefix="aniworld-bench-") as tmp:
        asyncio.run(run(args.clients, args.events, args.interval, Path(tmp)))


if __name__ == "__main__":
    main()
