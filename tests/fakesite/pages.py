"""HTML and JSON of the fake aniworld.to, in the real site's markup (docs: /work/shared/reference/aniworld-site.md).

Every function is pure: catalog records in, text out. Markup that parsers read (class names, itemprops, data-*
attributes, nesting) follows the reference; the rest (header, navigation, footer, scripts) is realistic noise.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import quote

from aniworld_daemon.models import Language
from tests.fakesite.catalog import LANGUAGE_ORDER, Catalog, Episode, Season, Series

# The lazy-load placeholder the feed puts in `src` (a 1x1 transparent PNG); the real flag is in `data-src`.
PLACEHOLDER = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
FEED_EPISODES = 40  # episodes on /neue-episoden (each one row per language)
DESCRIPTION_PREVIEW = 160  # characters of the description shown before "mehr anzeigen"
WEEKDAYS = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")


@dataclass(frozen=True, slots=True)
class Flag:
    """How one language is shown: its flag file and its titles on season and episode pages."""

    image: str
    episode_title: str  # `title` of the language button on the episode page
    season_title: str  # `title` of the flag in the season table


FLAGS: dict[Language, Flag] = {
    Language.DE_DUB: Flag("german.svg", "Deutsch", "Deutsch/German"),
    Language.EN_SUB: Flag("japanese-english.svg", "mit Untertitel Englisch", "Englisch"),
    Language.DE_SUB: Flag("japanese-german.svg", "mit Untertitel Deutsch", "Mit deutschem Untertitel"),
    Language.EN_DUB: Flag("english.svg", "Englisch", "Englisch/English"),
}


@dataclass(frozen=True, slots=True)
class Context:
    """What every page needs besides the catalog: the site's own origin and the hosters' display names."""

    base: str  # e.g. "http://127.0.0.1:8800", used where the real site writes absolute links
    display: Mapping[str, str] = field(default_factory=dict)  # hoster key -> name shown, e.g. "voe" -> "VOE"

    def hoster(self, key: str) -> str:
        """The display name of a hoster key (the key itself when unknown)."""
        return self.display.get(key, key)


def esc(text: str) -> str:
    """Escape text for HTML like the site does: `&`, `<`, `>`, `"` and the apostrophe as `&#039;`."""
    return html.escape(text, quote=True).replace("&#x27;", "&#039;")


def slugify(text: str) -> str:
    """A URL slug of a genre name (umlauts transliterated like the site: ü -> ue)."""
    text = text.lower().replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def feed_date(day: date) -> str:
    """A date as the feed writes it, e.g. `Sa, 12.09.2026`."""
    return f"{WEEKDAYS[day.weekday()]}, {day:%d.%m.%Y}"


def years_text(series: Series) -> str:
    """The production years as the search JSON writes them, e.g. `(2018 - 2023)` or `(2026 - Heute)`."""
    return f"({series.start_year} - {series.end_year if series.end_year is not None else 'Heute'})"


# ----------------------------------------------------------------------------------------------------------- layout


def layout(ctx: Context, title: str, body: str, *, path: str = "/") -> str:
    """A whole page: head, header with navigation and search, the body, footer and scripts."""
    return f"""<!DOCTYPE html>
