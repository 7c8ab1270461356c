"""Followed series: follow by URL or key, unfollow, update, list, and keeping the YAML `series:` list in the DB."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from aniworld_daemon.config import SeriesConfig
from aniworld_daemon.errors import ConflictError, NotFoundError, ValidationError
from aniworld_daemon.events import EventBus, SeriesAdded, SeriesRemoved, SeriesUpdated
from aniworld_daemon.models import Episode, HistoryKind, Language, Series, SeriesSource
from aniworld_daemon.naming import NamingTemplate, SeriesNaming, sanitize_component
from aniworld_daemon.provider.aniworld import AniworldProvider, SeriesInfo, normalize_key
from aniworld_daemon.store.database import Database

LOGGER = logging.getLogger(__name__)

# The metadata fields a provider refresh may change; `series_updated` names the ones that did.
METADATA_FIELDS = (
    "title",
    "alternative_titles",
    "year_start",
    "year_end",
    "description",
    "cover_url",
    "imdb_id",
    "genres",
    "fsk",
)


@dataclass(frozen=True, slots=True)
class SeriesUpdate:
    """Changes to a followed series' settings; None leaves a field as it is."""

    monitored: bool | None = None
    languages: tuple[Language, ...] | None = None  # () = the provider's default preference
    seasons: tuple[int, ...] | Literal["all"] | None = None  # "all" = every regular season


def naming_of(series: Series) -> SeriesNaming:
    """The fields of a series that the naming template uses."""
    return SeriesNaming(title=series.title, year=series.year, key=series.key, imdb_id=series.imdb_id)


def with_metadata(series: Series, info: SeriesInfo) -> Series:
    """The series with the provider's metadata (title, years, description, cover, genres, ...)."""
    return replace(
        series,
        title=info.title,
        alternative_titles=info.alternative_titles,
        year_start=info.start_year,
        year_end=info.end_year,
        description=info.description,
        cover_url=info.cover_url,
        imdb_id=info.imdb_id,
        genres=info.genres,
        fsk=info.fsk,
    )


def changed_fields(old: Series, new: Series, names: Sequence[str]) -> tuple[str, ...]:
    """The names among `names` whose values differ between two versions of a series."""
    return tuple(name for name in names if getattr(old, name) != getattr(new, name))


