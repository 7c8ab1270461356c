"""The event bus and the event records every component publishes."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar, overload

from aniworld_daemon.models import HealthStatus, Language, PauseReason, ScanStatus, SeriesSource

LOGGER = logging.getLogger(__name__)


class EventType(StrEnum):
    """Every event type on the bus, the WebSocket and MQTT (names are part of the contract)."""

    DOWNLOAD_STARTED = "download_started"
    DOWNLOAD_PROGRESS = "download_progress"
    DOWNLOAD_COMPLETE = "download_complete"
    DOWNLOAD_FAILED = "download_failed"
    DOWNLOAD_CANCELLED = "download_cancelled"
    QUEUE_STATUS = "queue_status"
    QUEUE_STARTED = "queue_started"
    QUEUE_STOPPED = "queue_stopped"
    QUEUE_PAUSED = "queue_paused"
    QUEUE_RESUMED = "queue_resumed"
    SCAN_STARTED = "scan_started"
    SCAN_PROGRESS = "scan_progress"
    SCAN_COMPLETE = "scan_complete"
    SCAN_FAILED = "scan_failed"
    SERIES_ADDED = "series_added"
    SERIES_REMOVED = "series_removed"
    SERIES_UPDATED = "series_updated"
    EPISODES_FOUND = "episodes_found"
    HEALTH_CHANGED = "health_changed"
    SERVER_SHUTDOWN = "server_shutdown"


class QueueAction(StrEnum):
    """What changed in the queue, carried by `queue_status` events."""

    ITEMS_ADDED = "items_added"
    ITEMS_REMOVED = "items_removed"
    QUEUE_REORDERED = "queue_reordered"
    ITEMS_RETRIED = "items_retried"
    COMPLETED_CLEARED = "completed_cleared"
    FAILED_CLEARED = "failed_cleared"


@dataclass(frozen=True, slots=True)
class EventData:
    """Base of every event payload; subclasses set `TYPE`."""

    TYPE: ClassVar[EventType]


@dataclass(frozen=True, slots=True)
class DownloadStarted(EventData):
    """A queue item started downloading."""

    TYPE: ClassVar[EventType] = EventType.DOWNLOAD_STARTED
    item_id: str
    series_key: str
    season: int
    episode: int
    language: Language | None
    hoster: str | None


@dataclass(frozen=True, slots=True)
class DownloadProgress(EventData):
    """Progress of an active download (throttled by the downloader)."""

    TYPE: ClassVar[EventType] = EventType.DOWNLOAD_PROGRESS
    item_id: str
    downloaded_bytes: int
    total_bytes: int | None
    speed_bps: float | None
    eta_seconds: float | None
    percent: float | None


@dataclass(frozen=True, slots=True)
class DownloadComplete(EventData):
    """An episode was downloaded, verified and moved into the library."""

    TYPE: ClassVar[EventType] = EventType.DOWNLOAD_COMPLETE
    item_id: str
    series_key: str
    season: int
    episode: int
    file_path: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class DownloadFailed(EventData):
    """A download attempt failed; `will_retry` tells whether it is pending again."""

    TYPE: ClassVar[EventType] = EventType.DOWNLOAD_FAILED
    item_id: str
    series_key: str
    season: int
    episode: int
    error_code: str
    error_message: str
    will_retry: bool
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DownloadCancelled(EventData):
    """A queue item was cancelled."""

    TYPE: ClassVar[EventType] = EventType.DOWNLOAD_CANCELLED
    item_id: str
    series_key: str
    season: int
    episode: int


@dataclass(frozen=True, slots=True)
class QueueStatus(EventData):
    """The queue's contents changed."""

    TYPE: ClassVar[EventType] = EventType.QUEUE_STATUS
    action: QueueAction
    item_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QueueStarted(EventData):
    """The queue started processing."""

    TYPE: ClassVar[EventType] = EventType.QUEUE_STARTED


@dataclass(frozen=True, slots=True)
class QueueStopped(EventData):
    """The queue stopped; active downloads went back to pending."""

    TYPE: ClassVar[EventType] = EventType.QUEUE_STOPPED


@dataclass(frozen=True, slots=True)
class QueuePaused(EventData):
    """The queue paused (by a user, or by itself with a reason such as low disk space)."""

    TYPE: ClassVar[EventType] = EventType.QUEUE_PAUSED
    reason: PauseReason = PauseReason.USER


@dataclass(frozen=True, slots=True)
class QueueResumed(EventData):
    """The queue resumed."""

    TYPE: ClassVar[EventType] = EventType.QUEUE_RESUMED


@dataclass(frozen=True, slots=True)
class ScanStarted(EventData):
    """A rescan started."""

    TYPE: ClassVar[EventType] = EventType.SCAN_STARTED
    scan_id: str
    trigger: str
    series_total: int


@dataclass(frozen=True, slots=True)
class ScanProgress(EventData):
    """Progress of a running rescan."""

    TYPE: ClassVar[EventType] = EventType.SCAN_PROGRESS
    scan_id: str
    series_done: int
    series_total: int
    requests: int
    current: str | None


