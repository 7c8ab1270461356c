"""aniworld.to pages: pure parsers from HTML/JSON text to records that raise only ParseError, whatever the input."""

from __future__ import annotations

import functools
import html as html_lib
import itertools
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import Any, ParamSpec, TypeVar

# lxml ships no type information; every element is `Any` and read only through the small typed helpers below.
# Not BeautifulSoup: its tree builder calls Python for every tag and needs ~350 ms for a 1,000-episode season page,
# lxml builds the tree in C in ~15 ms.
from lxml import etree

from aniworld_daemon.errors import ParseError
from aniworld_daemon.models import Language
from aniworld_daemon.provider.records import (
    EpisodePage,
    EpisodeSummary,
    FeedEntry,
    HosterLink,
    SearchResult,
    SeasonPage,
    SeriesInfo,
)
from aniworld_daemon.provider.urls import (
    EPISODE_PATH_RE,
    KEY_RE,
    SEARCH_LINK_RE,
    SEASON_PATH_RE,
    SERIES_PATH_RE,
    absolute_url,
    episode_place,
    episode_url,
    parse_episode_url,
    parse_season_url,
    parse_series_url,
    series_url,
    url_path,
)

LOGGER = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

_YEAR_RE = re.compile(r"(?<![0-9])([0-9]{4})(?![0-9])")
_DATE_RE = re.compile(r"(?<![0-9])([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})(?![0-9])")
_INT_RE = re.compile(r"^\s*([0-9]{1,18})\s*$")
_FSK_RE = re.compile(r"(?<![0-9])([0-9]{1,2})(?![0-9])")
_IMDB_RE = re.compile(r"(?<![A-Za-z0-9])(tt[0-9]{1,12})(?![0-9])")
_REDIRECT_ID_RE = re.compile(r"/redirect/([0-9]{1,18})(?![0-9])")
_TAG_RE = re.compile(r"<[^>]*>")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HOSTER_PREFIX_RE = re.compile(r"^hoster\s+", re.IGNORECASE)

# The flag images name the language when `data-lang-key` is missing (season page, feed) or unknown.
FLAG_LANGUAGES = {
    "german": Language.DE_DUB,
    "japanese-english": Language.EN_SUB,
    "japanese-german": Language.DE_SUB,
    "english": Language.EN_DUB,
}

# ---------------------------------------------------------------------------------------------------------------
# Parsers
# ---------------------------------------------------------------------------------------------------------------


