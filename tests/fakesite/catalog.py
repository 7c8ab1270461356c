"""The fake site's series, seasons, episodes and hoster links, loaded from catalog.yaml.

The records are frozen; `Catalog` is the one mutable holder, because `Catalog.release` adds episodes while the site
runs. Every id (series, episode, redirect link) is assigned in catalog order, so it is the same on every load.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from aniworld_daemon.models import Language

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")
STREAM_PREFIX = "/anime/stream/"
FIRST_SERIES_ID = 101
FIRST_EPISODE_ID = 2301
FIRST_LINK_ID = 2_738_955
# The order the site lists languages in (its own key order: German dub, English sub, German sub, English dub).
LANGUAGE_ORDER: tuple[Language, ...] = tuple(sorted(Language, key=lambda language: language.site_key))


@dataclass(frozen=True, slots=True)
class Link:
    """One hoster offer of one episode in one language: what `/redirect/<id>` leads to."""

    id: int
    series: str  # series key
    season: int
    number: int
    language: Language
    hoster: str  # hoster key, e.g. "voe"
    video_id: str  # the hoster's id of the video, used in its embed path

    @property
    def path(self) -> str:
        """The site path of the redirect, e.g. `/redirect/2738955`."""
        return f"/redirect/{self.id}"


@dataclass(frozen=True, slots=True)
class Episode:
    """One episode (or, in season 0, one movie) with its titles, release date and hoster links."""

    series: str  # series key
    season: int  # 0 for movies
    number: int
    id: int  # the site's data-episode-id
    title_de: str
    title_en: str
    released: date
    sequence: int  # global order of appearance (load order, then runtime releases)
    links: tuple[Link, ...]

    @property
    def is_movie(self) -> bool:
        """Whether this is a movie (season 0, served under `/filme/film-K`)."""
        return self.season == 0

    @property
    def path(self) -> str:
        """The site path of the episode (or movie) page."""
        if self.is_movie:
            return f"{STREAM_PREFIX}{self.series}/filme/film-{self.number}"
        return f"{STREAM_PREFIX}{self.series}/staffel-{self.season}/episode-{self.number}"

    @property
    def languages(self) -> tuple[Language, ...]:
        """The languages this episode is offered in, in the site's key order."""
        offered = {link.language for link in self.links}
        return tuple(language for language in LANGUAGE_ORDER if language in offered)

    @property
    def hoster_names(self) -> tuple[str, ...]:
        """Every hoster that offers this episode in any language, in order of first appearance."""
        return tuple(dict.fromkeys(link.hoster for link in self.links))

    def hosters(self, language: Language) -> tuple[str, ...]:
        """The hosters offering this episode in `language` (empty when the language is missing)."""
        return tuple(link.hoster for link in self.links if link.language is language)

    def offers(self) -> dict[Language, tuple[str, ...]]:
        """Language -> hosters, the expected result of parsing this episode's page."""
        return {language: self.hosters(language) for language in self.languages}

    def link(self, language: Language, hoster: str) -> Link:
        """The link of `hoster` in `language`; KeyError when there is none."""
        for link in self.links:
            if link.language is language and link.hoster == hoster:
                return link
        raise KeyError((self.series, self.season, self.number, language, hoster))


@dataclass(frozen=True, slots=True)
class Season:
    """One season (number 0 holds the movies)."""

    series: str
    number: int
    episodes: tuple[Episode, ...]

    @property
    def is_movies(self) -> bool:
        """Whether this is the movies list (`/filme`)."""
        return self.number == 0

    @property
    def path(self) -> str:
        """The site path of the season page."""
        if self.is_movies:
            return f"{STREAM_PREFIX}{self.series}/filme"
        return f"{STREAM_PREFIX}{self.series}/staffel-{self.number}"

    def episode(self, number: int) -> Episode | None:
        """The episode with this number, or None."""
        for episode in self.episodes:
            if episode.number == number:
                return episode
        return None


