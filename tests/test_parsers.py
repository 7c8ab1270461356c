"""Tests of the aniworld.to page parsers, URL helpers and provider against hand-written pages in the site's markup."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aniworld_daemon.errors import ParseError, ValidationError
from aniworld_daemon.models import Language
from aniworld_daemon.provider.aniworld import (
    EpisodePage,
    EpisodeSummary,
    FeedEntry,
    HosterLink,
    SearchResult,
    SeasonPage,
    SeriesInfo,
    episode_url,
    normalize_key,
    parse_episode_page,
    parse_episode_url,
    parse_feed,
    parse_search_ajax,
    parse_search_json,
    parse_season_page,
    parse_season_url,
    parse_series_page,
    parse_series_url,
    season_url,
    series_url,
)

BASE = "https://aniworld.to"
GS = f"{BASE}/anime/stream/goblin-slayer"
DE_DUB, EN_SUB, DE_SUB, EN_DUB = Language.DE_DUB, Language.EN_SUB, Language.DE_SUB, Language.EN_DUB

# ---------------------------------------------------------------------------------------------------------------
# Series pages
# ---------------------------------------------------------------------------------------------------------------

SERIES_FULL = """<!DOCTYPE html>
<html lang="de"><head><meta charset="utf-8"><title>Goblin Slayer | AniWorld.to</title></head>
<body>
<div class="backdrop" style="background-image: url('/public/img/cover/goblin-slayer-stream-backdrop.jpg')"></div>
<div class="series-title">
  <h1 itemprop="name" data-alternativetitles="ゴブリンスレイヤー, Goburin Sureiyā,  Goblin Slayer: Goblin&#039;s Crown">
    <span>Goblin Slayer</span></h1>
  <small> (<span itemprop="startDate"><a href="https://aniworld.to/animes/jahr/2018">2018</a></span>
   - <span itemprop="endDate"><a href="https://aniworld.to/animes/jahr/2023">2023</a></span>)</small>
  <div data-fsk="16" class="fsk fsk16">Ab: <span>16</span></div>
  <a href="https://www.imdb.com/title/tt8690728" data-imdb="tt8690728" class="imdb-link" target="_blank">IMDB</a>
</div>
<p class="seri_des" itemprop="accessibilitySummary"
   data-full-description="Goblins - die schw&auml;chsten Monster? &quot;Nicht f&uuml;r ihn&quot;: er&#039;s &amp;
   mehr.">
  Goblins - die schwächsten ...<span class="showMore">mehr anzeigen</span></p>
<div class="genres"><ul data-main-genre="action">
  <li><a href="/genre/action" class="genreButton clearbutton" itemprop="genre">Action</a></li>
  <li><a href="/genre/dark-fantasy" class="genreButton clearbutton" itemprop="genre">Dark Fantasy</a></li>
  <li><a href="/genre/ger" class="genreButton clearbutton" itemprop="genre">Ger</a></li>
  <li><a href="/genre/action" class="genreButton clearbutton" itemprop="genre">Action</a></li>
</ul></div>
<div class="seriesCoverBox"><img src="/public/img/cover/goblin-slayer-stream-cover-abc_220x330.png"
  data-src="/public/img/cover/goblin-slayer-stream-cover-XyZ_220x330.png" alt="Goblin Slayer" itemprop="image"></div>
<meta itemprop="numberOfSeasons" content="3">
<div class="hosterSiteDirectNav" id="stream"><ul><li><span><strong>Staffeln:</strong></span></li>
  <li><a href="/anime/stream/goblin-slayer/filme" title="Alle Filme">Filme</a></li>
  <li><a class="active" href="/anime/stream/goblin-slayer/staffel-1" title="Staffel 1">1</a></li>
  <li><a href="/anime/stream/goblin-slayer/staffel-2" title="Staffel 2">2</a></li>
</ul><ul><li><span><strong>Episoden:</strong></span></li>
  <li><a class="active" href="/anime/stream/goblin-slayer/staffel-1/episode-1" title="Staffel 1 Episode 1">1</a></li>
  <li><a href="/anime/stream/goblin-slayer/staffel-1/episode-2" title="Staffel 1 Episode 2">2</a></li>
</ul></div>
<div class="seasonNav"><a href="https://aniworld.to/anime/stream/goblin-slayer/staffel-2/">2</a></div>
<div class="related"><a href="/anime/stream/other-show/staffel-7">Other show</a></div>
</body></html>
"""

SERIES_FULL_INFO = SeriesInfo(
    key="goblin-slayer",
    url=GS,
    title="Goblin Slayer",
    alternative_titles=("ゴブリンスレイヤー", "Goburin Sureiyā", "Goblin Slayer: Goblin's Crown"),
    start_year=2018,
    end_year=2023,
    description='Goblins - die schwächsten Monster? "Nicht für ihn": er\'s & mehr.',
    cover_url=f"{BASE}/public/img/cover/goblin-slayer-stream-cover-XyZ_220x330.png",
    genres=("Action", "Dark Fantasy", "Ger"),
    fsk=16,
    imdb_id="tt8690728",
    seasons=(1, 2),
    has_movies=True,
)

# A running show: attributes in another order, extra whitespace, entities in the title, no end year, FSK or IMDb,
# only a `src` cover, no data-full-description, genres without itemprop, season links absolute and out of order.
SERIES_RUNNING = """<html><body>
<div   class = "series-title" >
  <h1   data-alternativetitles=""   itemprop = "name" >
      <span>  Frieren:   Beyond Journey&#039;s   End  &amp;  葬送のフリーレン </span>
  </h1>
  <small>(<span itemprop="startDate">
        <a href="/animes/jahr/2023"> 2023 </a>
  </span> - Heute)</small>
</div>
<p class="text seri_des">Die Elfe Frieren &amp; ihre Gef&auml;hrten &#039;reisen&#039;.<span class="showMore">mehr
   anzeigen</span> Weiter.</p>
<div class="genres"><ul><li><a class="genreButton" href="/genre/abenteuer">Abenteuer</a></li>
  <li><a href="/genre/drama" class="genreButton">Drama</a></li></ul></div>
<div class="seriesCoverBox"><img itemprop="image" alt=""
     src="https://cdn.example.org/img/frieren_220x330.jpg"></div>
<meta content="5" itemprop="numberOfSeasons">
<ul>
  <li><a title="Staffel 3" href="https://aniworld.to/anime/stream/frieren/staffel-3">3</a></li>
  <li><a title="Staffel 1" href="https://aniworld.to/anime/stream/frieren/staffel-1">1</a></li>
  <li><a title="Staffel 2" href="/anime/stream/frieren/staffel-2">2</a></li>
  <li><a title="Staffel 1" href="/anime/stream/frieren/staffel-1">1</a></li>