def _guarded(func: Callable[_P, _T]) -> Callable[_P, _T]:
    """Turn any unexpected exception of a parser into a ParseError; a bug must not crash a scan on odd markup."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return func(*args, **kwargs)
        except ParseError:
            raise
        except Exception as err:  # the one place that catches everything: parsers read untrusted pages
            url = str(args[1] if len(args) > 1 else kwargs.get("url", kwargs.get("base_url", "")))
            LOGGER.warning("%s failed on %s: %r", func.__name__, url, err, exc_info=True)
            raise ParseError(
                f"could not parse {url}: {err!r}",
                details={"url": url, "missing": "well-formed page", "cause": type(err).__name__},
            ) from err

    return wrapper


@_guarded
def parse_search_json(text: str, base_url: str) -> list[SearchResult]:
    """Results of `GET /ajax/seriesSearch`: a JSON array of {name, link (a slug), description, cover, years}."""
    base = base_url.rstrip("/")
    items = _json_array(text, f"{base}/ajax/seriesSearch")
    results: dict[str, SearchResult] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        link = _json_text(item.get("link")).strip("/")
        match = SEARCH_LINK_RE.match(f"/{link}")  # the link is a bare slug; tolerate a series path too
        key = link if KEY_RE.match(link) else match[1] if match else None
        title = _json_text(item.get("name"))
        if key is None or not title or key in results:
            continue
        years = _YEAR_RE.findall(_json_text(item.get("productionYear")))
        cover = _json_text(item.get("cover"))
        results[key] = SearchResult(
            key=key,
            title=title,
            url=series_url(base, key),
            description=_json_text(item.get("description")),
            cover_url=absolute_url(f"{base}/", cover) if cover else None,
            start_year=int(years[0]) if years else None,
            end_year=int(years[1]) if len(years) > 1 else None,
        )
    return list(results.values())


@_guarded
def parse_search_ajax(text: str, base_url: str) -> list[SearchResult]:
    """Results of `POST /ajax/search`: a JSON array of {title (with <em> highlights), description, link (a path)}."""
    base = base_url.rstrip("/")
    items = _json_array(text, f"{base}/ajax/search")
    results: dict[str, SearchResult] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        match = SEARCH_LINK_RE.match(_json_text(item.get("link")))
        title = _clean(_TAG_RE.sub("", _json_text(item.get("title"))))
        if match is None or not title or match[1] in results:
            continue
        results[match[1]] = SearchResult(
            key=match[1],
            title=title,
            url=series_url(base, match[1]),
            description=_clean(_TAG_RE.sub("", _json_text(item.get("description")))),
            cover_url=None,
            start_year=None,
            end_year=None,
        )
    return list(results.values())


def _json_array(text: str, url: str) -> list[Any]:
    cleaned = _CONTROL_RE.sub("", text.replace("\ufeff", "")).strip()
    # Parse first and unescape the values: unescaping a body with `&quot;` inside strings would break the JSON.
    # A body escaped as a whole (`[{&quot;name&quot;: ...}]`) only parses after unescaping. strict=False: the
    # site's descriptions carry raw line breaks inside strings.
    for candidate in (cleaned, html_lib.unescape(cleaned)):
        try:
            data = json.loads(candidate, strict=False)
        except (ValueError, RecursionError):
            continue
        if isinstance(data, list):
            return data
        break
    raise ParseError(f"the search at {url} did not answer a JSON array", details={"url": url, "missing": "JSON array"})


def _json_text(value: Any) -> str:
    return _clean(value) if isinstance(value, str) else ""


@_guarded
def parse_series_page(html: str, url: str) -> SeriesInfo:
    """A series page `/anime/stream/<key>`: title, years, metadata, season links and the movies tab."""
    return _series_info(_document(html, url), url)


@_guarded
def parse_series_with_season(html: str, url: str) -> tuple[SeriesInfo, SeasonPage | None]:
    """A series or season page read once for both: the series, and the episode table the page shows.

    A season page carries the whole series header and the season links; a series page shows its first season's
    table. The table is None when the page shows none.
    """
    root = _document(html, url)
    series = _series_info(root, url)
    season: int | None
    if SEASON_PATH_RE.match(url_path(url) or "") is not None:
        key, season = parse_season_url(url)
    else:
        key, season = series.key, _shown_season(root, series)
    if season is None or not _X_EPISODE_TABLE(root):
        return series, None
    return series, _season_page(root, url, key, season)


def _shown_season(root: Any, series: SeriesInfo) -> int | None:
    """The season whose table a series page shows: its first episode row's link, else the first regular season."""
    for row in _X_EPISODE_ROWS(root):
        for link in row.iter("a"):
            match = EPISODE_PATH_RE.match(url_path(link.get("href") or "") or "")
            if match is not None:
                return episode_place(match)[1]
    return series.seasons[0] if series.seasons else None


def _series_info(root: Any, url: str) -> SeriesInfo:
    key = parse_series_url(url)
    heading = _first(_X_SERIES_H1(root), _X_NAME_H1(root))
    title = ""
    if heading is not None:
        span = _first(heading.iter("span"))
        title = (_text(span) if span is not None else "") or _text(heading)
    if not title:
        raise ParseError(f"{url} has no series title", details={"url": url, "missing": "series title"})

    seasons: set[int] = set()
    has_movies = False
    for link in _X_NON_EPISODE_LINKS(root):
        path = url_path(_attr(link, "href")) or ""
        # Only this series' tabs: related series never link seasons, but a foreign slug must not add one.
        series = SERIES_PATH_RE.match(path)
        if series is not None and series["key"].casefold() != key.casefold():
            continue
        if _clean(_attr(link, "title")).casefold() == "alle filme":
            has_movies = True
        match = SEASON_PATH_RE.match(path)
        if match is None:
            continue
        if match["movies"]:
            has_movies = True
        elif int(match["season"]) > 0:
            seasons.add(int(match["season"]))

    start = _first(_X_START(root))
    end = _first(_X_END(root))
    return SeriesInfo(
        key=key,
        url=url,
        title=title,
        alternative_titles=_unique(
            _clean(part) for part in _attr(heading, "data-alternativetitles").split(",") if part.strip()
        ),
        start_year=_year(_text(start)) if start is not None else None,
        end_year=_year(_text(end)) if end is not None else None,
        description=_description(root),
        cover_url=_cover(root, url),
        genres=_genres(root),
        fsk=_fsk(root),
        imdb_id=_imdb(root),
        seasons=tuple(sorted(seasons)),
        has_movies=has_movies,
    )


