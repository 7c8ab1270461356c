"""The WebSocket hub (`GET /ws/connect`, DESIGN section 11): rooms, snapshots on join, replay, bounded client queues.

Every event of the bus goes to the clients in its room as `{type, seq, timestamp, data}`. A client joins rooms and
gets a snapshot of each at once, so it never has to poll; after a gap it joins again with `since` and gets exactly the
events it missed from a ring buffer, or a fresh snapshot when they are older than the buffer. Each client has a bounded
queue of outgoing messages and its own writer task: a client that stops reading is closed (1013), never allowed to slow
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from aniworld_daemon import wire
from aniworld_daemon.events import Event, EventBus, EventData, EventType

LOGGER = logging.getLogger(__name__)

HISTORY = 2000  # events kept for replays after a reconnect
CLIENT_QUEUE = 512  # outgoing messages a client may lag behind before it is closed
HEARTBEAT = 30.0  # seconds between the server's pings
MAX_MESSAGE = 4096  # bytes: client messages are small JSON objects
CLOSE_TIMEOUT = 10.0  # seconds for a close to be written to a client that stopped reading, then the socket is aborted
GOODBYE_TIMEOUT = 2.0  # seconds on stop for the writers to send what they hold, `server_shutdown` last
ROOMS: Mapping[str, frozenset[EventType]] = {
    "downloads": frozenset(
        {
            EventType.DOWNLOAD_STARTED,
            EventType.DOWNLOAD_COMPLETE,
            EventType.DOWNLOAD_FAILED,
            EventType.DOWNLOAD_CANCELLED,
            EventType.QUEUE_STATUS,
            EventType.QUEUE_STARTED,
            EventType.QUEUE_STOPPED,
            EventType.QUEUE_PAUSED,
            EventType.QUEUE_RESUMED,
        }
    ),
    "download_progress": frozenset({EventType.DOWNLOAD_PROGRESS}),
    "scan_progress": frozenset(
        {EventType.SCAN_STARTED, EventType.SCAN_PROGRESS, EventType.SCAN_COMPLETE, EventType.SCAN_FAILED}
    ),
    "system": frozenset(
        {
            EventType.HEALTH_CHANGED,  # server_shutdown goes to every client, whatever its rooms (shutdown())
            EventType.SERIES_ADDED,
            EventType.SERIES_REMOVED,
            EventType.SERIES_UPDATED,
            EventType.EPISODES_FOUND,
        }
    ),
}

Snapshot = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass(eq=False)
class _Client:
    """One connected socket: its rooms and its outgoing queue (drained by its own writer task).

    `rooms` maps each joined room to the seq the client is up to date with there (its snapshot's or its replay's):
    an event at or below it is already known to the client and is not sent again.
    """

    socket: web.WebSocketResponse
    transport: asyncio.Transport | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    rooms: dict[str, int] = field(default_factory=dict)
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))
    writer: asyncio.Task[None] | None = None
    closing: bool = False


class WebSocketHub:
    """Owns the connected clients, the rooms and the replay buffer; follows the bus."""

    def __init__(self, bus: EventBus, snapshot: Snapshot, *, version: str) -> None:
        self._bus = bus
        self._snapshot = snapshot  # room -> the message that brings a client up to date
        self._version = version
        self._clients: set[_Client] = set()
        self._history: deque[tuple[int, EventType, str]] = deque(maxlen=HISTORY)
        self._tasks: set[asyncio.Task[None]] = set()  # closes of clients that stopped reading
        self._unsubscribe = bus.subscribe(self._on_event)

    @property
    def client_count(self) -> int:
        """How many clients are connected."""
        return len(self._clients)

    def queued(self) -> list[int]:
        """How many messages wait in each client's outgoing queue (how far behind the clients are)."""
        return [client.queue.qsize() for client in self._clients]

    def _on_event(self, event: Event[EventData]) -> None:
        text = json.dumps(wire.event_json(event), separators=(",", ":"))
        self._history.append((event.seq, event.type, text))
        for client in list(self._clients):
            if any(event.type in ROOMS[room] and event.seq > known for room, known in client.rooms.items()):
                self._send(client, text)

    def _send(self, client: _Client, text: str) -> None:
        """Queue a message; a client whose queue is full is closed: it stopped reading."""
        if client.closing:
            return
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            client.closing = True
            LOGGER.info("Closing WebSocket client %s: it stopped reading (%d messages behind)", client.id, CLIENT_QUEUE)
            task = asyncio.get_running_loop().create_task(self._drop(client))
            self._tasks.add(task)  # the loop keeps weak references only
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _drop(client: _Client) -> None:
        """Close a client that stopped reading (1013); abort its socket when even the close cannot be written."""
        try:
            await asyncio.wait_for(
                client.socket.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow: reconnect with since"),
                CLOSE_TIMEOUT,
            )
        except Exception:
            LOGGER.debug("Aborting WebSocket client %s: the close did not get through", client.id)
            if client.transport is not None:
                client.transport.abort()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """The `/ws/connect` handler (credentials and origin were checked by the middlewares)."""
        socket = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_MESSAGE)
        await socket.prepare(request)
        client = _Client(socket, request.transport)
        self._clients.add(client)
        writer = asyncio.get_running_loop().create_task(self._write(client), name=f"ws-{client.id[:8]}")
        client.writer = writer
        self._send(
            client,
            _message(
                "connected",
                {
                    "connection_id": client.id,
                    "server_version": self._version,
                    "seq": self._bus.last_seq,
                },
            ),
        )
        try:
            async for message in socket:
                if message.type is WSMsgType.TEXT:
                    await self._receive(client, message.data)
                elif message.type is WSMsgType.BINARY:
                    self._send(client, _error("bad_message", "send JSON text messages"))
        finally:
            self._clients.discard(client)
            client.closing = True
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return socket

    async def _write(self, client: _Client) -> None:
        """Send the client's queue in order; one writer per client, so a slow one waits alone."""
        while (text := await client.queue.get()) is not None:
            try:
                await client.socket.send_str(text)
            except (ConnectionError, RuntimeError):  # the client went away meanwhile
                return

    async def _receive(self, client: _Client, text: str) -> None:
        """One client message: join, leave or ping; anything else gets an `error` message."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes ("[[[[...")
            self._send(client, _error("bad_message", 'messages are JSON objects like {"action": "ping"}'))
            return
        if not isinstance(data, dict):
            self._send(client, _error("bad_message", 'messages are JSON objects like {"action": "ping"}'))
            return
        action = data.get("action")
        inner = data.get("data")
        nested: dict[str, Any] = inner if isinstance(inner, dict) else {}
        room = data.get("room", nested.get("room"))
        since = data.get("since", nested.get("since"))
        if action == "ping":
            self._send(client, _message("pong", {"seq": self._bus.last_seq}))
        elif action in ("join", "leave"):
            if not isinstance(room, str) or room not in ROOMS:
                self._send(client, _error("unknown_room", f"room must be one of {', '.join(ROOMS)}", room=room))
            elif action == "leave":
                client.rooms.pop(room, None)
                self._send(client, _message("left", {"room": room}))
            elif since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
                self._send(client, _error("bad_since", "since must be the seq of the last event you saw (0 or more)"))
            else:
                await self._join(client, room, since)
        else:
            self._send(client, _error("unknown_action", "action must be join, leave or ping", action=action))

    async def _join(self, client: _Client, room: str, since: int | None) -> None:
        """Add the client to a room and bring it up to date: the events since `since`, else a snapshot.

        The snapshot is read before the client enters the room, and the events the hub got meanwhile follow it, so the
        client sees seq only grow: none before its snapshot, none twice, none lost.
        """
        kinds = ROOMS[room]
        oldest = self._history[0][0] if self._history else self._bus.last_seq + 1
        if since is not None and since + 1 >= oldest:
            missed = [text for seq, kind, text in self._history if seq > since and kind in kinds]
            self._send(client, _message("joined", {"room": room, "replayed": len(missed)}))
            for text in missed:
                self._send(client, text)
            client.rooms[room] = max(since, self._delivered())
            return
        try:
            snapshot = await self._snapshot(room)
        except Exception:
            LOGGER.exception("Cannot build the %s snapshot for WebSocket client %s", room, client.id)
            self._send(client, _error("snapshot_failed", f"the {room} snapshot failed: try joining again", room=room))
            return
        known = int(snapshot["seq"])
        self._send(client, _message("joined", {"room": room, "replayed": 0}))
        self._send(client, json.dumps(snapshot, separators=(",", ":")))
        for seq, kind, text in self._history:  # what arrived while the snapshot was read
            if seq > known and kind in kinds:
                self._send(client, text)
        client.rooms[room] = max(known, self._delivered())

    def _delivered(self) -> int:
        """The seq of the newest event the hub has handled (the bus may have newer ones on their way)."""
        return self._history[-1][0] if self._history else 0

    async def shutdown(self) -> None:
        """Tell every client the server stops, after what its writer still holds (bounded), and close them (1001)."""
        self._unsubscribe()
        shutdown = _message("server_shutdown", {"seq": self._bus.last_seq})
        clients = list(self._clients)
        for client in clients:
            self._send(client, shutdown)
            if not client.closing:
                client.closing = True
                with contextlib.suppress(asyncio.QueueFull):
                    client.queue.put_nowait(None)  # the writer ends after the goodbye
        writers = [client.writer for client in clients if client.writer is not None and not client.writer.done()]
        if writers:
            await asyncio.wait(writers, timeout=GOODBYE_TIMEOUT)

        async def close(client: _Client) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    client.socket.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping"), GOODBYE_TIMEOUT
                )

        await asyncio.gather(*(close(client) for client in clients))


def _message(kind: str, data: dict[str, Any]) -> str:
    return json.dumps(wire.ws_message(kind, data), separators=(",", ":"))


def _error(code: str, message: str, **details: Any) -> str:
    return json.dumps(wire.ws_error(code, message, details), separators=(",", ":"))
