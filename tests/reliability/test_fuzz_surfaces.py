"""Bad input on every surface of the real daemon: the WebSocket, MQTT and every REST route.

One Application per test, on the in-process fake site (nothing leaves 127.0.0.1) and a real mosquitto:

- the WebSocket (`/ws/connect`): raw TCP bytes after the upgrade (random, truncated frames, unmasked frames, reserved
  bits, unknown opcodes, huge lengths, invalid UTF-8) and well-formed frames carrying bad messages (binary, huge,
  not JSON, deeply nested, unknown actions and rooms). Each connection ends in an `error` message or a close, the hub
  forgets it, and another client and the REST API keep working;
- MQTT: generated payloads (binary, invalid UTF-8, JSON of the wrong types, deep, huge) on every `set/` and
  `request/` topic the bridge subscribes to. A request always gets its `response/` (ok or error, the transaction
  echoed); a `set/` word that is not one logs why it was ignored; afterwards a valid command still works;
- REST: every route of the running app's router with fixed nasty bodies and generated ones (bytes, wrong content types,
  JSON of wrong types, deep nesting, huge numbers, unicode). Every answer is below 500, every refusal is the error
  envelope of wire.error_json, and a validation error names its field.

Nothing may log a traceback: the `caplog` records are checked at the end of every test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import struct
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import aiomqtt
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from aniworld_daemon.app import Application
from aniworld_daemon.health import CheckLevel
from aniworld_daemon.mqtt.bridge import QUEUE_WORDS, REQUESTS, SWITCH_WORDS
from tests.fakesite.server import FakeSite
from tests.helpers import Broker, StartApp, api_session

pytestmark = [
    pytest.mark.timeout(180),
    # The daemon, on the test's loop, draws from `random` (jitter, backoff) while Hypothesis generates the next
    # input in its worker thread; Hypothesis takes that for a strategy using `random`. Ours do not.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

SERIES = "blade-of-dawn"  # followed from the config
BASE = "aniworld"
WAIT = 10.0  # seconds: the bound of every single wait for an answer
EXAMPLES = int(os.environ.get("SURFACE_FUZZ_EXAMPLES", "40"))  # generated inputs per surface; more: deeper
DEEP = 3000  # nesting levels: past the JSON decoder's recursion limit, within every size limit but the WebSocket's
T = TypeVar("T")

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # CI runs the same inputs every time
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows the input as generated
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


def surface_yaml(site: FakeSite, broker: Broker) -> str:
    """Lines after minimal_config's `api:`: the fake site, a followed series, MQTT on `broker`, nothing automatic."""
    return (
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "  cooldown: 1s\n  languages: [de-sub]\n  hosters: [doodstream]\n"
        "schedule:\n  run_on_start: false\n"
        "downloads:\n  auto_start: false\n  min_free_space: 0\n"
        f"series:\n  - key: {SERIES}\n    seasons: [1]\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  keepalive: 5\n  discovery: false\n"
    )


@dataclass
class Surface:
    """The running daemon, an HTTP client with its key, and the test's loop (for Hypothesis' worker thread)."""

    app: Application
    http: aiohttp.ClientSession
    loop: asyncio.AbstractEventLoop
    host: str
    port: int

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the app's loop from Hypothesis' worker thread; bounded."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)