def _description(root: Any) -> str:
    paragraph = _first(_X_DESCRIPTION(root))
    if paragraph is None:
        return ""
    full = _clean(_attr(paragraph, "data-full-description"))
    if full:
        return full
    # The visible text is truncated and ends in a "mehr anzeigen" button; use it only without the attribute.
    parts = [paragraph.text or ""]
    for child in paragraph:
        if isinstance(child.tag, str) and not _has_class(child, "showMore"):
            parts.append("".join(child.itertext()))
        parts.append(child.tail or "")
    return _clean("".join(parts))


def _cover(root: Any, url: str) -> str | None:
    image = _first(_X_COVER(root), _X_IMAGE(root))
    if image is None:
        return None
    for name in ("data-src", "src"):  # `src` may be a lazy-load placeholder
        found = absolute_url(url, _attr(image, name))
        if found:
            return found
    return None


def _genres(root: Any) -> tuple[str, ...]:
    links = _X_GENRE_LINKS(root)
    tagged = [link for link in links if _attr(link, "itemprop") == "genre"]
    return _unique(_text(link) for link in tagged or links)


def _fsk(root: Any) -> int | None:
    box = _first(_X_FSK(root))
    if box is None:
        return None
    match = _FSK_RE.search(_attr(box, "data-fsk")) or _FSK_RE.search(_text(box))
    return int(match[1]) if match else None


def _imdb(root: Any) -> str | None:
    for link in _X_IMDB(root):
        match = _IMDB_RE.search(_attr(link, "data-imdb")) or _IMDB_RE.search(_attr(link, "href"))
        if match:
            return match[1]
    return None


@_guarded
def parse_season_page(html: str, url: str) -> SeasonPage:
    """A season page `/staffel-N` or the movies page `/filme` (season 0): one summary per episode row."""
    key, season = parse_season_url(url)
    return _season_page(_document(html, url), url, key, season)


def _season_page(root: Any, url: str, key: str, season: int) -> SeasonPage:
    rows = _X_EPISODE_ROWS(root)
    if not rows and not _X_EPISODE_TABLE(root):
        raise ParseError(f"{url} has no episode table", details={"url": url, "missing": "episode table"})
    episodes: dict[tuple[int, int], EpisodeSummary] = {}
    for row in rows:
        summary = _episode_row(row, url, key, season)
        if summary is not None:
            episodes.setdefault((summary.season, summary.number), summary)
    if rows and not episodes:
        raise ParseError(f"no episode row of {url} is readable", details={"url": url, "missing": "episode number"})
    return SeasonPage(key=key, season=season, url=url, episodes=tuple(episodes.values()))


def _episode_row(row: Any, page_url: str, key: str, season: int) -> EpisodeSummary | None:
    # One pass over the row's elements with plain `.get` calls and cached lookups: this loop runs for every element
    # of a season page (One Piece: 1,100 rows), where per-row XPath queries or helper calls cost more than the parse.
    link = first_link = None
    meta_number: int | None = None
    title_de = title_en = ""
    hosters: list[str] = []
    languages: list[Language] = []
    in_title = False
    for element in row.iter("a", "img", "i", "td", "meta", "strong", "span"):
        tag = element.tag
        if tag == "a":
            href = element.get("href")
            if not href:
                continue
            if link is None and element.get("itemprop") == "url":
                link = href
            elif first_link is None:
                first_link = href
        elif tag == "img":
            language = _flag_language(element.get("data-src") or "") or _flag_language(element.get("src") or "")
            if language is not None and language not in languages:
                languages.append(language)
        elif tag == "i":
            name = _icon_name(element.get("class") or "", element.get("title") or "")
            if name and name not in hosters:
                hosters.append(name)
        elif tag == "td":
            in_title = "seasonEpisodeTitle" in (element.get("class") or "").split()
        elif tag == "meta":
            if meta_number is None and element.get("itemprop") == "episodeNumber":
                meta_number = _int(element.get("content") or "")
        elif in_title and tag == "strong" and not title_de:
            title_de = _text(element)
        elif in_title and tag == "span" and not title_en:
            title_en = _text(element)
    place = _row_place((link, first_link), meta_number, page_url, key=key, season=season)
    if place is None:
        LOGGER.debug("skipping an unreadable episode row on %s", page_url)
        return None
    row_season, number, episode = place
    return EpisodeSummary(
        season=row_season,
        number=number,
        url=episode,
        title_de=title_de,
        title_en=title_en,
        hosters=tuple(hosters),
        languages=tuple(languages),
    )


