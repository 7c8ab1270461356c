"""The event bus: deferred delivery, isolation of failing subscribers, filtering, sequence numbers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from datetime import UTC, datetime

import pytest

from aniworld_daemon import events
from aniworld_daemon.events import (
    DownloadFailed,
    Event,
    EventBus,
    EventData,
    EventType,
    QueueAction,
    QueueStatus,
    ScanStarted,
    ServerShutdown,
)
from aniworld_daemon.wire import event_json


async def test_delivery_is_deferred_and_ordered() -> None:
    bus = EventBus()
    seen: list[int] = []
    bus.subscribe(lambda event: seen.append(event.seq))
    first = bus.emit(QueueStatus(QueueAction.ITEMS_ADDED, ("a",)))
    second = bus.emit(ServerShutdown())
    assert seen == []  # never inline: the emitter finishes its own work first
    await bus.drain()
    assert seen == [first.seq, second.seq]
    assert second.seq == first.seq + 1
    assert bus.last_seq == second.seq


async def test_raising_subscriber_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    received: list[str] = []

    def broken(event: Event[EventData]) -> None:
        raise RuntimeError("subscriber bug")

    async def broken_async(event: Event[EventData]) -> None:
        raise ValueError("async subscriber bug")

    async def fine_async(event: Event[EventData]) -> None:
        await asyncio.sleep(0)
        received.append(f"async {event.type}")

    bus.subscribe(broken)
    bus.subscribe(broken_async)
    bus.subscribe(lambda event: received.append(f"sync {event.type}"))
    bus.subscribe(fine_async)
    with caplog.at_level(logging.ERROR, logger="aniworld_daemon.events"):
        bus.emit(ServerShutdown())
        bus.emit(ServerShutdown())
        await bus.drain()
    assert received.count("sync server_shutdown") == 2
    assert received.count("async server_shutdown") == 2
    failures = [record for record in caplog.records if "failed on server_shutdown" in record.getMessage()]
    assert len(failures) == 4
    assert {type(record.exc_info[1]) for record in failures if record.exc_info} == {RuntimeError, ValueError}


async def test_type_filter_and_unsubscribe() -> None:
    bus = EventBus()
    scans: list[EventType] = []
    everything: list[EventType] = []
    unsubscribe = bus.subscribe(lambda event: scans.append(event.type), ScanStarted)
    bus.subscribe(lambda event: everything.append(event.type))
    bus.emit(ScanStarted("s1", "manual", 3))
    bus.emit(ServerShutdown())
    await bus.drain()
    unsubscribe()
    unsubscribe()  # twice is harmless
    bus.emit(ScanStarted("s2", "manual", 3))
    await bus.drain()
    assert scans == [EventType.SCAN_STARTED]
    assert everything == [EventType.SCAN_STARTED, EventType.SERVER_SHUTDOWN, EventType.SCAN_STARTED]


async def test_unsubscribe_between_emit_and_delivery_drops_the_event() -> None:
    bus = EventBus()
    seen: list[Event[EventData]] = []
    unsubscribe = bus.subscribe(seen.append)
    bus.emit(ServerShutdown())
    unsubscribe()
    await bus.drain()
    assert seen == []


async def test_wire_form_is_json_safe() -> None:
    bus = EventBus()
    retry_at = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    event = bus.emit(DownloadFailed("id1", "one-piece", 1, 2, "hoster_error", "all hosters failed", True, retry_at))
    wire = json.loads(json.dumps(event_json(event)))
    assert wire["type"] == "download_failed"
    assert wire["seq"] == event.seq
    assert datetime.fromisoformat(wire["timestamp"]) == event.timestamp
    assert wire["data"] == {
        "item_id": "id1",
        "series_key": "one-piece",
        "season": 1,
        "episode": 2,
        "error_code": "hoster_error",
        "error_message": "all hosters failed",
        "will_retry": True,
        "next_attempt_at": "2026-11-21T03:00:00+00:00",
    }
    status = event_json(bus.emit(QueueStatus(QueueAction.QUEUE_REORDERED, ("a", "b"))))
    assert status["data"] == {"action": "queue_reordered", "item_ids": ["a", "b"]}


def test_every_event_type_has_exactly_one_frozen_payload() -> None:
    payloads = [
        cls
        for cls in vars(events).values()
        if isinstance(cls, type) and issubclass(cls, EventData) and cls is not EventData
    ]
    assert sorted(cls.TYPE.value for cls in payloads) == sorted(item.value for item in EventType)
    for cls in payloads:
        assert dataclasses.is_dataclass(cls)
        assert vars(cls)["__dataclass_params__"].frozen  # each dataclass has its own params