<html lang="de">
<head>
<meta charset="utf-8">
<meta http-equiv="X-UA-Compatible" content="IE=edge">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} | AniWorld.to - Animes gratis legal online ansehen</title>
<meta name="description" content="Animes online schauen: {esc(title)} kostenlos im Stream auf AniWorld.to">
<link rel="canonical" href="{ctx.base}{path}">
<link rel="stylesheet" href="/public/css/style.css?v=3.41">
<link rel="icon" href="/favicon.ico">
<meta name="csrf-token" content="a1b2c3d4e5f6a7b8c9d0">
<script>var ajaxurl = "/ajax/", isLoggedIn = false;</script>
</head>
<body>
<div class="menu-top">
<header class="main-header" role="banner">
<div class="container row">
<a class="header-logo" href="/" title="AniWorld.to"><img src="/public/svg/aniworld-logo.svg" alt="AniWorld.to"></a>
<nav class="main-navigation" role="navigation"><ul>
<li><a href="/animes" title="Alle Animes">Animes</a></li>
<li><a href="/neue-episoden" title="Neue Episoden">Neue Episoden</a></li>
<li><a href="/beliebte-animes" title="Beliebte Animes">Beliebt</a></li>
<li><a href="/animekalender" title="Anime Kalender">Kalender</a></li>
<li><a href="/support" title="Hilfe &amp; Support">Support</a></li>
</ul></nav>
<div class="searchContainer"><form id="searchForm" action="/search" method="get" autocomplete="off">
<input type="search" name="q" class="searchInput" placeholder="Anime suchen..." aria-label="Suche">
<div class="searchResults" style="display: none;"></div></form></div>
<div class="user-menu"><a href="/login" class="button">Login</a>
<a href="/registrierung" class="button">Registrieren</a></div>
</div>
</header>
</div>
<div id="wrapper">
{body}
</div>
<footer class="footer">
<div class="container row">
<ul class="footer-links">
<li><a href="/impressum">Impressum</a></li><li><a href="/datenschutz">Datenschutz</a></li>
<li><a href="/dmca">DMCA</a></li><li><a href="/support/faq">FAQ</a></li>
</ul>
<p class="copyright">&copy; 2026 AniWorld.to &ndash; Alle Rechte vorbehalten.</p>
</div>
</footer>
<script src="/public/js/jquery-3.6.0.min.js"></script>
<script src="/public/js/lazyload.min.js"></script>
<script src="/public/js/main.js?v=3.41"></script>
<script>
  // lazy-load every image that carries a data-src, like the site's own script
  document.querySelectorAll("img[data-src]").forEach(function (img) {{ img.src = img.dataset.src; }});
  if (window.location.hash === "#stream") {{ document.getElementById("stream").scrollIntoView(); }}
</script>
</body>
</html>
"""


def not_found_page(ctx: Context, path: str) -> str:
    """The site's HTML 404 page."""
    body = """<div class="container"><div class="messageAlert danger">
<h1>Seite nicht gefunden</h1>
<p>Die angeforderte Seite existiert nicht (mehr). Zur&uuml;ck zur <a href="/">Startseite</a>.</p>
</div></div>"""
    return layout(ctx, "404 - Seite nicht gefunden", body, path=path)


def home_page(ctx: Context, catalog: Catalog) -> str:
    """The start page: a grid of every series (noise, but a realistic page with many series links)."""
    items = "\n".join(
        f'<div class="col-md-15 col-sm-3 col-xs-6"><a href="{series.path}" title="{esc(series.title)}">'
        f'<img src="{PLACEHOLDER}" data-src="{series.cover_path}" alt="{esc(series.title)}">'
        f"<h3>{esc(series.title)}</h3></a></div>"
        for series in catalog
    )
    body = f'<div class="container"><h2>Beliebte Animes</h2>\n<div class="row previews">\n{items}\n</div></div>'
    return layout(ctx, "Animes online schauen", body)


def animes_page(ctx: Context, catalog: Catalog) -> str:
    """The alphabetical list `/animes` with every series and its alternative titles."""
    items = "\n".join(
        f'<li><a data-alternative-title="{esc(", ".join(series.alternative_titles))}" href="{series.path}" '
        f'title="{esc(series.title)} Stream anschauen">{esc(series.title)}</a></li>'
        for series in sorted(catalog, key=lambda series: series.title.casefold())
    )
    body = f'<div class="container"><h2>Animes von A-Z</h2>\n<div class="genre"><ul>\n{items}\n</ul></div></div>'
    return layout(ctx, "Alle Animes", body, path="/animes")


# ----------------------------------------------------------------------------------------------------------- series


