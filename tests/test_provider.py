"""The provider against the fake site: every page of the catalog parsed field by field, and search -> playable file."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yt_dlp

from aniworld_daemon.config import default_provider_config
from aniworld_daemon.errors import HosterError, NotFound, ParseError, ProviderError, ValidationError
from aniworld_daemon.models import Language
from aniworld_daemon.provider.aniworld import (
    AniworldProvider,
    EpisodePage,
    EpisodeSummary,
    HosterLink,
    SeasonPage,
    SeriesInfo,
    parse_search_ajax,
)
from aniworld_daemon.provider.hosters import HosterRegistry, MediaKind, MediaSource
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.validators import HOSTERS
from tests.fakesite.catalog import Episode, Series
from tests.fakesite.hosters import HOSTER_DISPLAY
from tests.fakesite.server import FakeSite
from tests.helpers import cli, ffprobe, minimal_config

# A quick client: the politeness itself is tested in test_http.py.
FAST = {"requests_per_second": 100.0, "max_connections": 4}


@pytest.fixture
async def http(fakesite: FakeSite) -> AsyncIterator[HttpClient]:
    """A started HTTP client with a generous budget for the fake site."""
    config = dataclasses.replace(default_provider_config(fakesite.base_url), **FAST)  # type: ignore[arg-type]
    async with HttpClient(config, retry_base=0.01) as client:
        yield client


@pytest.fixture
def provider(fakesite: FakeSite, http: HttpClient) -> AniworldProvider:
    """The provider reading the fake site."""
    return AniworldProvider(http, fakesite.base_url)


def expected_series(site: FakeSite, series: Series) -> SeriesInfo:
    """What the series page of `series` must parse to."""
    return SeriesInfo(
        key=series.key,
        url=site.series_url(series.key),
        title=series.title,
        alternative_titles=series.alternative_titles,
        start_year=series.start_year,
        end_year=series.end_year,
        description=series.description,
        cover_url=site.url(series.cover_path),
        genres=series.genres,
        fsk=series.fsk,
        imdb_id=series.imdb,
        seasons=series.season_numbers,
        has_movies=series.has_movies,
    )


def expected_summary(site: FakeSite, episode: Episode) -> EpisodeSummary:
    """What one season-table row must parse to."""
    return EpisodeSummary(
        season=episode.season,
        number=episode.number,
        url=site.url(episode.path),
        title_de=episode.title_de,
        title_en=episode.title_en,
        hosters=tuple(HOSTER_DISPLAY[name] for name in episode.hoster_names),
        languages=episode.languages,
    )


def expected_episode(site: FakeSite, episode: Episode) -> EpisodePage:
    """What an episode page must parse to (hoster links sorted by id, the page's order is the site's business)."""
    return EpisodePage(
        key=episode.series,
        season=episode.season,
        number=episode.number,
        url=site.url(episode.path),
        title_de=episode.title_de,
        title_en=episode.title_en,
        languages=episode.languages,
        hosters=tuple(
            HosterLink(link.language, HOSTER_DISPLAY[link.hoster], site.url(link.path), link.id)
            for link in sorted(episode.links, key=lambda link: link.id)
        ),
    )


def by_id(page: EpisodePage) -> EpisodePage:
    """The page with its hoster links sorted by id, to compare with `expected_episode`."""
    return dataclasses.replace(page, hosters=tuple(sorted(page.hosters, key=lambda link: link.link_id)))


def sample(episodes: tuple[Episode, ...]) -> tuple[Episode, ...]:
    """Every episode of a short season; first, last and some in between of a long one (to stay quick)."""
    if len(episodes) <= 24:
        return episodes
    return (*episodes[:3], episodes[len(episodes) // 2], *episodes[995:1002], episodes[-1])


async def test_every_catalog_page_parses_to_the_catalog(fakesite: FakeSite, provider: AniworldProvider) -> None:
    """Series, season, movie and episode pages of every catalog series give exactly the catalog's data."""
    checked = 0
    for series in fakesite.catalog:
        if not series.broken:
            assert await provider.series(series.key) == expected_series(fakesite, series)
        for season in series.seasons:
            page = await provider.season(series.key, season.number)
            assert page == SeasonPage(
                key=series.key,
                season=season.number,
                url=fakesite.url(season.path),
                episodes=tuple(expected_summary(fakesite, episode) for episode in season.episodes),
            )
            for episode in sample(season.episodes):
                parsed = await provider.episode(series.key, episode.season, episode.number)
                assert by_id(parsed) == expected_episode(fakesite, episode)
                checked += 1
    assert checked >= 70  # every episode of the short seasons, a sample of the 1,122-episode one