@pytest.fixture
async def surface(fakesite: FakeSite, broker: Broker, start_app: StartApp) -> AsyncIterator[Surface]:
    """The Application with MQTT on the module's broker, connected, and an HTTP client sending its API key."""
    app = await start_app(surface_yaml(fakesite, broker))
    assert app.mqtt is not None
    deadline = time.monotonic() + WAIT
    while app.mqtt.check().level is not CheckLevel.OK:
        assert time.monotonic() < deadline, "the bridge did not connect"
        await asyncio.sleep(0.05)
    host, port = app.web.addresses[0]
    async with api_session(app, timeout=30) as http:
        yield Surface(app, http, asyncio.get_running_loop(), host, port)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every log record with an exception attached (or a traceback in its text)."""
    return [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.exc_info or "Traceback" in record.getMessage()
    ]


async def still_serving(surface: Surface) -> None:
    """Another WebSocket client connects, joins and gets its pong; `/api/system/status` answers 200."""
    async with surface.http.ws_connect("/ws/connect") as socket:
        assert (await socket.receive_json(timeout=WAIT))["type"] == "connected"
        await socket.send_json({"action": "join", "room": "downloads"})
        assert [(await socket.receive_json(timeout=WAIT))["type"] for _ in range(2)] == ["joined", "queue_status"]
        await socket.send_json({"action": "ping"})
        assert (await socket.receive_json(timeout=WAIT))["type"] == "pong"
    async with surface.http.get("/api/system/status") as response:
        assert response.status == 200, await response.text()


async def hub_empties(surface: Surface) -> None:
    """The hub forgets every closed client (bounded)."""
    deadline = time.monotonic() + WAIT
    while surface.app.web.hub.client_count:
        assert time.monotonic() < deadline, f"{surface.app.web.hub.client_count} WebSocket client(s) never forgotten"
        await asyncio.sleep(0.02)


# ==================================================================================================== WebSocket


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True, length: int | None = None
) -> bytes:
    """A WebSocket frame as a client sends it (RFC 6455 5.2); `length` overrides the announced payload length."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = secrets.token_bytes(4)
    return head + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


@contextlib.asynccontextmanager
async def upgraded(surface: Surface) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw TCP connection upgraded to a WebSocket with the API key (the `connected` message still unread)."""
    reader, writer = await asyncio.open_connection(surface.host, surface.port)
    try:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        writer.write(
            (
                f"GET /ws/connect?api_key={surface.app.auth.key} HTTP/1.1\r\nHost: {surface.host}:{surface.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101"), head
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def send_raw_then_hang_up(surface: Surface, data: bytes) -> bytes:
    """Write `data` after the upgrade, half-close, and read until the server ends the connection (bounded)."""
    async with upgraded(surface) as (reader, writer):
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            writer.write_eof()
        received = b""
        deadline = time.monotonic() + WAIT
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(65536), max(deadline - time.monotonic(), 0.01)):
                received += chunk
        return received


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each complete frame the server sent (server frames are never masked)."""
    frames = []
    while len(data) >= 2:
        size, start = data[1] & 0x7F, 2
        if size == 126:
            size, start = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, start = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < start + size:
            break
        frames.append((data[0] & 0x0F, data[start : start + size]))
        data = data[start + size :]
    return frames


def close_code(received: bytes) -> int | None:
    """The code of the server's close frame after its `connected` message; None when it just hung up."""
    frames = server_frames(received)  # what followed the 101 answer
    assert frames, received[:300]
    assert frames[0][0] == 0x1, frames  # the `connected` message
    assert json.loads(frames[0][1])["type"] == "connected"
    rest = frames[1:]
    if not rest:
        return None
    assert [opcode for opcode, _ in rest] == [0x8], rest  # a close and nothing after it
    return int(struct.unpack("!H", rest[0][1][:2])[0])


PROTOCOL, INVALID_DATA, TOO_BIG = 1002, 1007, 1009
EOF_ONLY = None  # bytes that never complete a frame: the server's answer to the hang-up is to end the connection
# Bytes after the upgrade -> how the server may end the connection (its close code, or EOF_ONLY).
RAW_CASES: dict[str, tuple[bytes, set[int | None]]] = {
    "random bytes": (bytes(range(256)) * 4, {PROTOCOL}),
    "an HTTP request instead of frames": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", {PROTOCOL}),
    "a truncated header": (b"\x81", {EOF_ONLY}),
    "a truncated frame": (frame(0x1, b'{"action": "ping"}')[:9], {EOF_ONLY}),
    "a length of 2^63-1 and a few bytes": (frame(0x1, b"abc", length=(1 << 63) - 1), {TOO_BIG}),
    "a length over the limit": (frame(0x2, b"x" * 100, length=1 << 20), {TOO_BIG}),
    # RFC 6455 wants a close here; aiohttp reads the frame and drops it. Either way nothing answers it.
    "an unmasked client frame": (frame(0x1, b'{"action": "ping"}', mask=False), {EOF_ONLY, PROTOCOL}),
    "reserved bits set": (frame(0x1, b'{"action": "ping"}', rsv=0b111), {PROTOCOL}),
    "an unknown opcode": (frame(0x3, b"hello"), {PROTOCOL}),
    "an unknown control opcode": (frame(0xB, b""), {PROTOCOL}),
    "a fragmented control frame": (frame(0x9, b"ping", fin=False), {PROTOCOL}),
    "a control frame too long": (frame(0x9, b"p" * 200), {PROTOCOL}),
    "a continuation with no start": (frame(0x0, b"orphan"), {PROTOCOL}),
    "a new message inside a fragmented one": (frame(0x1, b"[", fin=False) + frame(0x1, b"]"), {PROTOCOL}),
    "invalid UTF-8 in a text frame": (frame(0x1, b"\xff\xfe\xfd"), {INVALID_DATA}),
    "a close frame with a 1-byte body": (frame(0x8, b"\x03"), {PROTOCOL}),
    "a close frame with an invalid code": (frame(0x8, struct.pack("!H", 999) + b"bye"), {PROTOCOL}),
    "a close frame with invalid UTF-8 reason": (frame(0x8, struct.pack("!H", 1000) + b"\xff"), {INVALID_DATA}),
    "a fragment then nothing": (frame(0x1, b'{"action":', fin=False), {EOF_ONLY}),
}


