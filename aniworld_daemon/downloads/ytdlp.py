"""The thread bridge to yt-dlp: one blocking download per worker thread, progress, cancellation, errors."""

from __future__ import annotations

import asyncio
import contextvars
import errno
import functools
import gc
import logging
import os
import re
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aniworld_daemon.downloads.verify import SourcePromise
from aniworld_daemon.errors import DownloadError, HosterError, StorageError, TransferCancelled
from aniworld_daemon.provider.hosters.base import MediaKind, MediaSource

if TYPE_CHECKING:
    import yt_dlp

# yt-dlp is imported by the first download, not at start: it holds ~10 MB the daemon needs only while it downloads
# (plus 2 MB for its generic extractor, the only one _run loads).

LOGGER = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.5  # at most 2 progress callbacks per second per download (plus one final)

# yt-dlp prefixes its errors with "ERROR: " (possibly coloured) and may name the status only in the text.
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_HTTP_STATUS_RE = re.compile(r"HTTP Error (\d{3})")
# Header values shorter than this are not secrets worth scrubbing (and would mangle messages: "1", "de").
_SECRET_MIN_LENGTH = 8
# The stall watchdog: a transfer that gains less than this many bytes within `stall_timeout` has stalled. Counting
# bytes, not silence, is what catches a trickle (a byte every few seconds), which no socket timeout ever sees.
STALL_MIN_BYTES = 1024
STALL_CHECK_INTERVAL = 1.0  # seconds between the watchdog's looks (less for a short stall_timeout)
# yt-dlp's socket_timeout is the stall timeout plus this: a silent socket is then reported by the watchdog as the
# stall it is (the next hoster is tried), not by yt-dlp as a network error that ends the attempt.
SOCKET_TIMEOUT_MARGIN = 5.0


class CancelToken:
    """Thread-safe cancel flag checked by the progress hook."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the download to stop at its next progress report."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether `cancel()` was called."""
        return self._event.is_set()


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report of a running download."""

    downloaded_bytes: int
    total_bytes: int | None  # total_bytes, else total_bytes_estimate (HLS)
    speed_bps: float | None
    eta_seconds: float | None

    @property
    def percent(self) -> float | None:
        """0..100, None when the total is unknown."""
        if not self.total_bytes:
            return None
        return min(100.0, 100.0 * self.downloaded_bytes / self.total_bytes)


@dataclass(frozen=True, slots=True)
class YtdlpOptions:
    """The yt-dlp settings the config controls."""

    retries: int = 10
    fragment_retries: int = 10
    rate_limit: int | None = None  # bytes/s per download (config downloads.rate_limit)
    stall_timeout: float = 60.0  # seconds without progress before the transfer is given up (downloads.stall_timeout)
    socket_timeout: float | None = None  # None: stall_timeout + SOCKET_TIMEOUT_MARGIN

    @property
    def effective_socket_timeout(self) -> float:
        """yt-dlp's socket_timeout: the one given, else derived from the stall timeout."""
        if self.socket_timeout is not None:
            return self.socket_timeout
        return self.stall_timeout + SOCKET_TIMEOUT_MARGIN


