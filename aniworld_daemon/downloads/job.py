"""One queue item's work: episode page -> hosters in preference order -> yt-dlp -> import gate -> atomic import."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aniworld_daemon.downloads import verify, ytdlp
from aniworld_daemon.downloads.tempfiles import TempFiles
from aniworld_daemon.errors import (
    AniworldError,
    Blocked,
    DownloadError,
    HosterError,
    ImportRefused,
    NotFound,
    NoWantedLanguage,
    ProviderError,
    StorageError,
    TransferCancelled,
)
from aniworld_daemon.library import library_path, scan_folder
from aniworld_daemon.models import Download, Language, Series
from aniworld_daemon.naming import NamingTemplate
from aniworld_daemon.provider.aniworld import AniworldProvider
from aniworld_daemon.provider.hosters import HosterRegistry, MediaSource, Resolver
from aniworld_daemon.provider.http import HttpClient
from aniworld_daemon.provider.records import EpisodePage, HosterLink
from aniworld_daemon.series import naming_of

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to get an episode: a hoster link in a wanted language and the resolver for it."""

    language: Language
    link: HosterLink
    resolver: Resolver


@dataclass(frozen=True, slots=True)
class Imported:
    """An episode file that is now in the library."""

    file_path: str  # relative to the library root
    size: int
    language: Language | None
    hoster: str | None
    downloaded: bool  # False when the file was already in the library


async def _no_problem() -> str | None:
    return None


@dataclass(slots=True)
class JobControl:
    """What the queue engine hands one running job: the cancel flag and callbacks for progress and hoster choice."""

    cancel: ytdlp.CancelToken
    on_progress: Callable[[ytdlp.Progress], None]
    on_hoster: Callable[[Language, str], None]
    # (hoster, error) for every hoster that failed in this attempt, in order
    failures: list[tuple[str, AniworldError]] = field(default_factory=list)
    # Why the library cannot be written now (not mounted), or None; asked before anything is written into it.
    library_problem: Callable[[], Awaitable[str | None]] = field(default=_no_problem)


async def _ensure_library(control: JobControl) -> None:
    """StorageError when the library is not there: nothing may be created in an empty mount point."""
    problem = await control.library_problem()
    if problem is not None:
        raise StorageError(problem, details={"reason": "library_unavailable"})


def candidates(page: EpisodePage, languages: Sequence[Language], hosters: HosterRegistry) -> list[Candidate]:
    """The page's hoster links in (language preference x hoster preference) order; unknown hosters dropped."""
    found: list[Candidate] = []
    for language in languages:
        ranked: list[tuple[int, int, Candidate]] = []
        for index, link in enumerate(page.hosters_for(language)):
            resolver = hosters.get(link.name)
            rank = hosters.rank(link.name)
            if resolver is not None and rank is not None:
                ranked.append((rank, index, Candidate(language, link, resolver)))
        found += [candidate for _, _, candidate in sorted(ranked, key=lambda entry: entry[:2])]
    return found