async def test_the_broken_series_page_is_a_parse_error_for_that_series(
    fakesite: FakeSite, provider: AniworldProvider
) -> None:
    """The half page gives ParseError naming its URL; the series' season pages still parse."""
    broken = next(series for series in fakesite.catalog if series.broken)
    with pytest.raises(ParseError) as failed:
        await provider.series(broken.key)
    assert failed.value.details["url"] == fakesite.series_url(broken.key)
    assert (await provider.season(broken.key, broken.season_numbers[0])).episodes


async def test_unknown_pages_are_not_found(provider: AniworldProvider) -> None:
    """A series or episode the site does not have is NotFound, not a parse error."""
    with pytest.raises(NotFound):
        await provider.series("no-such-series")
    with pytest.raises(NotFound):
        await provider.episode("blade-of-dawn", 1, 999)


async def test_both_searches_find_the_series(fakesite: FakeSite, provider: AniworldProvider, http: HttpClient) -> None:
    """The JSON search and the form search both find "The Ogre's Bride" with its entity-free title."""
    [result] = await provider.search("ogre")
    assert (result.key, result.title, result.url) == (
        "the-ogres-bride",
        "The Ogre's Bride",
        fakesite.series_url("the-ogres-bride"),
    )
    assert (result.start_year, result.end_year) == (2026, None)
    form = await http.post(
        fakesite.url("/ajax/search"),
        data={"keyword": "ogre"},
        headers={"X-Requested-With": "XMLHttpRequest", "Referer": fakesite.url("/search")},
    )
    assert [item.key for item in parse_search_ajax(form.text, fakesite.base_url)] == ["the-ogres-bride"]


async def test_feed_names_a_released_episode_first(fakesite: FakeSite, provider: AniworldProvider) -> None:
    """An episode released while the site runs is the feed's first entry, once per language."""
    season, number = fakesite.release("the-ogres-bride")
    feed = await provider.new_episodes()
    released = fakesite.catalog["the-ogres-bride"].episode(season, number)
    assert released is not None
    head = feed[: len(released.languages)]
    assert {(entry.key, entry.season, entry.number) for entry in head} == {("the-ogres-bride", season, number)}
    assert {entry.language for entry in head} == set(released.languages)
    assert head[0].title == "The Ogre's Bride"


@pytest.mark.parametrize("status", [200, 404])
async def test_search_falls_back_to_the_form_search(
    fakesite: FakeSite, provider: AniworldProvider, status: int
) -> None:
    """When the JSON search answers a non-JSON page or 404, the form search is asked, as the site's own page does."""
    fakesite.knobs.fail_paths["/ajax/seriesSearch"] = status
    [result] = await provider.search("ogre")
    assert (result.key, result.start_year, result.cover_url) == ("the-ogres-bride", None, None)
    get, post = fakesite.log.select("site")
    assert (get.method, get.path, post.method, post.path) == (
        "GET",
        "/ajax/seriesSearch?keyword=ogre",
        "POST",
        "/ajax/search",
    )
    assert post.headers["X-Requested-With"] == "XMLHttpRequest"
    assert post.headers["Referer"] == fakesite.url("/search")


async def test_search_does_not_fall_back_on_server_errors(fakesite: FakeSite, provider: AniworldProvider) -> None:
    """A JSON search that keeps failing with 5xx is an error; the form search is not hammered as well."""
    fakesite.knobs.fail_paths["/ajax/seriesSearch"] = 500
    with pytest.raises(ProviderError):
        await provider.search("ogre")
    assert fakesite.log.count("site", "/ajax/search") == 0


async def test_bad_keys_are_refused_without_a_request(fakesite: FakeSite, provider: AniworldProvider) -> None:
    """A key that is not a slug never becomes a URL: ValidationError, and the site sees nothing."""
    for key in ("../../admin", "a/b", "x?y=1", ""):
        with pytest.raises(ValidationError):
            await provider.series(key)
    assert fakesite.log.count() == 0


