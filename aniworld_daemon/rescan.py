"""The rescan pipeline: disk scan + incremental provider refresh -> missing episodes -> a stored scan report."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from aniworld_daemon.config import Config
from aniworld_daemon.downloads.tempfiles import TempFiles
from aniworld_daemon.errors import AniworldError, Blocked, NotFoundError, ProviderError, StorageError, Unreachable
from aniworld_daemon.events import (
    EpisodesFound,
    EventBus,
    ScanComplete,
    ScanFailed,
    ScanProgress,
    ScanStarted,
)
from aniworld_daemon.library import (
    EpisodeFile,
    ShowMetadata,
    match_folder,
    mounted_folders,
    needs_poster,
    scan_folder,
    unavailable,
    write_poster,
    write_show_nfo,
)
from aniworld_daemon.models import (
    DownloadStatus,
    Episode,
    EpisodeState,
    HistoryKind,
    Language,
    ScanReport,
    ScanStatus,
    SeasonFetch,
    Series,
)
from aniworld_daemon.provider.aniworld import AniworldProvider, EpisodeSummary, FeedEntry, SeasonPage, SeriesInfo
from aniworld_daemon.provider.http import count_requests
from aniworld_daemon.series import SeriesManager, naming_of
from aniworld_daemon.store.database import Database

LOGGER = logging.getLogger(__name__)

# The settings key under which a cover that could not be fetched is remembered, per series key (see _write_poster).
COVER_FAILED_SETTING = "cover_failed:{key}"

# Series refreshed at the same time. More than the connections per host, so parsing and database writes of one
# series overlap the requests of the next; the HTTP client's budget is what actually paces the site.
SERIES_WORKERS = 6


class MissingEpisodeQueue(Protocol):
    """Where `downloads.auto_download` hands the missing episodes at the end of a rescan: the download queue."""

    async def enqueue_missing(self, episodes: Sequence[Episode]) -> int:
        """Queue these episodes (ordered by series, season, number), skipping queued ones; return how many were."""


@dataclass(frozen=True, slots=True)
class SeriesScan:
    """One series' outcome of a rescan."""

    key: str
    title: str
    folder: str
    missing: tuple[Episode, ...]
    awaiting_language: tuple[Episode, ...]
    downloaded: int
    new_episodes: tuple[tuple[int, int], ...] = ()  # (season, episode) first seen by this rescan
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ScanResult:
    """A finished rescan: the stored report and the outcome per series."""

    report: ScanReport
    series: tuple[SeriesScan, ...]
    queued: int = 0  # episodes handed to the download queue


@dataclass(slots=True)
class _ScanRun:
    """The mutable state of one running rescan, shared by its series workers."""

    report: ScanReport
    total: int
    dry_run: bool
    folders: set[str]  # top-level folders of the library
    taken: set[str]  # folders that belong to a followed series
    feed: dict[str, list[FeedEntry]] | None  # new-episode feed rows per series key; None: the feed was unreadable
    live: set[tuple[str, int, int]]  # episodes queued or downloading
    halted: str | None = None  # why the site is not asked any more in this scan (refused us, or does not answer)
    done: int = 0
    outcomes: list[SeriesScan] = field(default_factory=list)


@dataclass(slots=True)
class _Known:
    """What the database knows of one series: episodes by (season, number), and the seasons read so far."""

    episodes: dict[tuple[int, int], Episode]
    fetches: dict[int, SeasonFetch]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def wanted_seasons(series: Series, available: Iterable[int]) -> set[int]:
    """The seasons to keep complete: the configured ones the site has, or every regular season.

    Movies (season 0) are wanted only when listed.
    """
    seasons = set(available)
    if series.seasons is None:
        return {season for season in seasons if season > 0}
    return set(series.seasons) & seasons


