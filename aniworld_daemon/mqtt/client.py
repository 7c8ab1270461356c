"""The connection to the MQTT broker: aiomqtt (paho-mqtt 2.x driven from the event loop), reconnected forever.

No paho thread touches an asyncio object: aiomqtt runs paho's socket on the loop (add_reader/add_writer), and only
the blocking TCP connect runs in an executor. The will (`<base>/status offline`, retained) is set before every connect;
a clean stop publishes `offline` itself, because a broker does not send the will on a clean disconnect. It is the
session's last message, even when the stop comes amid the connect sequence: a retained `online` must not outlive us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiomqtt

from aniworld_daemon.config import MqttConfig

LOGGER = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0  # seconds before the first reconnect, doubled per failure up to BACKOFF_MAX, with jitter
BACKOFF_MAX = 60.0
STOP_FLUSH = 5.0  # seconds the stop waits for `offline` to reach the broker


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message the daemon subscribed to."""

    topic: str
    payload: bytes


class MqttClient:
    """Keeps one connection to the broker: connects, subscribes, hands messages on, reconnects with backoff."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        client_id: str,
        subscriptions: Sequence[str],
        on_connected: Callable[[], Awaitable[None]],
        on_message: Callable[[Incoming], Awaitable[None]],
    ) -> None:
        self._config = config
        self._client_id = client_id
        self._subscriptions = tuple(subscriptions)
        self._on_connected = on_connected
        self._on_message = on_message
        self._client: aiomqtt.Client | None = None  # the connected client, None while disconnected
        self._announced = False  # on_connected has finished for this connection
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.problem: str | None = "not connected yet"  # why there is no connection, for the health check
        self.connects = 0  # successful connections so far

    @property
    def status_topic(self) -> str:
        """`<base>/status`: `online` while connected, the will `offline` otherwise (retained)."""
        return f"{self._config.base_topic}/status"

    @property
    def connected(self) -> bool:
        """Whether the session is up and its connect sequence (on_connected) is done.

        Until then only that sequence publishes, so whoever else waits for this keeps the sequence's order.
        """
        return self._client is not None and self._announced

    def start(self) -> None:
        """Start connecting (in a task); the daemon runs on while the broker is away."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt")

    async def stop(self) -> None:
        """Stop reconnecting; a session that is up publishes `offline` as its last message and disconnects."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, topic: str, payload: str | bytes, *, retain: bool = False, qos: int = 0) -> bool:
        """Publish when connected; False when not (retained states are all published again on the next connect)."""
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as err:
            LOGGER.debug("Publishing to %s failed: %s", topic, err)
            return False
        return True

    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            try:
                async with self._connection() as client:
                    await self._session(client)
            except aiomqtt.MqttError as err:
                self._lost(str(err))
            except OSError as err:  # a TLS file that cannot be read, a name that does not resolve
                self._lost(err.strerror or str(err))
            except Exception:
                # A bug, or the database failing amid the connect sequence: never leave the daemon without MQTT for
                # good (an escaped exception would end this task silently); reconnect with backoff instead.
                LOGGER.exception("The MQTT session failed; reconnecting")
                self.problem = "the MQTT session failed (see the log); retrying with backoff"
            finally:
                was_up = self._announced
                self._client = None
                self._announced = False
            if was_up:
                delay = BACKOFF_FIRST  # the session was up: the first reconnect comes soon
            if self._stopped():
                return
            wait = min(delay, BACKOFF_MAX) * random.uniform(0.8, 1.2)
            LOGGER.debug("Reconnecting to the MQTT broker in %.1f s", wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, BACKOFF_MAX)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiomqtt.Client]:
        """A connected client (`async with` it), disconnected at the end.

        A stop amid the connect lets the connect finish, then disconnects: cancelled halfway, aiomqtt leaves paho
        connected with nobody to disconnect it (it would keep pinging the broker for as long as the process lives).
        """
        client = self._new_client()
        connecting = asyncio.ensure_future(client.__aenter__())
        try:
            await asyncio.shield(connecting)
        except asyncio.CancelledError:
            with contextlib.suppress(aiomqtt.MqttError):
                await connecting  # bounded by the client's timeout
                await client.__aexit__(None, None, None)
            raise
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_exit(client)
            yield client

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection: subscribe, announce (on_connected), hand messages on until it drops or stop() ends it.

        stop() cancels the session wherever it is, even amid the connect sequence, so `offline` goes out after
        everything the session sent. A cancellation can get lost, though: Python 3.11's asyncio.wait_for, with which
        aiomqtt awaits the broker's replies, returns a reply that arrived together with the cancellation. So the
        session also looks at the stop flag between its steps, never to wait for messages after a stop.
        """
        if self._stopped():
            return  # stopped just as the connect finished: nothing published yet, nothing to take back
        try:
            for topic in self._subscriptions:
                await client.subscribe(topic, qos=1)
            self._client = client
            self.connects += 1
            self.problem = None
            LOGGER.info("Connected to the MQTT broker %s:%d", self._config.host, self._config.port)
            await self._on_connected()
            self._announced = True
            while not self._stopped():
                message = await anext(client.messages)
                raw = message.payload
                payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw or "").encode()
                await self._deliver(Incoming(str(message.topic), payload))
        except asyncio.CancelledError:
            await self._goodbye(client)
            raise
        await self._goodbye(client)  # a stop whose cancellation got lost

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """`offline` (retained) as the session's last message: a broker sends no will after a clean disconnect."""
        self._client = None  # nobody publishes after it: an `online` would outlive us
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(self.status_topic, "offline", qos=1, retain=True, timeout=STOP_FLUSH)

    def _stopped(self) -> bool:
        """Whether stop() was called (a method: the flag changes while _run awaits)."""
        return self._stopping

    def _lost(self, reason: str) -> None:
        """Log a lost or refused connection once per change of reason (a broker away for a day logs one line)."""
        message = f"MQTT broker {self._config.host}:{self._config.port}: {reason}"
        if message != self.problem:
            LOGGER.warning("%s; retrying with backoff", message)
        self.problem = message

    async def _deliver(self, message: Incoming) -> None:
        """Hand a message on; a handler's bug is logged and the connection stays."""
        try:
            await self._on_message(message)
        except Exception:
            LOGGER.exception("Handling the MQTT message on %s failed", message.topic)

    def _new_client(self) -> aiomqtt.Client:
        config = self._config
        return aiomqtt.Client(
            config.host,
            config.port,
            username=config.username,
            password=config.password,
            identifier=self._client_id,
            will=aiomqtt.Will(self.status_topic, "offline", qos=1, retain=True),
            keepalive=config.keepalive,
            timeout=10,
            tls_context=_tls_context(config),
            tls_insecure=config.tls.insecure if config.tls is not None else None,
            logger=logging.getLogger("aniworld_daemon.mqtt.paho"),
        )


def _tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for the broker, or None for plain TCP."""
    tls = config.tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    if tls.cert is not None:
        context.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
    if tls.insecure:
        context.check_hostname = False
    return context