class StallWatchdog:
    """Ends a transfer that stopped moving: its sockets are shut down and no new one may connect.

    yt-dlp blocks in a socket read until its buffer is full, so neither its progress hook nor a socket timeout
    notices a connection that sends nothing or a byte every few seconds. The watchdog is fed by the progress hook
    (worker thread) and looked at from the event loop; `trip()` wakes the blocked read, and refusing new connections
    keeps yt-dlp's own retries from starting the same stall again.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._mark_bytes = 0  # downloaded bytes at the last sign of progress
        self._mark_time = time.monotonic()
        # On from the moment the worker thread starts (the executor may hold it back while busy) until yt-dlp reports
        # the transfer finished (its remux afterwards is no transfer).
        self._armed = False
        self.tripped = False

    def begin(self) -> None:
        """The worker thread starts the transfer: the clock starts."""
        self._mark_time = time.monotonic()
        self._armed = True

    def observe(self, status: dict[str, Any]) -> None:
        """A progress report (worker thread): enough new bytes move the mark; "finished" ends the watch."""
        if status.get("status") == "finished":
            self._armed = False
            return
        downloaded = int(status.get("downloaded_bytes") or 0)
        if not self._armed or abs(downloaded - self._mark_bytes) >= STALL_MIN_BYTES:
            self._mark_bytes = downloaded
            self._mark_time = time.monotonic()
            self._armed = True

    def stalled(self) -> bool:
        """Whether the transfer made no progress for `timeout` seconds (and was not tripped yet)."""
        return self._armed and not self.tripped and time.monotonic() - self._mark_time >= self.timeout

    def trip(self) -> None:
        """End the transfer: shut its sockets down (a blocked read returns) and refuse new connections."""
        with self._lock:
            self.tripped = True
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed already, or never connected
                continue

    def connecting(self, sock: socket.socket) -> None:
        """A socket of this transfer connects (worker thread); refused once tripped."""
        with self._lock:
            if self.tripped:
                raise ConnectionAbortedError("the transfer stalled and was given up")
            self._sockets.add(sock)


# The watchdog of the transfer the current worker thread runs: the audit hook finds the sockets yt-dlp opens by it.
_TRANSFER: contextvars.ContextVar[StallWatchdog | None] = contextvars.ContextVar("ytdlp_transfer", default=None)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: hand every socket a transfer connects to its watchdog (cheap for every other event)."""
    if event == "socket.connect" and (watchdog := _TRANSFER.get()) is not None and isinstance(args[0], socket.socket):
        watchdog.connecting(args[0])


@functools.cache
def _watch_sockets() -> None:
    """Install the audit hook, once per process (Python cannot remove one; with no transfer running it does nothing).

    yt-dlp opens its connections deep inside its request handlers (urllib or requests); an audit hook sees them all
    without patching either.
    """
    sys.addaudithook(_audit)


class YtdlpLogger:
    """Routes yt-dlp's messages to our `aniworld_daemon.downloads.ytdlp` logger (its info and debug become debug)."""

    def debug(self, message: str) -> None:
        """A yt-dlp debug or screen message."""
        _log(logging.DEBUG, message)

    def info(self, message: str) -> None:
        """A yt-dlp info message."""
        _log(logging.DEBUG, message)

    def warning(self, message: str) -> None:
        """A yt-dlp warning."""
        _log(logging.WARNING, message)

    def error(self, message: str) -> None:
        """A yt-dlp error: debug only, because it raises right after and our caller logs the mapped error.

        A hoster that refuses one file is routine (the next hoster is tried); it must not put ERROR lines in the log.
        """
        _log(logging.DEBUG, message)


