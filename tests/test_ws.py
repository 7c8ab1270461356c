"""The WebSocket hub (`/ws/connect`, DESIGN section 11) through the real Application over real HTTP and WebSocket.

Snapshots on join, a real download's events with their seq and throttled progress, replay after a reconnect, a client
that stops reading (closed 1013, never slowing the others), bad messages, origin and credential checks, and the
goodbye on stop. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from aniworld_daemon import __version__
from aniworld_daemon.app import Application
from aniworld_daemon.events import (
    DownloadProgress,
    EventType,
    HealthChanged,
    QueuePaused,
    QueueResumed,
)
from aniworld_daemon.models import HealthStatus
from aniworld_daemon.web import ws
from aniworld_daemon.web.ws import CLIENT_QUEUE, HISTORY
from tests.fakesite.server import FakeSite
from tests.helpers import Recorder, StartApp, finished

SERIES = "blade-of-dawn"  # followed from the config; season 1 downloads from the fake site
ROOMS = {
    "downloads": "queue_status",
    "download_progress": "download_progress",
    "scan_progress": "scan_status",
    "system": "system_status",
}
WAIT = 10.0  # seconds: the bound of every single wait for a message


def ws_yaml(site: FakeSite, *, api: str = "", auto_start: bool = False) -> str:
    """Lines after minimal_config's `api:` section (`api`), then a daemon on the fake site, quiet until asked."""
    return api + (
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "  cooldown: 1s\n  languages: [de-sub]\n  hosters: [doodstream]\n"
        "schedule:\n  run_on_start: false\n"
        f"downloads:\n  auto_start: {str(auto_start).lower()}\n  min_free_space: 0\n  retry_backoff: 1s\n"
        f"series:\n  - key: {SERIES}\n    seasons: [1]\n"
    )