# --- search -> series -> episode -> redirect -> hoster -> media -> yt-dlp -> ffprobe ------------------------------


def ytdlp_download(source: MediaSource, folder: Path) -> Path:
    """Download `source` with the real yt-dlp (generic extractor) into `folder`; returns the file."""
    options: dict[str, Any] = {
        "outtmpl": str(folder / "episode.%(ext)s"),
        "http_headers": dict(source.headers),
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "retries": 2,
        "fragment_retries": 2,
        "socket_timeout": 20,
    }
    with yt_dlp.YoutubeDL(options) as ydl:
        info = ydl.extract_info(source.url, download=True)
        return Path(ydl.prepare_filename(info))


@pytest.mark.parametrize(("hoster", "kind"), [("doodstream", MediaKind.MP4), ("voe", MediaKind.HLS)])
async def test_search_to_a_playable_file(
    fakesite: FakeSite, provider: AniworldProvider, http: HttpClient, tmp_path: Path, hoster: str, kind: MediaKind
) -> None:
    """From a search to a file ffprobe can read, with the real yt-dlp, through an MP4 and an HLS hoster."""
    [result] = await provider.search("blade of dawn")
    series = await provider.series(result.key)
    season = await provider.season(series.key, series.seasons[0])
    first = season.episodes[0]
    page = await provider.episode(series.key, first.season, first.number)
    link = next(link for link in page.hosters_for(Language.DE_SUB) if link.name == HOSTER_DISPLAY[hoster])
    embed_url = await provider.resolve_redirect(link.redirect_url)
    assert embed_url.startswith(fakesite.hoster_origin(hoster))
    resolver = HosterRegistry(HOSTERS).get(link.name)
    assert resolver is not None
    source = await resolver.resolve(http, embed_url)
    assert source.kind is kind

    path = await asyncio.to_thread(ytdlp_download, source, tmp_path)

    probe = await asyncio.to_thread(ffprobe, path)
    assert any(stream["codec_type"] == "video" for stream in probe["streams"])
    assert float(probe["format"]["duration"]) > 0.5 * fakesite.media.duration
    media_requests = [record for record in fakesite.log.select(hoster) if record.status in (200, 206)]
    assert media_requests, "yt-dlp fetched nothing from the hoster"


async def test_a_dead_hoster_is_a_hoster_error(
    fakesite: FakeSite, provider: AniworldProvider, http: HttpClient
) -> None:
    """A hoster whose file is gone gives HosterError, which makes the downloader try the next one."""
    fakesite.knobs.dead_hosters.add("vidoza")
    page = await provider.episode("blade-of-dawn", 1, 1)
    link = next(link for link in page.hosters if link.name == "Vidoza")
    resolver = HosterRegistry(HOSTERS).get("vidoza")
    assert resolver is not None
    with pytest.raises(HosterError):
        await resolver.resolve(http, await provider.resolve_redirect(link.redirect_url))


# --- the CLI (a real subprocess against the fake site) -------------------------------------------------------------


async def test_cli_search_json(fakesite: FakeSite, tmp_path: Path) -> None:
    """`search --json` prints the documented shape."""
    status, out, err = await cli("search", "ogre", "--json", "--base-url", fakesite.base_url, cwd=tmp_path)
    assert status == 0, err
    assert json.loads(out) == {
        "query": "ogre",
        "results": [
            {
                "key": "the-ogres-bride",
                "title": "The Ogre's Bride",
                "url": fakesite.series_url("the-ogres-bride"),
                "description": fakesite.catalog["the-ogres-bride"].description,
                "cover_url": fakesite.url(fakesite.catalog["the-ogres-bride"].cover_path),
                "start_year": 2026,
                "end_year": None,
            }
        ],
    }


async def test_cli_info_json_uses_the_config(fakesite: FakeSite, tmp_path: Path) -> None:
    """`info --json` reads provider.base_url from -c and lists the movies as season 0 before the seasons."""
    config = tmp_path / "config.yaml"
    config.write_text(minimal_config(8099, f"provider:\n  base_url: {fakesite.base_url}\n"), encoding="utf-8")
    status, out, err = await cli("info", fakesite.series_url("blade-of-dawn"), "--json", "-c", str(config))
    assert status == 0, err
    data = json.loads(out)
    series = fakesite.catalog["blade-of-dawn"]
    assert data["key"] == "blade-of-dawn"
    assert data["genres"] == list(series.genres)
    assert [season["season"] for season in data["seasons"]] == [0, 1, 2]
    movie = data["seasons"][0]["episodes"][0]
    assert movie == {
        "season": 0,
        "number": 1,
        "url": fakesite.url(series.seasons[0].episodes[0].path),
        "title_de": "",
        "title_en": "Blade of Dawn: The First Light",
        "languages": ["de-dub", "de-sub"],
        "hosters": ["voe", "vidoza", "filemoon"],
    }