</ul>
<div class="related"><a href="/anime/stream/frieren-movie/filme" title="Alle Filme">Another series' movies</a></div>
</body></html>
"""

SERIES_RUNNING_INFO = SeriesInfo(
    key="frieren",
    url=f"{BASE}/anime/stream/frieren",
    title="Frieren: Beyond Journey's End & 葬送のフリーレン",
    alternative_titles=(),
    start_year=2023,
    end_year=None,
    description="Die Elfe Frieren & ihre Gefährten 'reisen'. Weiter.",
    cover_url="https://cdn.example.org/img/frieren_220x330.jpg",
    genres=("Abenteuer", "Drama"),
    fsk=None,
    imdb_id=None,
    seasons=(1, 2, 3),
    has_movies=False,
)

# Only the title: everything optional is missing. The h1 has no span; a movies link without the "Alle Filme" title.
SERIES_MINIMAL = """<div class="series-title"><h1 itemprop="name">Rascal Does Not Dream of Bunny Girl Senpai</h1></div>
<a href="/anime/stream/rascal-does-not-dream-of-bunny-girl-senpai/filme">Filme</a>
<div class="seriesCoverBox"><img src="data:image/gif;base64,R0lGOD" data-src=""></div>
<p class="seri_des" data-full-description=""></p>
"""

SERIES_MINIMAL_INFO = SeriesInfo(
    key="rascal-does-not-dream-of-bunny-girl-senpai",
    url=f"{BASE}/anime/stream/rascal-does-not-dream-of-bunny-girl-senpai",
    title="Rascal Does Not Dream of Bunny Girl Senpai",
    alternative_titles=(),
    start_year=None,
    end_year=None,
    description="",
    cover_url=None,
    genres=(),
    fsk=None,
    imdb_id=None,
    seasons=(),
    has_movies=True,
)

# An FSK only in the text, an IMDb id only in the link, and a double-escaped apostrophe as the site sometimes sends.
SERIES_ODD = """<html><body><div class="series-title">
<h1 itemprop="name" data-alternativetitles="Kaguya-sama, Kaguya-sama wa Kokurasetai, Kaguya-sama">
<span>Kaguya-sama: Love is War &amp;#039;Ultra Romantic&amp;#039;</span></h1>
<small>(<span itemprop="startDate"><a>2019</a></span> - <span itemprop="endDate"><a>2022</a></span>)</small>
<div class="fsk fsk12">Ab: <span>12</span></div>
<a class="imdb-link" href="https://www.imdb.com/title/tt9522300/?ref_=x">IMDB</a></div>
<a href="/anime/stream/kaguya-sama-love-is-war/staffel-1" title="Alle Filme">typo on the site</a>
<a href="/anime/stream/kaguya-sama-love-is-war/staffel-0">0</a>
</body></html>
"""

SERIES_ODD_INFO = SeriesInfo(
    key="kaguya-sama-love-is-war",
    url=f"{BASE}/anime/stream/kaguya-sama-love-is-war/staffel-1",
    title="Kaguya-sama: Love is War 'Ultra Romantic'",
    alternative_titles=("Kaguya-sama", "Kaguya-sama wa Kokurasetai"),
    start_year=2019,
    end_year=2022,
    description="",
    cover_url=None,
    genres=(),
    fsk=12,
    imdb_id="tt9522300",
    seasons=(1,),
    has_movies=True,
)

SERIES_CASES = [
    pytest.param(SERIES_FULL, GS, SERIES_FULL_INFO, id="full"),
    pytest.param(SERIES_RUNNING, f"{BASE}/anime/stream/frieren", SERIES_RUNNING_INFO, id="running"),
    pytest.param(SERIES_MINIMAL, SERIES_MINIMAL_INFO.url, SERIES_MINIMAL_INFO, id="minimal"),
    pytest.param(SERIES_ODD, SERIES_ODD_INFO.url, SERIES_ODD_INFO, id="odd"),
]


@pytest.mark.parametrize(("html", "url", "expected"), SERIES_CASES)
def test_series_page(html: str, url: str, expected: SeriesInfo) -> None:
    assert parse_series_page(html, url) == expected


# ---------------------------------------------------------------------------------------------------------------
# Season pages
# ---------------------------------------------------------------------------------------------------------------

SEASON_1 = """<!DOCTYPE html><html><body>
<table class="seasonEpisodesList" data-season-id="1"><thead><tr><th>Folge</th><th>Titel</th></tr></thead>
<tbody id="season1">
<tr data-episode-id="2311" data-episode-season-id="1" itemprop="episode" itemscope itemtype="http://schema.org/Episode">
  <td class="season1EpisodeID"><meta itemprop="episodeNumber" content="1">
      <a itemprop="url" href="/anime/stream/goblin-slayer/staffel-1/episode-1"> Folge 1 </a></td>
  <td class="seasonEpisodeTitle"><a href="/anime/stream/goblin-slayer/staffel-1/episode-1">
      <strong>Das Schicksal der Abenteurer</strong> - <span>The Fate of Particular Adventurers</span> </a></td>
  <td><a href="/anime/stream/goblin-slayer/staffel-1/episode-1"><i class="icon VOE" title="VOE"></i>
      <i class="icon Filemoon" title="Filemoon"></i></a></td>
  <td class="editFunctions"><a href="/anime/stream/goblin-slayer/staffel-1/episode-1">
      <img class="flag" src="/public/img/german.svg" title="Deutsch/German">
      <img class="flag" src="/public/img/japanese-german.svg" title="Mit deutschem Untertitel">
      <img class="flag" src="/public/img/japanese-english.svg" title="Englisch"></a></td>
</tr>
<tr itemtype="http://schema.org/Episode"   itemscope  itemprop="episode" data-episode-season-id="2"
    data-episode-id="2312">
  <td class="season1EpisodeID">
      <a   href="https://aniworld.to/anime/stream/goblin-slayer/staffel-1/episode-2"   itemprop="url" >
        Folge   2
      </a><meta content=" 2 " itemprop="episodeNumber"></td>
  <td class="seasonEpisodeTitle"><a href="/anime/stream/goblin-slayer/staffel-1/episode-2">
      <strong> Goblin&#039;s   Kopf &amp; Schwert </strong> </a></td>
  <td><a href="/anime/stream/goblin-slayer/staffel-1/episode-2"><i title="Vidoza" class="icon Vidoza"></i>
      <i class="icon Streamtape"></i><i class="icon VOE" title="VOE"></i></a></td>
  <td class="editFunctions"><a><img src="/public/img/japanese-german.svg?v=2" class="flag"></a></td>
</tr>
<tr data-episode-id="2313" itemprop="episode" itemscope itemtype="https://schema.org/Episode">
  <td class="season1EpisodeID"><meta itemprop="episodeNumber" content="3"></td>
  <td class="seasonEpisodeTitle"><a><strong></strong><span>ゴブリン・スレイヤー 三</span></a></td>
  <td></td><td class="editFunctions"></td>
</tr>
<tr data-episode-id="2311" itemprop="episode" itemscope itemtype="http://schema.org/Episode">
  <td class="season1EpisodeID"><a itemprop="url" href="/anime/stream/goblin-slayer/staffel-1/episode-1">dup</a></td>
