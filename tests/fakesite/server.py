"""`FakeSite`: the offline aniworld.to plus one origin per fake hoster, all on 127.0.0.1.

The site app serves the pages of `pages.py` over the catalog; each hoster app (from `hosters.py`) runs on its own
port, so a redirect really crosses origins. All origins share one `Knobs` and one `RequestLog` and are wrapped in
`observe()` with their label ("site", or the hoster key such as "voe").
"""

from __future__ import annotations

import logging
import socket
from types import TracebackType

from aiohttp import web

from aniworld_daemon.validators import HOSTERS
from tests.fakesite import pages
from tests.fakesite.catalog import Catalog, Episode, Link, Season, Series, load_catalog
from tests.fakesite.core import HosterContext, Knobs, Media, RequestLog, observe, serve_file
from tests.fakesite.hosters import HOSTER_DISPLAY, create_hoster_app, embed_path

LOGGER = logging.getLogger(__name__)

SITE_LABEL = "site"
SHUTDOWN_TIMEOUT = 0.5  # seconds open connections get at stop(); tests should not wait for idle keep-alives

FLAG_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="30" height="20" viewBox="0 0 3 2">'
    '<rect width="3" height="2" fill="#888"/></svg>'
)


class FakeSite:
    """The fake aniworld.to and its hosters; an async context manager (`async with FakeSite(media) as site`)."""

    def __init__(
        self,
        media: Media,
        *,
        port: int = 0,
        catalog: Catalog | None = None,
        knobs: Knobs | None = None,
    ) -> None:
        self.media = media
        self._requested_port = port
        self._catalog = catalog if catalog is not None else load_catalog()
        self._knobs = knobs if knobs is not None else Knobs()
        self._log = RequestLog()
        self._runners: list[web.AppRunner] = []
        self._port: int | None = None
        self._hosters: dict[str, HosterContext] = {}
        # Bound but never listening, and held while the site runs: connections to its port are refused, and no
        # other program can take the port meanwhile (the target of `Knobs.dead_redirects`).
        self._dead: socket.socket | None = None

    async def __aenter__(self) -> FakeSite:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Bind the site on 127.0.0.1:port and every hoster on a free port of its own."""
        if self._runners:
            raise RuntimeError("the fake site is already running")
        try:
            self._dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._dead.bind(("127.0.0.1", 0))
            self._port = await self._serve(self.create_app(), self._requested_port)
            for name in HOSTERS:
                context = HosterContext(name=name, knobs=self._knobs, log=self._log, media=self.media)
                app = create_hoster_app(name, context)
                # Outermost, so latency, blocks and 5xx bursts apply before the hoster's own logic.
                app.middlewares.insert(0, observe(name, self._knobs, self._log))
                context.port = await self._serve(app, 0)
                self._hosters[name] = context
        except BaseException:
            await self.stop()
            raise
        LOGGER.info("fake site on %s with hosters %s", self.base_url, ", ".join(self._hosters))

    async def stop(self) -> None:
        """Stop every origin (idempotent)."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()
        self._hosters.clear()
        self._port = None
        if self._dead is not None:
            self._dead.close()
            self._dead = None

    async def _serve(self, app: web.Application, port: int) -> int:
        """Run `app` on 127.0.0.1:port (0 = any free port) and return the bound port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        self._runners.append(runner)
        await web.SockSite(runner, sock).start()
        return int(sock.getsockname()[1])

    # ------------------------------------------------------------------------------------------------ accessors

    @property
    def base_url(self) -> str:
        """The site's origin, e.g. `http://127.0.0.1:8800` (only while running)."""
        if self._port is None:
            raise RuntimeError("the fake site is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        """The site's port (only while running)."""
        if self._port is None:
            raise RuntimeError("the fake site is not running")
        return self._port

    @property
    def knobs(self) -> Knobs:
        """The behaviour switches shared by the site and all hosters."""
        return self._knobs

    @property
    def log(self) -> RequestLog:
        """Every request every origin served."""
        return self._log

    @property
    def catalog(self) -> Catalog:
        """The series the site serves (the expected data for parser tests)."""
        return self._catalog

    @property
    def hosters(self) -> tuple[str, ...]:
        """The keys of the running hosters (all of validators.HOSTERS)."""
        return tuple(self._hosters)

    @property
    def display_names(self) -> dict[str, str]:
        """Hoster key -> name shown on the site, e.g. "speedfiles" -> "SpeedFiles"."""
        return dict(HOSTER_DISPLAY)

    def hoster_origin(self, name: str) -> str:
        """The origin of a running hoster, e.g. `http://127.0.0.1:41234`; KeyError when it does not run."""
        return self._hosters[name].origin()

    def url(self, path: str) -> str:
        """An absolute URL of a site path."""
        return self.base_url + path

    def series_url(self, key: str) -> str:
        """The URL of a series page (the key need not exist: unknown keys answer 404)."""
        return self.url(f"/anime/stream/{key}")

    def season_url(self, key: str, season: int) -> str:
        """The URL of a season page (season 0: the movies page)."""
        return self.series_url(key) + ("/filme" if season == 0 else f"/staffel-{season}")

    def episode_url(self, key: str, season: int, number: int) -> str:
        """The URL of an episode page (season 0: a movie page)."""
        suffix = f"/film-{number}" if season == 0 else f"/episode-{number}"
        return self.season_url(key, season) + suffix

    def series(self, key: str) -> Series:
        """The catalog record of a series (KeyError when unknown)."""
        return self._catalog[key]

    def episode(self, key: str, season: int, number: int) -> Episode:
        """The catalog record of one episode (KeyError when unknown)."""
        found = self._catalog[key].episode(season, number)
        if found is None:
            raise KeyError((key, season, number))
        return found

    def link(self, link_id: int) -> Link:
        """The (series, season, number, language, hoster) behind `/redirect/<link_id>` (KeyError when unknown)."""
        found = self._catalog.link(link_id)
        if found is None:
            raise KeyError(link_id)
        return found

    def embed_url(self, link: Link) -> str:
        """The hoster embed URL a link redirects to (KeyError when that hoster does not run)."""
        return self._hosters[link.hoster].origin() + embed_path(link.hoster, link.video_id)

    @property
    def dead_origin(self) -> str:
        """An origin on 127.0.0.1 whose port nobody listens on (connections are refused), while the site runs."""
        if self._dead is None:
            raise RuntimeError("the fake site is not running")
        return f"http://127.0.0.1:{self._dead.getsockname()[1]}"

    def redirect_target(self, link_id: int) -> str:
        """Where `/redirect/<link_id>` sends the client."""
        return self.embed_url(self.link(link_id))

    def any_redirect(self, hoster: str | None = None) -> tuple[int, str]:
        """Some redirect link (of `hoster`, if given) as (link id, hoster key); the lowest id, so it is stable."""
        for link in sorted(self._catalog.links.values(), key=lambda found: found.id):
            if hoster is None or link.hoster == hoster:
                return link.id, link.hoster
        raise KeyError(hoster)

    def release(self, key: str, season: int | None = None) -> tuple[int, int]:
        """Publish the next episode of `key` now (into its last season, or `season`, possibly a new one).

        It appears on its season page, on the series page when it opens a new season, and at the top of the feed,
        dated today. Returns (season, number).
        """
        episode = self._catalog.release(key, season)
        LOGGER.info("released %s S%02dE%02d", key, episode.season, episode.number)
        return episode.season, episode.number

    # ------------------------------------------------------------------------------------------------------ app

    def create_app(self) -> web.Application:
        """The site's aiohttp app (observed as "site")."""
        app = web.Application(middlewares=[observe(SITE_LABEL, self._knobs, self._log)])
        app.router.add_get("/", self._home)
        app.router.add_get("/animes", self._animes)
        app.router.add_get("/neue-episoden", self._feed)
        app.router.add_get("/ajax/seriesSearch", self._series_search)
        app.router.add_post("/ajax/search", self._search)
        app.router.add_get(r"/redirect/{link_id:\d+}", self._redirect)
        app.router.add_get("/public/img/cover/{name}", self._cover)
        app.router.add_get(r"/public/img/{flag:[a-z-]+}.svg", self._flag)
        app.router.add_get(r"/anime/stream/{key}", self._series)
        app.router.add_get(r"/anime/stream/{key}/", self._series)
        app.router.add_get(r"/anime/stream/{key}/filme", self._season)
        app.router.add_get(r"/anime/stream/{key}/staffel-{season:\d+}", self._season)
        app.router.add_get(r"/anime/stream/{key}/filme/film-{number:\d+}", self._episode)
        app.router.add_get(r"/anime/stream/{key}/staffel-{season:\d+}/episode-{number:\d+}", self._episode)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    def _context(self) -> pages.Context:
        return pages.Context(base=self.base_url, display=HOSTER_DISPLAY)

    def _html(self, text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    def _missing(self, request: web.Request) -> web.Response:
        return self._html(pages.not_found_page(self._context(), request.path), status=404)

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._missing(request)

    async def _home(self, request: web.Request) -> web.Response:
        return self._html(pages.home_page(self._context(), self._catalog))

    async def _animes(self, request: web.Request) -> web.Response:
        return self._html(pages.animes_page(self._context(), self._catalog))

    async def _feed(self, request: web.Request) -> web.Response:
        return self._html(pages.feed_page(self._context(), self._catalog))

    def _lookup(self, request: web.Request) -> tuple[Series, Season] | None:
        """The series and season a season/episode URL names, or None."""
        series = self._catalog.get(request.match_info["key"])
        if series is None:
            return None
        number = int(request.match_info.get("season", "0"))  # "/filme" has no season number: the movies
        season = series.season(number)
        return (series, season) if season is not None else None

    async def _series(self, request: web.Request) -> web.Response:
        series = self._catalog.get(request.match_info["key"])
        if series is None:
            return self._missing(request)
        return self._html(pages.series_page(self._context(), self._catalog, series))

    async def _season(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if found is None:
            return self._missing(request)
        return self._html(pages.season_page(self._context(), self._catalog, *found))

    async def _episode(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        episode = found[1].episode(int(request.match_info["number"])) if found is not None else None
        if found is None or episode is None:
            return self._missing(request)
        return self._html(pages.episode_page(self._context(), self._catalog, *found, episode))

    async def _series_search(self, request: web.Request) -> web.Response:
        body = pages.series_search_json(self._catalog, request.query.get("keyword", ""))
        return web.Response(text=body, content_type="application/json", charset="utf-8")

    async def _search(self, request: web.Request) -> web.Response:
        # The real endpoint refuses requests that do not look like its own page's XHR.
        if request.headers.get("X-Requested-With") != "XMLHttpRequest":
            return web.Response(status=400, text="Bad Request")
        form = await request.post()
        keyword = form.get("keyword", "")
        body = pages.search_json(self._catalog, keyword if isinstance(keyword, str) else "")
        return web.Response(text=body, content_type="application/json", charset="utf-8")

    async def _redirect(self, request: web.Request) -> web.Response:
        link = self._catalog.link(int(request.match_info["link_id"]))
        if link is None:
            return self._missing(request)
        if link.hoster in self._knobs.dead_redirects:
            raise web.HTTPFound(self.dead_origin + embed_path(link.hoster, link.video_id))
        raise web.HTTPFound(self.embed_url(link))

    async def _cover(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not any(series.cover_path.endswith("/" + name) for series in self._catalog):
            return self._missing(request)
        return await serve_file(request, self.media.cover, self._knobs, "image/jpeg")

    async def _flag(self, request: web.Request) -> web.Response:
        return web.Response(text=FLAG_SVG, content_type="image/svg+xml")
