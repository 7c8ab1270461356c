"""MQTT against a real mosquitto (DESIGN section 12): what the daemon publishes on connect, states that follow a real
download, every `set/` and `request/` command, a broker restart, the will, Home Assistant's birth message, and
password and TLS connections.

Every test has a broker of its own (tests.helpers.Broker), so no retained message of another test is ever seen. The
test's own MQTT client is aiomqtt, as the daemon's; the daemon runs in-process except where it must be killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from aniworld_daemon import __version__
from aniworld_daemon.app import Application
from aniworld_daemon.models import Download, DownloadStatus, Priority, ScanStatus
from aniworld_daemon.mqtt.discovery import config_topic, entities
from tests.fakesite.server import FakeSite
from tests.helpers import Broker, Daemon, StartApp, minimal_config, until

SERIES = "die-kleinen-baeren"  # season 1: three episodes, German dub on every hoster
BASE = "aniworld"
PREFIX = "homeassistant"
STATE = f"{BASE}/state"
STATUS = f"{BASE}/status"
EVENT = f"{BASE}/event"
WAIT = 5.0  # seconds one expectation may take (the bridge publishes `state` at most once a second)
ENTITIES = entities(BASE)


# --- the test's MQTT client ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the test's client received it, with its arrival time (time.monotonic())."""

    topic: str
    payload: bytes
    retain: bool
    at: float

    @property
    def text(self) -> str:
        """The payload as text."""
        return self.payload.decode()

    def json(self) -> Any:
        """The payload as JSON."""
        return json.loads(self.payload)


class Subscriber:
    """The test's MQTT client: records every message of its subscriptions in order of arrival, and publishes."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[Message] = []

    async def collect(self) -> None:
        """Record messages until the connection ends (run as a task)."""
        async for message in self.client.messages:
            raw = message.payload
            payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw if raw is not None else "").encode()
            self.messages.append(Message(str(message.topic), payload, bool(message.retain), time.monotonic()))

    def mark(self) -> int:
        """How many messages arrived so far: pass it as `since` to look only at later ones."""
        return len(self.messages)

    def on(self, topic: str, since: int = 0) -> list[Message]:
        """The messages on one topic (from index `since` on)."""
        return [message for message in self.messages[since:] if message.topic == topic]

    async def wait(
        self, match: Callable[[Message], bool], what: str, *, since: int = 0, within: float = WAIT
    ) -> Message:
        """The first message from index `since` on that matches; fail after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            for message in self.messages[since:]:
                if match(message):
                    return message
            if time.monotonic() > deadline:
                seen = [f"{message.topic} {message.payload[:80]!r}" for message in self.messages[since:]]
                pytest.fail(f"no {what} within {within} s; got:\n" + "\n".join(seen))
            await asyncio.sleep(0.02)

    async def state(
        self, match: Callable[[dict[str, Any]], bool], what: str, *, since: int = 0, within: float = WAIT
    ) -> dict[str, Any]:
        """The first `state` (from index `since` on) that matches."""
        found = await self.wait(
            lambda message: message.topic == STATE and match(message.json()),
            f"state where {what}",
            since=since,
            within=within,
        )
        return dict(found.json())

    async def online(self, *, since: int = 0, within: float = WAIT) -> Message:
        """The next `status online` (from index `since` on)."""
        return await self.wait(
            lambda message: message.topic == STATUS and message.text == "online",
            "status online",
            since=since,
            within=within,
        )

    async def publish(self, topic: str, payload: str | bytes) -> None:
        """Publish (qos 1, not retained)."""
        await self.client.publish(topic, payload, qos=1)

    async def request(self, command: str, payload: str | bytes | dict[str, Any]) -> dict[str, Any]:
        """Publish `request/<command>` (a dict as JSON) and return the next `response/<command>`."""
        since = self.mark()
        await self.publish(f"{BASE}/request/{command}", json.dumps(payload) if isinstance(payload, dict) else payload)
        topic = f"{BASE}/response/{command}"
        found = await self.wait(lambda message: message.topic == topic, topic, since=since)
        return dict(found.json())