</tr>
</tbody></table>
</body></html>
"""

SEASON_1_PAGE = SeasonPage(
    key="goblin-slayer",
    season=1,
    url=f"{GS}/staffel-1",
    episodes=(
        EpisodeSummary(
            season=1,
            number=1,
            url=f"{GS}/staffel-1/episode-1",
            title_de="Das Schicksal der Abenteurer",
            title_en="The Fate of Particular Adventurers",
            hosters=("VOE", "Filemoon"),
            languages=(DE_DUB, DE_SUB, EN_SUB),
        ),
        EpisodeSummary(
            season=1,
            number=2,
            url=f"{GS}/staffel-1/episode-2",
            title_de="Goblin's Kopf & Schwert",
            title_en="",
            hosters=("Vidoza", "Streamtape", "VOE"),
            languages=(DE_SUB,),
        ),
        EpisodeSummary(
            season=1,
            number=3,
            url=f"{GS}/staffel-1/episode-3",
            title_de="",
            title_en="ゴブリン・スレイヤー 三",
            hosters=(),
            languages=(),
        ),
    ),
)

MOVIES = """<html><body><table class="seasonEpisodesList"><tbody id="season0">
<tr data-episode-id="9001" data-episode-season-id="1" itemprop="episode" itemscope itemtype="http://schema.org/Episode">
  <td class="season0EpisodeID"><meta itemprop="episodeNumber" content="1">
      <a itemprop="url" href="/anime/stream/goblin-slayer/filme/film-1"> Film 1 </a></td>
  <td class="seasonEpisodeTitle"><a href="/anime/stream/goblin-slayer/filme/film-1">
      <strong></strong> - <span>Goblin Slayer: Goblin&#039;s Crown</span> </a></td>
  <td><a href="/anime/stream/goblin-slayer/filme/film-1"><i class="icon VOE" title="VOE"></i></a></td>
  <td class="editFunctions"><a href="/anime/stream/goblin-slayer/filme/film-1">
      <img class="flag" src="/public/img/german.svg" title="Deutsch/German"></a></td>
</tr>
<tr data-episode-id="9002" data-episode-season-id="2" itemprop="episode" itemscope itemtype="http://schema.org/Episode">
  <td class="season0EpisodeID"><meta itemprop="episodeNumber" content="7">
      <a itemprop="url" href="/anime/stream/goblin-slayer/filme/film-2"> Film 2 </a></td>
  <td class="seasonEpisodeTitle"><a href="/anime/stream/goblin-slayer/filme/film-2">
      <strong></strong> - <span>Special</span> </a></td>
  <td></td>
  <td class="editFunctions"><a><img class="flag" src="/public/img/english.svg"></a></td>
</tr>
</tbody></table></body></html>
"""

MOVIES_PAGE = SeasonPage(
    key="goblin-slayer",
    season=0,
    url=f"{GS}/filme",
    episodes=(
        EpisodeSummary(
            season=0,
            number=1,
            url=f"{GS}/filme/film-1",
            title_de="",
            title_en="Goblin Slayer: Goblin's Crown",
            hosters=("VOE",),
            languages=(DE_DUB,),
        ),
        EpisodeSummary(
            season=0,
            number=2,  # film-2 in the link wins over a stray episodeNumber
            url=f"{GS}/filme/film-2",
            title_de="",
            title_en="Special",
            hosters=(),
            languages=(EN_DUB,),
        ),
    ),
)

# A season whose episodes are not online yet: the table exists without rows.
SEASON_EMPTY = """<table class="seasonEpisodesList"><tbody id="season4"></tbody></table>"""

# Rows without itemtype inside the table; a row of another series is not this season's.
SEASON_PLAIN_ROWS = """<table class="seasonEpisodesList"><tbody>
<tr><td><a href="/anime/stream/one-piece/staffel-21/episode-1000">Folge 1000</a></td>
    <td class="seasonEpisodeTitle"><a><strong>Der Strohhut&#8209;Pirat</strong><span>Straw Hat Luffy</span></a>
    </td></tr>
<tr><td><a href="/anime/stream/naruto/staffel-1/episode-1">Naruto</a></td></tr>
<tr><td>Werbung</td></tr>
</tbody></table>"""

SEASON_PLAIN_ROWS_PAGE = SeasonPage(
    key="one-piece",
    season=21,
    url=f"{BASE}/anime/stream/one-piece/staffel-21",
    episodes=(
        EpisodeSummary(
            season=21,
            number=1000,
            url=f"{BASE}/anime/stream/one-piece/staffel-21/episode-1000",
            title_de="Der Strohhut\u2011Pirat",
            title_en="Straw Hat Luffy",
            hosters=(),
            languages=(),
        ),
    ),
)

SEASON_CASES = [
    pytest.param(SEASON_1, f"{GS}/staffel-1", SEASON_1_PAGE, id="season"),
    pytest.param(MOVIES, f"{GS}/filme", MOVIES_PAGE, id="movies"),
    pytest.param(SEASON_EMPTY, f"{GS}/staffel-4", SeasonPage("goblin-slayer", 4, f"{GS}/staffel-4", ()), id="empty"),
    pytest.param(SEASON_PLAIN_ROWS, SEASON_PLAIN_ROWS_PAGE.url, SEASON_PLAIN_ROWS_PAGE, id="plain-rows"),
]


@pytest.mark.parametrize(("html", "url", "expected"), SEASON_CASES)
def test_season_page(html: str, url: str, expected: SeasonPage) -> None:
    assert parse_season_page(html, url) == expected


# ---------------------------------------------------------------------------------------------------------------
# Episode pages
# ---------------------------------------------------------------------------------------------------------------

EPISODE = """<!DOCTYPE html><html><body>
<div class="hosterSiteTitle" data-episode-id="2311">
  <h2><span class="episodeGermanTitle">Das Schicksal der Abenteurer</span>
  <small class="episodeEnglishTitle">The Fate of Particular Adventurers</small></h2>
</div>
<div class="changeLanguageBox">
  <img src="/public/img/german.svg" data-lang-key="1" title="Deutsch" class="selectedLanguage">
  <img src="/public/img/japanese-english.svg" data-lang-key="2" title="mit Untertitel Englisch">
  <img src="/public/img/japanese-german.svg" data-lang-key="3" title="mit Untertitel Deutsch"></div>
