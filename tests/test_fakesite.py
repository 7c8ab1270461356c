"""The fake aniworld.to itself: real markup (read with bs4 directly, not our parsers), knobs, log, CLI."""

from __future__ import annotations

import asyncio
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from datetime import date
from typing import IO

import aiohttp
import pytest
from bs4 import BeautifulSoup, Tag

from aniworld_daemon.models import Language
from aniworld_daemon.validators import HOSTERS
from tests.fakesite.catalog import load_catalog
from tests.fakesite.core import CAPTCHA_PAGE, Media
from tests.fakesite.pages import PLACEHOLDER, feed_date
from tests.fakesite.server import FakeSite
from tests.helpers import ROOT, free_port

EPISODE_ROW = 'tr[itemtype="http://schema.org/Episode"]'


@pytest.fixture
async def http(fakesite: FakeSite) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the fake site (relative URLs go to the site)."""
    async with aiohttp.ClientSession(base_url=fakesite.base_url, timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def fetch(http: aiohttp.ClientSession, path: str, status: int = 200) -> str:
    """GET a page, check its status and return its text."""
    async with http.get(path) as response:
        text = await response.text()
        assert response.status == status, (path, response.status, text[:300])
        return text


def soup_of(text: str) -> BeautifulSoup:
    """Parse HTML like our parsers do (lxml)."""
    return BeautifulSoup(text, "lxml")


def one(node: BeautifulSoup | Tag, selector: str) -> Tag:
    """The single element a CSS selector finds."""
    found = node.select_one(selector)
    assert found is not None, selector
    return found


def site_json(text: str) -> object:
    """Clean a search answer like a client must: BOM, entities stay, raw control characters become spaces."""
    return json.loads(re.sub(r"[\x00-\x1f]+", " ", text.lstrip("\ufeff")))


# ------------------------------------------------------------------------------------------------------- catalog


def test_catalog_covers_what_the_parsers_must_survive() -> None:
    catalog = load_catalog()
    assert len(catalog) >= 8
    series = list(catalog)
    assert any(s.has_movies for s in series)
    assert any(len(season.episodes) >= 1000 for s in series for season in s.seasons)
    titles = [s.title for s in series]
    assert any("'" in title for title in titles)
    assert any("/" in title for title in titles)
    assert any(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", title) for title in titles)
    assert any(re.search("[äöüÄÖÜß]", title) for title in titles)
    assert any(len(title) > 200 for title in titles)
    assert any(s.broken for s in series)
    assert any(s.running for s in series)
    assert any(not s.running for s in series)
    assert any(s.imdb is None for s in series)
    assert any(s.imdb for s in series)
    used = {link.hoster for link in catalog.links.values()}
    assert used == set(HOSTERS)
    # A season where some episodes lack the German dub the others have.
    assert any(
        len({Language.DE_DUB in episode.languages for episode in season.episodes}) == 2
        for s in series
        for season in s.seasons
    )
    # Hoster lists that differ per language.
    blade = catalog["blade-of-dawn"].episode(1, 1)
    assert blade is not None
    assert blade.hosters(Language.DE_DUB) == ("voe", "vidoza")
    assert blade.hosters(Language.DE_SUB) == ("voe", "filemoon", "doodstream")


def test_ids_are_stable_across_loads() -> None:
    first, second = load_catalog(), load_catalog()
    assert first.links.keys() == second.links.keys()
    assert first.links == second.links
    assert [e.id for e in first.episodes()] == [e.id for e in second.episodes()]


# --------------------------------------------------------------------------------------------------------- pages


async def test_series_page_has_the_reference_markup(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    series = fakesite.series("blade-of-dawn")
    soup = soup_of(await fetch(http, series.path))
    assert one(soup, "div.series-title h1 span").get_text() == "Blade of Dawn"
    h1 = one(soup, 'div.series-title h1[itemprop="name"]')
    assert h1["data-alternativetitles"] == "Yoake no Tsurugi, 夜明けの剣"
    assert one(soup, 'span[itemprop="startDate"] a').get_text() == "2015"
    assert one(soup, 'span[itemprop="endDate"] a').get_text() == "2019"
    assert one(soup, "div.fsk")["data-fsk"] == "16"
    assert one(soup, "a.imdb-link")["data-imdb"] == "tt4512001"
    description = one(soup, "p.seri_des")["data-full-description"]
    assert description == series.description
    assert "Schuld & Vergebung" in str(description)
    genres = [a.get_text() for a in soup.select('div.genres a[itemprop="genre"]')]
    assert genres == ["Action", "Abenteuer", "Fantasy"]
    assert one(soup, "div.genres ul")["data-main-genre"] == "action"
    assert one(soup, 'div.seriesCoverBox img[itemprop="image"]')["data-src"] == series.cover_path
    assert one(soup, 'a[title="Alle Filme"]')["href"] == "/anime/stream/blade-of-dawn/filme"
    seasons = {
        a["href"] for a in soup.select("div.hosterSiteDirectNav a") if re.search(r"/staffel-\d+$", str(a["href"]))
    }
    assert seasons == {"/anime/stream/blade-of-dawn/staffel-1", "/anime/stream/blade-of-dawn/staffel-2"}
    # numberOfSeasons counts the movies tab too (like the real site): 3, although there are 2 seasons.
    assert one(soup, 'meta[itemprop="numberOfSeasons"]')["content"] == "3"


async def test_normal_pages_carry_no_captcha_marker(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    # Our HttpClient treats a 200 page with one of these markers as a block: real pages must not trip it.
    markers = ("cf-turnstile", "hcaptcha.com", "g-recaptcha", "altcha-widget")
    episode = fakesite.episode("blade-of-dawn", 1, 1)
    for path in ("/", "/neue-episoden", "/anime/stream/blade-of-dawn", episode.path, "/anime/stream/nope"):
        async with http.get(path) as response:
            text = await response.text()
        assert not any(marker in text for marker in markers), path


async def test_entities_are_raw_in_the_html(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    raw = await fetch(http, "/anime/stream/the-ogres-bride")
    assert "<span>The Ogre&#039;s Bride</span>" in raw
    assert "Vorurteile &amp; Vertrauen" in raw
    assert "&quot;Oger&quot;" in raw
    assert one(soup_of(raw), "div.series-title h1 span").get_text() == "The Ogre's Bride"
    assert "Hörner &amp; Herzen" in await fetch(http, "/anime/stream/the-ogres-bride/staffel-1")
    assert "<strong>The Ogre&#039;s Bride</strong>" in await fetch(http, "/neue-episoden")


async def test_unicode_slash_and_long_titles(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    for key in ("hoshi-no-uta", "sword-shield-chronicle", "reincarnated-as-a-village-blacksmith"):
        soup = soup_of(await fetch(http, f"/anime/stream/{key}"))
        assert one(soup, "div.series-title h1 span").get_text() == fakesite.series(key).title
    hoshi = soup_of(await fetch(http, "/anime/stream/hoshi-no-uta"))
    assert hoshi.select_one("div.fsk") is None  # no FSK
    assert hoshi.select_one("a.imdb-link") is None  # no IMDb id


async def test_running_series_has_no_end_year(http: aiohttp.ClientSession) -> None:
    soup = soup_of(await fetch(http, "/anime/stream/the-ogres-bride"))
    assert one(soup, 'span[itemprop="startDate"] a').get_text() == "2026"
    assert soup.select_one('span[itemprop="endDate"] a') is None


async def test_season_page_rows(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    soup = soup_of(await fetch(http, "/anime/stream/moonlit-academy/staffel-1"))
    rows = soup.select(f"table.seasonEpisodesList tbody#season1 {EPISODE_ROW}")
    assert len(rows) == 12
    first = rows[0]
    assert one(first, 'meta[itemprop="episodeNumber"]')["content"] == "1"
    assert one(first, 'a[itemprop="url"]')["href"] == "/anime/stream/moonlit-academy/staffel-1/episode-1"
    assert one(first, "td.seasonEpisodeTitle strong").get_text() == "Der erste Schultag"
    assert one(first, "td.seasonEpisodeTitle span").get_text() == "The First Day"
    assert [i["title"] for i in first.select("i.icon")] == ["VOE", "Vidoza", "Filemoon", "Doodstream"]
    assert [img["src"] for img in rows[8].select("img.flag")] == ["/public/img/japanese-german.svg"]


async def test_long_season_has_over_a_thousand_rows(http: aiohttp.ClientSession) -> None:
    soup = soup_of(await fetch(http, "/anime/stream/endless-voyage/staffel-1"))
    rows = soup.select(EPISODE_ROW)
    assert len(rows) >= 1000
    assert one(rows[-1], 'meta[itemprop="episodeNumber"]')["content"] == str(len(rows))


async def test_movies_page_and_movie_page(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    soup = soup_of(await fetch(http, "/anime/stream/blade-of-dawn/filme"))
    rows = soup.select(f"tbody#season0 {EPISODE_ROW}")
    assert [one(row, 'a[itemprop="url"]')["href"] for row in rows] == [
        "/anime/stream/blade-of-dawn/filme/film-1",
        "/anime/stream/blade-of-dawn/filme/film-2",
    ]
    assert one(rows[0], "td.seasonEpisodeTitle strong").get_text() == ""
    assert one(rows[0], "td.seasonEpisodeTitle span").get_text() == "Blade of Dawn: The First Light"
    movie = soup_of(await fetch(http, "/anime/stream/blade-of-dawn/filme/film-2"))
    assert one(movie, "small.episodeEnglishTitle").get_text() == "Blade of Dawn: Embers of the North"
    assert {li["data-lang-key"] for li in movie.select("div.hosterSiteVideo li[data-lang-key]")} == {"1", "3"}


async def test_episode_page_languages_and_hosters(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    episode = fakesite.episode("moonlit-academy", 1, 3)
    soup = soup_of(await fetch(http, episode.path))
    assert one(soup, "span.episodeGermanTitle").get_text() == "Blutspende"
    assert one(soup, "small.episodeEnglishTitle").get_text() == "Blood Drive"
    flags = {img["data-lang-key"]: img["src"] for img in soup.select("div.changeLanguageBox img[data-lang-key]")}
    assert flags == {"1": "/public/img/german.svg", "3": "/public/img/japanese-german.svg"}
    offers: dict[Language, list[str]] = {}
    for li in soup.select("div.hosterSiteVideo ul.row li[data-lang-key]"):
        language = Language.from_site_key(int(str(li["data-lang-key"])))
        target = str(li["data-link-target"])
        assert target == f"/redirect/{li['data-link-id']}"
        assert one(li, "a.watchEpisode")["href"] == target
        # Only the default (first) language is visible; the others are hidden like on the real site.
        assert ("display: none" in str(li.get("style", ""))) == (language is not Language.DE_DUB)
        link = fakesite.link(int(str(li["data-link-id"])))
        assert (link.series, link.season, link.number, link.language) == ("moonlit-academy", 1, 3, language)
        offers.setdefault(language, []).append(one(li, "h4").get_text())
    assert offers == {Language.DE_DUB: ["VOE", "Vidoza"], Language.DE_SUB: ["VOE", "Filemoon", "Doodstream"]}
    # Episode 9 of the same season has no German dub: only German sub, visible.
    late = soup_of(await fetch(http, fakesite.episode_url("moonlit-academy", 1, 9)))
    assert {li["data-lang-key"] for li in late.select("div.hosterSiteVideo li[data-lang-key]")} == {"3"}
    assert all("display" not in str(li.get("style", "")) for li in late.select("div.hosterSiteVideo li"))


async def test_feed_rows_per_episode_and_language(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    soup = soup_of(await fetch(http, "/neue-episoden"))
    anchors = soup.select('div.newEpisodeList a[href^="/anime/stream/"]')
    assert len(anchors) >= 20
    newest = fakesite.catalog.newest(1)[0]
    first = anchors[0]
    assert first["href"] == newest.path
    assert one(first, "span.listTag").get_text() == f"S{newest.season:02d} E{newest.number:02d}"
    assert one(first, "span.elementFloatRight").get_text() == feed_date(newest.released)
    flag = first.find_next_sibling("img")
    assert isinstance(flag, Tag)
    assert flag["src"] == PLACEHOLDER
    assert str(flag["data-src"]).startswith("/public/img/")
    # One row per language: the newest episode is listed once per language it has.
    assert sum(a["href"] == newest.path for a in anchors) == len(newest.languages)


async def test_series_search_json(http: aiohttp.ClientSession) -> None:
    async with http.get("/ajax/seriesSearch", params={"keyword": "ogre"}) as response:
        assert response.status == 200
        raw = await response.text()
    assert raw.startswith("\ufeff")
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw.lstrip("\ufeff"))  # raw control characters: strict JSON parsing fails, cleaning is needed
    items = site_json(raw)
    assert isinstance(items, list)
    assert [item["link"] for item in items] == ["the-ogres-bride"]
    assert items[0]["name"] == "The Ogre&#039;s Bride"
    assert items[0]["productionYear"] == "(2026 - Heute)"
    assert items[0]["cover"].startswith("/public/img/cover/the-ogres-bride-stream-cover-")
    unicode_hit = site_json(await fetch(http, "/ajax/seriesSearch?keyword=%E6%98%9F"))  # 星
    assert isinstance(unicode_hit, list)
    assert [item["link"] for item in unicode_hit] == ["hoshi-no-uta"]
    assert site_json(await fetch(http, "/ajax/seriesSearch?keyword=zzzz")) == []


async def test_search_post(http: aiohttp.ClientSession) -> None:
    async with http.post("/ajax/search", data={"keyword": "academy"}) as response:
        assert response.status == 400  # not an XHR
    async with http.post(
        "/ajax/search", data={"keyword": "academy"}, headers={"X-Requested-With": "XMLHttpRequest"}
    ) as response:
        assert response.status == 200
        results = json.loads(await response.text())
    links = [result["link"] for result in results]
    assert "/anime/stream/moonlit-academy" in links
    assert "/anime/stream/moonlit-academy/staffel-1" in links
    assert any("/episode-" in link for link in links)
    assert any(not link.startswith("/anime/stream/") for link in links)
    assert results[0]["title"] == "Moonlit <em>Academy</em>"


async def test_unknown_pages_answer_an_html_404(http: aiohttp.ClientSession) -> None:
    for path in (
        "/anime/stream/no-such-series",
        "/anime/stream/blade-of-dawn/staffel-7",
        "/anime/stream/blade-of-dawn/staffel-1/episode-99",
        "/anime/stream/the-ogres-bride/filme",
        "/anime/stream/blade-of-dawn/filme/film-9",
        "/redirect/1",
        "/public/img/cover/nope-stream-cover-0000_220x330.jpg",
        "/no/such/page",
    ):
        async with http.get(path) as response:
            assert response.status == 404, path
            assert response.content_type == "text/html"
            assert "Seite nicht gefunden" in await response.text()


async def test_broken_series_page_is_a_half_page(http: aiohttp.ClientSession) -> None:
    raw = await fetch(http, "/anime/stream/broken-mirror")
    assert soup_of(raw).select_one("div.series-title") is None
    assert "</html>" not in raw
    # Its season page is fine.
    assert len(soup_of(await fetch(http, "/anime/stream/broken-mirror/staffel-1")).select(EPISODE_ROW)) == 2


async def test_cover_with_range(fakesite: FakeSite, http: aiohttp.ClientSession, media: Media) -> None:
    path = fakesite.series("hoshi-no-uta").cover_path
    data = media.cover.read_bytes()
    async with http.get(path) as response:
        assert response.status == 200
        assert response.content_type == "image/jpeg"
        assert await response.read() == data
    async with http.get(path, headers={"Range": "bytes=10-19"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        assert await response.read() == data[10:20]


# ------------------------------------------------------------------------------------------------------ hosters


async def test_every_hoster_runs_on_its_own_origin(fakesite: FakeSite) -> None:
    origins = {fakesite.hoster_origin(name) for name in HOSTERS}
    assert len(origins) == len(HOSTERS)
    assert fakesite.base_url not in origins


async def test_redirect_goes_to_another_origin(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    episode = fakesite.episode("blade-of-dawn", 1, 1)
    link = episode.link(Language.DE_SUB, "filemoon")
    async with http.get(link.path, allow_redirects=False) as response:
        assert response.status == 302
        location = response.headers["Location"]
    assert location == fakesite.redirect_target(link.id)
    assert location.startswith(fakesite.hoster_origin("filemoon") + "/")
    assert not location.startswith(fakesite.base_url)
    assert link.video_id in location
    async with http.get(location) as response:  # the embed page answers on the hoster's origin
        assert response.status == 200
    assert fakesite.log.count("filemoon") == 1
    link_id, hoster = fakesite.any_redirect("streamtape")
    assert (fakesite.link(link_id).hoster, hoster) == ("streamtape", "streamtape")


async def test_hoster_media_supports_range(fakesite: FakeSite, http: aiohttp.ClientSession, media: Media) -> None:
    link = fakesite.episode("blade-of-dawn", 1, 1).link(Language.DE_DUB, "vidoza")
    embed = soup_of(await fetch(http, fakesite.redirect_target(link.id)))
    source = str(one(embed, "video source")["src"])
    assert source.startswith(fakesite.hoster_origin("vidoza") + "/")
    data = media.mp4.read_bytes()
    async with http.get(source, headers={"Range": "bytes=100-"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
        assert await response.read() == data[100:]
    async with http.get(source, headers={"Range": "bytes=-50"}) as response:
        assert response.status == 206
        assert await response.read() == data[-50:]


# -------------------------------------------------------------------------------------------------------- knobs


async def test_bandwidth_throttles_each_media_connection(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    """With 100 kB/s per connection, 50 kB of media take the server at least half a second to send."""
    link = fakesite.episode("blade-of-dawn", 1, 1).link(Language.DE_DUB, "vidoza")
    embed = soup_of(await fetch(http, fakesite.redirect_target(link.id)))
    source = str(one(embed, "video source")["src"])
    fakesite.knobs.bandwidth = 100_000
    async with http.get(source, headers={"Range": "bytes=0-49999"}) as response:
        assert len(await response.read()) == 50_000
    for _ in range(100):  # the server logs the request after its last write, a moment after we read it
        if records := [r for r in fakesite.log.select("vidoza") if r.status == 206]:
            break
        await asyncio.sleep(0.01)
    [record] = records
    assert record.finished - record.started >= 0.5


async def test_latency(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    fakesite.knobs.latency = 0.2
    started = time.monotonic()
    await fetch(http, "/")
    assert time.monotonic() - started >= 0.2


async def test_block_after_n_with_403_then_captcha(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    await fetch(http, "/")
    fakesite.knobs.block("site", after=fakesite.log.count("site") + 2)
    await fetch(http, "/")
    await fetch(http, "/neue-episoden")
    assert "403" in await fetch(http, "/", status=403)
    fakesite.knobs.block("site", after=0, mode="captcha")
    assert await fetch(http, "/") == CAPTCHA_PAGE
    fakesite.knobs.unblock("site")
    assert "newEpisodeList" in await fetch(http, "/neue-episoden")


async def test_5xx_burst_counts_down(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    fakesite.knobs.fail_5xx["site"] = 2
    fakesite.knobs.retry_after = 7
    for remaining in (1, 0):
        async with http.get("/") as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "7"
        assert fakesite.knobs.fail_5xx["site"] == remaining
    await fetch(http, "/")


# What a client must send to get each kind of media: an MP4 hoster without checks, an HLS one with a Referer check.
MEDIA_HOSTERS = {
    "vidoza": ("/vod/abc123/v.mp4", "video/mp4", False),
    "vidmoly": ("/hls/abc123/master.m3u8", "application/vnd.apple.mpegurl", True),
}


def media_url(fakesite: FakeSite, hoster: str) -> tuple[str, dict[str, str]]:
    """The URL of one of `hoster`'s media files and the headers it wants."""
    path, _, referer = MEDIA_HOSTERS[hoster]
    origin = fakesite.hoster_origin(hoster)
    return origin + path, {"Referer": origin + "/"} if referer else {}