@contextlib.asynccontextmanager
async def bystander(surface: Surface) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A well-behaved client, joined to `downloads`, connected while the garbage arrives; it must get its pong after."""
    async with surface.http.ws_connect("/ws/connect") as socket:
        assert (await socket.receive_json(timeout=WAIT))["type"] == "connected"
        await socket.send_json({"action": "join", "room": "downloads"})
        assert [(await socket.receive_json(timeout=WAIT))["type"] for _ in range(2)] == ["joined", "queue_status"]
        yield socket
        await socket.send_json({"action": "ping"})
        assert (await socket.receive_json(timeout=WAIT))["type"] == "pong"


@pytest.mark.parametrize(("data", "endings"), list(RAW_CASES.values()), ids=list(RAW_CASES))
async def test_raw_websocket_garbage_ends_cleanly(
    surface: Surface, caplog: pytest.LogCaptureFixture, data: bytes, endings: set[int | None]
) -> None:
    """Bytes that are no valid client frames end the connection with the close code RFC 6455 names (or EOF)."""
    async with bystander(surface):
        received = await send_raw_then_hang_up(surface, data)
        assert close_code(received) in endings
    await hub_empties(surface)
    await still_serving(surface)
    assert not tracebacks(caplog)


async def test_random_bytes_after_the_upgrade(surface: Surface, caplog: pytest.LogCaptureFixture) -> None:
    """Generated bytes after the upgrade, each on its own connection: each ends (a close or EOF), the hub forgets it."""

    @FUZZ_SETTINGS
    @given(
        data=st.binary(min_size=1, max_size=600)
        | st.lists(st.binary(max_size=40), min_size=1, max_size=5).map(
            lambda parts: b"".join(
                frame(0x1, part, fin=False) if index % 2 else part for index, part in enumerate(parts)
            )
        )
    )
    def garbage(data: bytes) -> None:
        code = close_code(surface.run(send_raw_then_hang_up(surface, data)))
        assert code in (EOF_ONLY, PROTOCOL, INVALID_DATA, TOO_BIG), code

    async with bystander(surface):
        await asyncio.to_thread(garbage)
    await hub_empties(surface)
    await still_serving(surface)
    assert not tracebacks(caplog)


# Messages in well-formed frames: each is answered by an `error` message with this code, the socket staying open.
MESSAGE_CASES: dict[str, tuple[str | bytes, str]] = {
    "binary": (b"\x00\x01binary", "bad_message"),
    "not JSON": ("{nope", "bad_message"),
    "a JSON list": ("[1, 2, 3]", "bad_message"),
    "a JSON string": ('"ping"', "bad_message"),
    "JSON null": ("null", "bad_message"),
    "deeply nested": ("[" * 2000 + "]" * 2000, "bad_message"),
    "deeply nested objects": ('{"":[' * 500 + "]}" * 500, "bad_message"),
    "a lone surrogate": ('{"action": "\\ud800"}', "unknown_action"),
    "no action": ('{"room": "downloads"}', "unknown_action"),
    "an unknown action": ('{"action": "explode"}', "unknown_action"),
    "an action of the wrong type": ('{"action": ["join"]}', "unknown_action"),
    "an unknown room": ('{"action": "join", "room": "kitchen"}', "unknown_room"),
    "a room of the wrong type": ('{"action": "join", "room": {"name": "downloads"}}', "unknown_room"),
    "a nested room of the wrong type": ('{"action": "join", "data": {"room": 5}}', "unknown_room"),
    "a negative since": ('{"action": "join", "room": "downloads", "since": -1}', "bad_since"),
    "a boolean since": ('{"action": "join", "room": "downloads", "since": true}', "bad_since"),
    "a float since": ('{"action": "join", "room": "downloads", "since": 1.5}', "bad_since"),
    "a text since": ('{"action": "join", "room": "downloads", "since": "7"}', "bad_since"),
    "a huge number": ('{"action": "join", "room": "downloads", "since": 1e999}', "bad_since"),
    "NaN": ('{"action": "join", "room": "downloads", "since": NaN}', "bad_since"),
    "unicode everywhere": ('{"action": "jöin", "room": "下载"}', "unknown_action"),
}


@pytest.mark.parametrize(("message", "code"), list(MESSAGE_CASES.values()), ids=list(MESSAGE_CASES))
async def test_bad_websocket_messages_get_an_error(
    surface: Surface, caplog: pytest.LogCaptureFixture, message: str | bytes, code: str
) -> None:
    """A bad message in a valid frame gets an `error` message naming what was wrong; the same socket still works."""
    async with surface.http.ws_connect("/ws/connect") as socket:
        assert (await socket.receive_json(timeout=WAIT))["type"] == "connected"
        if isinstance(message, bytes):
            await socket.send_bytes(message)
        else:
            await socket.send_str(message)
        answer = await socket.receive_json(timeout=WAIT)
        assert answer["type"] == "error", answer
        assert answer["data"]["code"] == code, answer
        assert answer["data"]["message"]
        await socket.send_json({"action": "ping"})
        assert (await socket.receive_json(timeout=WAIT))["type"] == "pong"
    await hub_empties(surface)
    await still_serving(surface)
    assert not tracebacks(caplog)


async def test_oversized_websocket_message_closes_the_socket(
    surface: Surface, caplog: pytest.LogCaptureFixture
) -> None:
    """A message over the hub's size limit closes that socket with 1009 (message too big); the others go on."""
    async with surface.http.ws_connect("/ws/connect") as socket:
        assert (await socket.receive_json(timeout=WAIT))["type"] == "connected"
        await socket.send_str(json.dumps({"action": "ping", "pad": "x" * 100_000}))
        answer = await socket.receive(timeout=WAIT)
        assert answer.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING), answer
        assert socket.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await hub_empties(surface)
    await still_serving(surface)
    assert not tracebacks(caplog)