<div class="hosterSiteVideo"><ul class="row">
  <li class="col-md-3 col-xs-12 col-sm-6 episodeLink2738955" data-lang-key="1" data-link-id="2738955"
      data-link-target="/redirect/2738955" data-external-embed="false">
    <div class="generateInlinePlayer"><a class="watchEpisode" itemprop="url" href="/redirect/2738955" target="_blank">
      <i class="icon VOE" title="Hoster VOE"></i><h4>VOE</h4><div class="hosterSiteVideoButton">Video öffnen</div>
    </a></div></li>
  <li class="col-md-3 col-xs-12 col-sm-6 episodeLink2892597" data-lang-key="1" data-link-id="2892597"
      data-link-target="/redirect/2892597" data-external-embed="false">
    <div class="generateInlinePlayer"><a class="watchEpisode" href="/redirect/2892597" target="_blank">
      <i class="icon Filemoon" title="Hoster Filemoon"></i><h4>Filemoon</h4></a></div></li>
  <li class="col-md-3 col-xs-12 col-sm-6 episodeLink2738956" data-lang-key="2" data-link-id="2738956"
      data-link-target="/redirect/2738956" data-external-embed="false" style="display: none;">
    <div class="generateInlinePlayer"><a class="watchEpisode" href="/redirect/2738956" target="_blank">
      <i class="icon VOE" title="Hoster VOE"></i><h4>VOE</h4></a></div></li>
  <li class="col-md-3 col-xs-12 col-sm-6 episodeLink3000001" data-lang-key="3" data-link-id="3000001"
      data-link-target="/redirect/3000001" data-external-embed="false" style="display: none;">
    <div class="generateInlinePlayer"><a class="watchEpisode" href="/redirect/3000001" target="_blank">
      <i class="icon Vidoza" title="Hoster Vidoza"></i><h4>Vidoza</h4></a></div></li>
  <li class="col-md-3 col-xs-12 col-sm-6 episodeLink3000002" data-lang-key="3" data-link-id="3000002"
      data-link-target="/redirect/3000002" data-external-embed="false" style="display: none;">
    <div class="generateInlinePlayer"><a class="watchEpisode" href="/redirect/3000002" target="_blank">
      <i class="icon SpeedFiles" title="Hoster SpeedFiles"></i><h4> SpeedFiles </h4></a></div></li>
  <li class="col-md-3 episodeLink3000003" data-lang-key="9" data-link-id="3000003"
      data-link-target="/redirect/3000003" style="display: none;">
    <a class="watchEpisode" href="/redirect/3000003"><h4>LoadX</h4></a></li>
  <li class="col-md-3 episodeLink3000004" data-link-id="3000004" data-link-target="/redirect/3000004">
    <a class="watchEpisode" href="/redirect/3000004"><h4>Luluvdo</h4></a></li>
  <li class="col-md-3 adSlot"><a href="/redirect/3000005"><h4>Werbung</h4></a></li>
  <li class="col-md-3 episodeLink2738955" data-lang-key="1" data-link-id="2738955"
      data-link-target="/redirect/2738955"><a class="watchEpisode" href="/redirect/2738955"><h4>VOE</h4></a></li>
</ul></div>
</body></html>
"""

EPISODE_INFO = EpisodePage(
    key="goblin-slayer",
    season=1,
    number=1,
    url=f"{GS}/staffel-1/episode-1",
    title_de="Das Schicksal der Abenteurer",
    title_en="The Fate of Particular Adventurers",
    languages=(DE_DUB, EN_SUB, DE_SUB),
    hosters=(
        HosterLink(DE_DUB, "VOE", f"{BASE}/redirect/2738955", 2738955),
        HosterLink(DE_DUB, "Filemoon", f"{BASE}/redirect/2892597", 2892597),
        HosterLink(EN_SUB, "VOE", f"{BASE}/redirect/2738956", 2738956),
        HosterLink(DE_SUB, "Vidoza", f"{BASE}/redirect/3000001", 3000001),
        HosterLink(DE_SUB, "SpeedFiles", f"{BASE}/redirect/3000002", 3000002),
    ),
)

# A movie page: attributes swapped, no English title, a flag without key (its image names it), a flag with an unknown
# key and image, no link id (the id comes from the target), no h4 (the name comes from the icon).
MOVIE = """<html><body>
<span class="episodeGermanTitle">  Goblin&#039;s   Crown  </span>
<div class="changeLanguageBox">
  <img title="Deutsch" src="/public/img/german.svg">
  <img data-lang-key="7" src="/public/img/klingon.svg">
  <img data-lang-key="3" src="/public/img/german.svg" title="site bug: wrong image, the key wins">
</div>
<div class="hosterSiteVideo"><ul class="row">
  <li data-link-target="https://aniworld.to/redirect/4400001"   data-lang-key=" 1 "   class="col-md-3">
    <a href="/redirect/4400001" class="watchEpisode"><i title="Hoster Doodstream" class="icon Doodstream"></i></a></li>
  <li style="display:none" data-link-target="/redirect/4400002" data-lang-key="3" data-link-id="4400002">
    <a class="watchEpisode"><i class="icon Vidmoly"></i></a></li>