@dataclass(frozen=True, slots=True)
class ScanComplete(EventData):
    """A rescan finished (status `complete` or `partial`)."""

    TYPE: ClassVar[EventType] = EventType.SCAN_COMPLETE
    scan_id: str
    status: ScanStatus
    series_checked: int
    requests: int
    new_episodes: int
    missing_episodes: int


@dataclass(frozen=True, slots=True)
class ScanFailed(EventData):
    """A rescan failed as a whole."""

    TYPE: ClassVar[EventType] = EventType.SCAN_FAILED
    scan_id: str
    error_code: str
    error_message: str


@dataclass(frozen=True, slots=True)
class SeriesAdded(EventData):
    """A series is now followed."""

    TYPE: ClassVar[EventType] = EventType.SERIES_ADDED
    key: str
    title: str
    source: SeriesSource


@dataclass(frozen=True, slots=True)
class SeriesRemoved(EventData):
    """A series is no longer followed."""

    TYPE: ClassVar[EventType] = EventType.SERIES_REMOVED
    key: str


@dataclass(frozen=True, slots=True)
class SeriesUpdated(EventData):
    """A followed series' settings or metadata changed."""

    TYPE: ClassVar[EventType] = EventType.SERIES_UPDATED
    key: str
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EpisodesFound(EventData):
    """New episodes of a followed series appeared on the site."""

    TYPE: ClassVar[EventType] = EventType.EPISODES_FOUND
    series_key: str
    episodes: tuple[tuple[int, int], ...]  # (season, episode)


@dataclass(frozen=True, slots=True)
class HealthChanged(EventData):
    """The overall health or one of its checks changed."""

    TYPE: ClassVar[EventType] = EventType.HEALTH_CHANGED
    status: HealthStatus
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerShutdown(EventData):
    """The daemon is stopping."""

    TYPE: ClassVar[EventType] = EventType.SERVER_SHUTDOWN


D_co = TypeVar("D_co", bound=EventData, covariant=True)
E = TypeVar("E", bound=EventData)


@dataclass(frozen=True, slots=True)
class Event(Generic[D_co]):
    """An event as delivered: its payload plus the bus' sequence number and time (`wire.event_json` serialises it)."""

    seq: int
    timestamp: datetime
    data: D_co

    @property
    def type(self) -> EventType:
        """The event type, taken from the payload."""
        return self.data.TYPE


Subscriber = Callable[[Event[D_co]], None] | Callable[[Event[D_co]], Awaitable[None]]


@dataclass(eq=False, slots=True)
class _Subscription:
    # Any: the subscriber takes Event[one of kinds], and only events of those classes are delivered to it.
    callback: Callable[[Any], object]
    kinds: tuple[type[EventData], ...]  # empty: every event
    is_async: bool

    def wants(self, event: Event[EventData]) -> bool:
        return not self.kinds or isinstance(event.data, self.kinds)


class EventBus:
    """Publish/subscribe between components; delivery is always deferred and isolated per subscriber."""

    def __init__(self) -> None:
        self._subscriptions: list[_Subscription] = []
        self._last_seq = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event (0 before the first)."""
        return self._last_seq

    @overload
    def subscribe(self, callback: Subscriber[EventData], /) -> Callable[[], None]: ...

    @overload
    def subscribe(self, callback: Subscriber[E], kind: type[E], /, *kinds: type[E]) -> Callable[[], None]: ...

    def subscribe(self, callback: Callable[[Any], object], /, *kinds: type[EventData]) -> Callable[[], None]:
        """Call `callback` for every event, or only for events of the payload classes given (it gets those).

        Returns a function that unsubscribes.
        """
        subscription = _Subscription(callback, kinds, inspect.iscoroutinefunction(callback))
        self._subscriptions.append(subscription)

        def unsubscribe() -> None:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

        return unsubscribe

    def emit(self, data: E) -> Event[E]:
        """Stamp `data` with the next seq and schedule delivery; must be called from the event loop."""
        loop = asyncio.get_running_loop()
        self._last_seq += 1
        event = Event(seq=self._last_seq, timestamp=datetime.now(UTC), data=data)
        for subscription in self._subscriptions:
            if subscription.wants(event):
                # Deferred, so an emitting component never runs subscriber code inside its own critical section.
                loop.call_soon(self._deliver, subscription, event)
        return event

    def _deliver(self, subscription: _Subscription, event: Event[EventData]) -> None:
        if subscription not in self._subscriptions:
            return  # unsubscribed between emit and delivery
        try:
            result = subscription.callback(event)
        except Exception:
            LOGGER.exception("Event subscriber %r failed on %s #%d", subscription.callback, event.type, event.seq)
            return
        if subscription.is_async and inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(lambda done: self._async_done(done, subscription, event))

    def _async_done(self, task: asyncio.Task[None], subscription: _Subscription, event: Event[EventData]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            LOGGER.error(
                "Event subscriber %r failed on %s #%d",
                subscription.callback,
                event.type,
                event.seq,
                exc_info=error,
            )

    async def drain(self) -> None:
        """Wait until every delivery scheduled so far has run (used on shutdown and in tests)."""
        await asyncio.sleep(0)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await asyncio.sleep(0)