# ==================================================================================================== MQTT


@dataclass
class Listener:
    """The test's MQTT client: every `response/` message, in order of arrival."""

    client: aiomqtt.Client
    responses: list[tuple[str, bytes]] = field(default_factory=list)

    async def collect(self) -> None:
        """Record messages until the connection ends (run as a task)."""
        async for message in self.client.messages:
            raw = message.payload
            payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw if raw is not None else "").encode()
            self.responses.append((str(message.topic), payload))

    async def answer(self, name: str, since: int, sent: bytes = b"") -> dict[str, Any]:
        """The first `response/<name>` from index `since` on, as JSON (bounded)."""
        topic = f"{BASE}/response/{name}"
        deadline = time.monotonic() + WAIT
        while True:
            for got, payload in self.responses[since:]:
                if got == topic:
                    return dict(json.loads(payload))
            assert time.monotonic() < deadline, f"no {topic} within {WAIT} s after {sent[:100]!r}"
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def listening(broker: Broker) -> AsyncIterator[Listener]:
    """A Listener on `broker`, subscribed to every response topic."""
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"fuzz-{secrets.token_hex(4)}", timeout=5) as client:
        listener = Listener(client)
        task = asyncio.get_running_loop().create_task(listener.collect())
        try:
            await client.subscribe(f"{BASE}/response/#", qos=1)
            yield listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