def _row_place(
    hrefs: tuple[str | None, ...], meta_number: int | None, page_url: str, *, key: str, season: int
) -> tuple[int, int, str] | None:
    """(season, number, absolute URL) of a row: its episode link wins, the episodeNumber meta is the fallback."""
    for href in hrefs:
        match = EPISODE_PATH_RE.match(url_path(href) or "") if href else None
        absolute = absolute_url(page_url, href) if href else None
        if match is not None and absolute is not None:
            row_key, row_season, number = episode_place(match)
            if row_key.casefold() != key.casefold():
                return None  # another series' episode: not a row of this season
            return row_season, number, absolute
    absolute = absolute_url(page_url, episode_url("", key, season, meta_number)) if meta_number is not None else None
    return (season, meta_number, absolute) if meta_number is not None and absolute is not None else None


@_guarded
def parse_episode_page(html: str, url: str) -> EpisodePage:
    """An episode page (or a movie page `/filme/film-K`): titles, languages and every hoster link per language."""
    key, season, number = parse_episode_url(url)
    root = _document(html, url)
    boxes = _X_HOSTER_BOX(root)
    if not boxes:
        raise ParseError(f"{url} has no hoster list", details={"url": url, "missing": "hoster list"})
    languages: list[Language] = []
    for flag in _X_LANGUAGE_FLAGS(root):
        language = _language_key(_attr(flag, "data-lang-key"))
        by_flag = _flag_of(flag)
        if language is None:
            language = by_flag
        elif by_flag is not None and by_flag is not language:
            LOGGER.debug("%s: flag %s disagrees with lang key %s; the key wins", url, by_flag, language)
        if language is not None and language not in languages:
            languages.append(language)
    hosters: list[HosterLink] = []
    seen: set[tuple[Language, str]] = set()
    for item in _X_HOSTER_ITEMS(boxes[0]) if len(boxes) == 1 else _unique_nodes(_X_HOSTER_ITEMS, boxes):
        link = _hoster_link(item, url)
        if link is not None and (link.language, link.redirect_url) not in seen:
            seen.add((link.language, link.redirect_url))
            hosters.append(link)
            if link.language not in languages:
                languages.append(link.language)
    german = _first(_X_GERMAN_TITLE(root))
    english = _first(_X_ENGLISH_TITLE(root))
    return EpisodePage(
        key=key,
        season=season,
        number=number,
        url=url,
        title_de=_text(german) if german is not None else "",
        title_en=_text(english) if english is not None else "",
        languages=tuple(languages),
        hosters=tuple(hosters),
    )


def _hoster_link(item: Any, page_url: str) -> HosterLink | None:
    language = _language_key(_attr(item, "data-lang-key"))
    if language is None:
        LOGGER.debug("%s: skipping a hoster with lang key %r", page_url, _attr(item, "data-lang-key"))
        return None
    heading = _first(item.iter("h4"))
    icon = _first(element for element in item.iter("i") if _has_class(element, "icon"))
    name = _text(heading) if heading is not None else ""
    name = name or (_hoster_name(icon) if icon is not None else "")
    anchor = _first(item.iter("a"))
    target = absolute_url(page_url, _attr(item, "data-link-target")) or (
        absolute_url(page_url, _attr(anchor, "href")) if anchor is not None else None
    )
    if not name or target is None:
        return None
    link_id = _int(_attr(item, "data-link-id"))
    if link_id is None:
        match = _REDIRECT_ID_RE.search(target)
        link_id = int(match[1]) if match else None
    if link_id is None:
        return None
    return HosterLink(language=language, name=name, redirect_url=target, link_id=link_id)