</ul></div></body></html>
"""

MOVIE_INFO = EpisodePage(
    key="goblin-slayer",
    season=0,
    number=2,
    url=f"{GS}/filme/film-2",
    title_de="Goblin's Crown",
    title_en="",
    languages=(DE_DUB, DE_SUB),
    hosters=(
        HosterLink(DE_DUB, "Doodstream", f"{BASE}/redirect/4400001", 4400001),
        HosterLink(DE_SUB, "Vidmoly", f"{BASE}/redirect/4400002", 4400002),
    ),
)

# A newer page with an English dub and no language box: the languages come from the hoster list.
EPISODE_EN_DUB = """<div class="hosterSiteVideo"><ul>
<li data-lang-key="4" data-link-id="5" data-link-target="/redirect/5"><h4>Streamtape</h4></li>
<li data-lang-key="2" data-link-id="6" data-link-target="/redirect/6"><h4>VOE</h4></li>
</ul></div>"""

EPISODE_EN_DUB_INFO = EpisodePage(
    key="solo-leveling",
    season=2,
    number=13,
    url=f"{BASE}/anime/stream/solo-leveling/staffel-2/episode-13",
    title_de="",
    title_en="",
    languages=(EN_DUB, EN_SUB),
    hosters=(
        HosterLink(EN_DUB, "Streamtape", f"{BASE}/redirect/5", 5),
        HosterLink(EN_SUB, "VOE", f"{BASE}/redirect/6", 6),
    ),
)

# Announced but not online: the language box and an empty hoster list.
EPISODE_NO_HOSTERS = """<span class="episodeGermanTitle"></span>
<small class="episodeEnglishTitle">Coming Soon</small>
<div class="changeLanguageBox"><img src="/public/img/japanese-german.svg" data-lang-key="3"></div>
<div class="hosterSiteVideo"><ul class="row"></ul></div>"""

EPISODE_NO_HOSTERS_INFO = EpisodePage(
    key="goblin-slayer",
    season=3,
    number=1,
    url=f"{GS}/staffel-3/episode-1",
    title_de="",
    title_en="Coming Soon",
    languages=(DE_SUB,),
    hosters=(),
)

EPISODE_CASES = [
    pytest.param(EPISODE, EPISODE_INFO.url, EPISODE_INFO, id="episode"),
    pytest.param(MOVIE, MOVIE_INFO.url, MOVIE_INFO, id="movie"),
    pytest.param(EPISODE_EN_DUB, EPISODE_EN_DUB_INFO.url, EPISODE_EN_DUB_INFO, id="english-dub"),
    pytest.param(EPISODE_NO_HOSTERS, EPISODE_NO_HOSTERS_INFO.url, EPISODE_NO_HOSTERS_INFO, id="no-hosters"),
]


@pytest.mark.parametrize(("html", "url", "expected"), EPISODE_CASES)
def test_episode_page(html: str, url: str, expected: EpisodePage) -> None:
    assert parse_episode_page(html, url) == expected


def test_hosters_for_keeps_page_order_per_language() -> None:
    assert EPISODE_INFO.hosters_for(DE_DUB) == EPISODE_INFO.hosters[:2]
    assert EPISODE_INFO.hosters_for(DE_SUB) == EPISODE_INFO.hosters[3:]
    assert EPISODE_INFO.hosters_for(EN_DUB) == ()


# ---------------------------------------------------------------------------------------------------------------
# New-episodes feed
# ---------------------------------------------------------------------------------------------------------------

FEED = """<!DOCTYPE html><html><body><div class="container">
<h2>Neue Episoden</h2>
<div class="newEpisodeList">
  <div class="col-md-12">
    <a href="/anime/stream/the-ogres-bride/staffel-1/episode-11">
      <strong>The Ogre&#039;s Bride</strong>
      <span class="listTag bigListTag blue2">S01 E11</span>
      <span class="elementFloatRight">Sa, 12.09.2026</span></a>
    <img class="flag" src="data:image/png;base64,iVBORw0KGgo" data-src="/public/img/japanese-german.svg">
  </div>
  <div class="col-md-12">
    <a href="/anime/stream/the-ogres-bride/staffel-1/episode-11">
      <strong>The Ogre&#039;s Bride</strong><span class="listTag">S01 E11</span>
      <span class="elementFloatRight">Sa, 12.09.2026</span></a>
    <img class="flag" src="data:image/png;base64,iVBORw0KGgo" data-src="/public/img/german.svg">
  </div>
  <div class="col-md-12">
    <a href="/anime/stream/the-ogres-bride/staffel-1/episode-11">
      <strong>The Ogre&#039;s Bride</strong><span class="elementFloatRight">Sa, 12.09.2026</span></a>
    <img class="flag" data-src="/public/img/german.svg">
  </div>
  <div class="col-md-12">
    <a href="https://aniworld.to/anime/stream/goblin-slayer/filme/film-2"><strong> Goblin   Slayer </strong>
      <span class="listTag">Film 2</span><span class="elementFloatRight">Fr, 11.09.2026</span></a>
    <img class="flag" src="/public/img/english.svg">
  </div>
  <div class="col-md-12">
    <a href="/anime/stream/naruto-shippuden/staffel-21/episode-500"><strong>Naruto Shippūden</strong>
      <span class="elementFloatRight">Heute</span></a>
    <img class="flag" src="data:image/png;base64,AAAA" data-src="/public/img/klingon.svg">
  </div>
  <div class="col-md-12">
    <a href="/anime/stream/one-piece/staffel-23/episode-1122"><strong>One Piece</strong>
      <span class="elementFloatRight">Do, 31.02.2026</span></a>
  </div>
  <div class="col-md-12"><a href="/anime/stream/one-piece">Alle Folgen von One Piece</a></div>
</div>
<div class="newEpisodeList">
  <a href="/anime/stream/dan-da-dan/staffel-2/episode-3"><img src="/public/img/cover/dan-da-dan_150x225.jpg">
    <strong>Dan Da Dan</strong>
    <span class="elementFloatRight">Mi, 9.9.2026</span></a>
    <img class="flag" data-src="/public/img/japanese-english.svg">
  <a href="/anime/stream/dan-da-dan/staffel-2/episode-4"><strong>Dan Da Dan</strong></a>
  <a href="/anime/stream/dan-da-dan/staffel-2/episode-5"><strong>Dan Da Dan</strong>
    <img class="flag" data-src="/public/img/german.svg"></a>