def _series_header(ctx: Context, series: Series) -> str:
    """The title section every series, season and episode page starts with."""
    start = (
        f'<span itemprop="startDate"><a href="{ctx.base}/animes/jahr/{series.start_year}">'
        f"{series.start_year}</a></span>"
    )
    if series.end_year is not None:
        end = (
            f'<span itemprop="endDate"><a href="{ctx.base}/animes/jahr/{series.end_year}">{series.end_year}</a></span>'
        )
    else:  # a running series: no year, no link
        end = '<span itemprop="endDate">Heute</span>'
    fsk = (
        f'<div data-fsk="{series.fsk}" class="fsk fsk{series.fsk}">Ab: <span>{series.fsk}</span></div>'
        if series.fsk is not None
        else ""
    )
    imdb = (
        f'<a href="https://www.imdb.com/title/{series.imdb}" data-imdb="{series.imdb}" class="imdb-link" '
        f'target="_blank" rel="noopener" title="{esc(series.title)} auf IMDB">IMDB</a>'
        if series.imdb
        else ""
    )
    preview = series.description
    if len(preview) > DESCRIPTION_PREVIEW:
        preview = preview[:DESCRIPTION_PREVIEW].rsplit(" ", 1)[0] + "..."
    genres = "\n".join(
        f'<li><a href="/genre/{slugify(genre)}" class="genreButton clearbutton" itemprop="genre">{esc(genre)}</a></li>'
        for genre in series.genres
    )
    main_genre = slugify(series.genres[0]) if series.genres else ""
    return f"""<div class="seriesContentBox" id="series" data-series-id="{series.id}">
<section class="title" itemscope itemtype="http://schema.org/TVSeries">
<div class="backdrop" style="background-image: url('{series.cover_path}')"></div>
<div class="container row">
<div class="col-md-3 col-sm-3 col-xs-12">
<div class="seriesCoverBox">
<img src="{series.cover_path}" data-src="{series.cover_path}" alt="Cover von {esc(series.title)}" itemprop="image" \
title="Cover von {esc(series.title)}">
</div>
</div>
<div class="col-md-9 col-sm-9 col-xs-12">
<div class="series-title">
<h1 itemprop="name" data-alternativetitles="{esc(", ".join(series.alternative_titles))}">\
<span>{esc(series.title)}</span></h1>
<small> ({start}
 - {end})</small>
{fsk}
{imdb}
</div>
<div class="add-series" data-series-id="{series.id}">
<a href="/login" class="addToWatchlist">Zur Watchlist hinzuf&uuml;gen</a></div>
<p class="seri_des" itemprop="accountablePerson" data-description-type="review" \
data-full-description="{esc(series.description)}">{esc(preview)}<span class="showMore">mehr anzeigen</span></p>
<div class="cast">
<div class="genres"><ul data-main-genre="{main_genre}">
{genres}
</ul></div>
<ul><li><strong>Produzent:</strong> <span itemprop="creator">Studio Fake</span></li></ul>
</div>
</div>
</div>
</section>
<meta itemprop="numberOfSeasons" content="{len(series.seasons)}">
"""


def _season_nav(series: Series, active: Season, episode: Episode | None = None) -> str:
    """The `hosterSiteDirectNav` box: links to every season (and the movies) and to the active season's episodes."""
    seasons: list[str] = ["<li><span><strong>Staffeln:</strong></span></li>"]
    for season in series.seasons:
        css = ' class="active"' if season.number == active.number else ""
        if season.is_movies:
            seasons.append(f'<li><a{css} href="{season.path}" title="Alle Filme">Filme</a></li>')
        else:
            seasons.append(f'<li><a{css} href="{season.path}" title="Staffel {season.number}">{season.number}</a></li>')
    label = "Filme" if active.is_movies else "Episoden"
    episodes: list[str] = [f"<li><span><strong>{label}:</strong></span></li>"]
    for item in active.episodes:
        css = ' class="active"' if episode is not None and item.number == episode.number else ""
        title = f"Film {item.number}" if item.is_movie else f"Staffel {item.season} Episode {item.number}"
        episodes.append(
            f'<li><a{css} href="{item.path}" data-episode-id="{item.id}" title="{title}" '
            f'data-season-id="{active.number}" data-episode-season-id="{item.number}">{item.number}</a></li>'
        )
    return (
        '<div id="stream" class="hosterSiteDirectNav">\n<ul>\n'
        + "\n".join(seasons)
        + "\n</ul>\n<ul>\n"
        + "\n".join(episodes)
        + "\n</ul>\n</div>\n"
    )