@contextlib.asynccontextmanager
async def subscribed(broker: Broker, *topics: str, **options: Any) -> AsyncIterator[Subscriber]:
    """A Subscriber on `broker`, subscribed (qos 1) to `topics`; `options` go to aiomqtt.Client (credentials, TLS)."""
    options = {"identifier": f"test-{secrets.token_hex(4)}", "timeout": 5, **options}
    async with aiomqtt.Client("127.0.0.1", broker.port, **options) as client:
        subscriber = Subscriber(client)
        collector = asyncio.get_running_loop().create_task(subscriber.collect())
        try:
            for topic in topics:
                await client.subscribe(topic, qos=1)
            yield subscriber
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await collector


def is_config(message: Message) -> bool:
    """Whether a message is a discovery config (or the empty payload that clears one)."""
    return message.topic.startswith(f"{PREFIX}/") and message.topic.endswith("/config")


def assert_announced(messages: list[Message], install_id: str) -> None:
    """Check one connect's announcement as a subscriber from before it saw it: every entity's config once, all of them
    before the first state, that before `online`; live messages (from the daemon, not retained copies)."""
    expected = sorted(config_topic(PREFIX, install_id, entity) for entity in ENTITIES)
    topics = [message.topic for message in messages]
    configs = [index for index, message in enumerate(messages) if is_config(message)]
    assert sorted(topics[index] for index in configs) == expected
    assert STATE in topics, topics
    assert max(configs) < topics.index(STATE) < topics.index(STATUS), topics
    assert messages[topics.index(STATUS)].text == "online"
    assert not any(message.retain for message in messages), "retained copies: the daemon connected first"


# --- the daemon ------------------------------------------------------------------------------------------------------


def daemon_yaml(site: FakeSite, broker: Broker, *, downloads: str = "", mqtt: str = "", series: bool = True) -> str:
    """Config lines after minimal_config's `api:`: the fake site (de-dub on vidoza), downloads and rescans only when
    asked, die-kleinen-baeren season 1 followed (unless `series` is false), MQTT on `broker` plus `mqtt` lines."""
    followed = f"series:\n  - key: {SERIES}\n    seasons: [1]\n" if series else ""
    return (
        f"provider:\n  base_url: {site.base_url}\n  requests_per_second: 500\n  max_connections: 4\n"
        "  cooldown: 1s\n  languages: [de-dub]\n  hosters: [vidoza]\n"
        "schedule:\n  run_on_start: false\n  rescan: '0 3 * * *'\n"
        f"downloads:\n  auto_start: false\n  min_free_space: 0\n  retry_backoff: 1s\n{downloads}"
        f"{followed}"
        f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  keepalive: 5\n{mqtt}"
    )


@dataclass
class Env:
    """A test's broker and fake site, and how to start the daemon (in-process) on them."""

    broker: Broker
    site: FakeSite
    start_app: StartApp

    async def start(self, **options: Any) -> Application:
        """Start the Application on `daemon_yaml(site, broker, **options)`."""
        return await self.start_app(daemon_yaml(self.site, self.broker, **options))


@pytest.fixture
def env(fakesite: FakeSite, start_broker: Callable[..., Broker], start_app: StartApp) -> Env:
    """An anonymous broker of the test's own and the fake site; apps stop before the broker and the site go."""
    return Env(start_broker(), fakesite, start_app)


def base_url(app: Application) -> str:
    """Where the app's HTTP server listens."""
    host, port = app.web.addresses[0]
    return f"http://{host}:{port}"


async def store(app: Application, status: DownloadStatus, season: int) -> str:
    """A queue item of SERIES (season `season`, episode 1) stored directly with `status`; returns its id."""
    item = Download(f"item-{status.value}-{season}", SERIES, season, 1, Priority.NORMAL, 0, status, datetime.now(UTC))
    [added] = await app.db.add_downloads([item])
    if added.status is not status:
        await app.db.update_download(added.id, status=status)
    return added.id


async def statuses(app: Application) -> dict[DownloadStatus, int]:
    """How many queue items there are per status."""
    return {status: count for status, count in (await app.db.count_downloads_by_status()).items() if count}


# --- 1. on connect: discovery, then state, then online ---------------------------------------------------------------