def episode_state(
    episode: Episode, *, on_disk: EpisodeFile | None, queued: bool, languages: Sequence[Language]
) -> Episode:
    """An episode's state from the disk, the queue and its languages; the disk wins, `ignored` is the user's."""
    if on_disk is not None:
        return replace(episode, state=EpisodeState.DOWNLOADED, file_path=on_disk.path, file_size=on_disk.size)
    if episode.state is EpisodeState.IGNORED:
        return replace(episode, file_path=None, file_size=None)
    if queued:
        state = EpisodeState.QUEUED
    elif not episode.languages or set(episode.languages) & set(languages):
        # No flags at all: nothing to go by, the episode page decides at download time.
        state = EpisodeState.MISSING
    else:
        state = EpisodeState.AWAITING_LANGUAGE
    return replace(episode, state=state, file_path=None, file_size=None)


class Rescanner:
    """Runs rescans, one at a time: a second request while one runs joins it."""

    def __init__(
        self,
        db: Database,
        provider: AniworldProvider,
        bus: EventBus,
        series: SeriesManager,
        config: Config,
        *,
        queue: MissingEpisodeQueue | None = None,
        temp: TempFiles,
    ) -> None:
        self._db = db
        self._provider = provider
        self._bus = bus
        self._series = series
        self._config = config
        self._queue = queue
        self._temp = temp  # NFO and poster are written through the library's temp dir
        self._task: asyncio.Task[ScanResult] | None = None
        self._scan_id = ""  # the report id of the latest rescan started
        self._auto_download: bool | None = None  # the runtime switch (MQTT, API), kept in the settings table

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded configuration from the next rescan on."""
        self._config = config

    @property
    def auto_download(self) -> bool:
        """Whether rescans queue what they find missing: the runtime switch when set, else downloads.auto_download."""
        return self._auto_download if self._auto_download is not None else self._config.downloads.auto_download

    def set_auto_download(self, enabled: bool | None) -> None:
        """Switch auto_download at runtime (None: the configuration's value again)."""
        self._auto_download = enabled

    @property
    def running(self) -> bool:
        """True while a rescan runs."""
        return self._task is not None and not self._task.done()

    async def rescan(
        self,
        trigger: str = "manual",
        keys: Sequence[str] | None = None,
        *,
        dry_run: bool = False,
        queue_missing: bool = True,
    ) -> ScanResult:
        """Rescan the given series (default: every monitored one) or join the rescan that is already running.

        `dry_run` reads the site and the disk and reports, but writes nothing into the library and queues nothing.
        `queue_missing`: hand the missing episodes to the download queue (with `downloads.auto_download`).
        """
        task = await self._begin(trigger, keys, dry_run=dry_run, queue_missing=queue_missing)
        # Shielded: a caller that gives up (a cancelled API request) does not cancel the scan the others wait for.
        return await asyncio.shield(task)

    async def start(self, trigger: str = "api", keys: Sequence[str] | None = None) -> str:
        """Start a rescan (or join the running one) without waiting for it; the id of its report.

        Unknown keys are refused before anything starts (NotFoundError), so the caller's answer can say so.
        """
        if keys:
            known = {series.key for series in await self._db.list_series()}
            unknown = [key for key in keys if key not in known]
            if unknown:
                raise NotFoundError(f"not followed: {', '.join(unknown)}", details={"keys": unknown})
        await self._begin(trigger, keys, dry_run=False, queue_missing=True)
        return self._scan_id

    async def _begin(
        self, trigger: str, keys: Sequence[str] | None, *, dry_run: bool, queue_missing: bool
    ) -> asyncio.Task[ScanResult]:
        if self._task is None or self._task.done():
            enqueue = queue_missing and not dry_run
            self._scan_id = uuid.uuid4().hex
            scan = self._scan(self._scan_id, trigger, keys, dry_run=dry_run, enqueue=enqueue)
            self._task = asyncio.get_running_loop().create_task(scan, name="rescan")
            # A rescan started without a waiter (the API's, the scheduler's) that fails was logged and stored by
            # _fail; taking its exception keeps asyncio from reporting it again as "never retrieved".
            self._task.add_done_callback(_retrieve)
        else:
            LOGGER.info("A rescan is already running; the %s request joins it", trigger)
        return self._task

    async def recover(self) -> None:
        """At the daemon's start: a scan report left `running` by a kill is `interrupted` (none can run yet)."""
        count = await self._db.interrupt_running_scans(_utcnow())
        if count:
            LOGGER.warning("%d rescan(s) were interrupted when the daemon last stopped", count)

    async def stop(self) -> None:
        """Cancel a running rescan (at shutdown); its report is stored as failed."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- one rescan -------------------------------------------------------------------------------------------------

    async def _scan(
        self, scan_id: str, trigger: str, keys: Sequence[str] | None, *, dry_run: bool, enqueue: bool
    ) -> ScanResult:
        all_series = await self._db.list_series()
        by_key = {series.key: series for series in all_series}
        if keys:
            unknown = [key for key in keys if key not in by_key]
            if unknown:
                raise NotFoundError(f"not followed: {', '.join(unknown)}", details={"keys": unknown})
            selected = [by_key[key] for key in dict.fromkeys(keys)]
        else:
            selected = [series for series in all_series if series.monitored]
        report = ScanReport(id=scan_id, trigger=trigger, status=ScanStatus.RUNNING, started_at=_utcnow())
        await self._db.save_scan(report)
        self._bus.emit(ScanStarted(scan_id=report.id, trigger=trigger, series_total=len(selected)))
        LOGGER.info("Rescan %s (%s) of %d series started", report.id[:8], trigger, len(selected))
        with count_requests() as requests:
            try:
                result = await self._run(
                    report, selected, all_series, dry_run, enqueue=enqueue, requests_seen=lambda: requests.count
                )
            except BaseException as err:
                await self._fail(report, err, requests.count)
                raise
        return result

    async def _fail(self, report: ScanReport, err: BaseException, requests: int) -> None:
        if isinstance(err, asyncio.CancelledError):
            code, message = "cancelled", "the rescan was cancelled (shutdown)"
        elif isinstance(err, AniworldError):
            code, message = err.code, err.message
        else:
            code, message = "internal_error", f"unexpected error: {err!r}"
        if isinstance(err, asyncio.CancelledError):
            LOGGER.warning("Rescan %s stopped: %s", report.id[:8], message)  # expected at shutdown: no traceback
        else:
            LOGGER.error("Rescan %s failed: %s", report.id[:8], message, exc_info=not isinstance(err, AniworldError))
        failed = replace(
            report, status=ScanStatus.FAILED, finished_at=_utcnow(), requests=requests, errors={"": message}
        )
        try:
            # Shielded: at shutdown the cancelled scan still records how it ended.
            await asyncio.shield(self._db.save_scan(failed))
        except AniworldError as store_err:
            LOGGER.error("Could not store the failed rescan %s: %s", report.id[:8], store_err.message)
        self._bus.emit(ScanFailed(scan_id=report.id, error_code=code, error_message=message))

    async def _run(
        self,
        report: ScanReport,
        selected: list[Series],
        all_series: list[Series],
        dry_run: bool,
        *,
        enqueue: bool,
        requests_seen: _Count,
    ) -> ScanResult:
        root = self._config.library.path
        if selected:
            # Without the library (missing, or an empty mount point while episode files are known) every episode
            # would look missing and be downloaded again: refused, before the site is asked and after the listing.
            known = await self._db.count_episode_files()
            problem = await asyncio.to_thread(unavailable, root, known)
            if problem is not None:
                raise StorageError(problem, details={"path": str(root)})
            folders, feed = await asyncio.gather(asyncio.to_thread(mounted_folders, root, known), self._read_feed())
        else:
            folders, feed = [], None  # nothing to check: not even the feed is worth a request
        live = await self._db.list_downloads((DownloadStatus.PENDING, DownloadStatus.DOWNLOADING))
        run = _ScanRun(
            report=report,
            total=len(selected),
            dry_run=dry_run,
            folders=set(folders),
            taken={series.folder for series in all_series if series.folder},
            feed=feed if not isinstance(feed, str) else None,
            live={(item.series_key, item.season, item.number) for item in live},
            halted=feed if isinstance(feed, str) else None,
        )
        workers = asyncio.Semaphore(SERIES_WORKERS)

        async def work(series: Series) -> None:
            async with workers:
                outcome = await self._scan_series(series, run)
            run.outcomes.append(outcome)
            run.done += 1
            self._bus.emit(
                ScanProgress(
                    scan_id=report.id,
                    series_done=run.done,
                    series_total=run.total,
                    requests=requests_seen(),
                    current=outcome.title,
                )
            )

        tasks = [asyncio.ensure_future(work(series)) for series in selected]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # A failure of one series that is not its own (the database) fails the scan: the others stop with it.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        outcomes = tuple(sorted(run.outcomes, key=lambda outcome: outcome.key))
        queued = 0
        missing = [episode for outcome in outcomes for episode in outcome.missing]
        if missing and enqueue and self.auto_download and self._queue is not None:
            queued = await self._queue.enqueue_missing(missing)
        errors = {outcome.key: outcome.error for outcome in outcomes if outcome.error is not None}
        finished = replace(
            report,
            status=ScanStatus.PARTIAL if errors or run.halted is not None else ScanStatus.COMPLETE,
            finished_at=_utcnow(),
            series_checked=sum(1 for outcome in outcomes if outcome.error is None),
            requests=requests_seen(),
            new_episodes=sum(len(outcome.new_episodes) for outcome in outcomes),
            missing={outcome.key: len(outcome.missing) for outcome in outcomes if outcome.missing},
            errors=errors,
        )
        await self._db.save_scan(finished)
        await self._db.add_history(
            HistoryKind.SCAN,
            f"Rescan {finished.status.value}: {finished.series_checked}/{len(outcomes)} series checked, "
            f"{len(missing)} episodes missing, {finished.new_episodes} new",
            data={"scan_id": finished.id, "requests": finished.requests, "errors": len(errors)},
        )
        for outcome in outcomes:
            if outcome.new_episodes:
                self._bus.emit(EpisodesFound(series_key=outcome.key, episodes=outcome.new_episodes))
        self._bus.emit(
            ScanComplete(
                scan_id=finished.id,
                status=finished.status,
                series_checked=finished.series_checked,
                requests=finished.requests,
                new_episodes=finished.new_episodes,
                missing_episodes=len(missing),
            )
        )
        LOGGER.info(
            "Rescan %s %s: %d series, %d requests, %d new, %d missing, %d errors",
            finished.id[:8],
            finished.status.value,
            len(outcomes),
            finished.requests,
            finished.new_episodes,
            len(missing),
            len(errors),
        )
        return ScanResult(report=finished, series=outcomes, queued=queued)

    async def _read_feed(self) -> dict[str, list[FeedEntry]] | str | None:
        """The new-episodes feed per series key, None when it is unreadable.

        When the site refused us or does not answer, the reason (text) instead: the scan goes on from the disk only.
        """
        try:
            entries = await self._provider.new_episodes()
        except (Blocked, Unreachable) as err:
            LOGGER.warning("The site is not read in this rescan: %s", err.message)
            return _halt_text(err)
        except ProviderError as err:
            # Without the feed only the running series are refreshed; the next full refresh catches up.
            LOGGER.warning("The new-episodes feed could not be read: %s", err.message)
            return None
        feed: dict[str, list[FeedEntry]] = {}
        for entry in entries:
            feed.setdefault(entry.key, []).append(entry)
        return feed

    # -- one series -------------------------------------------------------------------------------------------------

    async def _scan_series(self, series: Series, run: _ScanRun) -> SeriesScan:
        error: str | None = None
        new: tuple[tuple[int, int], ...] = ()
        known: _Known | None = None
        full = False  # whether this scan gave the series its full refresh
        if run.halted is not None:
            error = f"not checked: {run.halted}"
        else:
            try:
                series, new, known, full = await self._refresh(series, run)
            except (Blocked, Unreachable) as err:
                # Every further request would be refused or time out too: the other series are not asked.
                run.halted = run.halted or _halt_text(err)
                error = _halt_text(err)
            except ProviderError as err:
                error = err.message
                LOGGER.warning("Rescan of %s: %s", series.key, err.message)
        try:
            series, files = await self._disk(series, run)
        except StorageError as err:
            # An unreadable folder (a NAS gone away) must not turn every episode into "missing": states stay as
            # they were and nothing of this series is handed to the queue.
            LOGGER.error("Rescan of %s: %s", series.key, err.message)
            episodes = await self._db.list_episodes(series.key)
            downloaded = sum(1 for episode in episodes if episode.state is EpisodeState.DOWNLOADED)
            return SeriesScan(series.key, series.title, series.folder, (), (), downloaded, new, err.message)
        outcome = await self._reconcile(
            series, files, run, known or await self._known(series.key), new=new, error=error
        )
        if not run.dry_run and self._config.library.write_nfo:
            await self._write_metadata(series, run, full=full)
        return outcome

    async def _known(self, key: str) -> _Known:
        """What the database knows of a series: its episodes and the seasons read so far."""
        episodes = {(episode.season, episode.number): episode for episode in await self._db.list_episodes(key)}
        return _Known(episodes, {fetch.season: fetch for fetch in await self._db.list_season_fetches(key)})

    async def _refresh(self, series: Series, run: _ScanRun) -> tuple[Series, tuple[tuple[int, int], ...], _Known, bool]:
        """Read and store the pages of a series that can have changed.

        Returns the series, its new episodes, what is known of it, and whether this was its full refresh.
        """
        now = _utcnow()
        before = await self._known(series.key)
        fetches, known = before.fetches, before.episodes
        full = (
            not fetches
            or series.refreshed_at is None
            or now - series.refreshed_at >= self._config.schedule.full_refresh
        )
        info, pages = await self._read_pages(series, run, fetches, known, full=full)
        if info is not None:
            series = await self._series.refresh_metadata(series, info, taken=run.taken)
            available = [*info.seasons, *([0] if info.has_movies else [])]
        else:
            # No series page read: the seasons known so far, plus any new one a page was read for (named by the feed).
            available = [*fetches, *pages, *(series.seasons or ())]
        wanted = wanted_seasons(series, available)
        new: list[tuple[int, int]] = []
        after = _Known(dict(known), dict(fetches))
        for season, page in sorted(pages.items()):
            if season not in wanted:
                continue
            episodes = [_episode_record(series.key, summary, known) for summary in page.episodes]
            await self._db.save_season(series.key, season, episodes, now)
            if fetches:  # a series' first rescan finds its episodes, not new ones
                new += [(ep.season, ep.number) for ep in episodes if (ep.season, ep.number) not in known]
            after.episodes.update(((ep.season, ep.number), ep) for ep in episodes)
            after.fetches[season] = SeasonFetch(series.key, season, now, len(episodes))
        if full:
            series = await self._series.save(series, replace(series, refreshed_at=now))
        return series, tuple(new), after, full

    async def _read_pages(
        self,
        series: Series,
        run: _ScanRun,
        fetches: dict[int, SeasonFetch],
        known: dict[tuple[int, int], Episode],
        *,
        full: bool,
    ) -> tuple[SeriesInfo | None, dict[int, SeasonPage]]:
        """Fetch what can have changed: everything on a full refresh, else only the pages that can show news.

        Those are the running series' latest season (its page also lists the seasons, so it shows new ones), the
        seasons the feed names, and seasons never read.
        """
        pages: dict[int, SeasonPage] = {}
        info: SeriesInfo | None = None
        regular = sorted(season for season in fetches if season > 0)
        if full:
            info, first = await self._provider.series_with_season(series.key)
            if first is not None:
                pages[first.season] = first
            todo = wanted_seasons(series, [*info.seasons, *([0] if info.has_movies else [])])
        else:
            todo = set()
            if series.running and regular and (series.seasons is None or regular[-1] in series.seasons):
                info, latest = await self._provider.series_with_season(series.key, regular[-1])
                if latest is not None:
                    pages[latest.season] = latest
            todo |= self._feed_seasons(series, run, known)
            if info is not None:
                todo |= wanted_seasons(series, [*info.seasons, *([0] if info.has_movies else [])]) - set(fetches)
            else:
                todo |= set(series.seasons or ()) - set(fetches)
        for season in sorted(todo - set(pages)):
            pages[season] = await self._provider.season(series.key, season)
        return info, pages

    def _feed_seasons(self, series: Series, run: _ScanRun, known: dict[tuple[int, int], Episode]) -> set[int]:
        """Seasons the feed names with an episode or a language this series does not have yet."""
        seasons: set[int] = set()
        for entry in (run.feed or {}).get(series.key, ()):
            episode = known.get((entry.season, entry.number))
            news = episode is None or (entry.language is not None and entry.language not in episode.languages)
            wanted = entry.season > 0 if series.seasons is None else entry.season in series.seasons
            if news and wanted:
                seasons.add(entry.season)
        return seasons

    async def _disk(self, series: Series, run: _ScanRun) -> tuple[Series, tuple[EpisodeFile, ...]]:
        """The series' folder (found once in an existing library, then remembered) and its episode files."""
        if series.folder not in run.folders and not series.folder_matched:
            candidates = sorted(run.folders - run.taken)
            found = match_folder(candidates, series.title, series.alternative_titles, series.year)
            if found is None and series.title != series.key:
                found = match_folder(candidates, series.key, (), series.year)
            if found is not None:
                run.taken.add(found)  # before any await: two workers must not claim the same folder
                LOGGER.info("Found the library folder of %s: %s", series.key, found)
                series = await self._series.record_folder(series, found)
        if not series.folder or series.folder not in run.folders:
            return series, ()
        template = self._series.template
        scan = await asyncio.to_thread(
            scan_folder, self._config.library.path, series.folder, template, naming_of(series)
        )
        for skipped in scan.skipped:
            LOGGER.debug("Not an episode file of %s: %s", series.key, skipped)
        return series, scan.files

    async def _reconcile(
        self,
        series: Series,
        files: tuple[EpisodeFile, ...],
        run: _ScanRun,
        known: _Known,
        *,
        new: tuple[tuple[int, int], ...],
        error: str | None,
    ) -> SeriesScan:
        """Set every episode's state from the disk, the queue and the languages; return the series' outcome."""
        episodes = dict(known.episodes)
        on_disk = {(file.season, file.number): file for file in files}
        wanted = wanted_seasons(series, known.fetches)
        languages = series.languages or self._config.provider.languages
        changed: list[Episode] = []
        for place in sorted(set(episodes) | set(on_disk)):
            stored = episodes.get(place)
            if place not in on_disk and place[0] not in wanted:
                continue  # a season nobody asked for: neither missing nor downloaded
            updated = episode_state(
                stored or Episode(series_key=series.key, season=place[0], number=place[1]),
                on_disk=on_disk.get(place),
                queued=(series.key, *place) in run.live,
                languages=languages,
            )
            episodes[place] = updated
            if updated != stored:
                changed.append(updated)
        if changed:
            await self._db.upsert_episodes(changed)
        in_wanted = [episode for episode in episodes.values() if episode.season in wanted]
        return SeriesScan(
            key=series.key,
            title=series.title,
            folder=series.folder,
            missing=tuple(episode for episode in in_wanted if episode.state is EpisodeState.MISSING),
            awaiting_language=tuple(
                episode for episode in in_wanted if episode.state is EpisodeState.AWAITING_LANGUAGE
            ),
            downloaded=sum(1 for episode in episodes.values() if episode.state is EpisodeState.DOWNLOADED),
            new_episodes=new,
            error=error,
        )

    async def _write_metadata(self, series: Series, run: _ScanRun, *, full: bool) -> None:
        """tvshow.nfo and poster.jpg in a series folder that exists, once; a failure is logged, not fatal.

        `full`: this scan gave the series its full refresh, when a cover that failed before is asked for again.
        """
        if series.refreshed_at is None or series.folder not in run.folders:
            return  # no metadata read yet, or no folder: nothing to describe, and no empty folder is created
        folder = Path(self._config.library.path) / series.folder
        if not await asyncio.to_thread(folder.is_dir):
            return  # gone since the listing (its disk unmounted): writing would create it in the empty mount point
        metadata = ShowMetadata(
            title=series.title,
            year=series.year,
            plot=series.description,
            genres=series.genres,
            imdb_id=series.imdb_id,
            fsk=series.fsk,
            key=series.key,
        )
        try:
            await asyncio.to_thread(write_show_nfo, folder, metadata, self._temp.folder)
            if series.cover_url and run.halted is None and await asyncio.to_thread(needs_poster, folder):
                await self._write_poster(series, series.cover_url, folder, full=full)
        except (OSError, StorageError) as err:
            # A full disk must not fail the whole rescan: the NFO and poster are written again by a later one.
            LOGGER.warning("Could not write the metadata of %s into %s: %s", series.key, folder, err)

    async def _write_poster(self, series: Series, cover_url: str, folder: Path, *, full: bool) -> None:
        """poster.jpg from the site's cover, unless that cover failed before and this is no full refresh.

        A cover the site does not serve (a 404, an empty image) would otherwise cost one request per series at every
        rescan, for ever. So a failure is remembered with its URL, and the cover is asked for again only at the
        series' full refresh or when the series page names another cover.
        """
        setting = COVER_FAILED_SETTING.format(key=series.key)
        failed = await self._db.get_setting(setting)
        if isinstance(failed, dict) and failed.get("url") == cover_url and not full:
            LOGGER.debug(
                "No poster for %s: its cover failed at %s; asked again at the full refresh",
                series.key,
                failed.get("at"),
            )
            return
        try:
            cover = await self._provider.cover(cover_url)
        except (Blocked, Unreachable) as err:
            # Not the cover's fault: the site refused us or is away, and the next rescan simply tries again.
            LOGGER.info("No poster for %s yet: %s", series.key, err.message)
            return
        except ProviderError as err:
            problem: str | None = err.message
        else:
            problem = None if cover else f"{cover_url} is empty"
        if problem is not None:
            await self._db.set_setting(setting, {"url": cover_url, "at": _utcnow().isoformat(), "error": problem})
            LOGGER.info("No poster for %s: %s; asked again at its next full refresh", series.key, problem)
            return
        await asyncio.to_thread(write_poster, folder, cover, self._temp.folder)
        if failed is not None:
            await self._db.set_setting(setting, None)  # it works now: a later missing poster is fetched at once


def _retrieve(task: asyncio.Task[ScanResult]) -> None:
    if not task.cancelled():
        task.exception()


class _Count(Protocol):
    def __call__(self) -> int: ...


def _episode_record(key: str, summary: EpisodeSummary, known: dict[tuple[int, int], Episode]) -> Episode:
    """The stored episode updated with a season page row (its state and file are kept until reconciled)."""
    old = known.get((summary.season, summary.number))
    fresh = Episode(
        series_key=key,
        season=summary.season,
        number=summary.number,
        title_de=summary.title_de,
        title_en=summary.title_en,
        languages=summary.languages,
    )
    if old is None:
        return fresh
    return replace(old, title_de=fresh.title_de, title_en=fresh.title_en, languages=fresh.languages)


def _halt_text(err: Blocked | Unreachable) -> str:
    """Why the site is not asked any more in this scan."""
    if isinstance(err, Blocked):
        host = err.details.get("host", "the site")
        return f"{host} refused our requests; no requests to it until {err.details.get('until', 'the cooldown ends')}"
    return f"the site does not answer ({err.message})"