@dataclass
class Peer:
    """One WebSocket client whose reader task records every message with its arrival time (time.time())."""

    socket: aiohttp.ClientWebSocketResponse
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def start(self) -> Peer:
        """Start reading in the background."""
        self.reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        async for message in self.socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.received.append((time.time(), json.loads(message.data)))

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message so far, in order."""
        return [message for _, message in self.received]

    def of(self, *kinds: str) -> list[dict[str, Any]]:
        """The messages of these types."""
        return [message for message in self.messages if message["type"] in kinds]

    def events(self) -> list[dict[str, Any]]:
        """The event messages (they carry `seq` and `timestamp`; snapshots and replies do not carry both)."""
        return [message for message in self.messages if "timestamp" in message]

    async def send(self, message: Any) -> None:
        """Send one JSON message."""
        await self.socket.send_str(json.dumps(message))

    async def wait(self, check: Callable[[list[dict[str, Any]]], bool], what: str, within: float = WAIT) -> None:
        """Poll the received messages until `check` holds; fail (bounded) otherwise."""
        deadline = time.monotonic() + within
        while not check(self.messages):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {within} s waiting for {what}; got {self.messages[-10:]}")
            await asyncio.sleep(0.01)

    async def join_then_stop_reading(self, room: str) -> None:
        """Join `room` reading the answers by hand (connected, joined, the snapshot), then read nothing more."""
        assert self.reader is None
        await self.send({"action": "join", "room": room})
        kinds = [(await self.socket.receive_json(timeout=WAIT))["type"] for _ in range(3)]
        assert kinds == ["connected", "joined", ROOMS[room]], kinds

    async def more_than(self, count: int, what: str) -> None:
        """Wait until more than `count` messages arrived."""
        await self.wait(lambda got: len(got) > count, what)

    async def reply(self, message: Any, kind: str, count: int = 1) -> list[dict[str, Any]]:
        """Send `message` and return the `count` messages that follow it, once there; the first must be a `kind`."""
        before = len(self.received)
        await self.send(message)
        await self.wait(lambda got: len(got) >= before + count, f"{count} answers to {message!r}")
        answers = self.messages[before : before + count]
        assert answers[0]["type"] == kind, answers
        return answers

    async def closed(self, within: float = WAIT) -> int | None:
        """Wait until the server closed the connection; its close code."""
        assert self.reader is not None
        await asyncio.wait_for(self.reader, within)
        return self.socket.close_code


@dataclass
class Hub:
    """A started Application and how to reach its WebSocket."""

    app: Application
    session: aiohttp.ClientSession
    origin: str  # http://host:port

    @property
    def url(self) -> str:
        """The WebSocket endpoint."""
        return f"{self.origin}/ws/connect"

    async def connect(self, *, key: str | None = None, read: bool = True, **options: Any) -> Peer:
        """A client sending the API key in X-Api-Key (or `key`), its `connected` message received."""
        headers = {"X-Api-Key": key or self.app.auth.key, **options.pop("headers", {})}
        socket = await self.session.ws_connect(self.url, headers=headers, **options)
        peer = Peer(socket)
        if read:
            peer.start()
            await peer.wait(lambda got: bool(got), "the connected message")
            assert peer.messages[0]["type"] == "connected", peer.messages
        return peer

    async def joined(self, *rooms: str) -> Peer:
        """A client joined to `rooms`, each snapshot received."""
        peer = await self.connect()
        for room in rooms:
            await peer.reply({"action": "join", "room": room}, "joined", 2)
        return peer


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The test's HTTP client (closes every WebSocket at the end)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


StartHub = Callable[..., Any]


@pytest.fixture
def start_hub(fakesite: FakeSite, start_app: StartApp, session: aiohttp.ClientSession) -> StartHub:
    """Start the real Application on `ws_yaml(**options)` (a Recorder `events` of the bus when given)."""

    async def start(events: Recorder | None = None, **options: Any) -> Hub:
        app = await start_app(ws_yaml(fakesite, **options), events)
        host, port = app.web.addresses[0]
        return Hub(app, session, f"http://{host}:{port}")

    return start


@pytest.fixture
async def hub(start_hub: StartHub) -> Hub:
    """The daemon with default options."""
    started: Hub = await start_hub()
    return started


def strictly_increasing(seqs: list[int]) -> bool:
    """Whether every seq is above the one before."""
    return all(later > earlier for earlier, later in itertools.pairwise(seqs))


# --- snapshots, join and leave --------------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True], ids=["room-at-top", "room-in-data"])
async def test_joining_a_room_sends_its_snapshot(hub: Hub, nested: bool) -> None:
    app = hub.app
    items = await app.downloader.add(SERIES, [(1, 1), (1, 2)])
    peer = await hub.connect()
    connected = peer.messages[0]["data"]
    assert connected["seq"] == app.bus.last_seq
    assert connected["server_version"] == __version__
    assert len(connected["connection_id"]) >= 16

    snapshots: dict[str, dict[str, Any]] = {}
    for room, kind in ROOMS.items():
        join = {"action": "join", "data": {"room": room}} if nested else {"action": "join", "room": room}
        joined, snapshot = await peer.reply(join, "joined", 2)
        assert joined["data"] == {"room": room, "replayed": 0}
        assert snapshot["type"] == kind, snapshot
        assert snapshot["seq"] == app.bus.last_seq
        snapshots[room] = snapshot["data"]

    # the queue snapshot is what GET /api/queue/status answers: the full queue, no polling needed
    async with hub.session.get(f"{hub.origin}/api/queue/status", headers={"X-Api-Key": app.auth.key}) as response:
        assert response.status == 200
        assert snapshots["downloads"] == await response.json()
    pending = snapshots["downloads"]["status"]["pending_queue"]
    assert [item["id"] for item in pending] == [item.id for item in items]
    assert snapshots["scan_progress"]["running"] is False
    assert snapshots["system"]["version"] == __version__
    assert {check["name"] for check in snapshots["system"]["checks"]}

    # leave: the room's events stop; ping answers with the newest seq
    leave = {"action": "leave", "data": {"room": "downloads"}} if nested else {"action": "leave", "room": "downloads"}
    left = await peer.reply(leave, "left")
    assert left[0]["data"] == {"room": "downloads"}
    await app.downloader.pause()
    app.bus.emit(HealthChanged(HealthStatus.DEGRADED, ("a test problem",)))
    await peer.wait(lambda got: any(m["type"] == "health_changed" for m in got), "health_changed in system")
    [pong] = await peer.reply({"action": "ping"}, "pong")
    assert pong["data"]["seq"] == app.bus.last_seq
    assert peer.of("queue_paused") == []


# --- a real download ------------------------------------------------------------------------------------------------


async def test_a_download_streams_started_progress_complete_in_seq_order(
    start_hub: StartHub, fakesite: FakeSite
) -> None:
    recorder = Recorder()
    hub = await start_hub(recorder, auto_start=True)
    app = hub.app
    peer = await hub.joined("downloads", "download_progress")
    fakesite.knobs.bandwidth = 400_000  # an episode takes a few seconds: progress flows
    [item] = await app.downloader.add(SERIES, [(1, 2)])
    await peer.wait(lambda got: any(m["type"] == "download_complete" for m in got), "download_complete", 60)
    [done] = await finished(app, item.id, within=10)
    assert done.file_path is not None
    await app.bus.drain()

    events = peer.events()
    seqs = [event["seq"] for event in events]
    assert strictly_increasing(seqs), seqs
    mine = [event for event in events if event["data"].get("item_id") == item.id]
    kinds = [event["type"] for event in mine]
    assert kinds[0] == "download_started", kinds
    assert kinds[-1] == "download_complete", kinds
    progress = [event for event in mine if event["type"] == "download_progress"]
    assert len(progress) >= 3, kinds
    assert set(kinds) <= {"download_started", "download_progress", "download_complete"}, kinds
    assert mine[-1]["data"]["file_path"] == done.file_path
    # at most 2 progress events per second per download (the last, final one aside): any 3 span a second
    stamps = [datetime.fromisoformat(event["timestamp"]).timestamp() for event in progress[:-1]]
    assert all(later - earlier >= 0.9 for earlier, later in zip(stamps, stamps[2:], strict=False)), stamps
    # exactly the bus' events of these rooms, seq for seq
    wanted = {EventType(kind) for kind in ("download_started", "download_progress", "download_complete")}
    bus_seqs = [event.seq for event in recorder.events if event.type in wanted and event.seq > seqs[0] - 1]
    assert [e["seq"] for e in events if EventType(e["type"]) in wanted] == bus_seqs


# --- replay after a gap ---------------------------------------------------------------------------------------------


async def test_since_replays_exactly_the_missed_events_or_a_snapshot_when_too_old(hub: Hub) -> None:
    app = hub.app
    stayed = await hub.joined("downloads")
    leaver = await hub.joined("downloads")
    await app.downloader.pause()
    await stayed.wait(lambda got: any(m["type"] == "queue_paused" for m in got), "queue_paused")
    await leaver.wait(lambda got: any(m["type"] == "queue_paused" for m in got), "queue_paused")
    last = leaver.events()[-1]["seq"]
    await leaver.socket.close()

    # while away: queue events in its room, and events of other rooms it must not get
    await app.downloader.resume()
    app.bus.emit(HealthChanged(HealthStatus.DEGRADED, ("away",)))
    await app.downloader.add(SERIES, [(1, 3)])
    app.bus.emit(DownloadProgress("elsewhere", 1, 2, None, None, 50.0))
    await app.downloader.pause()
    await stayed.wait(lambda got: len([m for m in got if m["type"] == "queue_paused"]) == 2, "the second pause")
    missed = [event for event in stayed.events() if event["seq"] > last]
    assert [event["type"] for event in missed] == ["queue_resumed", "queue_status", "queue_paused"]

    back = await hub.connect()
    joined, *replayed = await back.reply(
        {"action": "join", "data": {"room": "downloads", "since": last}}, "joined", 1 + len(missed)
    )
    assert joined["data"] == {"room": "downloads", "replayed": len(missed)}
    assert replayed == missed
    # nothing more: no snapshot after a replay
    [pong] = await back.reply({"action": "ping"}, "pong")
    assert back.messages[-1] == pong
    assert len(back.messages) == 2 + len(missed) + 1

    # a since older than the buffer: a snapshot instead
    for index in range(HISTORY + 10):
        app.bus.emit(DownloadProgress("filler", index, None, None, None, None))
    await app.bus.drain()
    again = await hub.connect()
    joined, snapshot = await again.reply({"action": "join", "room": "downloads", "since": last}, "joined", 2)
    assert joined["data"] == {"room": "downloads", "replayed": 0}
    assert snapshot["type"] == "queue_status"
    assert "timestamp" not in snapshot
    assert snapshot["seq"] == app.bus.last_seq
    assert snapshot["data"]["status"]["is_paused"] is True


# --- a client that stops reading ------------------------------------------------------------------------------------


def tiny_receive_buffer(addr_info: Any) -> socket.socket:
    """A client socket with a small receive buffer: a client that does not read backs up sooner."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