async def test_connect_publishes_discovery_then_state_then_online(env: Env) -> None:
    async with subscribed(env.broker, f"{BASE}/#", f"{PREFIX}/#") as early:
        app = await env.start()
        assert app.mqtt is not None
        await early.online()
        install_id = app.mqtt.install_id
        assert_announced(early.messages, install_id)
        expected = {config_topic(PREFIX, install_id, entity): entity for entity in ENTITIES}
        for message in early.messages:
            if is_config(message):
                entity = expected[message.topic]
                config = message.json()
                assert config["unique_id"] == f"aniworld_{install_id}_{entity.key}"
                assert config["name"] == entity.name
        state = early.on(STATE)[0].json()
        assert state["queue"] == {
            "pending": 0,
            "active": 0,
            "completed": 0,
            "failed": 0,
            "running": False,
            "paused": False,
        }
        assert (state["current"], state["last_scan"], state["version"]) == (None, None, __version__)
        assert state["library"]["series"] == 1
        assert state["auto_download"] is True

    # a subscriber that comes later gets the same as retained messages
    async with subscribed(env.broker, f"{BASE}/#", f"{PREFIX}/#") as late:
        wanted = {*expected, STATE, STATUS, f"{BASE}/queue"}

        async def everything() -> bool:
            return {message.topic for message in late.messages if message.retain} >= wanted

        await until(everything, WAIT, "the retained configs, state, queue and status")
        assert late.on(STATUS)[-1].text == "online"
        assert late.on(EVENT) == []


# --- 2. the states follow a rescan and a real download --------------------------------------------------------------


async def test_states_follow_a_rescan_and_a_real_download(env: Env) -> None:
    app = await env.start(downloads="  auto_download: false\n")
    async with subscribed(env.broker, f"{BASE}/#") as sub:
        before = await sub.state(lambda state: True, "the retained state")
        assert before["last_scan"] is None

        scan_id = await app.rescanner.start("manual", [SERIES])
        scanned = await sub.state(
            lambda state: state["last_scan"] is not None and state["library"]["missing"] == 3, "the rescan's result"
        )
        [report] = await app.db.list_scans(limit=1)
        assert (report.id, report.status) == (scan_id, ScanStatus.COMPLETE)
        assert report.finished_at is not None
        assert datetime.fromisoformat(scanned["last_scan"]) == report.finished_at
        assert scanned["queue"]["pending"] == 0  # auto_download is off: the missing episodes are not queued

        [item] = await app.downloader.add(SERIES, [(1, 1)])
        pending = await sub.state(lambda state: state["queue"]["pending"] == 1, "one pending")
        assert (pending["queue"]["active"], pending["current"]) == (0, None)

        env.site.knobs.bandwidth = 600_000  # about 3 s for the episode: progress shows
        since = sub.mark()
        await app.downloader.start_queue()
        active = await sub.state(
            lambda state: state["current"] is not None and (state["current"]["percent"] or 0) > 0,
            "state.current has a percentage",
            since=since,
        )
        assert active["queue"]["active"] == 1
        assert active["queue"]["pending"] == 0
        current = active["current"]
        assert (current["id"], current["series"], current["season"], current["episode"]) == (item.id, SERIES, 1, 1)
        assert 0 < current["percent"] <= 100
        progress = await sub.wait(lambda message: message.topic == f"{BASE}/progress", "a progress message")
        [entry] = progress.json()["active"]
        assert entry["id"] == item.id

        done = await sub.state(lambda state: state["queue"]["completed"] == 1, "one completed", within=30)
        assert (done["queue"]["active"], done["queue"]["pending"], done["current"]) == (0, 0, None)
        assert done["library"]["missing"] == 2
        complete = await sub.wait(
            lambda message: message.topic == EVENT and message.json()["type"] == "download_complete",
            "the download_complete event",
        )
        assert complete.json()["data"]["item_id"] == item.id
        events = [message.json() for message in sub.on(EVENT)]
        assert {"download_started", "scan_complete"} <= {event["type"] for event in events}
        assert "download_progress" not in {event["type"] for event in events}
        # progress: at most one message a second (0.2 s slack for the broker's and the loop's latency)
        times = [message.at for message in sub.on(f"{BASE}/progress")]
        assert len(times) >= 2  # the transfer took about 3 s
        assert all(later - earlier > 0.8 for earlier, later in itertools.pairwise(times))

    # a new subscriber gets the retained state, but no event: events are never retained
    async with subscribed(env.broker, EVENT, STATE) as late:
        await late.wait(lambda message: message.topic == STATE and message.retain, "the retained state")
        await asyncio.sleep(0.5)
        assert late.on(EVENT) == []


# --- 3. buttons and switches ----------------------------------------------------------------------------------------