def _season_rows(ctx: Context, season: Season) -> Iterable[str]:
    """The `<tr>` rows of the season table."""
    for episode in season.episodes:
        label = f"Film {episode.number}" if episode.is_movie else f"Folge {episode.number}"
        icons = "".join(
            f'<i class="icon {esc(ctx.hoster(name))}" title="{esc(ctx.hoster(name))}"></i>'
            for name in episode.hoster_names
        )
        flags = "\n".join(
            f'<img class="flag" src="/public/img/{FLAGS[language].image}" title="{FLAGS[language].season_title}">'
            for language in episode.languages
        )
        yield f"""<tr data-episode-id="{episode.id}" data-episode-season-id="{episode.number}" itemprop="episode" \
itemscope itemtype="http://schema.org/Episode">
<td class="season{season.number}EpisodeID"><meta itemprop="episodeNumber" content="{episode.number}">
<a itemprop="url" href="{episode.path}"> {label} </a></td>
<td class="seasonEpisodeTitle"><a href="{episode.path}"> <strong>{esc(episode.title_de)}</strong> - \
<span>{esc(episode.title_en)}</span> </a></td>
<td><a href="{episode.path}">{icons}</a></td>
<td class="editFunctions"><a href="{episode.path}">
{flags}</a></td>
</tr>"""


def _season_table(ctx: Context, season: Season) -> str:
    """The `seasonEpisodesList` table of one season (or of the movies)."""
    rows = "\n".join(_season_rows(ctx, season))
    return f"""<table class="seasonEpisodesList" data-season-id="{season.number}">
<thead><tr><th>Episode</th><th>Titel</th><th>Hoster</th><th>Sprache</th></tr></thead>
<tbody id="season{season.number}">
{rows}
</tbody>
</table>
"""


def _similar(catalog: Catalog, series: Series) -> str:
    """A box linking other series (noise: links to other series' pages)."""
    others = [other for other in catalog if other.key != series.key][:4]
    items = "\n".join(
        f'<li><a href="{other.path}" title="{esc(other.title)}"><img src="{PLACEHOLDER}" '
        f'data-src="{other.cover_path}" alt="{esc(other.title)}"></a></li>'
        for other in others
    )
    return f'<div class="similarSeries"><h3>&Auml;hnliche Animes</h3><ul>\n{items}\n</ul></div>\n'


def series_page(ctx: Context, catalog: Catalog, series: Series) -> str:
    """The series page: metadata, the season links, and the first season's table (like the real site)."""
    first = next((season for season in series.seasons if not season.is_movies), series.seasons[0])
    body = (
        _series_header(ctx, series)
        + '<div class="container">\n'
        + _season_nav(series, first)
        + _season_table(ctx, first)
        + _similar(catalog, series)
        + "</div>\n</div>"
    )
    page = layout(ctx, f"{series.title} stream", body, path=series.path)
    if series.broken:
        # A half page: the connection "broke" right before the title block.
        return page[: page.index('<div class="series-title">')]
    return page


