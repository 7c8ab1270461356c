"""The provider's CLI commands (`search`, `info`, `episode`): fetch through the polite client, print text or JSON."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Sequence
from typing import TextIO

from aniworld_daemon.app import open_site
from aniworld_daemon.cli.output import cut
from aniworld_daemon.config import ProviderConfig
from aniworld_daemon.errors import AniworldError, HosterError
from aniworld_daemon.provider.aniworld import (
    AniworldProvider,
    EpisodePage,
    HosterLink,
    SearchResult,
    SeasonPage,
    SeriesInfo,
    normalize_key,
    parse_episode_url,
)
from aniworld_daemon.provider.hosters import HosterRegistry
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.provider.records import Resolution
from aniworld_daemon.validators import HOSTERS


async def search(config: ProviderConfig, query: str) -> list[SearchResult]:
    """Series matching `query`."""
    async with open_site(config) as (_, provider):
        return await provider.search(query)


async def info(
    config: ProviderConfig, url_or_key: str, *, progress: TextIO | None = None
) -> tuple[SeriesInfo, list[SeasonPage]]:
    """A series page and all its season pages (movies first as season 0)."""
    key = normalize_key(url_or_key, config.base_url)
    async with open_site(config) as (_, provider):
        series = await provider.series(key)
        numbers = ([0] if series.has_movies else []) + list(series.seasons)
        done = 0

        async def fetch(season: int) -> SeasonPage:
            nonlocal done
            page = await provider.season(key, season)
            done += 1
            if progress is not None:
                progress.write(f"\rfetched {done}/{len(numbers)} season pages")
                progress.flush()
            return page

        # The client's per-host budget paces these; gathering only keeps its connections busy.
        seasons = await asyncio.gather(*(fetch(season) for season in numbers))
        if progress is not None and numbers:
            progress.write("\n")
        return series, list(seasons)


async def episode(config: ProviderConfig, url: str, *, resolve: bool = False) -> tuple[EpisodePage, list[Resolution]]:
    """An episode page; with `resolve`, every hoster link followed to its media URL."""
    key, season, number = parse_episode_url(url)
    async with open_site(config) as (http, provider):
        page = await provider.episode(key, season, number)
        if not resolve:
            return page, []
        # Every resolver, not only the preferred ones: this command is how a user checks which hosters work.
        registry = HosterRegistry(HOSTERS)
        resolutions = [await _resolve(http, provider, registry, link) for link in page.hosters]
        return page, resolutions


async def _resolve(
    http: HttpClient, provider: AniworldProvider, registry: HosterRegistry, link: HosterLink
) -> Resolution:
    resolver = registry.get(link.name)
    if resolver is None:
        error = HosterError(f"no resolver for the hoster {link.name!r}", details={"hoster": link.name})
        return Resolution(link, error=error)
    try:
        embed_url = await provider.resolve_redirect(link.redirect_url)
    except AniworldError as err:
        return Resolution(link, error=err)
    try:
        return Resolution(link, embed_url=embed_url, media=await resolver.resolve(http, embed_url))
    except AniworldError as err:
        return Resolution(link, embed_url=embed_url, error=err)


# --- Text output --------------------------------------------------------------------------------------------------


def _years(start: int | None, end: int | None) -> str:
    if start is None:
        return ""
    if end is None:
        return f"{start}-"  # still running
    return f"{start}" if end == start else f"{start}-{end}"


def search_text(results: Sequence[SearchResult]) -> str:
    """`search` as a table: key, years, title."""
    if not results:
        return "No series found."
    width = min(max(len(result.key) for result in results), 40)
    lines = [f"{'KEY':<{width}}  {'YEARS':<9}  TITLE"]
    lines += [
        f"{cut(r.key, width):<{width}}  {_years(r.start_year, r.end_year):<9}  {cut(r.title, 80)}" for r in results
    ]
    return "\n".join(lines)


def info_text(series: SeriesInfo, seasons: Sequence[SeasonPage]) -> str:
    """`info` as text: the metadata, then every season's episodes with their language hints."""
    years = _years(series.start_year, series.end_year)
    lines = [f"{series.title}" + (f" ({years})" if years else ""), f"  key: {series.key}   {series.url}"]
    facts = [f"FSK {series.fsk}" if series.fsk is not None else "", series.imdb_id or "", ", ".join(series.genres)]
    if any(facts):
        lines.append("  " + " · ".join(fact for fact in facts if fact))
    if series.description:
        lines += textwrap.wrap(series.description, width=100, initial_indent="  ", subsequent_indent="  ")
    for page in seasons:
        label = "Movies (season 0)" if page.season == 0 else f"Season {page.season}"
        lines.append(f"\n{label}: {len(page.episodes)} episode(s)")
        for item in page.episodes:
            title = " / ".join(part for part in (item.title_de, item.title_en) if part)
            languages = " ".join(language.value for language in item.languages)
            lines.append(f"  {item.number:>4}  {cut(title, 90)}" + (f"  [{languages}]" if languages else ""))
    return "\n".join(lines)


def episode_text(page: EpisodePage, resolutions: Sequence[Resolution] = ()) -> str:
    """`episode` as text: titles, languages and one line per hoster link (and what it resolved to)."""
    label = f"movie {page.number}" if page.season == 0 else f"S{page.season:02}E{page.number:02}"
    title = " / ".join(part for part in (page.title_de, page.title_en) if part)
    lines = [f"{page.key} {label}: {title}", f"  {page.url}"]
    lines.append("  languages: " + (", ".join(language.value for language in page.languages) or "none"))
    resolved = {item.link: item for item in resolutions}
    for link in page.hosters:
        line = f"  {link.language.value:<6}  {link.name:<11} {link.redirect_url}"
        item = resolved.get(link)
        if item is not None and item.media is not None:
            line += f"\n{'':<21}-> {item.media.kind.value} {item.media.url}"
        elif item is not None and item.error is not None:
            line += f"\n{'':<21}-> failed: {item.error.message}"
        lines.append(line)
    return "\n".join(lines)
