"""The MQTT bridge: the daemon's state, queue, events and progress out; `set/` and `request/` commands in.

Topics under `mqtt.base_topic` (DESIGN section 12): `status` (retained, will `offline`), `state` and `queue`
(retained, at most once a second, coalesced), `event` (every bus event but progress, never retained), `progress`
(at most once a second while downloads run), `set/queue`, `set/auto_download`, `request/<command>` ->
`response/<command>`. Every command goes through the command table, so its arguments are checked as on the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aniworld_daemon import wire
from aniworld_daemon.commands import CommandTable
from aniworld_daemon.config import MqttConfig
from aniworld_daemon.downloads.engine import Downloader
from aniworld_daemon.errors import AniworldError, NotFoundError, ValidationError
from aniworld_daemon.events import DownloadProgress, Event, EventBus, EventData
from aniworld_daemon.health import Check, CheckLevel, HealthChecks
from aniworld_daemon.models import EpisodeState
from aniworld_daemon.mqtt.client import Incoming, MqttClient
from aniworld_daemon.mqtt.discovery import Device, config_payload, config_topic, entities
from aniworld_daemon.rescan import Rescanner
from aniworld_daemon.scheduler import Scheduler
from aniworld_daemon.series import SeriesManager
from aniworld_daemon.store.database import Database

LOGGER = logging.getLogger(__name__)

INSTALL_ID = "install_id"  # settings key: 12 hex characters, generated at the first start, never changed
DISCOVERY_TOPICS = "mqtt_discovery_topics"  # settings key: the config topics published last, to clear stale ones
PUBLISH_INTERVAL = 1.0  # seconds: `state`, `queue` and `progress` at most this often
QUEUE_LIMIT = 50  # items per list in `queue`
REPUBLISH_DELAY = (1.0, 5.0)  # seconds after Home Assistant's birth message, random (its docs ask for a delay)
QUEUE_WORDS = {"start": "queue.start", "stop": "queue.stop", "pause": "queue.pause", "resume": "queue.resume"}
SWITCH_WORDS = {"on": True, "off": False}


@dataclass(frozen=True, slots=True)
class Request:
    """One `request/` command: the table's command and how the request's fields become its arguments."""

    command: str
    arguments: Callable[[dict[str, Any]], dict[str, Any]]
    result: Callable[[Any], Any]


def _same(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


REQUESTS: Mapping[str, Request] = {
    "rescan": Request("rescan.start", lambda p: {**p, "trigger": "mqtt"}, lambda scan_id: {"scan_id": scan_id}),
    "add_series": Request("series.follow", _same, lambda series: {"key": series.key, "title": series.title}),
    "remove_series": Request("series.unfollow", _same, lambda series: {"key": series.key}),
    "download": Request("queue.add", _same, lambda items: {"added_items": [item.id for item in items]}),
    "retry": Request("queue.retry", _same, lambda count: {"retried_count": count}),
    "remove": Request("queue.remove", _same, lambda count: {"removed_count": count}),
    "clear_completed": Request("queue.clear_completed", _same, lambda count: {"cleared_count": count}),
    "clear_failed": Request("queue.clear_failed", _same, lambda count: {"cleared_count": count}),
    "search": Request("search", _same, lambda results: wire.search_json("", results)["results"]),
}


class MqttBridge:
    """Publishes the daemon over MQTT and takes commands from it; owns the MQTT client and the discovery configs."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        bus: EventBus,
        db: Database,
        commands: CommandTable,
        downloader: Downloader,
        series: SeriesManager,
        rescanner: Rescanner,
        scheduler: Scheduler,
        health: HealthChecks,
        version: str,
        configuration_url: str | None,
    ) -> None:
        self._config = config
        self._bus = bus
        self._db = db
        self._commands = commands
        self._downloader = downloader
        self._series = series
        self._rescanner = rescanner
        self._scheduler = scheduler
        self._health = health
        self._version = version
        self._configuration_url = configuration_url
        self._client: MqttClient | None = None
        self._install_id = ""
        self._changed = asyncio.Event()
        self._progress = False  # a progress report arrived since the last `progress` message
        self._tasks: set[asyncio.Task[Any]] = set()
        self._republish: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] = lambda: None

    @property
    def base(self) -> str:
        """The base topic."""
        return self._config.base_topic

    @property
    def install_id(self) -> str:
        """The install id (after start)."""
        return self._install_id

    async def start(self) -> None:
        """Read (or make) the install id, follow the bus, start connecting; the daemon runs on without a broker."""
        stored = await self._db.get_setting(INSTALL_ID)
        if not isinstance(stored, str) or len(stored) != 12:
            stored = secrets.token_hex(6)
            await self._db.set_setting(INSTALL_ID, stored)
        self._install_id = stored
        subscriptions = [f"{self.base}/set/+", f"{self.base}/request/+"]
        if self._config.discovery:
            subscriptions.append(f"{self._config.discovery_prefix}/status")
        self._client = MqttClient(
            self._config,
            client_id=f"aniworld-{stored}",
            subscriptions=subscriptions,
            on_connected=self._connected,
            on_message=self._message,
        )
        self._unsubscribe = self._bus.subscribe(self._on_event)
        self._spawn(self._publisher(), "mqtt-publisher")
        self._client.start()

    async def stop(self) -> None:
        """Publish `offline`, disconnect, and stop publishing."""
        self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.stop()

    def check(self) -> Check:
        """The health check of the broker connection: a warning while it is down."""
        client = self._client
        if client is not None and client.connected:
            return Check("mqtt", CheckLevel.OK, f"connected to {self._config.host}:{self._config.port}")
        reason = client.problem if client is not None and client.problem else "not connected"
        return Check("mqtt", CheckLevel.WARNING, reason)

    # -- out ------------------------------------------------------------------------------------------------------

    async def _connected(self) -> None:
        """On every (re)connect: discovery configs, then the retained states, then `online`."""
        if self._config.discovery:
            await self._publish_discovery(clear_stale=True)
        self._changed.clear()  # the states below hold every change so far; the publisher sends the later ones
        await self._publish_states()
        await self._publish(f"{self.base}/status", "online", retain=True, qos=1)

    async def _publish_discovery(self, *, clear_stale: bool) -> None:
        device = Device(self._install_id, self._version, self._configuration_url)
        prefix = self._config.discovery_prefix
        topics = []
        for entity in entities(self.base):
            topic = config_topic(prefix, self._install_id, entity)
            topics.append(topic)
            await self._publish(topic, json.dumps(config_payload(entity, device, self.base)), retain=True, qos=1)
        if clear_stale:
            previous = await self._db.get_setting(DISCOVERY_TOPICS, [])
            for topic in sorted(set(previous if isinstance(previous, list) else []) - set(topics)):
                await self._publish(topic, "", retain=True, qos=1)  # an entity the daemon no longer has
            await self._db.set_setting(DISCOVERY_TOPICS, topics)

    async def _publish_states(self) -> None:
        """`state` and `queue` now (retained), and `progress` while downloads run."""
        await self._publish(f"{self.base}/state", json.dumps(await self._state()), retain=True, qos=1)
        snapshot = await self._downloader.status(limit=QUEUE_LIMIT)
        series = {entry.key: entry for entry in await self._series.list()}
        await self._publish(f"{self.base}/queue", json.dumps(wire.queue_json(snapshot, series)), retain=True, qos=1)
        if self._progress:
            self._progress = False
            active = self._downloader.active()
            await self._publish(f"{self.base}/progress", json.dumps(wire.mqtt_progress_json(active, series)))

    async def _state(self) -> dict[str, Any]:
        counts = await self._db.count_downloads_by_status()
        episodes = await self._db.count_episodes_by_state()
        series = {entry.key: entry for entry in await self._series.list()}
        # The last finished scan: "Last rescan" must not show the start of one still running.
        recent = await self._db.list_scans(limit=5)
        finished = next((report for report in recent if report.finished_at is not None), None)
        return wire.mqtt_state_json(
            counts=counts,
            active=self._downloader.active(),
            running=self._downloader.running,
            paused=self._downloader.paused,
            series=series,
            missing=episodes[EpisodeState.MISSING] + episodes[EpisodeState.QUEUED],
            awaiting_language=episodes[EpisodeState.AWAITING_LANGUAGE],
            auto_download=self._rescanner.auto_download,
            last_scan=finished,
            next_scan=self._scheduler.state().next_run,
            health=await self._health.report(),
            version=self._version,
        )

    async def _publish(self, topic: str, payload: str, *, retain: bool = False, qos: int = 0) -> None:
        if self._client is not None:
            await self._client.publish(topic, payload, retain=retain, qos=qos)

    def _on_event(self, event: Event[EventData]) -> None:
        if isinstance(event.data, DownloadProgress):
            self._progress = True
        else:
            payload = json.dumps(wire.event_json(event))
            self._spawn(self._publish(f"{self.base}/event", payload, qos=1), "mqtt-event")
        self._changed.set()

    async def _publisher(self) -> None:
        """Publish `state`, `queue` and `progress` after a change, at most once per PUBLISH_INTERVAL."""
        last = 0.0
        while True:
            await self._changed.wait()
            wait = last + PUBLISH_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # coalesce: every change meanwhile goes into this one message
            if self._client is None or not self._client.connected:
                # Away, or amid the connect sequence, which publishes the states itself between the discovery configs
                # and `online` (in that order on every connect): keep the change, look again in a while.
                await asyncio.sleep(PUBLISH_INTERVAL)
                continue
            self._changed.clear()
            last = time.monotonic()
            try:
                await self._publish_states()
            except AniworldError as err:  # the database is busy or gone: the next change tries again
                LOGGER.warning("Could not publish the state over MQTT: %s", err.message)

    # -- in -------------------------------------------------------------------------------------------------------

    async def _message(self, message: Incoming) -> None:
        base = self.base
        if message.topic == f"{self._config.discovery_prefix}/status":
            if message.payload.strip().lower() == b"online":
                self._home_assistant_started()
        elif message.topic.startswith(f"{base}/set/"):
            await self._set(message.topic.removeprefix(f"{base}/set/"), message.payload)
        elif message.topic.startswith(f"{base}/request/"):
            await self._request(message.topic.removeprefix(f"{base}/request/"), message.payload)

    def _home_assistant_started(self) -> None:
        """Home Assistant (re)started: publish discovery and states again after a random delay, once per burst."""
        if self._republish is not None and not self._republish.done():
            return

        async def republish() -> None:
            await asyncio.sleep(random.uniform(*REPUBLISH_DELAY))
            LOGGER.info("Home Assistant started: publishing the discovery configs again")
            await self._publish_discovery(clear_stale=False)
            await self._publish_states()

        self._republish = self._spawn(republish(), "mqtt-republish")

    async def _set(self, name: str, payload: bytes) -> None:
        word = payload.decode(errors="replace").strip().lower()
        try:
            if name == "queue" and word in QUEUE_WORDS:
                await self._commands.call(QUEUE_WORDS[word], {})
            elif name == "auto_download" and word in SWITCH_WORDS:
                await self._commands.call("settings.auto_download", {"enabled": SWITCH_WORDS[word]})
                self._changed.set()
            else:
                expected = {"queue": "start, stop, pause or resume", "auto_download": "ON or OFF"}.get(name)
                LOGGER.warning(
                    "Ignoring %s/set/%s %r: %s",
                    self.base,
                    name,
                    word[:40],
                    f"expected {expected}" if expected else "no such setting (queue, auto_download)",
                )
        except AniworldError as err:
            LOGGER.warning("%s/set/%s %r failed: %s", self.base, name, word[:40], err.message)

    async def _request(self, name: str, payload: bytes) -> None:
        transaction: Any = None
        try:
            arguments = _request_payload(payload)
            transaction = arguments.pop("transaction", None)
            request = REQUESTS.get(name)
            if request is None:
                raise NotFoundError(f"no command {name!r}", details={"commands": sorted(REQUESTS)})
            result = await self._commands.call(request.command, request.arguments(arguments))
            response = wire.mqtt_response_json(request.result(result), None, transaction)
        except AniworldError as err:
            response = wire.mqtt_response_json(None, err, transaction)
        await self._publish(f"{self.base}/response/{name}", json.dumps(response), qos=1)
        self._changed.set()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _request_payload(payload: bytes) -> dict[str, Any]:
    """A request's arguments: a JSON object, or nothing (an empty payload, or `PRESS` from a Home Assistant button)."""
    text = payload.decode(errors="replace").strip()
    if not text or text.upper() == "PRESS":
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes ("[[[[...")
        raise ValidationError(
            'the payload must be a JSON object like {"key": "one-piece"}, empty, or PRESS',
            details={"field": "payload"},
        ) from None
    if not isinstance(data, dict):
        raise ValidationError("the payload must be a JSON object", details={"field": "payload"})
    return data


def configuration_url(host: str, port: int) -> str:
    """The dashboard for the device's "Visit" link: the add-on's ingress panel, else this machine's API address."""
    with contextlib.suppress(KeyError):
        return os.environ["ANIWORLD_CONFIGURATION_URL"]
    name = host if host not in ("0.0.0.0", "::", "") else os.uname().nodename
    if ":" in name:  # an IPv6 address goes in brackets in a URL
        name = f"[{name}]"
    return f"http://{name}:{port}/"
