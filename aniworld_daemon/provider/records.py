"""What the provider reads from aniworld.to: frozen records of search results, series, seasons, episodes, the feed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from aniworld_daemon.errors import AniworldError
from aniworld_daemon.models import Language
from aniworld_daemon.provider.hosters.base import MediaSource


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One series found by a search; the POST search knows no cover and no years (None)."""

    key: str
    title: str
    url: str  # absolute series URL
    description: str
    cover_url: str | None
    start_year: int | None
    end_year: int | None


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """A series page: metadata, the regular seasons linked from it and whether a movies tab exists."""

    key: str
    url: str
    title: str
    alternative_titles: tuple[str, ...]
    start_year: int | None
    end_year: int | None  # None while the show is running
    description: str  # the full description, not the truncated visible text
    cover_url: str | None  # absolute
    genres: tuple[str, ...]
    fsk: int | None
    imdb_id: str | None  # "tt8690728"
    seasons: tuple[int, ...]  # regular seasons, ascending, without the movies
    has_movies: bool  # a `/filme` tab exists: season 0


@dataclass(frozen=True, slots=True)
class EpisodeSummary:
    """One row of a season page; hosters and languages are hints, the episode page is authoritative."""

    season: int  # 0 for movies
    number: int
    url: str  # absolute episode URL
    title_de: str  # empty on `/filme`, where the title is in `title_en`
    title_en: str
    hosters: tuple[str, ...]  # display names from the hoster icons, e.g. "VOE"
    languages: tuple[Language, ...]  # from the flag icons; some sources say they are a static legend


@dataclass(frozen=True, slots=True)
class SeasonPage:
    """A season page (`/staffel-N`) or the movies page (`/filme`, season 0)."""

    key: str
    season: int
    url: str
    episodes: tuple[EpisodeSummary, ...]  # in page order, one per number


@dataclass(frozen=True, slots=True)
class HosterLink:
    """One hoster offer of an episode in one language: its redirect link leads to the hoster's embed page."""

    language: Language
    name: str  # display name as shown in the `h4`, e.g. "VOE", "SpeedFiles"
    redirect_url: str  # absolute `/redirect/<id>` URL
    link_id: int


@dataclass(frozen=True, slots=True)
class EpisodePage:
    """An episode page (or a movie page, season 0) with its hoster links per language."""

    key: str
    season: int
    number: int
    url: str
    title_de: str
    title_en: str
    languages: tuple[Language, ...]  # the language box's entries, then languages only the hoster list shows
    hosters: tuple[HosterLink, ...]  # in page order, hidden (other language) items included

    def hosters_for(self, language: Language) -> tuple[HosterLink, ...]:
        """The hoster links of one language, in page order."""
        return tuple(link for link in self.hosters if link.language is language)


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One row of `/neue-episoden`: an episode (movies: season 0) that is new in one language."""

    key: str
    season: int
    number: int
    url: str
    title: str  # the series title
    language: Language | None  # None when the row's flag is missing or unknown
    date: date | None


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one hoster link of an episode resolved to: the embed URL and the media, or the error on the way."""

    link: HosterLink
    embed_url: str | None = None
    media: MediaSource | None = None
    error: AniworldError | None = None