def _log(level: int, message: str) -> None:
    """Log one yt-dlp message without its colours; the blank lines it writes to end progress lines are dropped."""
    text = _ANSI_RE.sub("", message).strip()
    if text:
        LOGGER.log(level, "%s", text)


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A finished download in the temp dir and what its source promised it to be (for the import gate)."""

    path: Path
    promise: SourcePromise | None


async def download(
    media: MediaSource,
    temp_dir: Path,
    stem: str,
    *,
    options: YtdlpOptions,
    on_progress: Callable[[Progress], None],
    cancel: CancelToken,
    promise: SourcePromise | None = None,
    on_promise: Callable[[SourcePromise], None] = lambda _: None,
) -> Downloaded:
    """Download `media` into temp_dir/<stem>.<ext> in a worker thread; return the finished file.

    `promise` is what an earlier attempt learnt about this source (a resumed or finished file has no new answer to
    learn it from). `on_promise` is called in the worker thread as soon as the source announces its length (a direct
    file) or duration (HLS), before the first byte is written, so the caller can store it durably.
    """
    loop = asyncio.get_running_loop()
    _watch_sockets()
    hook = _ProgressHook(loop, on_progress, cancel, media, on_promise, watchdog=StallWatchdog(options.stall_timeout))
    future = loop.run_in_executor(None, _run, media, temp_dir, stem, options, hook)
    try:
        # A task cancellation must not abandon the thread while it still writes the .part file: _supervise never
        # cancels the future, and the handler below waits for it.
        path, duration = await _supervise(future, hook.watchdog, media)
    except asyncio.CancelledError:
        cancel.cancel()
        while not future.done():
            try:
                await asyncio.wait((future,))
            except asyncio.CancelledError:
                continue  # cancelled again while waiting: the thread still has to finish first
        if not future.cancelled():
            future.exception()  # retrieved: the thread's TransferCancelled is expected here
        raise
    learnt = hook.promise or (promise if promise is not None and promise.hoster == media.hoster else None)
    if media.kind is MediaKind.HLS and duration is not None:
        # The playlist is read on every run, also when yt-dlp finds the file finished: its duration is current.
        learnt = SourcePromise(media.hoster, duration=duration)
    return Downloaded(path, learnt)


async def _supervise(
    future: asyncio.Future[tuple[Path, float | None]], watchdog: StallWatchdog, media: MediaSource
) -> tuple[Path, float | None]:
    """The thread's result; meanwhile the watchdog is looked at, and tripped when the transfer stalls."""
    interval = min(STALL_CHECK_INTERVAL, watchdog.timeout / 4)
    while True:
        done, _ = await asyncio.wait((future,), timeout=interval)  # wait() never cancels what it waits for
        if done:
            return future.result()
        if watchdog.stalled():
            LOGGER.warning("%s: no data for %g s; giving the transfer up", media.hoster, watchdog.timeout)
            watchdog.trip()