async def test_cli_episode_resolve_json(fakesite: FakeSite, tmp_path: Path) -> None:
    """`episode --json --resolve` gives every hoster link its media URL, kind and headers."""
    episode = fakesite.catalog["die-kleinen-baeren"].episode(1, 1)
    assert episode is not None
    status, out, err = await cli(
        "episode", fakesite.url(episode.path), "--json", "--resolve", "--base-url", fakesite.base_url, cwd=tmp_path
    )
    assert status == 0, err
    data = json.loads(out)
    assert sorted(item["hoster"] for item in data["hosters"]) == sorted(link.hoster for link in episode.links)
    for item in data["hosters"]:
        assert "error" not in item, item
        assert item["embed_url"].startswith(fakesite.hoster_origin(item["hoster"]))
        assert item["media"]["kind"] in ("mp4", "hls")
        assert item["media"]["url"].startswith("http://127.0.0.1:")


async def test_cli_reports_a_broken_page_in_one_line(fakesite: FakeSite, tmp_path: Path) -> None:
    """`info` of the broken series exits 1 with one error line naming the page, and no traceback."""
    status, out, err = await cli("info", "broken-mirror", "--base-url", fakesite.base_url, cwd=tmp_path)
    assert status == 1
    assert out == ""
    assert err.startswith("error: ")
    assert fakesite.series_url("broken-mirror") in err
    assert "Traceback" not in err


async def test_cli_text_output(fakesite: FakeSite, tmp_path: Path) -> None:
    """Without --json the commands print readable tables and lines."""
    base = ("--base-url", fakesite.base_url)
    status, out, _ = await cli("search", "blade", *base, cwd=tmp_path)
    assert status == 0
    assert out.splitlines() == ["KEY            YEARS      TITLE", "blade-of-dawn  2015-2019  Blade of Dawn"]
    status, out, _ = await cli("search", "no such thing", *base, cwd=tmp_path)
    assert (status, out) == (0, "No series found.\n")
    status, out, _ = await cli("info", "blade-of-dawn", *base, cwd=tmp_path)
    assert status == 0
    assert out.startswith("Blade of Dawn (2015-2019)\n")
    assert "\nMovies (season 0): 2 episode(s)\n" in out
    assert "\nSeason 2: 4 episode(s)\n" in out
    assert "     1  Das Licht im Schutt / The Light in the Rubble  [de-dub de-sub]" in out
    episode = fakesite.catalog["blade-of-dawn"].episode(1, 1)
    assert episode is not None
    status, out, _ = await cli("episode", fakesite.url(episode.path), *base, cwd=tmp_path)
    assert status == 0
    assert out.splitlines()[0] == "blade-of-dawn S01E01: Das Licht im Schutt / The Light in the Rubble"
    assert len([line for line in out.splitlines() if "/redirect/" in line]) == len(episode.links)


async def test_cli_says_when_the_site_refuses_us(fakesite: FakeSite, tmp_path: Path) -> None:
    """A 403 is one clear line: the host refused us and until when it cools down; exit status 1."""
    fakesite.knobs.block("site", after=0)
    status, out, err = await cli("search", "ogre", "--base-url", fakesite.base_url, cwd=tmp_path)
    host = fakesite.base_url.removeprefix("http://")
    assert status == 1
    assert out == ""
    assert f"error: {host} refused us; cooling down until " in err
    assert fakesite.log.count("site") == 1


async def test_cli_rejects_a_bad_base_url(tmp_path: Path) -> None:
    """--base-url must be the site's address; the error says what to type."""
    status, _, err = await cli("search", "x", "--base-url", "ftp://example", cwd=tmp_path)
    assert status == 1
    assert err == "--base-url: expected the site's address, like https://aniworld.to (got 'ftp://example')\n"
