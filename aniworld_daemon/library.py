"""The media library on disk: series folders scanned for episodes, safe paths, NFO and posters (written atomically).

Everything here is synchronous and does plain file I/O; the rescan runs it in a thread (asyncio.to_thread).
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aniworld_daemon.downloads.tempfiles import TEMP_DIR_NAME, write_file_atomic
from aniworld_daemon.errors import StorageError, ValidationError
from aniworld_daemon.naming import NamingTemplate, SeriesNaming

LOGGER = logging.getLogger(__name__)

# Dotted, lower-case suffixes: compare with `os.path.splitext(name)[1].lower()`.
VIDEO_EXTENSIONS = frozenset({".mkv", ".mp4", ".m4v", ".avi", ".webm", ".ts", ".mov", ".wmv", ".flv"})
MIN_EPISODE_BYTES = 1_000_000
# yt-dlp's unfinished files: "x.mp4.part", "x.mp4.ytdl", "x.temp.mp4", "x.f137.mp4.part-Frag3".
PARTIAL_RE = re.compile(r"\.(?:part|ytdl)$|\.temp(?:\.|$)|\.part-frag", re.IGNORECASE)
NFO_NAME = "tvshow.nfo"
POSTER_NAME = "poster.jpg"
# Library folder names: "(2019)" is the year; id tags like "[imdbid-tt123]" or "{tvdb-123}" are not the title.
_YEAR_TAG_RE = re.compile(r"\(\s*([0-9]{4})\s*\)")
_ID_TAG_RE = re.compile(r"\[(?:imdb|tvdb|tmdb|anidb|anilist|mal)(?:id)?[-=][^\]]*\]|\{[^}]*\}", re.IGNORECASE)
# XML 1.0 cannot carry these even escaped.
_XML_ILLEGAL_RE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class EpisodeFile:
    """A video file recognised as an episode."""

    season: int
    number: int
    path: str  # relative to the library root, posix separators
    size: int


@dataclass(frozen=True, slots=True)
class FolderScan:
    """One top-level library folder: its recognised episode files and what was skipped."""

    name: str
    files: tuple[EpisodeFile, ...]
    skipped: tuple[str, ...]  # relative paths of videos not recognised / too small / partial (for logs/reports)


def is_partial(name: str) -> bool:
    """True for a download in progress (yt-dlp's .part, .ytdl, .temp and .part-Frag files)."""
    return PARTIAL_RE.search(name) is not None


def _inside(path: Path, root: Path) -> bool:
    """True when `path` (resolved, symlinks followed) lies inside the resolved `root`."""
    return path.resolve().is_relative_to(root)


def list_folders(root: Path) -> list[str]:
    """Top-level directory names of the library (not hidden, not TEMP_DIR_NAME); [] when root is missing."""
    resolved = root.resolve()
    try:
        with os.scandir(root) as entries:
            return sorted(
                entry.name
                for entry in entries
                if not entry.name.startswith(".")
                and entry.is_dir()
                and (not entry.is_symlink() or _inside(Path(entry.path), resolved))
            )
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StorageError(f"cannot read the library {root}: {err.strerror or err}") from err


def unavailable(root: Path, known_files: int) -> str | None:
    """Why the library at `root` must not be worked on now, or None. Blocking (one directory listing).

    A root that is missing, unreadable, or empty (nothing but our temp dir) while the database knows `known_files`
    episode files there is a disk that is not mounted (a NAS that dropped away leaves an empty mount point), not a
    library whose files were all deleted: a rescan would mark every episode missing, and a download would write into
    the mount point's own file system. Sonarr's rule; the health check `library_mounted` applies the same one.
    """
    try:
        with os.scandir(root) as entries:
            empty = not any(entry.name != TEMP_DIR_NAME for entry in entries)
    except FileNotFoundError:
        return f"the library {root} does not exist; is its disk mounted?"
    except OSError as err:
        return f"cannot read the library {root}: {err.strerror or err}"
    if empty and known_files:
        return f"library {root} is empty, but {known_files} episode files were there: is its disk mounted?"
    return None


def mounted_folders(root: Path, known_files: int) -> list[str]:
    """list_folders(root) of a library that is there (see unavailable); StorageError when it is not. Blocking.

    Checked before and after the listing: a disk that goes away while it is listed must not pass for an empty library.
    """
    problem = unavailable(root, known_files)
    if problem is None:
        folders = list_folders(root)
        problem = unavailable(root, known_files)
    if problem is not None:
        raise StorageError(problem, details={"path": str(root)})
    return folders


def scan_folder(root: Path, folder: str, template: NamingTemplate, naming: SeriesNaming | None) -> FolderScan:
    """Walk one series folder recursively and recognise its episode files.

    The season hint of a name is its nearest season folder (see folder_season). Symbolic links are followed only
    inside the library. Duplicate (season, number): the larger file is kept. A folder that cannot be read raises
    StorageError: an unreadable disk must not look like missing episodes.
    """
    base = library_path(root, folder)
    resolved_root = root.resolve()
    chosen: dict[tuple[int, int], EpisodeFile] = {}
    skipped: list[str] = []
    visited = {base.resolve()}  # symlinked folders may point back up: walk each real folder once
    pending = [(base, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as iterator:
                entries = list(iterator)
        except OSError as err:
            raise StorageError(f"cannot read {directory}: {err.strerror or err}") from err
        for entry in entries:
            relative = prefix + entry.name
            # Hidden names, TEMP_DIR_NAME among them, belong to other tools or to downloads in progress.
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_symlink() and not _inside(Path(entry.path), resolved_root):
                    LOGGER.debug("Not following %s: it points out of the library", entry.path)
                    continue
                if entry.is_dir():
                    real = Path(entry.path).resolve()
                    if real not in visited:
                        visited.add(real)
                        pending.append((Path(entry.path), relative + "/"))
                    continue
                if is_partial(entry.name):
                    skipped.append(f"{folder}/{relative}")
                    continue
                if os.path.splitext(entry.name)[1].lower() not in VIDEO_EXTENSIONS or not entry.is_file():
                    continue
                size = entry.stat().st_size
            except FileNotFoundError:  # deleted while we looked (a finished download moving its temp file)
                continue
            found = template.parse(relative, naming) if size >= MIN_EPISODE_BYTES else None
            if found is None:
                skipped.append(f"{folder}/{relative}")
                continue
            candidate = EpisodeFile(found[0], found[1], f"{folder}/{relative}", size)
            previous = chosen.get(found)
            if previous is None:
                chosen[found] = candidate
                continue
            # Two files of one episode: keep the larger (the smaller is likelier a broken or preview copy); on equal
            # sizes the first path in sort order, so the result does not depend on the directory order.
            winner, loser = sorted((previous, candidate), key=lambda item: (-item.size, item.path))
            chosen[found] = winner
            skipped.append(loser.path)
    files = tuple(sorted(chosen.values(), key=lambda item: (item.season, item.number)))
    return FolderScan(folder, files, tuple(sorted(skipped)))


def _normalise_folder(name: str) -> tuple[str, int | None]:
    """A name for comparison (letters and digits, casefolded, accents dropped, tags removed) and its '(year)'."""
    years = _YEAR_TAG_RE.findall(name)
    text = _YEAR_TAG_RE.sub(" ", _ID_TAG_RE.sub(" ", name))
    text = unicodedata.normalize("NFKD", text).casefold()
    # NFKD splits accents off as combining marks, which are not alphanumeric: "Sōsō" -> "soso".
    return "".join(char for char in text if char.isalnum()), int(years[-1]) if years else None


def match_folder(folders: Iterable[str], title: str, alternative_titles: Sequence[str], year: int | None) -> str | None:
    """The folder of an existing library that belongs to a series, or None when no or several folders do.

    Names are compared normalised (casefold, NFKD, accents and everything but letters/digits dropped; '(2019)',
    '[imdbid-tt..]', '[tvdbid-..]' and '{..}' tags stripped): the title or an alternative title must equal the folder's.
    When both the folder and the series have a year they must match.
    """
    names = {_normalise_folder(text)[0] for text in (title, *alternative_titles)} - {""}
    candidates = []
    for folder in folders:
        name, folder_year = _normalise_folder(folder)
        if name in names and (year is None or folder_year is None or year == folder_year):
            candidates.append(folder)
    return candidates[0] if len(candidates) == 1 else None


def library_path(root: Path, relative: str) -> Path:
    """root/relative, or ValidationError for anything that would leave root.

    Refused: empty, absolute, a '..' component, NUL, or a path that resolves (symlinks followed) outside root.resolve().
    """
    problem = _path_problem(root, relative)
    if problem is not None:
        raise ValidationError(f"the library path {relative!r} {problem}", details={"field": "path", "path": relative})
    return root / relative


def _path_problem(root: Path, relative: str) -> str | None:
    """Why root/relative would not be a path inside root, or None."""
    if not relative:
        return "is empty"
    if "\x00" in relative:
        return "contains a NUL character"
    if relative.startswith("/"):
        return "is absolute"
    if ".." in relative.split("/"):
        return "contains '..'"
    if not _inside(root / relative, root.resolve()):
        return "leads out of the library (through a symbolic link)"
    return None


@dataclass(frozen=True, slots=True)
class ShowMetadata:
    """What tvshow.nfo says."""

    title: str
    year: int | None
    plot: str
    genres: tuple[str, ...]
    imdb_id: str | None
    fsk: int | None  # age rating -> <mpaa>FSK 16</mpaa>
    key: str  # <uniqueid type="aniworld">key</uniqueid>


def show_nfo(metadata: ShowMetadata) -> bytes:
    """The Kodi tvshow.nfo document (UTF-8 XML) for a series."""
    root = ET.Element("tvshow")

    def add(tag: str, text: str, **attributes: str) -> None:
        ET.SubElement(root, tag, attributes).text = _XML_ILLEGAL_RE.sub("", text)

    add("title", metadata.title)
    if metadata.year is not None:
        add("year", str(metadata.year))
    add("plot", metadata.plot)
    if metadata.fsk is not None:
        add("mpaa", f"FSK {metadata.fsk}")
    for genre in metadata.genres:
        add("genre", genre)
    if metadata.imdb_id:
        add("uniqueid", metadata.imdb_id, type="imdb", default="true")
    add("uniqueid", metadata.key, type="aniworld", default="false" if metadata.imdb_id else "true")
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_show_nfo(folder: Path, metadata: ShowMetadata, temp_dir: Path) -> bool:
    """Write folder/tvshow.nfo (Kodi XML, UTF-8) atomically unless it exists; returns whether it wrote.

    Creates the folder. An existing file, maybe the user's own, is never replaced. The temp file is written in
    `temp_dir` (the library's temp dir), so a kill leaves nothing in the series folder.
    """
    return _write_once(folder / NFO_NAME, show_nfo(metadata), temp_dir)


def needs_poster(folder: Path) -> bool:
    """True when folder/poster.jpg does not exist."""
    return not (folder / POSTER_NAME).exists()


def write_poster(folder: Path, data: bytes, temp_dir: Path) -> bool:
    """Write folder/poster.jpg once, atomically (through `temp_dir`); False when it exists."""
    if not data:
        raise ValueError("refusing to write an empty poster")
    return _write_once(folder / POSTER_NAME, data, temp_dir)


def _write_once(path: Path, data: bytes, temp_dir: Path) -> bool:
    """Write `path` atomically unless it exists (a file the user put there wins); creates its folder."""
    # The rescan is the only writer of these files, so checking first is enough; a user's own file is never replaced.
    if path.exists():
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create {path.parent}: {err.strerror or err}") from err
    write_file_atomic(path, data, temp_dir)
    return True