async def test_buttons_and_switches_act(env: Env) -> None:
    app = await env.start()  # downloads.auto_download is on in the configuration
    async with subscribed(env.broker, f"{BASE}/#") as sub:
        await sub.online()
        await sub.publish(f"{BASE}/set/auto_download", "OFF")
        await sub.state(lambda state: state["auto_download"] is False, "auto_download is off")

        # the switch is persisted: the restarted daemon still has it off, and its rescans queue nothing
        await app.stop()
        since = sub.mark()
        app = await env.start()
        await sub.online(since=since)
        restarted = await sub.state(lambda state: True, "the state after the restart", since=since)
        assert restarted["auto_download"] is False
        assert app.rescanner.auto_download is False

        since = sub.mark()
        await sub.publish(f"{BASE}/request/rescan", "PRESS")
        response = await sub.wait(lambda message: message.topic == f"{BASE}/response/rescan", "response/rescan")
        scan_id = response.json()["data"]["scan_id"]

        async def scanned() -> bool:
            return any(report.id == scan_id and report.finished_at for report in await app.db.list_scans())

        await until(scanned, WAIT, "the scan report")
        [report] = await app.db.list_scans(limit=1)
        assert (report.trigger, report.status, report.missing) == ("mqtt", ScanStatus.COMPLETE, {SERIES: 3})
        after = await sub.state(lambda state: state["library"]["missing"] == 3, "three missing", since=since)
        assert after["last_scan"] is not None
        assert await statuses(app) == {}  # auto_download off: nothing queued

        # downloads paused: the switch's payloads, any case
        await sub.publish(f"{BASE}/set/queue", "pause")
        await sub.state(lambda state: state["queue"]["paused"] is True, "the queue is paused")
        assert app.downloader.paused
        await sub.publish(f"{BASE}/set/queue", "RESUME")
        await sub.state(lambda state: state["queue"]["paused"] is False, "the queue is resumed")

        # the buttons
        failed = await store(app, DownloadStatus.FAILED, 101)
        await store(app, DownloadStatus.COMPLETED, 102)
        since = sub.mark()
        await sub.publish(f"{BASE}/request/retry", "PRESS")
        await sub.state(
            lambda state: state["queue"]["failed"] == 0 and state["queue"]["pending"] == 1, "retried", since=since
        )
        retried = await app.db.get_download(failed)
        assert retried is not None
        assert retried.status is DownloadStatus.PENDING
        since = sub.mark()
        await sub.publish(f"{BASE}/request/clear_completed", "PRESS")
        await sub.state(lambda state: state["queue"]["completed"] == 0, "completed cleared", since=since)
        assert await statuses(app) == {DownloadStatus.PENDING: 1}


# --- 4. request/<command> -> response/<command> ---------------------------------------------------------------------


async def test_every_request_answers_ok_with_its_transaction(env: Env) -> None:
    app = await env.start(series=False, downloads="  auto_download: false\n")
    async with subscribed(env.broker, f"{BASE}/#") as sub:
        await sub.online()

        async def ok(command: str, arguments: dict[str, Any], transaction: Any) -> Any:
            """Send one request and return its data, after checking the status and the echoed transaction."""
            response = await sub.request(command, {**arguments, "transaction": transaction})
            assert (response["status"], response["error"], response["transaction"]) == ("ok", None, transaction), (
                command,
                response,
            )
            return response["data"]

        found = await ok("search", {"query": "kleinen"}, "t-search")
        assert SERIES in [result["key"] for result in found]
        url = f"{env.site.base_url}/anime/stream/{SERIES}"
        added = await ok("add_series", {"series": url, "languages": ["de-dub"], "seasons": [1]}, 1)
        assert added["key"] == SERIES
        scan = await ok("rescan", {"keys": [SERIES]}, {"id": "t-rescan"})  # any JSON value comes back as it was

        async def scanned() -> bool:
            return any(report.id == scan["scan_id"] and report.finished_at for report in await app.db.list_scans())

        await until(scanned, WAIT, "the rescan")
        places = [{"season": 1, "episode": 1}, {"season": 1, "episode": 2}]
        queued = await ok("download", {"series": SERIES, "episodes": places}, "t-download")
        first, second = queued["added_items"]
        assert await ok("remove", {"ids": [first]}, "t-remove") == {"removed_count": 1}
        assert await app.db.get_download(first) is None
        failed = await store(app, DownloadStatus.FAILED, 101)
        assert await ok("retry", {"ids": [failed]}, "t-retry") == {"retried_count": 1}
        await store(app, DownloadStatus.COMPLETED, 102)
        assert await ok("clear_completed", {}, "t-clear-completed") == {"cleared_count": 1}
        await store(app, DownloadStatus.FAILED, 103)
        assert await ok("clear_failed", {}, "t-clear-failed") == {"cleared_count": 1}
        assert await statuses(app) == {DownloadStatus.PENDING: 2}  # `second` and the retried one
        assert {item.id for item in await app.db.list_downloads((DownloadStatus.PENDING,))} == {second, failed}
        assert await ok("remove_series", {"key": SERIES}, None) == {"key": SERIES}
        assert await app.series.list() == []