def season_page(ctx: Context, catalog: Catalog, series: Series, season: Season) -> str:
    """A season page (`/staffel-N`) or the movies page (`/filme`)."""
    name = "Filme" if season.is_movies else f"Staffel {season.number}"
    body = (
        _series_header(ctx, series)
        + '<div class="container">\n'
        + _season_nav(series, season)
        + _season_table(ctx, season)
        + _similar(catalog, series)
        + "</div>\n</div>"
    )
    return layout(ctx, f"{series.title} {name} stream", body, path=season.path)


def _hoster_items(ctx: Context, episode: Episode) -> Iterable[str]:
    """The `<li>` of every (language, hoster) link; only the default language's items are visible."""
    default = episode.languages[0] if episode.languages else None
    # The site groups the list by hoster, each hoster with all its languages.
    order = {name: index for index, name in enumerate(episode.hoster_names)}
    links = sorted(episode.links, key=lambda link: (order[link.hoster], LANGUAGE_ORDER.index(link.language)))
    for link in links:
        hidden = "" if link.language is default else ' style="display: none;"'
        name = esc(ctx.hoster(link.hoster))
        yield f"""<li class="col-md-3 col-xs-12 col-sm-6 episodeLink{link.id}" \
data-lang-key="{link.language.site_key}" data-link-id="{link.id}" data-link-target="{link.path}" \
data-external-embed="false"{hidden}>
<div class="generateInlinePlayer"><a class="watchEpisode" itemprop="url" href="{link.path}" target="_blank">
<i class="icon {name}" title="Hoster {name}"></i><h4>{name}</h4>
<div class="hosterSiteVideoButton">Video öffnen</div></a>
</div></li>"""


def episode_page(ctx: Context, catalog: Catalog, series: Series, season: Season, episode: Episode) -> str:
    """An episode page (`/staffel-N/episode-M`) or a movie page (`/filme/film-K`)."""
    languages = "\n".join(
        f'<img src="/public/img/{FLAGS[language].image}" alt="{FLAGS[language].episode_title}, Flagge" '
        f'data-lang-key="{language.site_key}" title="{FLAGS[language].episode_title}"'
        + (' class="selectedLanguage"' if index == 0 else "")
        + ">"
        for index, language in enumerate(episode.languages)
    )
    items = "\n".join(_hoster_items(ctx, episode))
    first = episode.links[0].path if episode.links else ""
    body = (
        _series_header(ctx, series)
        + '<div class="container">\n'
        + _season_nav(series, season, episode)
        + f"""<div class="hosterSiteTitle" data-episode-id="{episode.id}" data-series-id="{series.id}" \
data-season-id="{season.number}">
<h2><span class="episodeGermanTitle">{esc(episode.title_de)}</span>
<small class="episodeEnglishTitle">{esc(episode.title_en)}</small></h2>
<p class="descriptionSpoiler">Keine Beschreibung vorhanden.</p>
</div>
<div class="hosterSiteVideo">
<div class="changeLanguage"><div class="changeLanguageBox">
{languages}
</div></div>
<ul class="row">
{items}
</ul>
<div class="inSiteWebStream" style="display: none;"><iframe data-src="{first}" allowfullscreen></iframe></div>
</div>
"""
        + _similar(catalog, series)
        + "</div>\n</div>"
    )
    name = f"Film {episode.number}" if episode.is_movie else f"Staffel {episode.season} Episode {episode.number}"
    return layout(ctx, f"{series.title} {name} stream", body, path=episode.path)


# ------------------------------------------------------------------------------------------------------------- feed