</div>
</div></body></html>
"""

FEED_ENTRIES = [
    FeedEntry(
        "the-ogres-bride",
        1,
        11,
        f"{BASE}/anime/stream/the-ogres-bride/staffel-1/episode-11",
        "The Ogre's Bride",
        DE_SUB,
        date(2026, 9, 12),
    ),
    FeedEntry(
        "the-ogres-bride",
        1,
        11,
        f"{BASE}/anime/stream/the-ogres-bride/staffel-1/episode-11",
        "The Ogre's Bride",
        DE_DUB,
        date(2026, 9, 12),
    ),
    FeedEntry("goblin-slayer", 0, 2, f"{GS}/filme/film-2", "Goblin Slayer", EN_DUB, date(2026, 9, 11)),
    FeedEntry(
        "naruto-shippuden",
        21,
        500,
        f"{BASE}/anime/stream/naruto-shippuden/staffel-21/episode-500",
        "Naruto Shippūden",
        None,
        None,
    ),
    FeedEntry("one-piece", 23, 1122, f"{BASE}/anime/stream/one-piece/staffel-23/episode-1122", "One Piece", None, None),
    FeedEntry(
        "dan-da-dan",
        2,
        3,
        f"{BASE}/anime/stream/dan-da-dan/staffel-2/episode-3",
        "Dan Da Dan",
        EN_SUB,
        date(2026, 9, 9),
    ),
    FeedEntry("dan-da-dan", 2, 4, f"{BASE}/anime/stream/dan-da-dan/staffel-2/episode-4", "Dan Da Dan", None, None),
    FeedEntry("dan-da-dan", 2, 5, f"{BASE}/anime/stream/dan-da-dan/staffel-2/episode-5", "Dan Da Dan", DE_DUB, None),
]

FEED_EMPTY = """<html><body><div class="newEpisodeList"></div></body></html>"""

FEED_CASES = [
    pytest.param(FEED, f"{BASE}/neue-episoden", FEED_ENTRIES, id="feed"),
    pytest.param(FEED_EMPTY, f"{BASE}/neue-episoden", [], id="empty"),
]


@pytest.mark.parametrize(("html", "url", "expected"), FEED_CASES)
def test_feed(html: str, url: str, expected: list[FeedEntry]) -> None:
    assert parse_feed(html, url) == expected


# ---------------------------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------------------------

SEARCH_JSON = (
    "\ufeff\x00["
    '{"name":"Goblin Slayer","link":"goblin-slayer","description":"Goblins &amp; mehr:\r\ner&#039;s\\u0007 da",'
    '"cover":"\\/public\\/img\\/cover\\/goblin-slayer-stream-cover-X_150x225.png","productionYear":"(2018 - 2023)"},'
    '{"name":"The Ogre&#039;s  Bride","link":"the-ogres-bride","description":null,"cover":"",'
    '"productionYear":"(2026)"},\x1f'
    '{"name":"Sousou no Frieren","link":"/anime/stream/frieren/","description":"Quote: &quot;x&quot;",'
    '"cover":"https://cdn.example.org/frieren.jpg","productionYear":"(2023 - heute)"},'
    '{"name":"Broken link","link":"../../etc","description":"","cover":"","productionYear":""},'
    '{"name":"","link":"nameless","description":"","cover":"","productionYear":""},'
    '{"name":"Goblin Slayer duplicate","link":"goblin-slayer"},'
    '"not an object", 42, null'
    "]\r\n"
)

SEARCH_JSON_RESULTS = [
    SearchResult(
        key="goblin-slayer",
        title="Goblin Slayer",
        url=GS,
        description="Goblins & mehr: er's da",
        cover_url=f"{BASE}/public/img/cover/goblin-slayer-stream-cover-X_150x225.png",
        start_year=2018,
        end_year=2023,
    ),
    SearchResult("the-ogres-bride", "The Ogre's Bride", f"{BASE}/anime/stream/the-ogres-bride", "", None, 2026, None),
    SearchResult(
        "frieren",
        "Sousou no Frieren",
        f"{BASE}/anime/stream/frieren",
        'Quote: "x"',
        "https://cdn.example.org/frieren.jpg",
        2023,
        None,
    ),
]

# The whole body escaped once more: only parses after unescaping.
SEARCH_JSON_ESCAPED = (
    "[{&quot;name&quot;:&quot;Dan Da Dan&quot;,&quot;link&quot;:&quot;dan-da-dan&quot;,"
    "&quot;description&quot;:&quot;Okarun &amp;amp; Momo&quot;,&quot;cover&quot;:&quot;&quot;,"
    "&quot;productionYear&quot;:&quot;(2024 - 2025)&quot;}]"
)

SEARCH_JSON_CASES = [
    pytest.param(SEARCH_JSON, SEARCH_JSON_RESULTS, id="bom-entities-controls"),
    pytest.param(
        SEARCH_JSON_ESCAPED,
        [
            SearchResult(
                "dan-da-dan", "Dan Da Dan", f"{BASE}/anime/stream/dan-da-dan", "Okarun & Momo", None, 2024, 2025
            )
        ],
        id="escaped-body",
    ),
    pytest.param(" [] ", [], id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), SEARCH_JSON_CASES)
def test_search_json(text: str, expected: list[SearchResult]) -> None:
    assert parse_search_json(text, f"{BASE}/") == expected


SEARCH_AJAX = (
    "\ufeff["
    '{"title":"<em>Goblin<\\/em> Slayer","description":"Goblins &amp; mehr",'
    '"link":"\\/anime\\/stream\\/goblin-slayer"},'
    '{"title":"<em>Goblin<\\/em> Slayer Staffel 2","description":"",'
    '"link":"\\/anime\\/stream\\/goblin-slayer\\/staffel-2"},'
    '{"title":"<em>Goblin<\\/em> Slayer","description":"","link":"\\/anime\\/stream\\/goblin-slayer\\/"},'
    '{"title":"Support: <em>Goblin<\\/em>","description":"","link":"\\/support\\/goblin"},'
    '{"title":"Ogre&#039;s <EM class=\\"x\\">Bride<\\/EM>","description":"<b>neu<\\/b>",'
    '"link":"/anime/stream/the-ogres-bride/"},'
    '{"title":"Absolute","description":"","link":"https:\\/\\/aniworld.to\\/anime\\/stream\\/absolute"},'
    '{"title":"","description":"","link":"\\/anime\\/stream\\/untitled"}'
    "]"
)

SEARCH_AJAX_RESULTS = [
    SearchResult("goblin-slayer", "Goblin Slayer", GS, "Goblins & mehr", None, None, None),
    SearchResult("the-ogres-bride", "Ogre's Bride", f"{BASE}/anime/stream/the-ogres-bride", "neu", None, None, None),
]


def test_search_ajax() -> None:
    assert parse_search_ajax(SEARCH_AJAX, BASE) == SEARCH_AJAX_RESULTS


# ---------------------------------------------------------------------------------------------------------------
# Broken pages: always ParseError, with the URL and what is missing
# ---------------------------------------------------------------------------------------------------------------

Parser = Callable[[str, str], object]

MAINTENANCE = "<html><head><title>Wartungsarbeiten</title></head><body><p>Bald wieder da.</p></body></html>"

BROKEN_CASES = [
    pytest.param(parse_series_page, "", GS, "html", id="series-empty"),
    pytest.param(parse_series_page, "<!-- nothing -->", GS, "html", id="series-comment-only"),
    pytest.param(parse_series_page, MAINTENANCE, GS, "series title", id="series-maintenance"),
    pytest.param(parse_series_page, SEASON_1, GS, "series title", id="series-given-a-season-page"),
    pytest.param(
        parse_series_page,
        '<div class="series-title"><h1><span> </span></h1></div>',
        GS,
        "series title",
        id="series-blank-title",
    ),
    pytest.param(parse_series_page, SERIES_FULL, f"{BASE}/animes", "series path", id="series-bad-url"),
    pytest.param(parse_season_page, MAINTENANCE, f"{GS}/staffel-1", "episode table", id="season-maintenance"),
    pytest.param(parse_season_page, SERIES_MINIMAL, f"{GS}/staffel-1", "episode table", id="season-given-series"),
    pytest.param(
        parse_season_page,
        '<table class="seasonEpisodesList"><tr><td>Folge ?</td></tr></table>',
        f"{GS}/staffel-1",
        "episode number",
        id="season-unreadable-rows",
    ),
    pytest.param(parse_season_page, SEASON_1, GS, "season path", id="season-bad-url"),
    pytest.param(parse_season_page, "", f"{GS}/filme", "html", id="season-empty"),
    pytest.param(parse_episode_page, MAINTENANCE, f"{GS}/staffel-1/episode-1", "hoster list", id="episode-maintenance"),
    pytest.param(parse_episode_page, SEASON_1, f"{GS}/staffel-1/episode-1", "hoster list", id="episode-given-season"),
    pytest.param(parse_episode_page, EPISODE, f"{GS}/staffel-1", "episode path", id="episode-bad-url"),
    pytest.param(parse_episode_page, "   \n", f"{GS}/filme/film-1", "html", id="episode-blank"),
    pytest.param(parse_feed, MAINTENANCE, f"{BASE}/neue-episoden", "episode list", id="feed-maintenance"),
    pytest.param(parse_feed, "", f"{BASE}/neue-episoden", "html", id="feed-empty"),
]


@pytest.mark.parametrize(("parser", "text", "url", "missing"), BROKEN_CASES)
def test_broken_page(parser: Parser, text: str, url: str, missing: str) -> None:
    with pytest.raises(ParseError) as caught:
        parser(text, url)
    assert caught.value.details == {"url": url, "missing": missing}
    assert url in caught.value.message


SEARCH_BROKEN = [
    pytest.param("", id="empty"),
    pytest.param("<html><body>Wartungsarbeiten</body></html>", id="html"),
    pytest.param('{"name": "Goblin Slayer"}', id="object"),
    pytest.param('[{"name": "Goblin Slayer"', id="truncated"),
    pytest.param("[" * 100_000 + "]" * 100_000, id="deeply-nested"),
    pytest.param("[" + "1" * 5000 + "]", id="huge-number"),
]


@pytest.mark.parametrize("parser", [parse_search_json, parse_search_ajax])
@pytest.mark.parametrize("text", SEARCH_BROKEN)
def test_broken_search(parser: Callable[[str, str], list[SearchResult]], text: str) -> None:
    with pytest.raises(ParseError) as caught:
        parser(text, BASE)
    assert caught.value.details["missing"] == "JSON array"
    assert caught.value.details["url"].startswith(f"{BASE}/ajax/")


# ---------------------------------------------------------------------------------------------------------------
# URL helpers
# ---------------------------------------------------------------------------------------------------------------


def test_urls() -> None:
    assert series_url(f"{BASE}/", "goblin-slayer") == GS
    assert season_url(BASE, "goblin-slayer", 2) == f"{GS}/staffel-2"
    assert season_url(BASE, "goblin-slayer", 0) == f"{GS}/filme"
    assert episode_url(BASE, "goblin-slayer", 1, 12) == f"{GS}/staffel-1/episode-12"
    assert episode_url(BASE, "goblin-slayer", 0, 3) == f"{GS}/filme/film-3"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{GS}/staffel-1/episode-12", ("goblin-slayer", 1, 12)),
        (f"{GS}/staffel-10/episode-1/", ("goblin-slayer", 10, 1)),
        ("/anime/stream/one-piece/staffel-21/episode-1122?ref=feed#top", ("one-piece", 21, 1122)),
        ("http://127.0.0.1:8080/anime/stream/goblin-slayer/filme/film-3", ("goblin-slayer", 0, 3)),
    ],
)
def test_parse_episode_url(url: str, expected: tuple[str, int, int]) -> None:
    assert parse_episode_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        GS,
        f"{GS}/staffel-1",
        f"{GS}/staffel-1/episode-",
        f"{GS}/staffel-1/episode-x",
        f"{GS}/filme/film-",
        f"{GS}/staffel-1/episode-1/extra",
        f"{GS}/staffel-1/episode-1234567",
        "https://aniworld.to/serie/stream/goblin-slayer/staffel-1/episode-1",
        "http://[::1/anime/stream/goblin-slayer/staffel-1/episode-1",
        "",
    ],
)
def test_parse_episode_url_rejects(url: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_episode_url(url)
    assert caught.value.details == {"url": url, "missing": "episode path"}


def test_parse_season_and_series_url() -> None:
    assert parse_season_url(f"{GS}/staffel-3/") == ("goblin-slayer", 3)
    assert parse_season_url(f"{GS}/filme") == ("goblin-slayer", 0)
    assert parse_series_url(f"{GS}/filme/film-1") == "goblin-slayer"
    with pytest.raises(ParseError):
        parse_season_url(f"{GS}/filme/film-1")
    with pytest.raises(ParseError):
        parse_series_url(f"{BASE}/anime/stream/")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("goblin-slayer", "goblin-slayer"),
        ("  one-piece \n", "one-piece"),
        (GS, "goblin-slayer"),
        (f"{GS}/", "goblin-slayer"),
        (f"{GS}/staffel-2/episode-3", "goblin-slayer"),
        (f"{GS}/filme/film-1?x=1#y", "goblin-slayer"),
        ("http://127.0.0.1:8123/anime/stream/dan-da-dan", "dan-da-dan"),
        ("aniworld.to/anime/stream/frieren/staffel-1", "frieren"),
        ("/anime/stream/frieren", "frieren"),
    ],
)
def test_normalize_key(value: str, expected: str) -> None:
    assert normalize_key(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "one piece", f"{BASE}/anime/stream/", f"{BASE}/animes/goblin-slayer", "ftp://x/anime/stream/a", "http://[::1"],
)
def test_normalize_key_rejects(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_key(value)
    assert caught.value.details == {"value": value}


# ---------------------------------------------------------------------------------------------------------------
# Robustness: any input gives a record or a ParseError raised on purpose
# ---------------------------------------------------------------------------------------------------------------

HTML_PARSERS: list[tuple[Parser, str, type | tuple[type, ...]]] = [
    (parse_series_page, GS, SeriesInfo),
    (parse_season_page, f"{GS}/staffel-1", SeasonPage),
    (parse_season_page, f"{GS}/filme", SeasonPage),
    (parse_episode_page, f"{GS}/staffel-1/episode-1", EpisodePage),
    (parse_episode_page, f"{GS}/filme/film-1", EpisodePage),
    (parse_feed, f"{BASE}/neue-episoden", list),
]
JSON_PARSERS: list[tuple[Parser, str, type | tuple[type, ...]]] = [
    (parse_search_json, BASE, list),
    (parse_search_ajax, BASE, list),
]
ALL_PARSERS = HTML_PARSERS + JSON_PARSERS

VALID_PAGES = [
    SERIES_FULL,
    SERIES_RUNNING,
    SERIES_ODD,
    SEASON_1,
    MOVIES,
    SEASON_PLAIN_ROWS,
    EPISODE,
    MOVIE,
    EPISODE_NO_HOSTERS,
    FEED,
    SEARCH_JSON,
    SEARCH_AJAX,
]


def check_any_input(parser: Parser, text: str, url: str, record: type | tuple[type, ...]) -> None:
    """The parser returns its record type or raises a ParseError on purpose (not the catch-all guard's)."""
    result = outcome(parser, text, url)
    if isinstance(result, ParseError):
        assert "cause" not in result.details, f"{parser.__name__} crashed on {text!r}: {result.message}"
        assert result.details["url"]
    else:
        assert isinstance(result, record)


def outcome(parser: Parser, text: str, url: str) -> object:
    try:
        return parser(text, url)
    except ParseError as err:
        return err


TAGS = ["div", "h1", "h2", "h4", "span", "small", "a", "p", "ul", "li", "img", "meta", "table", "tbody", "tr", "td"]
TAGS += ["strong", "i", "script", "html", "body", "br"]
CLASSES = [
    "series-title",
    "seri_des",
    "showMore",
    "genres",
    "genreButton",
    "seriesCoverBox",
    "fsk",
    "imdb-link",
    "hosterSiteDirectNav",
    "seasonEpisodesList",
    "seasonEpisodeTitle",
    "editFunctions",
    "flag",
    "icon VOE",
    "icon",
    "episodeGermanTitle",
    "episodeEnglishTitle",
    "changeLanguageBox",
    "hosterSiteVideo",
    "watchEpisode",
    "newEpisodeList",
    "elementFloatRight",
    "listTag",
]
HREFS = [
    "/anime/stream/goblin-slayer",
    "/anime/stream/goblin-slayer/staffel-1",
    "/anime/stream/goblin-slayer/staffel-0",
    "/anime/stream/goblin-slayer/filme",
    "/anime/stream/goblin-slayer/staffel-1/episode-1",
    "/anime/stream/goblin-slayer/filme/film-1",
    "/anime/stream/x/staffel-99999999/episode-1",
    "https://www.imdb.com/title/tt8690728",
    "/redirect/2738955",
    "/public/img/german.svg",
    "/public/img/japanese-english.svg",
    "data:image/png;base64,AAAA",
    "http://[::1",
    "//evil.example/x",
    "javascript:void(0)",
    "",
]
ATTRIBUTE_VALUES: dict[str, st.SearchStrategy[str]] = {
    "class": st.sampled_from(CLASSES),
    "href": st.sampled_from(HREFS),
    "src": st.sampled_from(HREFS),
    "data-src": st.sampled_from(HREFS),
    "data-link-target": st.sampled_from(HREFS),
    "itemprop": st.sampled_from(["name", "startDate", "endDate", "genre", "image", "url", "episodeNumber", "episode"]),
    "itemtype": st.sampled_from(["http://schema.org/Episode", "https://schema.org/Episode"]),
    "data-lang-key": st.sampled_from(["1", "2", "3", "4", "0", "9", "", "x", " 2 ", "99999999999999999999"]),
    "data-link-id": st.sampled_from(["1", "", "abc", "9" * 30]),
    "content": st.sampled_from(["1", "0", "", "x", "9" * 30]),
    "data-fsk": st.sampled_from(["16", "", "abc", "1234"]),
    "data-imdb": st.sampled_from(["tt123", "", "nm1"]),
    "title": st.sampled_from(["Alle Filme", "Hoster VOE", "VOE", "", "Staffel 1"]),
    "data-full-description": st.text(max_size=20),
    "data-alternativetitles": st.text(max_size=20),
    "style": st.just("display: none;"),
}
TEXTS = st.one_of(
    st.text(max_size=15),
    st.sampled_from(
        ["&#039;", "&amp;", "&amp;#039;", "&bogus;", "2018", "12.09.2026", "31.02.2026", "Folge 1", " \n "]
    ),
)


@st.composite
def html_fragments(draw: st.DrawFn, depth: int = 0) -> str:
    """HTML-ish text from the site's vocabulary: tags, classes, attributes and text, sometimes unclosed."""
    parts = []
    for _ in range(draw(st.integers(0, 4 if depth < 3 else 1))):
        if depth >= 4 or draw(st.booleans()):
            parts.append(draw(TEXTS))
            continue
        tag = draw(st.sampled_from(TAGS))
        names = draw(st.lists(st.sampled_from(sorted(ATTRIBUTE_VALUES)), max_size=4, unique=True))
        quote = draw(st.sampled_from(['"', "'", ""]))
        attributes = "".join(f" {name}={quote}{draw(ATTRIBUTE_VALUES[name])}{quote}" for name in names)
        inner = draw(html_fragments(depth + 1))
        closing = draw(st.sampled_from([f"</{tag}>", "", f"</{draw(st.sampled_from(TAGS))}>"]))
        parts.append(f"<{tag}{attributes}>{inner}{closing}")
    return "".join(parts)


ROBUST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ROBUST
@given(text=st.text(max_size=300))
def test_random_text(text: str) -> None:
    for parser, url, record in ALL_PARSERS:
        check_any_input(parser, text, url, record)


@ROBUST
@given(text=html_fragments())
def test_random_markup(text: str) -> None:
    for parser, url, record in HTML_PARSERS:
        check_any_input(parser, text, url, record)


@ROBUST
@given(page=st.sampled_from(VALID_PAGES), data=st.data())
def test_truncated_pages(page: str, data: st.DataObject) -> None:
    prefix = page[: data.draw(st.integers(0, len(page)), label="length")]
    for parser, url, record in ALL_PARSERS:
        check_any_input(parser, prefix, url, record)


@ROBUST
@given(
    text=st.lists(
        st.one_of(
            st.sampled_from(['{"name":', '"link":', '"title":', '"productionYear":', '"cover":', "[", "]", "{", "}"]),
            st.sampled_from(['"goblin-slayer"', '"/anime/stream/x"', '"(2018 - 2023)"', "null", "1e999", ",", ":"]),
            st.text(max_size=5),
        ),
        max_size=20,
    ).map("".join)
)
def test_random_json(text: str) -> None:
    for parser, url, record in JSON_PARSERS:
        check_any_input(parser, text, url, record)


@pytest.mark.parametrize(("parser", "url", "record"), ALL_PARSERS)
def test_every_prefix_of_the_reference_pages(parser: Parser, url: str, record: type | tuple[type, ...]) -> None:
    for page in (SERIES_FULL, SEASON_1, EPISODE, FEED, SEARCH_JSON):
        for length in range(0, len(page), 97):
            check_any_input(parser, page[:length], url, record)


# ---------------------------------------------------------------------------------------------------------------
# Speed
# ---------------------------------------------------------------------------------------------------------------


def long_season(rows: int) -> str:
    """A season page like One Piece's: `rows` episodes in the reference markup."""
    parts = ['<html><body><table class="seasonEpisodesList"><tbody id="season1">']
    for number in range(1, rows + 1):
        href = f"/anime/stream/one-piece/staffel-1/episode-{number}"
        parts.append(
            f'<tr data-episode-id="{number}" data-episode-season-id="{number}" itemprop="episode" itemscope'
            f' itemtype="http://schema.org/Episode"><td class="season1EpisodeID">'
            f'<meta itemprop="episodeNumber" content="{number}"><a itemprop="url" href="{href}"> Folge {number} </a>'
            f'</td><td class="seasonEpisodeTitle"><a href="{href}"> <strong>Titel {number}</strong> - '
            f'<span>Title {number}</span> </a></td><td><a href="{href}"><i class="icon VOE" title="VOE"></i>'
            f'<i class="icon Filemoon" title="Filemoon"></i></a></td><td class="editFunctions"><a href="{href}">'
            '<img class="flag" src="/public/img/german.svg" title="Deutsch/German">'
            '<img class="flag" src="/public/img/japanese-german.svg" title="Mit deutschem Untertitel">'
            '<img class="flag" src="/public/img/japanese-english.svg" title="Englisch"></a></td></tr>'
        )
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts)


def test_long_season() -> None:
    """A 1,000-row season parses completely (its speed is measured by bench/parse.py, not here)."""
    html = long_season(1000)
    url = f"{BASE}/anime/stream/one-piece/staffel-1"
    page = parse_season_page(html, url)
    assert len(page.episodes) == 1000
    assert page.episodes[-1] == EpisodeSummary(
        1, 1000, f"{url}/episode-1000", "Titel 1000", "Title 1000", ("VOE", "Filemoon"), (DE_DUB, DE_SUB, EN_SUB)
    )