# The fields the commands read, so generated objects often carry a known name with a value of the wrong type.
ARGUMENTS = (
    "series",
    "episodes",
    "priority",
    "ids",
    "key",
    "keys",
    "query",
    "languages",
    "seasons",
    "monitored",
    "dry_run",
    "transaction",
    "season",
    "episode",
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
payloads = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=40).map(lambda raw: b"\xff\xfe" + raw),  # never UTF-8
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.sampled_from(ARGUMENTS), json_values, max_size=4).map(lambda value: json.dumps(value).encode()),
    st.integers(1000, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(60_000, 250_000).map(lambda size: b'{"key": "' + b"k" * size + b'"}'),
    st.sampled_from([b"", b"PRESS", b"press", b"ON", b"off", b"pause", b"NaN", b'{"transaction": 1e999}', b"\x00"]),
)
topics = st.sampled_from(
    [f"set/{name}" for name in ("queue", "auto_download", "nothing")]
    + [f"request/{name}" for name in (*REQUESTS, "nothing")]
)


async def publish_and_check(
    surface: Surface, listener: Listener, caplog: pytest.LogCaptureFixture, topic: str, payload: bytes
) -> None:
    """Publish one message and check the bridge's answer: a response for a request, a log line for an ignored set."""
    kind, name = topic.split("/", 1)
    since = len(listener.responses)
    logged = len(caplog.records)
    await listener.client.publish(f"{BASE}/{topic}", payload, qos=1)
    if kind == "request":
        response = await listener.answer(name, since, payload)
        assert response["status"] in ("ok", "error"), response
        if response["status"] == "error":
            assert set(response["error"]) == {"code", "message", "details"}, response
            assert response["error"]["code"], response
            assert response["error"]["message"], response
        with contextlib.suppress(ValueError, RecursionError):
            sent = json.loads(payload)
            if isinstance(sent, dict) and isinstance(sent.get("transaction"), str | int | bool):
                assert response["transaction"] == sent["transaction"], response
        return
    word = payload.decode(errors="replace").strip().lower()
    if (name == "queue" and word in QUEUE_WORDS) or (name == "auto_download" and word in SWITCH_WORDS):
        return  # a valid word: the command ran
    deadline = time.monotonic() + WAIT
    while not any(
        record.name == "aniworld_daemon.mqtt.bridge"
        and record.levelno >= logging.WARNING
        and f"set/{name}" in record.getMessage()
        for record in caplog.records[logged:]
    ):
        assert time.monotonic() < deadline, f"{topic} {payload[:60]!r} was ignored without a log line"
        await asyncio.sleep(0.01)