def feed_page(ctx: Context, catalog: Catalog) -> str:
    """`/neue-episoden`: the newest episodes, one row per episode and language, newest first."""
    rows: list[str] = []
    for episode in catalog.newest(FEED_EPISODES):
        series = catalog[episode.series]
        tag = f"S{episode.season:02d} E{episode.number:02d}"
        for language in episode.languages:
            flag = FLAGS[language]
            rows.append(
                f"""<div class="row"><div class="col-md-12">
<a href="{episode.path}">
<strong>{esc(series.title)}</strong>
<span class="listTag bigListTag blue2">{tag}</span>
<span class="elementFloatRight">{feed_date(episode.released)}</span></a>
<img class="flag" src="{PLACEHOLDER}" data-src="/public/img/{flag.image}" alt="{flag.episode_title}" \
title="{flag.episode_title}">
</div></div>"""
            )
    body = (
        '<div class="container"><h2>Neue Episoden</h2>\n<div class="newEpisodeList">\n'
        + "\n".join(rows)
        + "\n</div></div>"
    )
    return layout(ctx, "Neue Episoden", body, path="/neue-episoden")


# ----------------------------------------------------------------------------------------------------------- search


def _matches(series: Series, keyword: str) -> bool:
    """Whether the keyword occurs (case-insensitively) in the title or an alternative title."""
    needle = keyword.casefold()
    return any(needle in title.casefold() for title in (series.title, *series.alternative_titles))


def search_matches(catalog: Catalog, keyword: str) -> list[Series]:
    """The series a keyword finds (none for a blank keyword)."""
    keyword = keyword.strip()
    if not keyword:
        return []
    return [series for series in catalog if _matches(series, keyword)]


def _php_json(value: object) -> str:
    """JSON the way PHP's json_encode writes it: non-ASCII as \\uXXXX and `/` as `\\/`."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/")


def series_search_json(catalog: Catalog, keyword: str) -> str:
    """`GET /ajax/seriesSearch?keyword=`: a JSON array with HTML entities, a leading BOM and raw control characters."""
    items = [
        {
            "name": esc(series.title),
            "link": series.key,
            "description": esc(series.description),
            "cover": series.cover_path,
            "productionYear": years_text(series),
        }
        for series in search_matches(catalog, keyword)
    ]
    body = _php_json(items)
    # Descriptions on the real site carry raw line breaks (invalid in strict JSON): put one after each sentence.
    body = body.replace(". ", ".\r\n")
    return "\ufeff" + body


def _highlight(text: str, keyword: str) -> str:
    """Escape `text` and wrap every case-insensitive occurrence of `keyword` in `<em>`."""
    pattern = re.compile(re.escape(keyword), re.IGNORECASE)
    parts: list[str] = []
    position = 0
    for match in pattern.finditer(text):
        parts.append(esc(text[position : match.start()]))
        parts.append(f"<em>{esc(match.group(0))}</em>")
        position = match.end()
    parts.append(esc(text[position:]))
    return "".join(parts)


def search_json(catalog: Catalog, keyword: str) -> str:
    """`POST /ajax/search`: series hits plus hits on seasons, episodes and non-anime pages, titles highlighted."""
    keyword = keyword.strip()
    results: list[dict[str, str]] = []
    for series in search_matches(catalog, keyword):
        title = _highlight(series.title, keyword)
        if keyword.casefold() not in series.title.casefold():  # found by an alternative title: show that one too
            alternative = next(alt for alt in series.alternative_titles if keyword.casefold() in alt.casefold())
            title = f"{esc(series.title)} ({_highlight(alternative, keyword)})"
        results.append({"title": title, "description": esc(series.description), "link": series.path})
        numbers = series.season_numbers
        if numbers:
            season = series.season(numbers[0])
            assert season is not None
            results.append({"title": f"{title} Staffel {season.number}", "description": "", "link": season.path})
            if season.episodes:
                episode = season.episodes[0]
                results.append({"title": f"{title} {esc(episode.title_de)}", "description": "", "link": episode.path})
    if keyword:
        results.append(
            {
                "title": f"Forum: Suche nach &quot;{_highlight(keyword, keyword)}&quot;",
                "description": "Diskussionen im Forum",
                "link": f"/support/forum/suche?q={quote(keyword)}",
            }
        )
        results.append(
            {"title": f"{_highlight(keyword, keyword)}Fan", "description": "Profil", "link": "/user/profil/1"}
        )
    return _php_json(results)