@dataclass(frozen=True, slots=True)
class Series:
    """One series with the metadata its page shows."""

    key: str  # the slug
    id: int
    title: str
    alternative_titles: tuple[str, ...]
    start_year: int
    end_year: int | None  # None while the series is running
    description: str
    fsk: int | None
    imdb: str | None
    genres: tuple[str, ...]
    broken: bool  # the series page is served as a half page without the series-title markup
    seasons: tuple[Season, ...]  # sorted by number; season 0 (movies) first when present

    @property
    def path(self) -> str:
        """The site path of the series page."""
        return f"{STREAM_PREFIX}{self.key}"

    @property
    def cover_path(self) -> str:
        """The site path of the cover image (the random part is stable per series)."""
        token = hashlib.sha256(self.key.encode()).hexdigest()[:8]
        return f"/public/img/cover/{self.key}-stream-cover-{token}_220x330.jpg"

    @property
    def has_movies(self) -> bool:
        """Whether the series has a movies list."""
        return any(season.is_movies for season in self.seasons)

    @property
    def season_numbers(self) -> tuple[int, ...]:
        """The numbers of the regular seasons (without 0), ascending."""
        return tuple(season.number for season in self.seasons if not season.is_movies)

    @property
    def running(self) -> bool:
        """Whether the series has no end year yet."""
        return self.end_year is None

    def season(self, number: int) -> Season | None:
        """The season with this number (0 = movies), or None."""
        for season in self.seasons:
            if season.number == number:
                return season
        return None

    def episode(self, season: int, number: int) -> Episode | None:
        """One episode, or None."""
        found = self.season(season)
        return found.episode(number) if found is not None else None

    def episodes(self) -> Iterator[Episode]:
        """Every episode and movie in season order."""
        for season in self.seasons:
            yield from season.episodes


def video_id(link_id: int, hoster: str) -> str:
    """A stable hoster video id for a link: 12 lowercase letters and digits, like most hosters use."""
    digest = hashlib.sha256(f"{hoster}:{link_id}".encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[:12])