@_guarded
def parse_feed(html: str, url: str) -> list[FeedEntry]:
    """The `/neue-episoden` feed: one entry per episode and language, in page order."""
    root = _document(html, url)
    lists = _X_FEED_LISTS(root)
    if not lists:
        raise ParseError(f"{url} has no episode list", details={"url": url, "missing": "episode list"})
    entry_counts: dict[Any, int] = {}
    entries: dict[FeedEntry, None] = {}  # an ordered set: a repeated row is one entry
    for link in _unique_nodes(_X_LINKS, lists):
        match = EPISODE_PATH_RE.match(url_path(_attr(link, "href")) or "")
        absolute = absolute_url(url, _attr(link, "href"))
        if match is None or absolute is None:
            continue
        key, season, number = episode_place(match)
        strong = _first(link.iter("strong"))
        entry = FeedEntry(
            key=key,
            season=season,
            number=number,
            url=absolute,
            title=_text(strong) if strong is not None else _clean(link.text or ""),
            language=_feed_language(link, entry_counts),
            date=_feed_date(link),
        )
        entries.setdefault(entry)
    return list(entries)


def _feed_language(link: Any, entry_counts: dict[Any, int]) -> Language | None:
    """The flag of a feed row: inside the link, else in a parent holding only this link, else up to the next link."""
    language = _first_flag(link.iter("img"))
    parent = link.getparent()
    if language is not None or parent is None:
        return language
    if parent not in entry_counts:
        entry_counts[parent] = sum(1 for anchor in parent.iter("a") if _is_entry_link(anchor))
    if entry_counts[parent] == 1:
        return _first_flag(parent.iter("img"))
    for sibling in link.itersiblings(tag="*"):
        if any(_is_entry_link(anchor) for anchor in sibling.iter("a")):
            break
        language = _first_flag(sibling.iter("img"))
        if language is not None:
            return language
    return None


def _first_flag(images: Iterable[Any]) -> Language | None:
    return next((language for image in images if (language := _flag_of(image)) is not None), None)


def _is_entry_link(anchor: Any) -> bool:
    return EPISODE_PATH_RE.match(url_path(_attr(anchor, "href")) or "") is not None


def _feed_date(link: Any) -> date | None:
    for text in [_text(span) for span in link.iter("span")] + [_text(link)]:
        match = _DATE_RE.search(text)
        if match:
            try:
                return date(int(match[3]), int(match[2]), int(match[1]))
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------------------------------------------------------
# Markup helpers
# ---------------------------------------------------------------------------------------------------------------


def _has_class_xpath(name: str) -> str:
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


def _xpath(expression: str) -> Callable[[Any], list[Any]]:
    compiled = etree.XPath(expression)

    def run(node: Any) -> list[Any]:
        found = compiled(node)
        return found if isinstance(found, list) else []

    return run


_X_LINKS = _xpath(".//a[@href]")
# Every link but the episode links: a series page lists season 1's episodes (One Piece: 1,100 links).
_X_NON_EPISODE_LINKS = _xpath("//a[@href and not(contains(@href, '/episode-')) and not(contains(@href, '/film-'))]")
_X_SERIES_H1 = _xpath(f"//div[{_has_class_xpath('series-title')}]//h1")
_X_NAME_H1 = _xpath("//h1[@itemprop='name']")
# Element names are spelled out: `//*[...]` tests every element of a 50,000-element page and costs ~10 ms each.
_X_START = _xpath("//span[@itemprop='startDate']")
_X_END = _xpath("//span[@itemprop='endDate']")
_X_DESCRIPTION = _xpath(f"//p[{_has_class_xpath('seri_des')}]")
_X_COVER = _xpath(f"//div[{_has_class_xpath('seriesCoverBox')}]//img")
_X_IMAGE = _xpath("//img[@itemprop='image']")
_X_GENRE_LINKS = _xpath(f"//div[{_has_class_xpath('genres')}]//a")
_X_FSK = _xpath(f"//div[@data-fsk or {_has_class_xpath('fsk')}]")
_X_IMDB = _xpath("//a[@data-imdb or contains(@href, 'imdb.com/title/')]")
_X_EPISODE_TABLE = _xpath(f"//table[{_has_class_xpath('seasonEpisodesList')}]")
_X_EPISODE_ROWS = _xpath(
    f"//tr[contains(@itemtype, 'schema.org/Episode') or ancestor::table[{_has_class_xpath('seasonEpisodesList')}]]"
)
_X_HOSTER_BOX = _xpath(f"//div[{_has_class_xpath('hosterSiteVideo')}]")
_X_HOSTER_ITEMS = _xpath(".//li[@data-link-target]")
_X_LANGUAGE_FLAGS = _xpath(f"//div[{_has_class_xpath('changeLanguageBox')}]//img")
_X_GERMAN_TITLE = _xpath(f"//span[{_has_class_xpath('episodeGermanTitle')}]")
_X_ENGLISH_TITLE = _xpath(f"//small[{_has_class_xpath('episodeEnglishTitle')}]")
_X_FEED_LISTS = _xpath(f"//div[{_has_class_xpath('newEpisodeList')}]")