GOOD_DOWNLOAD = {"series": SERIES, "episodes": [{"season": 1, "episode": 1}]}


@pytest.mark.parametrize(
    ("command", "payload", "field", "transaction"),
    [
        pytest.param("download", b'{"series": "die-kleinen-baeren", "episodes": [', "payload", None, id="bad-json"),
        pytest.param("download", b'[{"series": "die-kleinen-baeren"}]', "payload", None, id="a-list"),
        pytest.param("download", b'"die-kleinen-baeren"', "payload", None, id="a-string"),
        pytest.param("clear_failed", b"[]", "payload", None, id="an-empty-list"),
        pytest.param("download", {"series": SERIES, "transaction": "t-1"}, "episodes", "t-1", id="missing-episodes"),
        pytest.param(
            "download",
            {**GOOD_DOWNLOAD, "episodes": [{"season": "one", "episode": 1}]},
            "episodes[0] -> season",
            None,
            id="season-not-a-number",
        ),
        pytest.param(
            "download", {**GOOD_DOWNLOAD, "priority": "urgent", "transaction": 7}, "priority", 7, id="priority"
        ),
        pytest.param("download", {**GOOD_DOWNLOAD, "bogus": 1}, "bogus", None, id="unknown-field"),
        pytest.param("add_series", {"transaction": "t-2"}, "series", "t-2", id="missing-series"),
        pytest.param("add_series", {"series": 42}, "series", None, id="series-not-a-string"),
        pytest.param("remove_series", {"key": "../etc"}, "key", None, id="bad-key"),
        pytest.param("rescan", {"keys": ["Bad Key!"]}, "keys[0]", None, id="bad-keys"),
        pytest.param("remove", {"ids": []}, "ids", None, id="no-ids"),
        pytest.param("retry", {"ids": [1]}, "ids[0]", None, id="id-not-a-string"),
        pytest.param("clear_completed", {"all": True}, "all", None, id="clear-completed-takes-nothing"),
        pytest.param("search", {"query": ""}, "query", None, id="empty-query"),
    ],
)
async def test_a_malformed_request_answers_an_error_naming_the_field_and_does_nothing(
    env: Env, command: str, payload: bytes | dict[str, Any], field: str, transaction: Any
) -> None:
    app = await env.start()
    completed = await store(app, DownloadStatus.COMPLETED, 101)
    failed = await store(app, DownloadStatus.FAILED, 102)
    async with subscribed(env.broker, f"{BASE}/#") as sub:
        await sub.online()
        response = await sub.request(command, payload)
    assert response["status"] == "error"
    assert response["data"] is None
    assert response["transaction"] == transaction
    assert response["error"]["code"] == "validation_error"
    assert response["error"]["details"]["field"] == field
    assert field.partition("[")[0].partition(" ")[0] in response["error"]["message"]
    # nothing happened: no item queued or removed, no scan, the series still followed
    assert await statuses(app) == {DownloadStatus.COMPLETED: 1, DownloadStatus.FAILED: 1}
    assert {item.id for item in await app.db.list_downloads()} == {completed, failed}
    assert await app.db.list_scans() == []
    assert [series.key for series in await app.series.list()] == [SERIES]


# --- 5. a broker restart --------------------------------------------------------------------------------------------


