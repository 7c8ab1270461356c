"""Domain records and enums shared by every component: series, episodes, queue items, history, scans."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

SITE_ANIWORLD = "aniworld.to"
MB = 1_000_000  # sizes are MB of 10^6 bytes and speeds MB/s everywhere (API, MQTT, CLI)


class Language(StrEnum):
    """An audio/subtitle combination as offered by the site."""

    DE_DUB = "de-dub"
    DE_SUB = "de-sub"
    EN_SUB = "en-sub"
    EN_DUB = "en-dub"

    @property
    def site_key(self) -> int:
        """The site's `data-lang-key` for this language (1 German dub, 2 English sub, 3 German sub, 4 English dub)."""
        return _SITE_KEYS[self]

    @classmethod
    def from_site_key(cls, key: int) -> Language:
        """Map the site's `data-lang-key` to a language; raises KeyError for unknown keys."""
        return _BY_SITE_KEY[key]


_SITE_KEYS = {Language.DE_DUB: 1, Language.EN_SUB: 2, Language.DE_SUB: 3, Language.EN_DUB: 4}
_BY_SITE_KEY = {number: language for language, number in _SITE_KEYS.items()}


class Priority(StrEnum):
    """Queue priority; `rank` orders them (lower first)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Sort rank: high 0, normal 1, low 2."""
        return ("high", "normal", "low").index(self.value)


class DownloadStatus(StrEnum):
    """Life cycle of a queue item."""

    PENDING = "pending"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EpisodeState(StrEnum):
    """What the daemon knows about one episode relative to the library."""

    DOWNLOADED = "downloaded"
    MISSING = "missing"
    AWAITING_LANGUAGE = "awaiting_language"  # exists on the site, but not yet in any wanted language
    QUEUED = "queued"
    IGNORED = "ignored"


class SeriesSource(StrEnum):
    """Where a followed series was declared."""

    CONFIG = "config"
    API = "api"


class ScanStatus(StrEnum):
    """Outcome of a rescan."""

    RUNNING = "running"
    COMPLETE = "complete"
    PARTIAL = "partial"  # some requests were refused (cooldown) or some series failed
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the daemon was killed while it ran; found `running` at the next start


class PauseReason(StrEnum):
    """Why the queue starts no new downloads: a user's pause, or too little free space in the library."""

    USER = "user"
    LOW_DISK_SPACE = "low_disk_space"


class HealthStatus(StrEnum):
    """The daemon's overall health, as /health serves it."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class HistoryKind(StrEnum):
    """Kinds of append-only history rows."""

    DOWNLOAD_COMPLETED = "download_completed"
    DOWNLOAD_FAILED = "download_failed"
    SCAN = "scan"
    SERIES_ADDED = "series_added"
    SERIES_REMOVED = "series_removed"


@dataclass(frozen=True, slots=True)
class Series:
    """A followed series and its metadata from the provider."""

    key: str
    title: str
    folder: str  # relative to the library root
    site: str = SITE_ANIWORLD
    languages: tuple[Language, ...] = ()  # ordered preference; empty = the provider default
    seasons: tuple[int, ...] | None = None  # wanted seasons; None = every regular season
    monitored: bool = True
    source: SeriesSource = SeriesSource.API
    year_start: int | None = None
    year_end: int | None = None
    description: str = ""
    cover_url: str | None = None
    imdb_id: str | None = None
    genres: tuple[str, ...] = ()
    fsk: int | None = None
    alternative_titles: tuple[str, ...] = ()
    folder_matched: bool = False  # the folder was found in an existing library: never guessed again
    refreshed_at: datetime | None = None  # last time every season page was read (None: never)
    added_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def year(self) -> int | None:
        """The first year, the one library folders carry."""
        return self.year_start

    @property
    def running(self) -> bool:
        """True while the show has no end year (its latest season can still grow)."""
        return self.year_end is None


@dataclass(frozen=True, slots=True)
class Episode:
    """One episode of a series (season 0 holds movies and specials)."""

    series_key: str
    season: int
    number: int
    title_de: str = ""
    title_en: str = ""
    languages: tuple[Language, ...] = ()  # languages seen on the site
    state: EpisodeState = EpisodeState.MISSING
    file_path: str | None = None  # relative to the library root
    file_size: int | None = None
    updated_at: datetime | None = None

    @property
    def display_title(self) -> str:
        """The title shown for an episode: German, else English."""
        return self.title_de or self.title_en


@dataclass(frozen=True, slots=True)
class SeasonFetch:
    """When a season page of a series was last read, and how many episodes it listed."""

    series_key: str
    season: int
    fetched_at: datetime
    episodes: int


@dataclass(frozen=True, slots=True)
class Download:
    """A queue item: one episode to download."""

    id: str
    series_key: str
    season: int
    number: int
    priority: Priority
    position: int
    status: DownloadStatus
    created_at: datetime
    language: Language | None = None
    hoster: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    bytes_downloaded: int = 0
    bytes_total: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    file_path: str | None = None

    @property
    def label(self) -> str:
        """`series S01E02`, for logs and messages."""
        return f"{self.series_key} S{self.season:02d}E{self.number:02d}"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """An append-only history row."""

    id: int
    kind: HistoryKind
    created_at: datetime
    message: str
    series_key: str | None = None
    season: int | None = None
    number: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScanReport:
    """The stored report of one rescan."""

    id: str
    trigger: str  # schedule | startup | manual | api | cli
    status: ScanStatus
    started_at: datetime
    finished_at: datetime | None = None
    series_checked: int = 0
    requests: int = 0
    new_episodes: int = 0
    missing: dict[str, int] = field(default_factory=dict)  # series key -> missing episodes
    errors: dict[str, str] = field(default_factory=dict)  # series key -> error message