class SeriesManager:
    """Owns the followed series: the Python API behind the CLI, and later the REST API and MQTT."""

    def __init__(self, db: Database, provider: AniworldProvider, bus: EventBus, template: NamingTemplate) -> None:
        self._db = db
        self._provider = provider
        self._bus = bus
        self._template = template

    @property
    def template(self) -> NamingTemplate:
        """The naming template that series folders are chosen with."""
        return self._template

    def reconfigure(self, template: NamingTemplate) -> None:
        """Name the folders of series followed from now on with a reloaded configuration's template."""
        self._template = template

    async def list(self) -> list[Series]:
        """Every followed series, ordered by key."""
        return await self._db.list_series()

    async def find(self, key: str) -> Series | None:
        """One followed series, or None."""
        return await self._db.get_series(key)

    async def get(self, key: str) -> Series:
        """One followed series; raises NotFoundError."""
        series = await self.find(key)
        if series is None:
            raise NotFoundError(f"series {key} is not followed", details={"key": key})
        return series

    async def episodes(self, key: str) -> builtins.list[Episode]:
        """The stored episodes of a series, in season and episode order."""
        return await self._db.list_episodes(key)

    async def follow(
        self,
        url_or_key: str,
        *,
        languages: tuple[Language, ...] = (),
        seasons: tuple[int, ...] | None = None,
        monitored: bool = True,
    ) -> Series:
        """Follow a series by URL or key: read its page for the metadata and pick its folder (one request)."""
        key = normalize_key(url_or_key, self._provider.base_url)
        if await self._db.get_series(key) is not None:
            raise ConflictError(f"series {key} is already followed", details={"key": key})
        info = await self._provider.series(key)
        series = with_metadata(
            Series(key=key, title=info.title, folder="", languages=languages, seasons=seasons, monitored=monitored),
            info,
        )
        series = await self._db.upsert_series(await self.with_folder(series))
        await self._db.add_history(
            HistoryKind.SERIES_ADDED, f"Following {series.title}", series_key=key, data={"source": "api"}
        )
        self._bus.emit(SeriesAdded(key=key, title=series.title, source=series.source))
        LOGGER.info("Following %s (%s) in %s", series.title, key, series.folder)
        return series

    async def unfollow(self, key: str) -> Series:
        """Stop following a series: its episodes and queue items go, its files stay on disk."""
        series = await self.get(key)
        await self._db.delete_series(key)
        await self._db.add_history(HistoryKind.SERIES_REMOVED, f"Stopped following {series.title}", series_key=key)
        self._bus.emit(SeriesRemoved(key=key))
        LOGGER.info("No longer following %s (%s); its files stay in %s", series.title, key, series.folder or "-")
        return series

    async def update(self, key: str, change: SeriesUpdate) -> Series:
        """Change whether a series is monitored, its language preference or its wanted seasons."""
        series = await self.get(key)
        updated = series
        if change.monitored is not None:
            updated = replace(updated, monitored=change.monitored)
        if change.languages is not None:
            if len(set(change.languages)) != len(change.languages):
                raise ValidationError("languages: each language at most once", details={"field": "languages"})
            updated = replace(updated, languages=change.languages)
        if change.seasons == "all":
            updated = replace(updated, seasons=None)
        elif change.seasons is not None:
            if any(season < 0 for season in change.seasons):
                raise ValidationError("seasons: season numbers are 0 (movies) or more", details={"field": "seasons"})
            updated = replace(updated, seasons=tuple(sorted(set(change.seasons))))
        return await self._save_changes(series, updated, ("monitored", "languages", "seasons"))

    async def refresh_metadata(self, series: Series, info: SeriesInfo, *, taken: set[str] | None = None) -> Series:
        """Store what a provider page says about a series (and pick its folder once the title is known).

        `taken`: the folders of all series, when the caller keeps that set (a rescan); the new folder is added.
        """
        updated = await self.with_folder(with_metadata(series, info), taken=taken)
        return await self._save_changes(series, updated, (*METADATA_FIELDS, "folder"))

    async def save(self, old: Series, new: Series) -> Series:
        """Store a changed series (e.g. its refresh time); `series_updated` names the changed metadata fields."""
        return await self._save_changes(old, new, (*METADATA_FIELDS, "folder"))

    async def record_folder(self, series: Series, folder: str) -> Series:
        """Remember the library folder found for a series; it is never guessed again."""
        updated = replace(series, folder=folder, folder_matched=True)
        return await self._save_changes(series, updated, ("folder",))

    async def with_folder(self, series: Series, *, taken: set[str] | None = None) -> Series:
        """The series with a folder from the naming template when it has none; never the folder of another series.

        `taken`: the folders already used (read from the database when not given); the chosen folder is added.
        """
        if series.folder:
            return series
        if taken is None:
            taken = {other.folder for other in await self._db.list_series() if other.key != series.key}
        folder = self._template.series_folder(naming_of(series))
        if folder in taken:
            # Two series with the same title and year (remakes): the key keeps their folders apart.
            folder = sanitize_component(f"{folder} [{series.key}]")
        taken.add(folder)
        return replace(series, folder=folder)

    async def sync_config(self, entries: Sequence[SeriesConfig]) -> None:
        """Make the DB follow the YAML `series:` list: add and update its series, drop config series it no longer lists.

        No request is made: a new series is stored under its key and gets its title and folder on the next rescan.
        """
        listed = {entry.key for entry in entries}
        stored = {series.key: series for series in await self._db.list_series()}
        for entry in entries:
            old = stored.get(entry.key)
            base = old or Series(key=entry.key, title=entry.key, folder="")
            new = replace(
                base,
                languages=entry.languages or (),
                seasons=entry.seasons,
                monitored=entry.monitored,
                source=SeriesSource.CONFIG,
            )
            if old is None:
                await self._db.upsert_series(new)
                await self._db.add_history(
                    HistoryKind.SERIES_ADDED, f"Following {entry.key}", series_key=entry.key, data={"source": "config"}
                )
                self._bus.emit(SeriesAdded(key=entry.key, title=new.title, source=SeriesSource.CONFIG))
            else:
                await self._save_changes(old, new, ("languages", "seasons", "monitored", "source"))
        for key, series in stored.items():
            if series.source is SeriesSource.CONFIG and key not in listed:
                LOGGER.info("Series %s was removed from the configuration", key)
                await self.unfollow(key)

    async def _save_changes(self, old: Series, new: Series, names: Sequence[str]) -> Series:
        if new == old:
            return old
        changed = changed_fields(old, new, names)
        saved = await self._db.upsert_series(replace(new, updated_at=None))
        if changed:
            self._bus.emit(SeriesUpdated(key=saved.key, changed=changed))
        return saved