class Catalog:
    """Every series of the fake site, by key; the mutable holder of the frozen records."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.links: dict[int, Link] = {}
        self._next_episode_id = FIRST_EPISODE_ID
        self._next_link_id = FIRST_LINK_ID
        self._next_sequence = 0

    def __contains__(self, key: object) -> bool:
        return key in self.series

    def __iter__(self) -> Iterator[Series]:
        return iter(self.series.values())

    def __len__(self) -> int:
        return len(self.series)

    def get(self, key: str) -> Series | None:
        """The series with this key, or None."""
        return self.series.get(key)

    def __getitem__(self, key: str) -> Series:
        return self.series[key]

    def link(self, link_id: int) -> Link | None:
        """The link behind `/redirect/<link_id>`, or None."""
        return self.links.get(link_id)

    def episodes(self) -> Iterator[Episode]:
        """Every episode of every series."""
        for series in self.series.values():
            yield from series.episodes()

    def newest(self, limit: int) -> list[Episode]:
        """The `limit` most recently released episodes (newest first), as the new-episodes feed lists them."""
        return sorted(self.episodes(), key=lambda episode: (episode.released, episode.sequence), reverse=True)[:limit]

    def make_episode(
        self,
        series: str,
        *,
        season: int,
        number: int,
        titles: tuple[str, str],
        offers: Mapping[Language, tuple[str, ...]],
        released: date,
    ) -> Episode:
        """Build an episode with fresh episode and link ids (ids are handed out in call order)."""
        links: list[Link] = []
        for language in LANGUAGE_ORDER:
            for hoster in offers.get(language, ()):
                link = Link(
                    id=self._next_link_id,
                    series=series,
                    season=season,
                    number=number,
                    language=language,
                    hoster=hoster,
                    video_id=video_id(self._next_link_id, hoster),
                )
                self._next_link_id += 1
                self.links[link.id] = link
                links.append(link)
        episode = Episode(
            series=series,
            season=season,
            number=number,
            id=self._next_episode_id,
            title_de=titles[0],
            title_en=titles[1],
            released=released,
            sequence=self._next_sequence,
            links=tuple(links),
        )
        self._next_episode_id += 1
        self._next_sequence += 1
        return episode

    def release(self, key: str, season: int | None = None, *, today: date | None = None) -> Episode:
        """Add the next episode of `key` (to its last regular season, or to `season`, which may be a new one).

        The new episode copies the language offer of the season's (or the series') last episode and is dated
        `today` (or the catalog's newest date, if that is later). Raises KeyError for an unknown series.
        """
        series = self.series[key]
        numbers = series.season_numbers
        target = season if season is not None else (numbers[-1] if numbers else 1)
        existing = series.season(target)
        # A new season copies the offer of the series' newest episode.
        template = existing.episodes[-1] if existing is not None else max(series.episodes(), key=_by_sequence)
        number = existing.episodes[-1].number + 1 if existing is not None else 1
        offers = template.offers()
        # Never dated before the catalog's newest episode, so a release tops the feed whatever the machine's clock says.
        released = max(today or date.today(), *(found.released for found in self.episodes()))
        titles = ("", f"{series.title}: Film {number}") if target == 0 else (f"Folge {number}", f"Episode {number}")
        episode = self.make_episode(key, season=target, number=number, titles=titles, offers=offers, released=released)
        if existing is not None:
            seasons = tuple(
                dataclasses.replace(found, episodes=(*found.episodes, episode)) if found.number == target else found
                for found in series.seasons
            )
        else:
            added = Season(series=key, number=target, episodes=(episode,))
            seasons = tuple(sorted((*series.seasons, added), key=lambda found: found.number))
        self.series[key] = dataclasses.replace(series, seasons=seasons)
        return episode


def _by_sequence(episode: Episode) -> int:
    """Sort key: the order in which episodes appeared."""
    return episode.sequence


def _offers(raw: Mapping[str, Any]) -> dict[Language, tuple[str, ...]]:
    """Parse a `{language: [hosters]}` mapping of the data file."""
    return {Language(language): tuple(hosters) for language, hosters in raw.items()}


def _season_rows(raw: Mapping[str, Any]) -> list[tuple[str, str, dict[Language, tuple[str, ...]]]]:
    """The (German title, English title, offers) of every episode of one season entry."""
    default = _offers(raw.get("languages", {}))
    until = {Language(language): int(last) for language, last in raw.get("until", {}).items()}
    rows: list[tuple[str, str, dict[Language, tuple[str, ...]]]] = []
    if "count" in raw:
        for number in range(1, int(raw["count"]) + 1):
            rows.append((raw["de"].format(n=number), raw["en"].format(n=number), dict(default)))
    else:
        for entry in raw["episodes"]:
            offers = _offers(entry["languages"]) if "languages" in entry else dict(default)
            rows.append((str(entry["de"]), str(entry["en"]), offers))
    for number, (_, _, offers) in enumerate(rows, start=1):
        for language, last in until.items():
            if number > last:
                offers.pop(language, None)
    return rows


def load_catalog(path: Path = CATALOG_FILE) -> Catalog:
    """Load the catalog data file into a fresh `Catalog` (each call returns independent state)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    catalog = Catalog()
    for index, raw in enumerate(data["series"]):
        key = str(raw["key"])
        entries = sorted(raw["seasons"], key=lambda entry: int(entry["number"]))
        rows = [(int(entry["number"]), _season_rows(entry)) for entry in entries]
        total = sum(len(season_rows) for _, season_rows in rows)
        # The newest episode is dated `last_release`; the ones before it are `interval_days` apart.
        released = date.fromisoformat(str(raw["last_release"])) - timedelta(days=int(raw["interval_days"]) * total)
        seasons: list[Season] = []
        for number, season_rows in rows:
            episodes: list[Episode] = []
            for episode_number, (title_de, title_en, offers) in enumerate(season_rows, start=1):
                released += timedelta(days=int(raw["interval_days"]))
                episodes.append(
                    catalog.make_episode(
                        key,
                        season=number,
                        number=episode_number,
                        titles=(title_de, title_en),
                        offers=offers,
                        released=released,
                    )
                )
            seasons.append(Season(series=key, number=number, episodes=tuple(episodes)))
        end_year = raw.get("end_year")
        catalog.series[key] = Series(
            key=key,
            id=FIRST_SERIES_ID + index,
            title=" ".join(str(raw["title"]).split()),
            alternative_titles=tuple(str(title) for title in raw.get("alternative_titles", ())),
            start_year=int(raw["start_year"]),
            end_year=int(end_year) if end_year is not None else None,
            description=" ".join(str(raw["description"]).split()),
            fsk=int(raw["fsk"]) if raw.get("fsk") is not None else None,
            imdb=str(raw["imdb"]) if raw.get("imdb") else None,
            genres=tuple(str(genre) for genre in raw.get("genres", ())),
            broken=bool(raw.get("broken", False)),
            seasons=tuple(seasons),
        )
    return catalog
