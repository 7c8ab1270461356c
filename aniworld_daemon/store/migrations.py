"""The database schema: the migrations from an empty file to the current version, in order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias

import aiosqlite

Migration: TypeAlias = tuple[str, ...] | Callable[[aiosqlite.Connection], Awaitable[None]]

# Migrations are history: never edit a released step, append a new one. Enum values in CHECK constraints are
# spelled out because the schema must not change when the Python enums do.
_MIGRATION_1: tuple[str, ...] = (
    """
    CREATE TABLE series (
        key TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        title TEXT NOT NULL,
        folder TEXT NOT NULL,
        languages TEXT NOT NULL DEFAULT '[]',
        seasons TEXT,
        monitored INTEGER NOT NULL CHECK (monitored IN (0, 1)),
        source TEXT NOT NULL,
        year_start INTEGER,
        year_end INTEGER,
        description TEXT NOT NULL DEFAULT '',
        cover_url TEXT,
        imdb_id TEXT,
        genres TEXT NOT NULL DEFAULT '[]',
        fsk INTEGER,
        added_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE episodes (
        series_key TEXT NOT NULL REFERENCES series (key) ON DELETE CASCADE,
        season INTEGER NOT NULL,
        number INTEGER NOT NULL,
        title_de TEXT NOT NULL DEFAULT '',
        title_en TEXT NOT NULL DEFAULT '',
        languages TEXT NOT NULL DEFAULT '[]',
        state TEXT NOT NULL,
        file_path TEXT,
        file_size INTEGER,
        updated_at REAL NOT NULL,
        PRIMARY KEY (series_key, season, number)
    )
    """,
    """
    CREATE TABLE downloads (
        id TEXT PRIMARY KEY,
        series_key TEXT NOT NULL REFERENCES series (key) ON DELETE CASCADE,
        season INTEGER NOT NULL,
        number INTEGER NOT NULL,
        priority TEXT NOT NULL CHECK (priority IN ('high', 'normal', 'low')),
        priority_rank INTEGER GENERATED ALWAYS AS
            (CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END) VIRTUAL,
        position INTEGER NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('pending', 'downloading', 'completed', 'failed', 'cancelled')),
        created_at REAL NOT NULL,
        language TEXT,
        hoster TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        error_code TEXT,
        error_message TEXT,
        bytes_downloaded INTEGER NOT NULL DEFAULT 0,
        bytes_total INTEGER,
        started_at REAL,
        finished_at REAL,
        file_path TEXT
    )
    """,
    # An episode may be queued once while it is live; finished items may repeat it.
    """
    CREATE UNIQUE INDEX downloads_live_episode ON downloads (series_key, season, number)
        WHERE status IN ('pending', 'downloading')
    """,
    "CREATE INDEX downloads_next ON downloads (status, priority_rank, position, created_at)",
    # No foreign key: history outlives the series it mentions.
    """
    CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        created_at REAL NOT NULL,
        message TEXT NOT NULL,
        series_key TEXT,
        season INTEGER,
        number INTEGER,
        data TEXT NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX history_kind ON history (kind, id)",
    """
    CREATE TABLE scans (
        id TEXT PRIMARY KEY,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        series_checked INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        new_episodes INTEGER NOT NULL DEFAULT 0,
        missing TEXT NOT NULL DEFAULT '{}',
        errors TEXT NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX scans_started ON scans (started_at)",
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# Rescans: what the provider said per season and when, so finished seasons are not read again on every rescan.
_MIGRATION_2: tuple[str, ...] = (
    "ALTER TABLE series ADD COLUMN alternative_titles TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE series ADD COLUMN folder_matched INTEGER NOT NULL DEFAULT 0 CHECK (folder_matched IN (0, 1))",
    "ALTER TABLE series ADD COLUMN refreshed_at REAL",
    """
    CREATE TABLE seasons (
        series_key TEXT NOT NULL REFERENCES series (key) ON DELETE CASCADE,
        season INTEGER NOT NULL,
        fetched_at REAL NOT NULL,
        episodes INTEGER NOT NULL,
        PRIMARY KEY (series_key, season)
    )
    """,
)

# The API's login sessions: only a hash of each token is stored, so a copy of the database opens no session.
_MIGRATION_3: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        client TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX sessions_expiry ON sessions (expires_at)",
    "CREATE INDEX downloads_status ON downloads (status, priority_rank, position, created_at, id)",
)

MIGRATIONS: tuple[Migration, ...] = (_MIGRATION_1, _MIGRATION_2, _MIGRATION_3)
SCHEMA_VERSION = len(MIGRATIONS)