@pytest.mark.parametrize("hoster", sorted(MEDIA_HOSTERS))
async def test_fail_media_refuses_only_media(fakesite: FakeSite, http: aiohttp.ClientSession, hoster: str) -> None:
    url, headers = media_url(fakesite, hoster)
    embed = fakesite.hoster_origin(hoster) + "/embed-abc123.html"
    other = "vidoza" if hoster == "vidmoly" else "vidmoly"
    fakesite.knobs.fail_media[hoster] = 1000
    for _ in range(2):
        async with http.get(url, headers=headers) as response:
            assert response.status == 503
            assert "Retry-After" not in response.headers
    assert fakesite.knobs.fail_media[hoster] == 998
    async with http.get(embed) as response:  # the embed page of the same hoster answers
        assert response.status == 200
    other_url, other_headers = media_url(fakesite, other)
    async with http.get(other_url, headers=other_headers) as response:  # another hoster's media too
        assert response.status == 200
    fakesite.knobs.fail_media[hoster] = 0
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        await response.read()
    await asyncio.sleep(0.05)  # the server logs a request after its last write, a moment after we read it
    records = fakesite.log.media(hoster)
    assert [record.status for record in records] == [503, 503, 200]
    assert records[-1].content_type == MEDIA_HOSTERS[hoster][1]
    assert all(record.media for record in records)
    [page] = [record for record in fakesite.log.select(hoster) if record not in records]
    assert (page.content_type, page.media) == ("text/html", False)
    assert [record.label for record in fakesite.log.media()] == [hoster, hoster, other, hoster]