@pytest.mark.timeout(60)
async def test_a_client_that_never_reads_is_closed_and_the_others_keep_up(hub: Hub) -> None:
    app = hub.app
    readers = [await hub.joined("download_progress") for _ in range(50)]
    connector = aiohttp.TCPConnector(socket_factory=tiny_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as slow_session:
        slow = await Hub(app, slow_session, hub.origin).connect(read=False)
        await slow.join_then_stop_reading("download_progress")
        assert app.web.hub.client_count == 51

        # bursts of fat progress events (~2 kB each), 50 per 10 ms, until the non-reader is 512 messages behind
        # whatever its socket buffers hold
        first = app.bus.last_seq + 1
        padding = "p" * 2000
        emitted = 0
        for _ in range(60):
            for _ in range(50):
                app.bus.emit(DownloadProgress(f"burst-{emitted}-{padding}", emitted, None, None, None, None))
                emitted += 1
            await asyncio.sleep(0.01)
        last = app.bus.last_seq

        async def everyone_has_everything() -> None:
            for peer in readers:
                await peer.wait(lambda got: bool(got) and got[-1].get("seq") == last, "every burst event", within=20)

        await everyone_has_everything()
        for peer in readers:
            seqs = [event["seq"] for event in peer.events()]
            assert seqs == list(range(first, last + 1))
        delays = sorted(
            arrived - datetime.fromisoformat(message["timestamp"]).timestamp()
            for peer in readers
            for arrived, message in peer.received
            if "timestamp" in message
        )
        assert delays[-1] < 5.0, f"slowest delivery {delays[-1]:.2f} s (median {delays[len(delays) // 2]:.3f} s)"

        # the non-reader: whatever its buffers held, then the close 1013 (it was dropped, not waited for)
        slow.start()
        code = await slow.closed(within=20)
        assert code == aiohttp.WSCloseCode.TRY_AGAIN_LATER
        got = len(slow.events())
        assert CLIENT_QUEUE < got < emitted, got
        assert app.web.hub.client_count == 50

        # and the others still hear the next event at once
        app.bus.emit(DownloadProgress("after", 1, None, None, None, None))
        for peer in readers:
            await peer.wait(lambda got: got[-1]["data"].get("item_id") == "after", "the event after", within=5)
        assert all(not peer.socket.closed for peer in readers)


# --- bad messages ---------------------------------------------------------------------------------------------------


async def test_bad_messages_get_an_error_and_the_connection_stays(hub: Hub) -> None:
    peer = await hub.connect()
    cases: list[tuple[str | bytes, str]] = [
        ("not json at all", "bad_message"),
        ("[1, 2]", "bad_message"),
        ('"join"', "bad_message"),
        ('{"action": "dance"}', "unknown_action"),
        ("{}", "unknown_action"),
        ('{"action": "join", "room": "kitchen"}', "unknown_room"),
        ('{"action": "join"}', "unknown_room"),
        ('{"action": "leave", "data": {"room": 7}}', "unknown_room"),
        ('{"action": "join", "room": "downloads", "since": -1}', "bad_since"),
        ('{"action": "join", "room": "downloads", "since": "12"}', "bad_since"),
        ('{"action": "join", "data": {"room": "downloads", "since": true}}', "bad_since"),
        ('{"action": "join", "room": "downloads", "since": 1.5}', "bad_since"),
        (b"\x00\x01binary", "bad_message"),
    ]
    for text, code in cases:
        before = len(peer.received)
        if isinstance(text, bytes):
            await peer.socket.send_bytes(text)
        else:
            await peer.socket.send_str(text)
        await peer.more_than(before, f"the answer to {text!r}")
        error = peer.messages[before]
        assert error["type"] == "error", (text, error)
        assert error["data"]["code"] == code, (text, error)
        assert error["data"]["message"]
        assert isinstance(error["data"]["details"], dict)
        assert not peer.socket.closed
    # a bad since joined nothing; the connection still works
    await peer.reply({"action": "ping"}, "pong")
    hub.app.bus.emit(QueuePaused())
    hub.app.bus.emit(QueueResumed())
    await peer.reply({"action": "join", "room": "downloads", "since": hub.app.bus.last_seq - 2}, "joined", 3)
    assert [m["type"] for m in peer.messages[-2:]] == ["queue_paused", "queue_resumed"]


# --- credentials and origins ----------------------------------------------------------------------------------------


async def test_credentials_are_required_and_the_key_may_ride_in_the_url(hub: Hub) -> None:
    for headers in ({}, {"X-Api-Key": "wrong-key-0123456789"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await hub.session.ws_connect(hub.url, headers=headers)
        assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await hub.session.ws_connect(hub.url, params={"api_key": "wrong-key-0123456789"})
    assert refused.value.status == 401

    socket = await hub.session.ws_connect(hub.url, params={"api_key": hub.app.auth.key})
    peer = Peer(socket).start()
    await peer.wait(lambda got: bool(got), "connected")
    assert peer.messages[0]["type"] == "connected"
    await peer.reply({"action": "ping"}, "pong")
    # bearer works too
    bearer = await hub.session.ws_connect(hub.url, headers={"Authorization": f"Bearer {hub.app.auth.key}"})
    assert (await bearer.receive_json(timeout=WAIT))["type"] == "connected"
    await bearer.close()


async def test_cross_origin_upgrades_are_refused_unless_allowed(start_hub: StartHub) -> None:
    allowed = "http://dashboard.example:8123"
    hub = await start_hub(api=f"  allowed_origins: ['{allowed}']\n")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await hub.connect(headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403
    assert hub.app.web.hub.client_count == 0

    for origin in (allowed, hub.origin):  # the listed one, and the daemon's own page
        peer = await hub.connect(headers={"Origin": origin})
        await peer.reply({"action": "ping"}, "pong")
    assert hub.app.web.hub.client_count == 2


async def test_without_allowed_origins_a_foreign_origin_is_refused(hub: Hub) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await hub.connect(headers={"Origin": "http://dashboard.example:8123"})
    assert refused.value.status == 403


# --- stop -----------------------------------------------------------------------------------------------------------


async def test_stop_says_server_shutdown_to_every_client_and_closes_1001(hub: Hub) -> None:
    peers = [await hub.connect()] + [await hub.joined(room) for room in ROOMS]
    # a backlog in flight must not swallow the goodbye
    for index in range(200):
        hub.app.bus.emit(DownloadProgress(f"busy-{index}", index, None, None, None, None))
    await hub.app.stop()
    for peer in peers:
        assert await peer.closed() == aiohttp.WSCloseCode.GOING_AWAY
        assert peer.messages[-1]["type"] == "server_shutdown", peer.messages[-3:]


async def test_events_during_a_join_follow_the_snapshot_and_none_is_lost(start_hub: StartHub) -> None:
    recorder = Recorder()
    hub = await start_hub(recorder)
    app = hub.app
    peer = await hub.connect()
    churning = True

    async def churn() -> None:  # queue events all the time, so some land while the snapshot is being read
        while churning:
            app.bus.emit(QueueResumed())
            await asyncio.sleep(0.0005)  # not faster than the client reads: its queue would overflow (1013)

    task = asyncio.get_running_loop().create_task(churn())
    try:
        for _ in range(5):
            start = len(peer.received)
            await peer.reply({"action": "join", "room": "downloads"}, "joined", 2)
            await asyncio.sleep(0.05)
            await peer.send({"action": "leave", "room": "downloads"})
            await peer.wait(lambda got, n=start: any(m["type"] == "left" for m in got[n:]), "left")
            window = peer.messages[start:]
            window = window[: [m["type"] for m in window].index("left")]
            snapshot = window[1]
            assert snapshot["type"] == "queue_status", window[:3]
            assert "timestamp" not in snapshot
            events = [m for m in window[2:] if m["type"] == "queue_resumed"]
            assert events, "no event arrived after the snapshot"
            seqs = [m["seq"] for m in events]
            assert seqs[0] > snapshot["seq"], (snapshot["seq"], seqs[:5])
            assert strictly_increasing(seqs), seqs
            # no gap: every event of the room between the snapshot and the last one received
            expected = [e.seq for e in recorder.events if snapshot["seq"] < e.seq <= seqs[-1]]
            assert seqs == expected
    finally:
        churning = False
        await task


@pytest.mark.timeout(60)
async def test_the_goodbye_waits_behind_a_backlog(start_hub: StartHub) -> None:
    hub = await start_hub()
    app = hub.app
    connector = aiohttp.TCPConnector(socket_factory=tiny_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as slow_session:
        slow = await Hub(app, slow_session, hub.origin).connect(read=False)
        await slow.join_then_stop_reading("download_progress")
        padding = "p" * 4000
        emitted = 0
        # fat events until the hub holds a backlog for it (its socket buffers full), far from the 512 limit
        while max(app.web.hub.queued(), default=0) < 100:
            assert emitted < 5000, "no backlog formed"
            for _ in range(20):
                app.bus.emit(DownloadProgress(f"slow-{emitted}-{padding}", emitted, None, None, None, None))
                emitted += 1
            await asyncio.sleep(0.005)
        stopping = asyncio.get_running_loop().create_task(app.stop())
        await asyncio.sleep(0.1)
        slow.start()  # it reads again: it gets everything, then the goodbye
        assert await slow.closed(within=20) == aiohttp.WSCloseCode.GOING_AWAY
        await asyncio.wait_for(stopping, 30)
        assert len(slow.events()) == emitted
        assert slow.messages[-1]["type"] == "server_shutdown"


@pytest.mark.timeout(60)
async def test_a_client_that_never_reads_again_is_cut_off(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws, "CLOSE_TIMEOUT", 0.5)  # how long the hub tries to write the close before it aborts
    app = hub.app
    reader = await hub.joined("download_progress")
    connector = aiohttp.TCPConnector(socket_factory=tiny_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as slow_session:
        slow = await Hub(app, slow_session, hub.origin).connect(read=False)
        await slow.join_then_stop_reading("download_progress")
        padding = "p" * 4000
        emitted = 0
        while app.web.hub.client_count == 2:  # until the hub gives up on it: overflow, close not written, abort
            assert emitted < 10_000, "the non-reader was never dropped"
            for _ in range(20):
                app.bus.emit(DownloadProgress(f"cut-{emitted}-{padding}", emitted, None, None, None, None))
                emitted += 1
            await asyncio.sleep(0.01)
        assert emitted > CLIENT_QUEUE
        assert app.web.hub.client_count == 1
        await reader.wait(lambda got: len(reader.events()) == emitted, "every event at the reader", within=20)
        assert not reader.socket.closed