class _ProgressHook:
    """yt-dlp's progress hook: checks the cancel flag and forwards throttled Progress reports to the loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_progress: Callable[[Progress], None],
        cancel: CancelToken,
        media: MediaSource,
        on_promise: Callable[[SourcePromise], None],
        *,
        watchdog: StallWatchdog,
    ) -> None:
        self.watchdog = watchdog
        self._loop = loop
        self._on_progress = on_progress
        self.cancel = cancel
        self._media = media
        self._on_promise = on_promise
        self.promise: SourcePromise | None = None  # what this run's source announced
        self._last_sent: float | None = None

    def _learn(self, status: dict[str, Any]) -> None:
        """Record (and hand on) what the source promised, from the first report that says it."""
        if status.get("status") != "downloading":
            return  # a "finished" report carries the local file's size, not the server's
        if self._media.kind is MediaKind.MP4:
            total = status.get("total_bytes")  # Content-Length plus the Range offset: the whole file
            promise = SourcePromise(self._media.hoster, size=int(total)) if total else None
        else:
            duration = (status.get("info_dict") or {}).get("duration")
            promise = SourcePromise(self._media.hoster, duration=float(duration)) if duration else None
        if promise is not None and promise != self.promise:
            self.promise = promise
            self._on_promise(promise)

    def __call__(self, status: dict[str, Any]) -> None:
        from yt_dlp.utils import DownloadCancelled  # noqa: PLC0415 - loaded by _run already: a dictionary lookup

        if self.cancel.cancelled or self.watchdog.tripped:
            raise DownloadCancelled()
        self.watchdog.observe(status)
        state = status.get("status")
        if state not in ("downloading", "finished"):
            return
        self._learn(status)
        now = time.monotonic()
        if state == "downloading" and self._last_sent is not None and now - self._last_sent < PROGRESS_INTERVAL:
            return
        self._last_sent = now
        try:
            self._loop.call_soon_threadsafe(self._on_progress, _progress(status))
        except RuntimeError:  # the loop is closed: nobody waits for this download any more
            raise DownloadCancelled() from None


def _progress(status: dict[str, Any]) -> Progress:
    """A Progress from one yt-dlp status dict (numbers may be floats or missing)."""
    total = status.get("total_bytes") or status.get("total_bytes_estimate")
    downloaded = status.get("downloaded_bytes")
    if downloaded is None and status.get("status") == "finished":
        downloaded = total  # a file found already complete is reported "finished" with its size only
    speed = status.get("speed")
    eta = status.get("eta")
    return Progress(
        downloaded_bytes=int(downloaded or 0),
        total_bytes=int(total) if total else None,
        speed_bps=float(speed) if speed is not None else None,
        eta_seconds=float(eta) if eta is not None else None,
    )


def _ydl_params(
    media: MediaSource, temp_dir: Path, stem: str, options: YtdlpOptions, hook: _ProgressHook
) -> dict[str, Any]:
    """The YoutubeDL parameters of one download."""
    params: dict[str, Any] = {
        "outtmpl": {"default": f"{stem}.%(ext)s"},
        "paths": {"home": str(temp_dir), "temp": str(temp_dir)},
        "http_headers": dict(media.headers),
        "retries": options.retries,
        "fragment_retries": options.fragment_retries,
        # A missing HLS segment must fail the download, not leave a file with a hole that still probes fine.
        "skip_unavailable_fragments": False,
        "socket_timeout": options.effective_socket_timeout,
        "continuedl": True,  # resume a .part file with an HTTP Range request
        "nopart": False,
        "noplaylist": True,
        "cachedir": False,  # yt-dlp must write nothing outside temp_dir (no ~/.cache)
        "updatetime": False,
        "noprogress": True,
        "quiet": True,
        "no_warnings": False,
        "logger": YtdlpLogger(),
        "progress_hooks": [hook],
    }
    if options.rate_limit is not None:
        params["ratelimit"] = options.rate_limit
    return params


def _run(
    media: MediaSource, temp_dir: Path, stem: str, options: YtdlpOptions, hook: _ProgressHook
) -> tuple[Path, float | None]:
    """The blocking download (worker thread): the finished file and the source's duration (HLS, whole seconds).

    Raises only errors of our tree.
    """
    import yt_dlp  # noqa: PLC0415 - see the note at the imports
    import yt_dlp.utils  # noqa: PLC0415
    from yt_dlp.extractor.generic import GenericIE  # noqa: PLC0415

    transfer = _TRANSFER.set(hook.watchdog)  # this thread's connections are this transfer's, until it returns
    hook.watchdog.begin()
    try:
        # Without auto_init, yt-dlp does not load its ~1,800 site extractors (8 MB kept for good, 60 ms per download):
        # our media URLs are resolved already, and only the generic extractor ever handles them.
        with yt_dlp.YoutubeDL(_ydl_params(media, temp_dir, stem, options, hook), auto_init=False) as ydl:
            ydl.add_info_extractor(GenericIE())
            if media.kind is MediaKind.MP4:
                # A direct file: hand yt-dlp the format itself. The generic extractor would first GET the URL
                # only to read its Content-Type and drop the connection, one more stream opened at the hoster.
                direct = {
                    "id": stem,
                    "title": stem,
                    "url": media.url,
                    "ext": "mp4",
                    "http_headers": dict(media.headers),
                }
                info = ydl.process_ie_result(direct, download=True)
            else:
                # HLS: the generic extractor reads a master playlist and picks the best variant.
                info = ydl.extract_info(media.url, download=True, ie_key="Generic")
            path = _finished_file(ydl, info)
            duration = info.get("duration") if info else None
    except yt_dlp.utils.DownloadCancelled as err:
        # yt-dlp's HLS downloader does not close its .part stream when a hook raises: the stream stays referenced
        # from the traceback's frames and a reference cycle. Drop both now, so the file is closed when we return.
        err.with_traceback(None)
        gc.collect()
        if hook.watchdog.tripped and not hook.cancel.cancelled:
            raise _stalled(media, hook.watchdog) from err
        LOGGER.debug("%s: download cancelled; its partial files stay in %s", stem, temp_dir)
        raise TransferCancelled("the download was cancelled", details={"hoster": media.hoster}) from err
    except Exception as err:  # yt-dlp raises its DownloadError, UnavailableVideoError, plain OSError...
        if hook.watchdog.tripped:
            raise _stalled(media, hook.watchdog) from err
        raise _map_error(err, media, temp_dir) from err
    finally:
        _TRANSFER.reset(transfer)
    if not path.is_file():
        raise DownloadError(f"yt-dlp reported success but {path.name} is missing", details={"hoster": media.hoster})
    if hook.cancel.cancelled:
        # Cancelled after the last progress report (e.g. during yt-dlp's HLS remux): a cancel is a cancel; the
        # finished file stays in temp_dir like any partial file, for the caller to keep or remove.
        raise TransferCancelled("the download was cancelled", details={"hoster": media.hoster})
    return path, float(duration) if isinstance(duration, int | float) and duration > 0 else None


def _finished_file(ydl: yt_dlp.YoutubeDL, info: dict[str, Any] | None) -> Path:
    """The file yt-dlp finished (after its own HLS fixup), from the info dict it returned."""
    if not info:
        raise DownloadError("yt-dlp returned no result")
    for requested in info.get("requested_downloads") or ():
        if requested.get("filepath"):
            return Path(requested["filepath"])
    return Path(ydl.prepare_filename(info))


def _causes(err: BaseException) -> Iterator[BaseException]:
    """`err` and every exception behind it (yt-dlp's exc_info and cause, Python's __cause__/__context__)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        exc_info = getattr(current, "exc_info", None)
        inner = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
        cause = getattr(current, "cause", None)
        pending.extend(
            [
                inner if isinstance(inner, BaseException) else None,
                cause if isinstance(cause, BaseException) else None,
                current.__cause__,
                current.__context__,
            ]
        )