def _document(html: str, url: str) -> Any:
    # Parsed from UTF-8 bytes: lxml refuses str input with an XML encoding declaration, and a forced encoding
    # overrides a lying <meta charset>. Lone surrogates become "?". Comments stay in the tree (removing them doubles
    # the parse time): code that walks children skips nodes whose tag is not a string.
    parser = etree.HTMLParser(encoding="utf-8", no_network=True)
    try:
        root = etree.fromstring(html.encode("utf-8", "replace"), parser)
    except (etree.LxmlError, ValueError) as err:
        raise ParseError(f"{url} is not HTML: {err}", details={"url": url, "missing": "html"}) from err
    if root is None:
        raise ParseError(f"{url} is empty", details={"url": url, "missing": "html"})
    return root


def _first(*sources: Iterable[Any]) -> Any:
    # Never `_first(a) or _first(b)`: an lxml element without children is falsy.
    return next(itertools.chain(*sources), None)


def _unique_nodes(query: Callable[[Any], list[Any]], roots: list[Any]) -> Iterator[Any]:
    seen: set[Any] = set()
    for node_root in roots:
        for node in query(node_root):
            if node not in seen:
                seen.add(node)
                yield node


def _attr(element: Any, name: str) -> str:
    if element is None:
        return ""
    value = element.get(name)
    return value if isinstance(value, str) else ""


def _has_class(element: Any, name: str) -> bool:
    return name in _attr(element, "class").split()


def _clean(text: str) -> str:
    # The parser decodes entities once; the site sometimes escapes twice (`&amp;#039;`), so unescape again.
    return " ".join(_CONTROL_RE.sub("", html_lib.unescape(text)).split())


def _text(element: Any) -> str:
    if not len(element):  # no children: skip the itertext machinery (two texts per season page row)
        return _clean(element.text or "")
    return _clean("".join(text for text in element.itertext() if isinstance(text, str)))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for item in items if item))


def _int(text: str) -> int | None:
    match = _INT_RE.match(text)
    return int(match[1]) if match else None


def _year(text: str) -> int | None:
    match = _YEAR_RE.search(text)
    return int(match[1]) if match else None


def _language_key(text: str) -> Language | None:
    number = _int(text)
    try:
        return Language.from_site_key(number) if number is not None else None
    except KeyError:
        return None


def _flag_of(image: Any) -> Language | None:
    # `src` is a lazy-load placeholder where `data-src` exists.
    return _flag_language(_attr(image, "data-src")) or _flag_language(_attr(image, "src"))


@functools.lru_cache(maxsize=256)
def _flag_language(source: str) -> Language | None:
    """The language a flag image file names: ".../japanese-german.svg?v=2" is German sub."""
    source = source.strip()
    if not source or source.startswith("data:"):
        return None
    file_name = source.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1].casefold()
    return FLAG_LANGUAGES.get(file_name.rsplit(".", 1)[0])


def _hoster_name(icon: Any) -> str:
    return _icon_name(_attr(icon, "class"), _attr(icon, "title"))


@functools.lru_cache(maxsize=256)
def _icon_name(classes: str, title: str) -> str:
    """The hoster an icon shows: its title without a "Hoster " prefix, else its class other than `icon`."""
    if "icon" not in classes.split():
        return ""
    name = _HOSTER_PREFIX_RE.sub("", _clean(title))
    return name or next((item for item in classes.split() if item != "icon"), "")