async def test_random_mqtt_payloads_on_every_command_topic(
    surface: Surface, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """Generated payloads on every set/ and request/ topic: answered or logged, never a crash; then a command works."""
    caplog.set_level(logging.INFO)
    bridge = surface.app.mqtt
    assert bridge is not None
    async with listening(broker) as listener:
        sent: set[str] = set()

        @FUZZ_SETTINGS
        @given(topic=topics, payload=payloads)
        def fuzz(topic: str, payload: bytes) -> None:
            sent.add(topic)
            surface.run(publish_and_check(surface, listener, caplog, topic, payload))

        await asyncio.to_thread(fuzz)
        # Every topic once more with the deepest nesting, whatever the generation chose.
        for topic in sorted(
            {f"set/{name}" for name in ("queue", "auto_download")} | {f"request/{name}" for name in REQUESTS}
        ):
            await publish_and_check(surface, listener, caplog, topic, b"[" * DEEP + b"]" * DEEP)
            sent.add(topic)
        assert {f"request/{name}" for name in REQUESTS} <= sent

        # The bridge still works: a request is answered with its transaction, a set/ word takes effect.
        since = len(listener.responses)
        await listener.client.publish(f"{BASE}/request/clear_failed", json.dumps({"transaction": "after"}), qos=1)
        assert await listener.answer("clear_failed", since) == {
            "status": "ok",
            "data": {"cleared_count": 0},
            "error": None,
            "transaction": "after",
        }
        await surface.app.commands.call("queue.resume")
        await listener.client.publish(f"{BASE}/set/queue", b"PAUSE", qos=1)
        deadline = time.monotonic() + WAIT
        while not surface.app.downloader.paused:
            assert time.monotonic() < deadline, "set/queue PAUSE did not pause the queue"
            await asyncio.sleep(0.02)
    assert bridge.check().level is CheckLevel.OK
    assert not tracebacks(caplog)


# ==================================================================================================== REST


def routes(app: Application) -> list[tuple[str, str]]:
    """Every (method, path pattern) the running app serves, HEAD aside."""
    found = set()
    for route in app.web.app.router.routes():
        if route.method != "HEAD" and route.resource is not None:
            found.add((route.method, route.resource.canonical))
    return sorted(found)


def fill(pattern: str, value: str) -> str:
    """A concrete path: every `{name}` (or `{name:regex}`) of `pattern` replaced by `value`, URL-quoted."""
    path = ""
    rest = pattern
    while "{" in rest:
        before, _, after = rest.partition("{")
        path += before
        rest = after.partition("}")[2]
        path += quote(value, safe="")
    return path + rest


async def check_answer(response: aiohttp.ClientResponse, what: str) -> None:
    """Below 500; a refusal is the error envelope, and a validation error names its field."""
    assert response.status < 500, f"{what}: {response.status} {(await response.read())[:300]!r}"
    if response.status < 400:
        return
    body = json.loads(await response.read())
    error = body["error"]
    assert set(body) == {"error"}, f"{what}: {body}"
    assert set(error) == {"code", "message", "details"}, f"{what}: {body}"
    assert isinstance(error["code"], str), f"{what}: {body}"
    assert error["code"], f"{what}: {body}"
    assert isinstance(error["message"], str), f"{what}: {body}"
    assert error["message"], f"{what}: {body}"
    assert isinstance(error["details"], dict), f"{what}: {body}"
    if error["code"] == "validation_error":
        field_name = error["details"].get("field")
        assert isinstance(field_name, str), f"{what}: {body}"
        assert field_name, f"{what}: {body}"


# Bodies sent to every route: (body, content type); None sends no Content-Type header.
BODY_CASES: dict[str, tuple[bytes, str | None]] = {
    "random bytes": (bytes(range(256)), "application/octet-stream"),
    "invalid UTF-8 as JSON": (b'{"a": "\xff"}', "application/json"),
    "a charset that does not exist": (b"{}", "application/json; charset=klingon"),
    "latin-1 JSON": ('{"query": "Bär"}'.encode("latin-1"), "application/json; charset=latin-1"),
    "no content type": (b'{"item_ids": ["x"]}', None),
    "form data": (b"item_ids=x&link=y", "application/x-www-form-urlencoded"),
    "multipart without a boundary": (b"--x\r\n\r\n", "multipart/form-data"),
    "a JSON list": (b"[1, 2]", "application/json"),
    "JSON null": (b"null", "application/json"),
    "deep nesting": (b"[" * DEEP + b"]" * DEEP, "application/json"),
    "deep object nesting": (b'{"a":' * DEEP + b"1" + b"}" * DEEP, "application/json"),
    "a huge number": (b'{"new_position": 1' + b"0" * 5000 + b', "item_id": "x"}', "application/json"),
    "a huge float": (b'{"new_position": 1e999, "item_id": "x", "season": 1e999}', "application/json"),
    "NaN": (b'{"new_position": NaN, "episodes": [{"season": NaN, "episode": Infinity}]}', "application/json"),
    "a lone surrogate": (b'{"link": "\\ud800", "query": "\\udfff", "item_ids": ["\\ud800"]}', "application/json"),
    "wrong types": (
        b'{"serie_id": 1, "episodes": {"season": "x"}, "item_ids": "x", "item_id": [], "new_position": "1",'
        b' "link": false, "query": {}, "password": 0, "rescan": 7, "monitored": "yes", "languages": "de"}',
        "application/json",
    ),
    "unicode": (
        '{"query": "\U0001d518\U0001d52b \u202e \ufdfd", "link": "ワンピース", "serie_id": "ß"}'.encode(),
        "application/json",
    ),
    "YAML bomb": (b'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: &d [*c,*c]\ne: [*d,*d]\n', "text/yaml"),
    "deep YAML": (b"[" * DEEP + b"]" * DEEP, "text/yaml"),
    "too big": (b"[" + b"0," * 200_000 + b"0]", "application/json"),
}
PATH_VALUES = ["x", "blade-of-dawn", "../../etc/passwd", "ワンピース", "\x00", "a" * 3000, "%ff"]


@pytest.mark.parametrize(("body", "content_type"), list(BODY_CASES.values()), ids=list(BODY_CASES))
async def test_nasty_bodies_on_every_route(
    surface: Surface, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str | None
) -> None:
    """Every route of the router with one nasty body: below 500, the error envelope, no traceback."""
    served = routes(surface.app)
    assert len(served) > 40, served
    headers = {} if content_type is None else {"Content-Type": content_type}
    for method, pattern in served:
        path = fill(pattern, "x")
        async with surface.http.request(
            method, path, data=body, headers=headers, skip_auto_headers=["Content-Type"]
        ) as response:
            await check_answer(response, f"{method} {path}")
    assert not tracebacks(caplog)


# Generated: a route, a path value, a body and a content type, and some query parameters.
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(str.encode),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(
        st.sampled_from(
            (
                "serie_id",
                "episodes",
                "priority",
                "item_ids",
                "item_id",
                "new_position",
                "link",
                "key",
                "query",
                "password",
                "rescan",
                "monitored",
                "languages",
                "seasons",
                "serie_folder",
            )
        ),
        json_values,
        max_size=5,
    ).map(lambda value: json.dumps(value).encode()),
    st.integers(1000, 4000).map(lambda depth: b"[" * depth + b"]" * depth),
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-16",
        "text/plain",
        "text/yaml",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=zz",
        "application/json; charset=nope",
        "application/json; boundary=;;;",
    ]
)
query_params = st.dictionaries(
    st.sampled_from(("limit", "offset", "status", "kind", "q", "api_key")),
    st.text(max_size=12) | st.integers(-(10**30), 10**30).map(str),
    max_size=3,
)


