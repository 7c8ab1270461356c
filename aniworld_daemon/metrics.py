"""Prometheus metrics (`GET /metrics`), with prometheus-client on a registry of this daemon's own (no globals).

Counters follow the events on the bus and the HTTP requests; the queue, the scans, the provider and the cooldowns are
read when Prometheus scrapes, so they are exact and cost nothing in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aniworld_daemon.events import (
    DownloadComplete,
    DownloadFailed,
    Event,
    EventBus,
    EventData,
    ScanComplete,
    ScanFailed,
)
from aniworld_daemon.models import DownloadStatus, ScanReport
from aniworld_daemon.provider.http import HttpClient

LOGGER = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Scraped(Collector):
    """The gauges read at scrape time from the values `Metrics.refresh()` gathered just before."""

    def __init__(self) -> None:
        self.queue: dict[DownloadStatus, int] = {}
        self.active = 0
        self.last_scan: ScanReport | None = None
        self.provider_requests = 0
        self.cooldowns = 0
        self.tasks = 0

    def collect(self) -> Iterator[Metric]:
        """The gauges, in the text format's families."""
        items = GaugeMetricFamily("aniworld_queue_items", "Queue items by state", labels=["state"])
        for status in DownloadStatus:
            items.add_metric([status.value], self.queue.get(status, 0))
        yield items
        yield GaugeMetricFamily("aniworld_downloads_active", "Downloads in progress", value=self.active)
        scan = self.last_scan
        duration = (
            (scan.finished_at - scan.started_at).total_seconds() if scan is not None and scan.finished_at else 0.0
        )
        yield GaugeMetricFamily(
            "aniworld_last_scan_duration_seconds", "Duration of the latest finished rescan", value=duration
        )
        yield GaugeMetricFamily(
            "aniworld_last_scan_requests", "Requests the latest rescan sent", value=scan.requests if scan else 0
        )
        yield GaugeMetricFamily(
            "aniworld_last_scan_timestamp_seconds",
            "Start of the latest rescan (Unix time)",
            value=scan.started_at.timestamp() if scan else 0,
        )
        yield GaugeMetricFamily(
            "aniworld_provider_requests",
            "Requests sent to the site and hosters since start",
            value=self.provider_requests,
        )
        yield GaugeMetricFamily("aniworld_provider_cooldowns", "Hosts that refused us and wait", value=self.cooldowns)
        # A task that is never awaited or cancelled grows this without bound: bench/soak.py watches it over time.
        yield GaugeMetricFamily(
            "aniworld_asyncio_tasks", "Unfinished asyncio tasks of the daemon's loop", value=self.tasks
        )


class Metrics:
    """The daemon's metrics: counters fed by the bus and the web server, gauges read at scrape time."""

    def __init__(self, bus: EventBus, http: HttpClient) -> None:
        self._http = http
        self.registry = CollectorRegistry(auto_describe=True)
        self._downloads_completed = Counter(
            "aniworld_downloads_completed", "Episodes downloaded and imported", registry=self.registry
        )
        self._downloads_failed = Counter(
            "aniworld_downloads_failed",
            "Failed download attempts (final: no retry left)",
            ["final"],
            registry=self.registry,
        )
        self._bytes = Counter("aniworld_downloaded_bytes", "Bytes of imported episodes", registry=self.registry)
        self._scans = Counter("aniworld_scans", "Finished rescans by status", ["status"], registry=self.registry)
        self._http_requests = Counter(
            "aniworld_http_requests",
            "API requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._scraped = _Scraped()
        self.registry.register(self._scraped)
        self._unsubscribe = bus.subscribe(self._on_event)  # every event: filtered in _on_event

    def _on_event(self, event: Event[EventData]) -> None:
        data = event.data
        if isinstance(data, DownloadComplete):
            self._downloads_completed.inc()
            self._bytes.inc(data.size_bytes)
        elif isinstance(data, DownloadFailed):
            self._downloads_failed.labels(final=str(not data.will_retry).lower()).inc()
        elif isinstance(data, ScanComplete):
            self._scans.labels(status=data.status.value).inc()
        elif isinstance(data, ScanFailed):
            self._scans.labels(status="failed").inc()

    def request(self, method: str, route: str, status: int) -> None:
        """Count one API request; `route` is the route's pattern (`/api/queue/{id}`), never the raw path."""
        self._http_requests.labels(method=method, route=route, status=str(status)).inc()

    def render(self, queue: dict[DownloadStatus, int], active: int, last_scan: ScanReport | None) -> bytes:
        """The text exposition, with the gauges set from the values given (read by the caller just before)."""
        scraped = self._scraped
        scraped.queue = queue
        scraped.active = active
        scraped.last_scan = last_scan
        scraped.provider_requests = self._http.requests_made
        scraped.cooldowns = len(self._http.cooldowns())
        scraped.tasks = len(asyncio.all_tasks())  # render() runs on the loop (a request handler)
        return generate_latest(self.registry)

    def close(self) -> None:
        """Stop following the bus."""
        self._unsubscribe()