def _map_error(err: Exception, media: MediaSource, temp_dir: Path) -> DownloadError | HosterError | StorageError:
    """Our error for a yt-dlp failure: 4xx -> HosterError, disk full -> StorageError, else DownloadError."""
    message = _scrub(_clean(str(err)), media)
    causes = list(_causes(err))
    # yt-dlp often reports a write error only as text ("unable to write data: [Errno 28] ...").
    if any(isinstance(cause, OSError) and cause.errno == errno.ENOSPC for cause in causes) or (
        os.strerror(errno.ENOSPC) in message
    ):
        return _disk_full(temp_dir)
    from yt_dlp.networking.exceptions import HTTPError  # noqa: PLC0415 - loaded by _run already

    status = next((cause.status for cause in causes if isinstance(cause, HTTPError)), None)
    if status is None:
        match = _HTTP_STATUS_RE.search(message)
        status = int(match.group(1)) if match else None
    if status is not None and 400 <= status < 500:
        return HosterError(
            f"{media.hoster}: the media URL was refused ({message})", details={"hoster": media.hoster, "status": status}
        )
    from yt_dlp.utils import UnsupportedError  # noqa: PLC0415 - loaded by _run already

    if any(isinstance(cause, UnsupportedError) for cause in causes):
        # The media URL answered, with something that is no video or playlist (an HTML page): the hoster's fault.
        return HosterError(f"{media.hoster}: the media URL gave no video ({message})", details={"hoster": media.hoster})
    return DownloadError(message, details={"hoster": media.hoster})


def _stalled(media: MediaSource, watchdog: StallWatchdog) -> HosterError:
    """The error of a transfer the watchdog ended: the hoster's fault, so the next hoster is tried."""
    return HosterError(
        f"{media.hoster}: the transfer stalled (no data for {watchdog.timeout:g} s, downloads.stall_timeout); given up",
        details={"hoster": media.hoster, "stall_seconds": watchdog.timeout},
    )


def _disk_full(temp_dir: Path) -> StorageError:
    """The error for a full disk under the temp folder."""
    return StorageError(f"no space left on the disk of {temp_dir}", details={"path": str(temp_dir)})


def _clean(message: str) -> str:
    """A yt-dlp message without ANSI colours and its "ERROR: " prefix."""
    return _ANSI_RE.sub("", message).strip().removeprefix("ERROR:").strip()


def _scrub(message: str, media: MediaSource) -> str:
    """`message` with every (long enough) header value blanked: tokens and cookies never reach logs or the API."""
    for value in media.headers.values():
        if len(value) >= _SECRET_MIN_LENGTH:
            message = message.replace(value, "***")
    return message