class EpisodeJob:
    """Runs one queue item to an imported file; raises what the engine must act on (see `run`)."""

    def __init__(  # noqa: PLR0917 - every argument is a separate dependency of the job
        self,
        provider: AniworldProvider,
        http: HttpClient,
        hosters: HosterRegistry,
        library: Path,
        template: NamingTemplate,
        options: ytdlp.YtdlpOptions,
        temp: TempFiles,
    ) -> None:
        self._provider = provider
        self._http = http
        self._hosters = hosters
        self._library = library
        self._temp = temp
        self._template = template
        self._options = options

    async def run(self, item: Download, series: Series, languages: Sequence[Language], control: JobControl) -> Imported:
        """Download and import `item`.

        Raises NoWantedLanguage (no link in a wanted language), Blocked (the site is cooling down; not an attempt),
        TransferCancelled, DownloadError (every hoster failed; details list them) or another AniworldError
        (the site could not be read: retry later).
        """
        existing = await self._in_library(item, series)
        if existing is not None:
            LOGGER.info("%s is already in the library: %s", item.label, existing.file_path)
            return existing
        page = await self._provider.episode(item.series_key, item.season, item.number)
        options = candidates(page, languages, self._hosters)
        if not options:
            raise NoWantedLanguage(
                f"{item.label} is not offered in "
                + ", ".join(language.value for language in languages)
                + (f" (only in {', '.join(language.value for language in page.languages)})" if page.languages else ""),
                details={"languages": [language.value for language in page.languages]},
            )
        # yt-dlp and prepare() create the temp dir: never in the empty mount point of a library whose disk went away.
        await _ensure_library(control)
        folder = await self._temp.prepare()
        previous_hoster = item.hoster
        for candidate in options:
            name = candidate.resolver.name
            if previous_hoster is not None and previous_hoster != name:
                # A partial file of another hoster is another encode: it cannot be resumed from this one.
                await self._temp.remove([item.id])
            previous_hoster = name
            try:
                # The redirect is the site's: a cooldown or the site being down ends the attempt (raised).
                embed_url = await self._provider.resolve_redirect(candidate.link.redirect_url)
            except NotFound as err:
                control.failures.append((name, err))  # this one link is dead; the page's others may work
                LOGGER.info("%s: the %s link is gone: %s", item.label, candidate.link.name, err.message)
                continue
            try:
                file = await self._fetch(item, candidate, embed_url, folder, control)
            except (HosterError, ProviderError, ImportRefused) as err:
                # The hoster's pages refused, vanished or did not answer, or it served something other than what it
                # promised (the gate dropped it): the next hoster may do better.
                control.failures.append((name, err))
            else:
                title = page.title_de or page.title_en
                await _ensure_library(control)  # the import creates series and season folders
                return await asyncio.to_thread(self._import, item, series, file, title, candidate)
            LOGGER.info(
                "%s: %s (%s) failed: %s",
                item.label,
                candidate.link.name,
                candidate.language.value,
                control.failures[-1][1].message,
            )
        raise _all_failed(item, control.failures)

    async def _fetch(
        self, item: Download, candidate: Candidate, embed_url: str, folder: Path, control: JobControl
    ) -> Path:
        """The verified download of one hoster: resumed from what a previous attempt left when that can be trusted."""
        media = await candidate.resolver.resolve(self._http, embed_url)
        control.on_hoster(candidate.language, candidate.resolver.name)
        await _ensure_library(control)  # resolving took a while: the library may have gone meanwhile
        resumed = await self._temp.vet(item.id, media.kind, media.hoster)
        try:
            return await self._download_checked(item, media, folder, control, resumed=resumed)
        except TransferCancelled:
            raise
        except (DownloadError, HosterError) as err:
            if not resumed:
                raise
            # What failed was our own leftover state (a range the server refuses, a file the gate refuses), not the
            # hoster: drop it and go again from zero, within this attempt, so one bad leftover cannot burn them all.
            LOGGER.warning(
                "%s: continuing the partial download failed (%s); downloading it again from the start",
                item.label,
                err.message,
            )
            await self._temp.remove([item.id])
            return await self._download_checked(item, media, folder, control, resumed=False)

    async def _download_checked(
        self, item: Download, media: MediaSource, folder: Path, control: JobControl, *, resumed: bool
    ) -> Path:
        """yt-dlp's download of `media`, through the import gate; a refused file is deleted (ImportRefused)."""

        def store(promise: verify.SourcePromise) -> None:
            try:
                self._temp.save_promise(item.id, promise)
            except StorageError as err:  # the download goes on: only a later resume loses its check
                LOGGER.warning("%s: cannot store what the source promised: %s", item.label, err.message)

        downloaded = await ytdlp.download(
            media,
            folder,
            item.id,
            options=self._options,
            on_progress=control.on_progress,
            cancel=control.cancel,
            promise=await asyncio.to_thread(self._temp.load_promise, item.id),
            on_promise=store,
        )
        try:
            info = await verify.check(downloaded.path, downloaded.promise, resumed=resumed)
        except ImportRefused:
            await self._temp.remove([item.id])
            raise
        LOGGER.debug("Verified %s: %s, %.1f s", downloaded.path.name, info.video_codec, info.duration)
        return downloaded.path

    async def _in_library(self, item: Download, series: Series) -> Imported | None:
        """The episode's file when it is already in the library (a crash after the rename, or the user's own)."""
        if not series.folder or not library_path(self._library, series.folder).is_dir():
            return None
        scan = await asyncio.to_thread(scan_folder, self._library, series.folder, self._template, naming_of(series))
        for file in scan.files:
            if (file.season, file.number) == (item.season, item.number):
                return Imported(file.path, file.size, item.language, item.hoster, downloaded=False)
        return None

    def _import(self, item: Download, series: Series, file: Path, title: str, candidate: Candidate) -> Imported:
        """Move the verified file to its template path: the only step that puts anything into the library."""
        relative = self._template.episode_path(
            naming_of(series), item.season, item.number, title, candidate.language.value, file.suffix.lower()
        )
        target = library_path(self._library, relative)
        try:
            self._temp.promote(file, target)
            size = target.stat().st_size
        except OSError as err:
            raise StorageError(f"cannot move the download into {target.parent}: {err.strerror or err}") from err
        LOGGER.info("Imported %s", relative)
        return Imported(relative, size, candidate.language, candidate.resolver.name, downloaded=True)


def _all_failed(item: Download, failures: Sequence[tuple[str, AniworldError]]) -> AniworldError:
    """The error of an attempt in which no hoster worked; all-Blocked stays Blocked (waiting is not a failure)."""
    if failures and all(isinstance(error, Blocked) for _, error in failures):
        return failures[0][1]
    summary = "; ".join(f"{hoster}: {error.message}" for hoster, error in failures)
    return DownloadError(
        f"every hoster failed for {item.label}: {summary}",
        details={
            "hosters": [{"hoster": hoster, "code": error.code, "message": error.message} for hoster, error in failures]
        },
    )