@pytest.mark.parametrize(
    ("hoster", "headers", "status"),
    [("vidmoly", {}, 403), ("vidoza", {"Range": "bytes=999999999-"}, 416)],
)
async def test_refused_media_requests_are_still_media(
    fakesite: FakeSite, http: aiohttp.ClientSession, hoster: str, headers: dict[str, str], status: int
) -> None:
    url, _ = media_url(fakesite, hoster)
    async with http.get(url, headers=headers) as response:
        assert response.status == status
    await asyncio.sleep(0.05)
    [record] = fakesite.log.media(hoster)
    assert record.status == status
    assert record.content_type != MEDIA_HOSTERS[hoster][1]


async def test_max_concurrency_across_origins_and_media_only(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    """Three media requests on two hosters and one page of the site, all in flight together (latency)."""
    await fetch(http, "/")  # before the others: counted, but overlapping nothing
    fakesite.knobs.latency = 0.3
    vidoza, _ = media_url(fakesite, "vidoza")
    vidmoly, vidmoly_headers = media_url(fakesite, "vidmoly")
    segment = vidmoly.replace("master.m3u8", "seg000.ts")

    async def get(url: str, headers: dict[str, str]) -> None:
        async with http.get(url, headers={**headers, "Range": "bytes=0-9999"}) as response:
            assert response.status == 206
            await response.read()

    await asyncio.gather(get(vidoza, {}), get(vidoza, {}), get(segment, vidmoly_headers), fetch(http, "/neue-episoden"))
    await asyncio.sleep(0.05)
    assert [record.content_type for record in fakesite.log.media("vidmoly")] == ["video/mp2t"]
    assert len(fakesite.log.media()) == 3
    assert fakesite.log.max_concurrency("vidoza") == 2
    assert fakesite.log.max_concurrency("vidoza", media_only=True) == 2
    assert fakesite.log.max_concurrency(None, media_only=True) == 3
    assert fakesite.log.max_concurrency(None) == 4
    assert fakesite.log.max_concurrency("site") == 1
    assert fakesite.log.max_concurrency("site", media_only=True) == 0


async def test_request_log_counts_and_concurrency(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    fakesite.knobs.latency = 0.2
    await asyncio.gather(*(fetch(http, "/anime/stream/the-ogres-bride") for _ in range(4)))
    await fetch(http, "/neue-episoden")
    assert fakesite.log.count("site") == 5
    assert fakesite.log.count("site", "/anime/stream/") == 4
    assert fakesite.log.max_concurrency("site") == 4
    record = fakesite.log.select("site", "/neue-episoden")[0]
    assert (record.method, record.status) == ("GET", 200)
    assert record.finished - record.started >= 0.2


async def test_release_adds_an_episode_everywhere(fakesite: FakeSite, http: aiohttp.ClientSession) -> None:
    assert fakesite.release("the-ogres-bride") == (1, 12)
    season = soup_of(await fetch(http, "/anime/stream/the-ogres-bride/staffel-1"))
    assert len(season.select(EPISODE_ROW)) == 12
    feed = soup_of(await fetch(http, "/neue-episoden"))
    first = one(feed, "div.newEpisodeList a")
    assert first["href"] == "/anime/stream/the-ogres-bride/staffel-1/episode-12"
    assert one(first, "span.elementFloatRight").get_text() == feed_date(date.today())
    episode = soup_of(await fetch(http, "/anime/stream/the-ogres-bride/staffel-1/episode-12"))
    assert {li["data-lang-key"] for li in episode.select("li[data-lang-key]")} == {"2", "3"}
    # A release into a new season shows the new season link on the series page.
    assert fakesite.release("moonlit-academy", season=3) == (3, 1)
    series = soup_of(await fetch(http, "/anime/stream/moonlit-academy"))
    assert series.select_one('a[href="/anime/stream/moonlit-academy/staffel-3"]') is not None
    assert fakesite.episode("moonlit-academy", 3, 1).languages == (Language.DE_SUB,)


# ---------------------------------------------------------------------------------------------------------- CLI


def forward_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    """Put every line of `stream` into `lines`, then "" at its end (in a thread: reads block)."""
    for line in stream:
        lines.put(line)
    lines.put("")


def read_line(lines: queue.Queue[str], timeout: float) -> str:
    """The next line the process printed ("" once its output ended); fails after `timeout` seconds."""
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no output within {timeout}s")


def test_module_runs_standalone(media: Media) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.fakesite", "--port", str(port), "--bandwidth", "200000"),
            *("--media-dir", str(media.mp4.parent)),
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=forward_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        assert read_line(lines, 30) == f"site http://127.0.0.1:{port}\n"
        hosters = dict(read_line(lines, 10).split()[1:] for _ in HOSTERS)
        assert sorted(hosters) == sorted(HOSTERS)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/neue-episoden", timeout=5) as response:
            assert "newEpisodeList" in response.read().decode()
        # --bandwidth throttles media: 100 kB at 200 kB/s take the server at least half a second to send.
        request = urllib.request.Request(hosters["vidoza"] + "/vod/abc123/v.mp4", headers={"Range": "bytes=0-99999"})
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=10) as response:
            assert len(response.read()) == 100_000
        assert time.monotonic() - started >= 0.45
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert read_line(lines, 5) == "stopped\n"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize("value", ["0", "-5", "fast", "1.5"])
def test_module_refuses_a_bad_bandwidth(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.fakesite", "--bandwidth", value],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--bandwidth" in result.stderr