async def test_random_bodies_on_every_route(surface: Surface, caplog: pytest.LogCaptureFixture) -> None:
    """Generated requests to every route: each answer below 500 and, when a refusal, the error envelope."""
    served = routes(surface.app)
    called: set[tuple[str, str]] = set()

    async def send(
        route: tuple[str, str], value: str, body: bytes, content_type: str | None, params: dict[str, str]
    ) -> None:
        method, pattern = route
        path = fill(pattern, value)
        headers = {} if content_type is None else {"Content-Type": content_type}
        async with surface.http.request(
            method, path, data=body, headers=headers, params=params, skip_auto_headers=["Content-Type"]
        ) as response:
            await check_answer(response, f"{method} {path} {params} {content_type} {body[:80]!r}")

    @settings(FUZZ_SETTINGS, max_examples=EXAMPLES * 4)
    @given(
        route=st.sampled_from(served),
        value=st.sampled_from(PATH_VALUES) | st.text(min_size=1, max_size=30),
        body=bodies,
        content_type=content_types,
        params=query_params,
    )
    def fuzz(route: tuple[str, str], value: str, body: bytes, content_type: str | None, params: dict[str, str]) -> None:
        called.add(route)
        surface.run(send(route, value, body, content_type, params))

    await asyncio.to_thread(fuzz)
    assert len(called) > len(served) // 2, "the generation reached too few routes"
    async with surface.http.get("/api/system/status") as response:
        assert response.status == 200
    assert not tracebacks(caplog)


# YAML that the loader cannot turn into data at all: refused as an invalid configuration, not a 500.
UNREADABLE_YAML = {
    "nested past the parser's recursion": b"library: " + b"[" * DEEP + b"]" * DEEP,
    "an integer of 5,000 digits": b"library:\n  path: /media\napi:\n  port: 1" + b"0" * 5000 + b"\n",
}


@pytest.mark.parametrize("text", list(UNREADABLE_YAML.values()), ids=list(UNREADABLE_YAML))
async def test_unreadable_yaml_is_an_invalid_config(
    surface: Surface, caplog: pytest.LogCaptureFixture, text: bytes
) -> None:
    """`POST /api/config/validate` answers `valid: false` with one line naming the file, and logs no traceback."""
    async with surface.http.post("/api/config/validate", data=text, headers={"Content-Type": "text/yaml"}) as response:
        assert response.status == 200, await response.text()
        answer = await response.json()
    assert answer["valid"] is False
    [line] = answer["errors"]
    assert line.startswith(f"{surface.app.config.source}:"), line
    assert not tracebacks(caplog)