async def test_the_daemon_reconnects_after_a_broker_restart_and_serves_http_meanwhile(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    app = await env.start()
    bridge = app.mqtt
    assert bridge is not None
    async with subscribed(env.broker, STATUS) as first:
        await first.online()
    health: list[int] = []
    async with aiohttp.ClientSession(base_url=base_url(app), timeout=aiohttp.ClientTimeout(total=5)) as http:

        async def probe() -> None:
            """GET /health every 100 ms (a failed request ends the probe, and the test then fails)."""
            while True:
                async with http.get("/health") as response:
                    health.append(response.status)
                await asyncio.sleep(0.1)

        prober = asyncio.get_running_loop().create_task(probe())
        env.broker.kill()

        async def down() -> bool:
            return bridge.check().level == "warning"

        await until(down, WAIT, "the MQTT check to see the broker gone")
        assert str(env.broker.port) in bridge.check().message

        async def refused() -> bool:
            return "refused" in caplog.text

        # the first reconnect (after about 1 s) fails; the next comes 2 s (+-20 %) later, after our subscription
        await until(refused, WAIT, "a refused reconnect")
        env.broker.start()  # same port, no persistence: nothing retained survives, the daemon must publish it all
        restarted = time.monotonic()
        async with subscribed(env.broker, f"{BASE}/#", f"{PREFIX}/#") as after:
            await after.online(within=10)
            assert time.monotonic() - restarted < 10
            assert_announced(after.messages, bridge.install_id)
            assert bridge.check().level == "ok"

            await after.publish(f"{BASE}/set/queue", "pause")
            await after.state(lambda state: state["queue"]["paused"] is True, "the queue paused after the reconnect")
            assert app.downloader.paused
        assert not prober.done(), prober.exception()
        prober.cancel()
    assert len(health) > 20
    assert set(health) == {200}


# --- 6. the will, and the clean stop ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "exit_status"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 0)])
async def test_offline_is_published_when_the_daemon_is_killed_or_stops(
    fakesite: FakeSite,
    start_broker: Callable[..., Broker],
    write_config: Callable[..., Path],
    port: int,
    daemon: Callable[..., Daemon],
    sig: signal.Signals,
    exit_status: int,
) -> None:
    broker = start_broker()
    config = write_config(minimal_config(port, daemon_yaml(fakesite, broker)))
    async with subscribed(broker, STATUS) as sub:
        process = daemon(config)

        def online() -> bool:
            return any(message.text == "online" for message in sub.messages)

        await process.until(online, "status online", 30)
        since = sub.mark()
        process.signal(sig)
        assert await process.exited(30) == exit_status
        offline = await sub.wait(lambda message: message.text == "offline", "status offline", since=since)
        assert offline.topic == STATUS
    # SIGKILL: the connection just dropped, the broker sent the will; SIGTERM: the daemon said goodbye (a clean
    # DISCONNECT, after which no broker sends the will), so `offline` came from the daemon itself
    broker_log = broker.log_file.read_text(encoding="utf-8", errors="replace")
    assert ("Received DISCONNECT from aniworld-" in broker_log) is (sig is signal.SIGTERM), broker_log[-3000:]


async def test_a_stop_amid_the_connect_sequence_still_ends_offline(env: Env) -> None:
    """Stopped right after its start, the daemon is still connecting or announcing itself: `offline` is its last word
    all the same, and the stop is quick (a lost cancellation once left `online` retained and the stop hanging)."""
    seen: list[str] = []
    for _ in range(5):
        app = await env.start()
        started = time.monotonic()
        await app.stop()
        assert time.monotonic() - started < 3
        async with subscribed(env.broker, STATUS) as late:
            await asyncio.sleep(0.3)  # a retained message comes at once
        seen += [message.text for message in late.messages]
    assert "online" not in seen
    assert seen[-1:] == ["offline"]


# --- 7. Home Assistant's birth message ------------------------------------------------------------------------------


async def test_a_burst_of_home_assistant_births_republishes_discovery_once(env: Env) -> None:
    app = await env.start()
    assert app.mqtt is not None
    expected = sorted(config_topic(PREFIX, app.mqtt.install_id, entity) for entity in ENTITIES)
    async with subscribed(env.broker, f"{PREFIX}/#", STATE) as sub:

        async def retained() -> bool:
            return len([message for message in sub.messages if is_config(message)]) == len(expected)

        await until(retained, WAIT, "the retained configs")
        since = sub.mark()
        burst = time.monotonic()
        for _ in range(3):
            await sub.publish(f"{PREFIX}/status", "online")
        # one republish after 1-5 s; three (one per birth) would all have come by then too
        await asyncio.sleep(max(0.0, burst + 5.8 - time.monotonic()))
        configs = [message for message in sub.messages[since:] if is_config(message)]
        assert sorted(message.topic for message in configs) == expected
        assert configs[0].at - burst > 0.9  # after a delay, as Home Assistant's docs ask
        assert sub.on(STATE, since=since)  # the states follow the configs
        assert sub.on(STATE, since=since)[-1].at >= configs[-1].at


# --- 8. credentials and TLS -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Secured:
    """A broker setup that needs something of its clients, what the daemon's config says, and what a client sends."""

    broker: dict[str, Any]  # start_broker options
    mqtt: Callable[[Broker], str]  # the daemon's extra `mqtt:` lines
    client: Callable[[Broker], dict[str, Any]]  # aiomqtt.Client options of a client that gets in
    refused: Callable[[Broker], dict[str, Any]]  # options of a client that the broker refuses


SECURED = {
    "password": Secured(
        {"users": {"daemon": "daemon-pw-4711", "tester": "tester-pw"}},
        lambda broker: "  username: daemon\n  password: daemon-pw-4711\n",
        lambda broker: {"username": "tester", "password": "tester-pw"},
        lambda broker: {},
    ),
    "tls": Secured(
        {"tls": True},
        lambda broker: f"  tls:\n    ca: {broker.ca_file}\n",
        lambda broker: {"tls_context": ssl.create_default_context(cafile=str(broker.ca_file))},
        lambda broker: {"timeout": 1},  # plain MQTT: the TLS listener hangs up, the client notices by timeout
    ),
}


@pytest.mark.parametrize("kind", sorted(SECURED))
async def test_password_and_tls_connections_work(
    fakesite: FakeSite, start_broker: Callable[..., Broker], start_app: StartApp, kind: str
) -> None:
    secured = SECURED[kind]
    broker = start_broker(**secured.broker)
    with pytest.raises(aiomqtt.MqttError):  # the broker really insists
        async with subscribed(broker, STATUS, **secured.refused(broker)):
            pass
    app = await start_app(daemon_yaml(fakesite, broker, mqtt=secured.mqtt(broker)))
    assert app.mqtt is not None
    async with subscribed(broker, f"{BASE}/#", **secured.client(broker)) as sub:
        await sub.online()
        response = await sub.request("clear_failed", {"transaction": kind})
        assert (response["status"], response["transaction"]) == ("ok", kind)
    assert app.mqtt.check().level == "ok"


async def test_a_wrong_password_warns_and_the_daemon_keeps_retrying(
    fakesite: FakeSite, start_broker: Callable[..., Broker], start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    broker = start_broker(users={"daemon": "right-pw"})
    app = await start_app(daemon_yaml(fakesite, broker, mqtt="  username: daemon\n  password: wrong-pw-4711\n"))
    assert app.mqtt is not None

    def warnings() -> list[str]:
        return [
            record.getMessage()
            for record in caplog.records
            if record.name.startswith("aniworld_daemon.mqtt") and record.levelname == "WARNING"
        ]

    async def warned() -> bool:
        return bool(warnings())

    await until(warned, WAIT, "a warning about the refused connection")
    [warning] = warnings()
    assert f"127.0.0.1:{broker.port}" in warning
    assert "not authori" in warning.lower()

    async def attempts() -> bool:
        text = broker.log_file.read_text(encoding="utf-8", errors="replace")
        # mosquitto names no client it refused: every refusal on this broker is one of the daemon's attempts
        return text.count("disconnected, not authorised") >= 2

    await until(attempts, WAIT, "a second connection attempt in the broker's log")
    assert len(warnings()) == 1  # one line per change of the reason, not one per attempt

    headers = {"X-Api-Key": app.auth.key}
    async with aiohttp.ClientSession(base_url=base_url(app), headers=headers) as http:
        async with http.get("/api/system/status") as response:
            assert response.status == 200
            checks = {check["name"]: check for check in (await response.json())["checks"]}
        async with http.get("/health") as response:
            assert response.status == 200
            assert (await response.json())["status"] == "degraded"
    assert checks["mqtt"]["level"] == "warning"
    assert "not authori" in checks["mqtt"]["message"].lower()
    assert "wrong-pw-4711" not in caplog.text + json.dumps(checks)
